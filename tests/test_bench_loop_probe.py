"""bench/loop_probe.py: both models teacher-forced on each other's greedy transcript."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def probe():
    with bench_module("loop_probe.py") as module:
        yield module


@pytest.fixture(scope="module")
def clip(synth_clips):
    return synth_clips.parent / json.loads(synth_clips.read_text().splitlines()[0])["audio"]


def test_only_what_greedy_decoding_may_write_is_scored(probe, tiny_en):
    from distilray.models import load_whisper

    model, _ = load_whisper(tiny_en)
    allowed = probe.allowed_mask(model)
    config = model.generation_config
    assert allowed[config.eos_token_id]
    assert not allowed[config.eos_token_id + 1 :].any()  # prompt tokens and timestamps
    assert not allowed[config.suppress_tokens[0]]
    assert allowed[:100].sum() > 50  # ordinary text tokens


def test_each_model_on_its_own_transcript_tops_the_token_it_wrote(
    probe, tiny_en, tiny_random, clip, tmp_path, capsys
):
    # tiny.en as the teacher, a random model as the "student": two models that disagree
    out = tmp_path / "probe.json"
    argv = [str(clip), "--teacher", str(tiny_en), "--student", str(tiny_random)]
    assert probe.main([*argv, "--max-new-tokens", "12", "--out", str(out)]) == 0
    report = json.loads(out.read_text())
    teacher_rows = report["paths"]["teacher"]["positions"]
    assert teacher_rows[-1]["token"] == "<|endoftext|>"  # read to its end of text
    assert len(report["paths"]["student"]["positions"]) == 12  # a random model: to the limit
    for name in ("teacher", "student"):
        rows = report["paths"][name]["positions"]
        # the probe masks as greedy decoding masks: each model's top is what it wrote
        assert all(r[name]["top"] == r["token"] for r in rows)
        assert all(r[name]["p_token"] == r[name]["p_top"] for r in rows)
    teacher_text = report["paths"]["teacher"]["text"].lower()
    assert "weather" in teacher_text or "colder" in teacher_text  # the real teacher heard it
    printed = capsys.readouterr().out
    assert "teacher's transcript:" in printed and "student's transcript:" in printed


def test_a_clip_over_one_window_is_refused(probe, tiny_random, tmp_path, capsys):
    from distilray.audio import encode_wav

    long = tmp_path / "long.wav"
    long.write_bytes(encode_wav(np.zeros(31 * 16000, dtype=np.float32)))
    argv = [str(long), "--teacher", str(tiny_random), "--student", str(tiny_random)]
    assert probe.main(argv) == 2
    assert "at most 30 s" in capsys.readouterr().err
