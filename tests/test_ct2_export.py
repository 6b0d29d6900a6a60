"""``distilray export --format ct2``: folders faster-whisper loads and transcribes alike."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from distilray.audio import decode_audio
from distilray.errors import ConfigError

pytest.importorskip("ctranslate2")
faster_whisper = pytest.importorskip("faster_whisper")


@pytest.fixture(scope="module")
def exported(tiny_en, tmp_path_factory):
    """The real tiny.en exported at float32 and int8 (stands in for a trained student)."""
    from distilray.models.ct2_export import export_ct2

    out = tmp_path_factory.mktemp("exported")
    return {q: export_ct2(str(tiny_en), out / q, q) for q in ("float32", "int8")}


@pytest.fixture(scope="module")
def clips(synth_clips):
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()]
    return [decode_audio(synth_clips.parent / r["audio"]) for r in rows], [r["text"] for r in rows]


def faster_whisper_greedy(model, audios) -> list[str]:
    """faster-whisper's greedy transcript of each clip: one pass, no fallback, no VAD."""
    texts = []
    for audio in audios:
        segments, _ = model.transcribe(
            audio,
            beam_size=1,
            temperature=0.0,
            condition_on_previous_text=False,
            without_timestamps=True,
            vad_filter=False,
        )
        texts.append("".join(s.text for s in segments).strip())
    return texts


def faster_whisper_features(model, audio):
    """The log-mel window faster-whisper decodes for a clip of at most 30 s.

    Its own front end: the mel of the clip alone, padded with zeros in log-mel space
    (transformers pads the audio with silence first), so the two front ends can hear
    a clip slightly differently; the models are compared on the same features.
    """
    from faster_whisper.audio import pad_or_trim

    features = model.feature_extractor(audio)
    return pad_or_trim(features[:, : features.shape[-1] - 1])


def test_faster_whisper_transcribes_the_export_as_transformers_does(tiny_en, exported, clips):
    import numpy as np
    import torch

    from distilray.inference.shortform import generate_greedy
    from distilray.models import load_whisper
    from distilray.text import corpus_wer

    audios, references = clips
    fast = faster_whisper.WhisperModel(
        str(exported["float32"]), device="cpu", compute_type="float32", cpu_threads=1
    )
    model, processor = load_whisper(tiny_en)
    features = np.stack([faster_whisper_features(fast, audio) for audio in audios])
    ids = generate_greedy(model, processor, torch.from_numpy(features), max_new_tokens=200)
    want = [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    got = faster_whisper_greedy(fast, audios)
    assert got == want
    quantized = faster_whisper.WhisperModel(
        str(exported["int8"]), device="cpu", compute_type="int8", cpu_threads=1
    )
    int8 = faster_whisper_greedy(quantized, audios)
    delta = corpus_wer(references, int8).wer - corpus_wer(references, got).wer
    assert abs(delta) <= 0.005, (int8, got)
    assert sum(p.stat().st_size for p in exported["int8"].iterdir()) < 0.5 * sum(
        p.stat().st_size for p in exported["float32"].iterdir()
    )


def test_export_refuses_a_used_folder_and_unknown_quantization(tiny_random, tmp_path):
    from distilray.models.ct2_export import export_ct2

    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "notes.txt").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        export_ct2(str(tiny_random), tmp_path / "used")
    with pytest.raises(ConfigError, match="unknown quantization"):
        export_ct2(str(tiny_random), tmp_path / "new", "int4")
    assert (tmp_path / "used" / "notes.txt").read_text() == "keep me"
    assert not (tmp_path / "new").exists()


def test_export_command_writes_a_folder_faster_whisper_loads(tiny_random, tmp_path):
    out = tmp_path / "student-ct2"
    argv = [sys.executable, "-m", "distilray.cli", "export", str(tiny_random)]
    argv += ["--format", "ct2", "--quantization", "int8", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == str(out)
    assert "Loading weights" not in done.stderr  # the converter's load draws no bar
    assert {"model.bin", "tokenizer.json", "preprocessor_config.json"} <= {
        p.name for p in out.iterdir()
    }
    model = faster_whisper.WhisperModel(str(out), device="cpu", compute_type="int8")
    assert model.feature_extractor.n_samples == 30 * 16000
    again = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert again.returncode == 2 and again.stderr.startswith("error: ")


@pytest.mark.s3
def test_distill_export_option_puts_a_faster_whisper_copy_in_the_student(
    tiny_random, tmp_path, s3_server
):
    """``run.export_ct2``: local and s3:// student folders get a ``ct2/`` beside the weights."""
    from distilray import storage
    from distilray.distill.config import RunSection
    from distilray.models.ct2_export import export_ct2_inside

    assert RunSection(export_ct2="int8").export_ct2 == "int8"
    local = tmp_path / "student"
    storage.copy_tree(tiny_random, local)
    assert export_ct2_inside(str(local), "int8") == str(local / "ct2")
    faster_whisper.WhisperModel(str(local / "ct2"), device="cpu", compute_type="int8")

    import boto3

    boto3.client("s3").create_bucket(Bucket="students")
    storage.copy_tree(tiny_random, "s3://students/run/student")
    assert export_ct2_inside("s3://students/run/student", "float32").endswith("student/ct2")
    fetched = tmp_path / "fetched"
    storage.copy_tree("s3://students/run/student/ct2", fetched)
    faster_whisper.WhisperModel(str(fetched), device="cpu", compute_type="float32")
