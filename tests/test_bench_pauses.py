"""bench/pauses.py: whether a model goes on transcribing after a pause in a window."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def pauses():
    with bench_module("pauses.py") as module:
        yield module


def test_a_pause_is_silence_or_the_first_clips_noise_floor(pauses):
    room = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.01
    first = np.concatenate([room, np.full(16000, 0.5, np.float32)])
    second = np.ones(8000, np.float32)
    silent = pauses.window(first, second, 1.5, "silence")
    assert silent.size == first.size + 24000 + second.size
    assert not silent[first.size : first.size + 24000].any()
    noisy = pauses.window(first, second, 1.5, "noise")[first.size : first.size + 24000]
    assert 0.005 < float(np.sqrt((noisy**2).mean())) < 0.02  # the room's level, not the voice's


def test_the_real_teacher_goes_on_after_a_pause(pauses, synth_clips, tiny_en, tmp_path, capsys):
    out = tmp_path / "pauses.json"
    argv = ["--manifest", str(synth_clips), "--model", f"teacher={tiny_en}"]
    assert pauses.main([*argv, "--pairs", "2", "--pauses", "0", "1.5", "--out", str(out)]) == 0
    rows = json.loads(out.read_text())
    assert [r["pause"] for r in rows] == ["none", "1.5 s silence", "1.5 s noise"]
    assert all(r["pairs"] == 2 and r["stopped"] == 0 and r["wer"] < 0.5 for r in rows)
    assert "| teacher | 1.5 s noise |" in capsys.readouterr().out


def test_a_manifest_without_referenced_short_clips_is_an_error(pauses, tmp_path, capsys):
    manifest = tmp_path / "m.jsonl"
    manifest.write_text(json.dumps({"id": "a", "audio": "a.wav", "text": None}) + "\n")
    assert pauses.main(["--manifest", str(manifest), "--model", "t=tiny.en"]) == 2
    assert "no pairs" in capsys.readouterr().err
