"""Distillation and student-init configs: every shipped YAML loads; mistakes are clear."""

from __future__ import annotations

from pathlib import Path

import pytest

from distilray.config import load_config
from distilray.distill.config import CHECKED_BEFORE, DistillConfig
from distilray.distill.optim import lr_factor
from distilray.errors import ConfigError
from distilray.student import StudentInitConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize(
    ("name", "cls", "command"),
    [
        (
            "tiny/distill.yaml",
            DistillConfig,
            "distilray distill --config configs/tiny/distill.yaml",
        ),
        (
            "large-v3/distill.yaml",
            DistillConfig,
            "python jobs/distill.py --config configs/large-v3/distill.yaml",
        ),
        (
            "tiny/init_student.yaml",
            StudentInitConfig,
            "distilray init-student --config configs/tiny/init_student.yaml",
        ),
        (
            "large-v3/init_student.yaml",
            StudentInitConfig,
            "python jobs/init_student.py --config configs/large-v3/init_student.yaml",
        ),
    ],
)
def test_shipped_configs_load_and_name_their_command(name, cls, command):
    path = CONFIGS / name
    first_line = path.read_text().splitlines()[0]
    assert first_line.startswith("#") and command in first_line
    assert isinstance(load_config(cls, path), cls)


def test_paper_defaults_and_overrides():
    cfg = load_config(
        DistillConfig, CONFIGS / "tiny/distill.yaml", ["loss.temperature=3", "train.max_steps=7"]
    )
    assert (cfg.loss.kl_weight, cfg.loss.pl_weight, cfg.loss.temperature) == (0.8, 1.0, 3.0)
    assert cfg.train.max_steps == 7
    assert cfg.data.wer_threshold == 0.1
    assert cfg.export_uri() == "runs/demo/student"
    large = load_config(DistillConfig, CONFIGS / "large-v3/distill.yaml")
    assert large.model.teacher == "openai/whisper-large-v3"
    assert large.run.storage.startswith("s3://")


def test_an_average_that_never_starts_is_reported(caplog):
    cfg = load_config(DistillConfig, CONFIGS / "tiny/distill.yaml", ["train.max_steps=20"])
    assert cfg.train.average.decay == 0.99  # the shortened run keeps its setting
    assert "no step enters the average" in caplog.text
    # a Ray Train worker rebuilds the driver's config from its dump: said once, not per worker
    caplog.clear()
    dump = cfg.model_dump(mode="json")
    rebuilt = DistillConfig.model_validate(dump, context={CHECKED_BEFORE: True})
    assert rebuilt == cfg and not caplog.records
    dump["loss"].update(kl_weight=0, pl_weight=0)  # errors are still errors there
    with pytest.raises(ConfigError, match="nothing to learn"):
        DistillConfig.model_validate(dump, context={CHECKED_BEFORE: True})


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("loss.kl_weight=0 loss.pl_weight=0", "nothing to learn"),
        ("data.eval=null data.eval_fraction=0", "no evaluation data"),
        ("loss.temperatur=2", "unknown key"),
        ("train.max_steps=0", "train.max_steps"),
        ("model.decoder_dropout=1", "model.decoder_dropout"),
        (
            "loss.repetition_source=synthetic loss.on_policy_weight=1 loss.repetition_weight=1",
            "needs the student's own transcripts",
        ),
        ("loss.repetition_source=loops", "loss.repetition_source"),
        (
            "loss.repetition_source=rollout loss.repetition_loops_at=end",
            "needs loss.repetition_source: synthetic",
        ),
        ("train.average.decay=1", "train.average.decay"),
    ],
)
def test_config_mistakes_are_reported(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(DistillConfig, CONFIGS / "tiny/distill.yaml", override.split())


@pytest.mark.parametrize(
    ("step", "schedule", "expected"),
    [
        (0, "constant", 0.25),  # warm-up of 4: 1/4, 2/4, 3/4, 4/4
        (3, "constant", 1.0),
        (50, "constant", 1.0),
        (4, "linear", 1.0),  # decay starts after warm-up ...
        (7, "linear", 0.5),  # ... and halves half-way to 10
        (10, "linear", 0.0),
        (12, "linear", 0.0),
    ],
)
def test_lr_schedule(step, schedule, expected):
    got = lr_factor(step, warmup_steps=4, total_steps=10, schedule=schedule)
    assert got == pytest.approx(expected)


def test_cli_reports_missing_labels_before_starting_ray(tmp_path, capsys):
    from distilray.cli import main
    from distilray.models.testing import make_tiny_random_whisper

    student = make_tiny_random_whisper(tmp_path / "student")
    missing = tmp_path / "no-labels"
    args = [f"data.train={missing}", f"model.student={student}"]
    code = main(["distill", "--config", str(CONFIGS / "tiny/distill.yaml"), *args])
    assert code == 2
    assert "cannot read labelled Parquet" in capsys.readouterr().err
    # a missing student is named as clearly (its config is read first)
    absent = tmp_path / "no-student"
    code = main(
        [
            "distill",
            "--config",
            str(CONFIGS / "tiny/distill.yaml"),
            args[0],
            f"model.student={absent}",
        ]
    )
    assert code == 2
    assert f"model folder '{absent}' does not exist" in capsys.readouterr().err
    with pytest.raises(SystemExit):  # argparse: --config is required
        main(["distill"])
