"""Synthetic speech: the sentence bank, espeak-ng/flite synthesis, noise, long-form
clips, determinism, and the ``distilray data synth`` command."""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from distilray.audio import decode_audio
from distilray.cli import main
from distilray.data.manifest import read_manifest
from distilray.data.sentences import (
    MAX_WORDS,
    SPLITS,
    sentence_bank,
    split_sentences,
    take_sentences,
)
from distilray.data.synth import SUMMARY_NAME, synthesize_dataset
from distilray.errors import DistilrayError

TWO_VOICES = ["espeak-ng:en-us", "flite:slt"]


def rows_of(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_sentence_bank_is_varied_and_split_disjointly():
    bank = sentence_bank()
    assert len(set(bank)) == len(bank) >= 2000
    lengths = [len(s.split()) for s in bank]
    assert min(lengths) >= 5 and max(lengths) <= MAX_WORDS
    assert len({s.split()[0] for s in bank}) > 30  # many different openings
    splits = {name: set(split_sentences(name)) for name in SPLITS}
    assert not splits["train"] & splits["test"]
    assert not splits["train"] & splits["validation"]
    assert not splits["validation"] & splits["test"]
    assert sum(len(s) for s in splits.values()) == len(bank)
    with pytest.raises(DistilrayError, match="unknown sentence split"):
        split_sentences("dev")


def test_take_sentences_offsets_and_wrapping(caplog):
    pool = split_sentences("test")
    first, second = take_sentences(pool, 0, 50), take_sentences(pool, 50, 50)
    assert not set(first) & set(second)
    wrapped = take_sentences(pool, len(pool) - 2, 4)
    assert wrapped == [pool[-2], pool[-1], pool[0], pool[1]]
    assert "will repeat" in caplog.text


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_small")
    return synthesize_dataset(out, 6, voices=TWO_VOICES, seed=3, rate_jitter=0.1)


def test_synthesised_clips_match_their_manifest(small_set):
    rows = rows_of(small_set)
    assert [r["id"] for r in rows] == [f"train-{i:06d}" for i in range(6)]
    assert [r["text"] for r in rows] == take_sentences(split_sentences("train"), 0, 6)
    assert [r["voice"] for r in rows] == TWO_VOICES * 3
    for row in rows:
        path = small_set.parent / row["audio"]
        with wave.open(str(path)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            assert wav.getnframes() / 16000 == pytest.approx(row["duration_s"], abs=1e-3)
        audio = decode_audio(path)
        assert 1.5 < row["duration_s"] < 8.0
        assert np.sqrt(np.mean(audio**2)) > 0.02  # speech, not silence
    summary = json.loads((small_set.parent / SUMMARY_NAME).read_text())
    assert summary["clips"] == 6 and summary["next_offset"] == 6
    assert summary["hours"] == pytest.approx(sum(r["duration_s"] for r in rows) / 3600, abs=1e-4)


def test_synthesised_set_reads_as_a_manifest(small_set):
    table = read_manifest(small_set.parent)
    assert table.num_rows == 6
    assert all(Path(p).is_file() for p in table["audio_path"].to_pylist())


def test_synthesis_is_deterministic_given_the_seed(tmp_path, small_set):
    again = synthesize_dataset(tmp_path / "a", 2, voices=TWO_VOICES, seed=3, rate_jitter=0.1)
    other = synthesize_dataset(tmp_path / "b", 2, voices=TWO_VOICES, seed=4, rate_jitter=0.1)
    for row, reference in zip(rows_of(again), rows_of(small_set), strict=False):
        assert row == reference
        assert (again.parent / row["audio"]).read_bytes() == (
            small_set.parent / reference["audio"]
        ).read_bytes()
    # another seed: same sentences, different speaking rates
    assert [r["text"] for r in rows_of(other)] == [r["text"] for r in rows_of(again)]
    assert [r["duration_s"] for r in rows_of(other)] != [r["duration_s"] for r in rows_of(again)]


def test_offsets_and_splits_give_disjoint_sentences(tmp_path):
    voices = ["espeak-ng:en-us"]
    a = rows_of(synthesize_dataset(tmp_path / "a", 3, voices=voices))
    b = rows_of(synthesize_dataset(tmp_path / "b", 3, voices=voices, offset=3))
    c = rows_of(synthesize_dataset(tmp_path / "c", 3, voices=voices, split="test"))
    texts = [{r["text"] for r in rows} for rows in (a, b, c)]
    assert len(texts[0] | texts[1] | texts[2]) == 9
    assert len({r["id"] for r in a + b + c}) == 9


def test_noise_is_added_at_the_requested_snr(tmp_path):
    voices = ["flite:slt"]
    clean = rows_of(synthesize_dataset(tmp_path / "clean", 1, voices=voices))[0]
    noisy = rows_of(synthesize_dataset(tmp_path / "noisy", 1, voices=voices, snr_db=5.0))[0]
    x = decode_audio(tmp_path / "clean" / clean["audio"])
    y = decode_audio(tmp_path / "noisy" / noisy["audio"])
    assert len(x) == len(y)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(5.0, abs=0.5)


def test_long_form_clips_join_sentences_into_40_to_90_seconds(tmp_path):
    manifest = synthesize_dataset(tmp_path, 1, voices=["espeak-ng:en-gb"], long_form=1)
    short, long = rows_of(manifest)
    assert long["id"] == "train-long-000001"
    assert 40.0 <= long["duration_s"] <= 90.0
    sentences = take_sentences(split_sentences("train"), 1, 40)
    assert any(long["text"] == " ".join(sentences[:k]) for k in range(8, 40))
    audio = decode_audio(tmp_path / long["audio"], max_duration_s=None)
    assert len(audio) / 16000 == pytest.approx(long["duration_s"], abs=1e-3)


def test_custom_sentences(tmp_path):
    manifest = synthesize_dataset(
        tmp_path, 2, voices=["espeak-ng:en-us"], sentences=["Hello there.", "Good night."]
    )
    rows = rows_of(manifest)
    assert [r["text"] for r in rows] == ["Hello there.", "Good night."]
    assert [r["id"] for r in rows] == ["custom-000000", "custom-000001"]


def test_forty_clips_take_seconds(tmp_path):
    start = time.perf_counter()
    manifest = synthesize_dataset(tmp_path, 40)
    elapsed = time.perf_counter() - start
    rows = rows_of(manifest)
    assert len(rows) == 40 and len({r["voice"] for r in rows}) == 8
    assert elapsed < 20.0, f"40 clips took {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("voices", "message"),
    [
        (["festival:kal"], "bad voice 'festival:kal'"),
        (["espeak-ng"], "bad voice 'espeak-ng'"),
        (["flite:nobody"], "flite has no voice 'nobody'; installed: .*slt"),
        (["espeak-ng:xx-nowhere"], "espeak-ng has no voice 'xx-nowhere'"),
        ([], "no voices given"),
    ],
)
def test_bad_voices(tmp_path, voices, message):
    with pytest.raises(DistilrayError, match=message):
        synthesize_dataset(tmp_path, 1, voices=voices)


def test_missing_engine_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DistilrayError, match="apt-get install espeak-ng flite"):
        synthesize_dataset(tmp_path, 1, voices=["espeak-ng:en-us"])


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["data", "synth", "--out", str(out), "--num", "2", "--voices", "flite:slt", "--seed", "1"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 2 clips" in printed and "--split train --offset 2" in printed
    assert len(rows_of(out / "manifest.jsonl")) == 2
    assert main(["data", "synth", "--out", str(out), "--voices", "flite:nobody"]) == 2
    assert "error: flite has no voice" in capsys.readouterr().err
