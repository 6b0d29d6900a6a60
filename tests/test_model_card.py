"""The exported student's model card: Hub front matter and no paths of the training machine."""

from __future__ import annotations

import re

import pytest
import yaml

from distilray.distill.config import DistillConfig
from distilray.distill.data import DataSummary
from distilray.distill.model_card import model_card

SUMMARY = DataSummary(rows=120, held_out=12, candidates=108, kept=100, hours=0.25)
INIT = {"decoder_layer_ids": [0, 3]}


def config(tmp_path, teacher: str, **card) -> DistillConfig:
    return DistillConfig.model_validate(
        {
            "data": {
                "train": str(tmp_path / "labels" / "train"),
                "eval": str(tmp_path / "labels" / "valid"),
            },
            "model": {"teacher": teacher, "student": str(tmp_path / "students" / "student-2l")},
            "train": {"max_steps": 200},
            "run": {"name": "cv-en", "storage": str(tmp_path / "runs")},
            "card": card,
        }
    )


def split_card(text: str) -> tuple[dict, str]:
    match = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.DOTALL)
    assert match, "the card must open with YAML front matter between --- lines"
    return yaml.safe_load(match.group(1)), match.group(2)


def test_card_has_hub_front_matter_with_the_measured_wer(tmp_path):
    cfg = config(
        tmp_path,
        "openai/whisper-small.en@main",
        datasets=["mozilla-foundation/common_voice_17_0"],
        tags=["cv"],
    )
    meta, body = split_card(model_card(cfg, SUMMARY, {"eval_wer": 0.1234, "step": 200}, INIT))
    assert meta["license"] == "mit" and meta["language"] == ["en"]
    assert meta["base_model"] == "openai/whisper-small.en"
    assert meta["pipeline_tag"] == "automatic-speech-recognition"
    assert meta["library_name"] == "transformers"
    assert {"whisper", "distil-whisper", "cv"} <= set(meta["tags"])
    assert meta["datasets"] == ["mozilla-foundation/common_voice_17_0"]
    (entry,) = meta["model-index"]
    assert entry["name"] == "cv-en"  # the run's name (the folder's, with run.export_to)
    (result,) = entry["results"]
    assert result["task"]["type"] == "automatic-speech-recognition"
    assert result["dataset"]["type"] == "mozilla-foundation/common_voice_17_0"
    assert result["metrics"] == [
        {"type": "wer", "value": 12.34, "name": "Validation WER (greedy, %)"}
    ]
    assert "Teacher: `openai/whisper-small.en@main`" in body and "12.34 %" in body


@pytest.mark.parametrize(
    ("teacher", "base_model", "shown"),
    [("tiny.en", "openai/whisper-tiny.en", "tiny.en"), (None, None, "my-teacher")],
)
def test_card_names_models_without_machine_paths(tmp_path, teacher, base_model, shown):
    folder = tmp_path / "models" / "my-teacher"
    cfg = config(tmp_path, teacher or str(folder), language=["de"] if teacher is None else None)
    text = model_card(cfg, SUMMARY, {"step": 200}, INIT)
    meta, body = split_card(text)
    assert meta.get("base_model") == base_model
    assert meta["language"] == (["en"] if teacher else ["de"])
    assert "model-index" not in meta  # no validation WER was measured
    assert f"Teacher: `{shown}`" in body and "Student initialisation: `student-2l`" in body
    assert str(tmp_path) not in text
    assert not re.search(r"(^|[\s`(])/[\w.-]+/", text), "an absolute path leaked into the card"


def test_card_says_when_the_weights_are_an_average(tmp_path):
    cfg = config(tmp_path, "openai/whisper-small.en")
    _, body = split_card(model_card(cfg, SUMMARY, {"eval_wer": 0.1, "step": 200}, INIT))
    assert "running average" not in body
    cfg.train.average.decay, cfg.train.average.start_step = 0.99, 60
    _, body = split_card(model_card(cfg, SUMMARY, {"eval_wer": 0.1, "step": 200}, INIT))
    assert "- Weights: running average of the training steps' weights from step 60" in body
    assert "EMA decay 0.99" in body
