"""Weight blends: model soups of students, and students moved back toward their start."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from distilray.errors import ConfigError
from distilray.student import StudentInitConfig, init_student
from distilray.student.blend import BLEND_INFO_FILE, blend_models, blend_weights


@pytest.fixture(scope="module")
def initial(tiny_random, tmp_path_factory) -> Path:
    """A 2-layer student of the random teacher (teacher layers 0 and 3)."""
    out = tmp_path_factory.mktemp("blend") / "init"
    init_student(StudentInitConfig(teacher=str(tiny_random), decoder_layers=2, out=str(out)))
    return out


def perturbed(folder: Path, out: Path, seed: int) -> Path:
    """A copy of the model in ``folder`` with every decoder weight moved: a 'trained' student."""
    from distilray.models import load_whisper
    from distilray.student import save_model_folder

    model, processor = load_whisper(str(folder), dtype="float32")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".decoder." in name:
                param.add_(0.05 * torch.randn(param.shape, generator=generator))
    save_model_folder(model, processor, str(out))
    return out


@pytest.fixture(scope="module")
def trained(initial, tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("trained")
    return perturbed(initial, root / "a", 1), perturbed(initial, root / "b", 2)


def test_blend_is_the_weighted_mean_of_every_weight(initial, trained):
    from distilray.models import load_whisper

    a, b = (load_whisper(str(p), dtype="float32")[0] for p in trained)
    a_before = {k: v.clone() for k, v in a.state_dict().items()}
    b_state = b.state_dict()
    blend_weights([a, b], [3, 1])  # normalised to 0.75 / 0.25
    after = a.state_dict()
    name = "model.decoder.layers.1.fc1.weight"
    assert torch.allclose(after[name], 0.75 * a_before[name] + 0.25 * b_state[name], atol=1e-6)
    assert not torch.equal(after[name], a_before[name])
    # the output projection is the token embedding (tied): still one tensor, averaged once
    embed = "model.decoder.embed_tokens.weight"
    assert a.proj_out.weight.data_ptr() == a.model.decoder.embed_tokens.weight.data_ptr()
    assert torch.allclose(after[embed], 0.75 * a_before[embed] + 0.25 * b_state[embed], atol=1e-6)
    # the shared encoder, identical in both, is unchanged
    enc = "model.encoder.layers.0.fc1.weight"
    assert torch.allclose(after[enc], a_before[enc], atol=1e-7)


def test_export_moves_the_trained_student_back_toward_its_start(initial, trained, tmp_path):
    """``run.export_init_share`` at export: (1 - s) trained + s initial, said in the card."""
    from ray.train import Checkpoint

    from distilray.distill.config import DistillConfig
    from distilray.distill.data import DataSummary
    from distilray.distill.export import export_student

    cfg = DistillConfig.model_validate(
        {
            "data": {"train": "unused"},
            "model": {"teacher": "tiny.en", "student": str(initial)},
            "train": {"max_steps": 10},
            "run": {"export_to": str(tmp_path / "student"), "export_init_share": 0.2},
        }
    )
    metrics = {"step": 10, "eval_wer": 0.25}
    checkpoint = Checkpoint.from_directory(str(trained[0]))
    result = SimpleNamespace(
        checkpoint=checkpoint, best_checkpoints=[(checkpoint, metrics)], metrics=metrics, path="r"
    )
    outcome = export_student(cfg, result, DataSummary(10, 0, 10, 10, 0.01))
    got = load_file(Path(outcome.student) / "model.safetensors")
    ours, start = (load_file(p / "model.safetensors") for p in (trained[0], initial))
    name = "model.decoder.layers.0.self_attn.q_proj.weight"
    assert torch.allclose(got[name], 0.8 * ours[name] + 0.2 * start[name], atol=1e-6)
    card = (Path(outcome.student) / "README.md").read_text()
    assert "0.8 x the trained weights + 0.2 x the initial student's" in card
    saved = json.loads((Path(outcome.student) / "distill_metrics.json").read_text())
    assert saved["init_share"] == 0.2 and outcome.eval_wer == 0.25


def test_soup_of_two_students_as_a_model_folder(trained, tmp_path):
    from distilray.models import load_whisper

    out = tmp_path / "soup"
    assert blend_models([str(p) for p in trained], None, str(out)) == str(out)
    info = json.loads((out / BLEND_INFO_FILE).read_text())
    assert info["weights"] == [0.5, 0.5] and len(info["models"]) == 2
    model, processor = load_whisper(str(out))  # a complete folder: weights and processor
    assert model.config.decoder_layers == 2 and processor.tokenizer is not None
    a, b = (load_file(p / "model.safetensors") for p in trained)
    name = "model.decoder.layers.1.fc2.weight"
    assert torch.allclose(model.state_dict()[name], (a[name] + b[name]) / 2, atol=1e-6)
    # an existing blend is not overwritten unless asked
    with pytest.raises(ConfigError, match="not empty"):
        blend_models([str(p) for p in trained], None, str(out))
    blend_models([str(p) for p in trained], [1, 0], str(out), force=True)
    assert torch.equal(load_file(out / "model.safetensors")[name], a[name])


@pytest.mark.parametrize(
    ("weights", "message"),
    [([1.0], "2 models"), ([1, -1], ">= 0"), ([0, 0], "sum to 0"), ([1, float("nan")], ">= 0")],
)
def test_bad_weights_are_refused(trained, tmp_path, weights, message):
    with pytest.raises(ConfigError, match=message):
        blend_models([str(p) for p in trained], weights, str(tmp_path / "x"))
    assert not (tmp_path / "x").exists()


def test_models_from_different_starts_are_refused(tiny_random, initial, tmp_path):
    """A 3-layer student, or a 2-layer one copied from other teacher layers, is not
    averaged with the 0/3 student: the error says why."""
    other = tmp_path / "other"
    init_student(
        StudentInitConfig(teacher=str(tiny_random), decoder_layer_ids=[1, 2], out=str(other))
    )
    with pytest.raises(ConfigError, match=r"teacher decoder layers \[1, 2\]"):
        blend_models([str(initial), str(other)], None, str(tmp_path / "x"))
    deeper = tmp_path / "deeper"
    init_student(StudentInitConfig(teacher=str(tiny_random), decoder_layers=3, out=str(deeper)))
    with pytest.raises(ConfigError, match="different layers"):
        blend_models([str(initial), str(deeper)], None, str(tmp_path / "x"))


def test_blend_command(trained, tmp_path, capsys):
    from distilray.cli import main

    out = tmp_path / "cli"
    assert main(["blend", *map(str, trained), "--weights", "0.85", "0.15", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert json.loads((out / BLEND_INFO_FILE).read_text())["weights"] == pytest.approx([0.85, 0.15])
    assert main(["blend", str(trained[0]), "--out", str(tmp_path / "one")]) == 2
    assert "at least two models" in capsys.readouterr().err
