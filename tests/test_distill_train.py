"""Distillation on Ray Train with 2 CPU workers: learning, checkpoints, failure and resume."""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
import yaml

from distilray.distill.config import DistillConfig
from distilray.distill.history import HISTORY_FILE, read_history
from distilray.distill.trainer import (
    TrainingFailed,
    interrupted_message,
    resumable_step,
    run_distillation,
)
from labelled import labelled_table

pytestmark = pytest.mark.ray


@pytest.fixture(autouse=True)
def _shared_ray(ray_local):
    """Fits join the session's Ray instead of starting an embedded one."""


COPIES = 10  # each clip appears this many times (distinct ids): 80 rows, one epoch per run


@pytest.fixture(scope="module")
def student(tiny_random, tmp_path_factory) -> Path:
    from distilray.student import StudentInitConfig, init_student

    out = tmp_path_factory.mktemp("student") / "init"
    init_student(StudentInitConfig(teacher=str(tiny_random), decoder_layers=2, out=str(out)))
    return out


@pytest.fixture(scope="module")
def labels(synth_clips, tiny_random, tmp_path_factory) -> Path:
    """Labelled Parquet as `distilray label` writes it; pseudo-labels = tokenised references."""
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(tiny_random)
    out = tmp_path_factory.mktemp("labels")
    pq.write_table(labelled_table(synth_clips, tokenizer, COPIES), out / "part-0.parquet")
    return out


def _config(tiny_random, student, labels, storage, name, **train) -> DistillConfig:
    return DistillConfig.model_validate(
        {
            "data": {"train": str(labels), "eval_fraction": 0.15, "eval_max_rows": 4},
            "model": {"teacher": str(tiny_random), "student": str(student)},
            "optim": {"learning_rate": 2e-3, "warmup_steps": 2, "schedule": "constant"},
            "train": {
                "batch_size": 2,
                "eval_max_new_tokens": 8,
                "eval_batch_size": 4,
                "torch_threads": 1,
                **train,
            },
            "scaling": {"num_workers": 2, "use_gpu": False, "cpus_per_worker": 1},
            "run": {"name": name, "storage": str(storage), "max_failures": 1},
        }
    )


def _history(run_path: str) -> list[dict]:
    """Every report of rank 0, in order, across attempts."""
    return read_history(f"{run_path}/{HISTORY_FILE}")


@pytest.fixture(scope="module")
def uninterrupted(ray_local, tiny_random, student, labels, tmp_path_factory):
    storage = tmp_path_factory.mktemp("runs")
    cfg = _config(tiny_random, student, labels, storage, "clean", max_steps=16, eval_every=8)
    return run_distillation(cfg)


def test_loss_decreases_and_student_is_exported(uninterrupted):
    from distilray.models import load_whisper

    history = _history(uninterrupted.run_path)
    assert [h["step"] for h in history] == [8, 16]
    assert history[1]["train_loss"] < 0.9 * history[0]["train_loss"]
    assert all(h["attempt_start_step"] == 0 for h in history)
    assert uninterrupted.steps == 16
    assert uninterrupted.data.kept == uninterrupted.data.candidates > 0
    folder = Path(uninterrupted.student)
    card = (folder / "README.md").read_text()
    assert "Eval WER" in card and "λ: 0.1" in card
    meta = yaml.safe_load(card.split("---\n")[1])  # the Hub's front matter
    assert meta["pipeline_tag"] == "automatic-speech-recognition"
    wer = meta["model-index"][0]["results"][0]["metrics"][0]
    assert wer["type"] == "wer" and wer["value"] == round(100 * uninterrupted.eval_wer, 2)
    assert str(folder.parent) not in card  # no paths of this machine
    model, _ = load_whisper(str(folder))
    assert model.config.decoder_layers == 2
    checkpoints = sorted(p.name for p in Path(uninterrupted.run_path).glob("checkpoint_step_*"))
    assert len(checkpoints) <= 2  # run.num_to_keep
    for ckpt in checkpoints:
        assert {p.name for p in (Path(uninterrupted.run_path) / ckpt).iterdir()} == {
            "config.json",
            "generation_config.json",
            "model.safetensors",
            "train_state.pt",
        }


def test_ray_train_console_is_quiet_unless_verbose(caplog):
    """Ray Train's INFO lines (worker-group starts, checkpoint paths, every metrics
    report) stay in its session logs unless -v; its data ingest options do not trip
    Ray's deprecation warning for exclude_resources in every run."""
    import logging
    import warnings

    from ray.train import DataConfig

    from distilray.distill.trainer import ingest_options, train_log_level

    caplog.set_level(logging.INFO)  # the CLI's default
    assert train_log_level() == "WARNING"
    caplog.set_level(logging.DEBUG)  # -v
    assert train_log_level() == "INFO"

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        options = DataConfig(
            datasets_to_split=["train"], execution_options=ingest_options()
        )._resolve_execution_options("train")
    default = DataConfig.default_ingest_options()  # what Ray Train uses otherwise
    assert options.resource_limits == default.resource_limits
    assert options.preserve_order == default.preserve_order
    assert options.exclude_resources == default.exclude_resources


def test_failure_recovers_from_checkpoint_with_same_step_count(
    uninterrupted, tiny_random, student, labels, tmp_path
):
    cfg = _config(
        tiny_random, student, labels, tmp_path, "flaky", max_steps=16, eval_every=8, fail_at_step=12
    )
    # The multi-epoch speed-ups ride along: features materialised once, encoder outputs
    # cached per row id (the ids travel through Ray's collate); neither may change counts,
    # nor may consistent augmentation, whose perturbed rows bypass that cache.
    cfg.data.cache_features = True
    cfg.train.encoder_cache_gb = 0.25
    cfg.train.augment.probability = 0.5
    # ... and so must the weight average, which has to survive the restart
    cfg.train.average.decay = 0.9
    cfg.train.average.start_step = 4
    # ... and the student reading the teacher's cross-attention keys and values, whose
    # frozen projections the resumed worker checks again against the teacher's
    cfg.model.freeze_cross_attention_kv = True
    outcome = run_distillation(cfg)
    history = _history(outcome.run_path)
    clean = _history(uninterrupted.run_path)
    # Steps 1-12 ran, the attempt failed, the retry restarted from the step-8 checkpoint.
    assert [h["step"] for h in history] == [8, 16]
    assert [h["attempt_start_step"] for h in history] == [0, 8]
    assert outcome.steps == uninterrupted.steps == 16
    assert history[-1]["samples"] == clean[-1]["samples"] == 16 * 2 * 2
    # The step-16 checkpoint holds the average of steps 4-16 (5 before the restart, 8
    # after: the resumed run went on with the saved average) and training's raw weights.
    from safetensors.torch import load_file

    final = Path(outcome.run_path) / "checkpoint_step_00000016"
    state = torch.load(final / "train_state.pt", weights_only=True)
    assert state["average"]["count"] == 13
    averaged, raw = load_file(final / "model.safetensors"), state["average"]["raw"]
    assert raw and all(name in averaged for name in raw)
    assert any(not torch.equal(averaged[name], raw[name]) for name in raw)
    exported = load_file(Path(outcome.student) / "model.safetensors")
    chosen = Path(outcome.run_path) / f"checkpoint_step_{outcome.exported_step:08d}"
    assert all(
        torch.equal(exported[k], v) for k, v in load_file(chosen / "model.safetensors").items()
    )
    teacher = load_file(Path(tiny_random) / "model.safetensors")
    for layer, source in enumerate([0, 3]):  # the 2-layer student's teacher layers
        for name in ("k_proj.weight", "v_proj.weight", "v_proj.bias", "q_proj.weight"):
            ours = exported[f"model.decoder.layers.{layer}.encoder_attn.{name}"]
            theirs = teacher[f"model.decoder.layers.{source}.encoder_attn.{name}"]
            assert torch.equal(ours, theirs) == (name != "q_proj.weight"), name


def test_a_failed_or_interrupted_run_resumes_when_the_same_command_runs_again(
    tiny_random, student, labels, tmp_path, caplog
):
    """One run, stopped twice the ways a user meets: a failure that exhausts
    ``max_failures``, then Ctrl-C; each rerun goes on from the latest checkpoint."""
    # Long enough that the run is still going when the interrupt comes.
    cfg = _config(
        tiny_random, student, labels, tmp_path, "resume", max_steps=400, eval_every=4,
        fail_at_step=6,
    )  # fmt: skip
    cfg.run.max_failures = 0
    run = tmp_path / "resume"
    with pytest.raises(TrainingFailed, match="rerun the same command"):
        run_distillation(cfg)
    assert resumable_step(str(run)) == 4

    cfg.train.fail_at_step = None
    before = signal.getsignal(signal.SIGINT)
    sent = threading.Event()

    def checkpointed() -> bool:  # past the failed attempt's step 4
        try:
            return (resumable_step(str(run)) or 0) > 4
        except ValueError:  # the index is being written
            return False

    def press_ctrl_c() -> None:  # as a terminal does, once a new checkpoint is registered
        deadline = time.monotonic() + 300
        while not checkpointed() and time.monotonic() < deadline:
            time.sleep(0.05)
        if checkpointed():
            sent.set()
            os.kill(os.getpid(), signal.SIGINT)

    presser = threading.Thread(target=press_ctrl_c, daemon=True)
    presser.start()
    # the CLI's exit 130 and "interrupted", where Ray's wait used to exit 1 silently
    with caplog.at_level(logging.WARNING, logger="distilray"), pytest.raises(KeyboardInterrupt):
        run_distillation(cfg)
    presser.join()
    assert sent.is_set()
    # Ray Train's own handler (abort the run) does not outlive the run.
    assert signal.getsignal(signal.SIGINT) is before
    kept = resumable_step(str(run))
    assert kept and kept > 4 and kept % 4 == 0 and kept < cfg.train.max_steps
    assert (run / f"checkpoint_step_{kept:08d}").is_dir()
    [message] = [r.getMessage() for r in caplog.records if "interrupted" in r.getMessage()]
    assert f"latest checkpoint (step {kept}) is in {run}" in message
    assert "rerun the same command to resume" in message
    # The same command again goes on from that checkpoint.
    cfg.train.max_steps = kept + 4
    outcome = run_distillation(cfg)
    history = _history(outcome.run_path)
    assert (history[0]["step"], history[0]["attempt_start_step"]) == (4, 0)
    assert history[1]["attempt_start_step"] == 4  # the first rerun
    assert history[-1]["step"] == outcome.steps == kept + 4
    assert history[-1]["attempt_start_step"] == kept
    assert history[-1]["samples"] == (kept + 4) * 2 * 2


def test_an_interrupted_run_is_described_by_the_checkpoint_it_resumes_from(tmp_path):
    cfg = DistillConfig.model_validate(
        {
            "data": {"train": "labels"},
            "model": {"teacher": "tiny.en", "student": "student"},
            "train": {"max_steps": 10, "eval_every": 5},
            "run": {"name": "r", "storage": str(tmp_path)},
        }
    )
    run = tmp_path / "r"
    run.mkdir()
    assert "before its first checkpoint (step 5)" in interrupted_message(cfg)
    # a folder written but not yet in Ray's index is not what a rerun resumes from
    (run / "checkpoint_step_00000010").mkdir()
    index = {"latest_checkpoint_result": {"checkpoint_dir_name": "checkpoint_step_00000005",
                                          "metrics": {"step": 5}}}  # fmt: skip
    (run / "checkpoint_manager_snapshot.json").write_text(json.dumps(index))
    assert f"latest checkpoint (step 5) is in {run}" in interrupted_message(cfg)
    (run / "checkpoint_manager_snapshot.json").write_text(json.dumps({"results": []}))
    assert interrupted_message(cfg) == (
        f"training interrupted; rerun the same command to resume from {run}"
    )
