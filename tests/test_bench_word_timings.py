"""bench/word_timings.py: the student's word boundaries against the teacher's."""

from __future__ import annotations

import json

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def timings():
    with bench_module("word_timings.py") as module:
        yield module


def _words(*spans):
    return [{"word": w, "start": s, "end": e, "probability": 0.9} for w, s, e in spans]


def test_only_words_both_models_share_are_compared(timings):
    teacher = _words((" Hello", 0.0, 0.5), (" big", 0.5, 0.8), (" world.", 0.8, 1.2))
    # the student drops "big", spells "world" without the stop, and is later on it
    student = _words((" hello", 0.1, 0.5), (" World", 1.0, 1.2))
    assert timings.matched_distances(teacher, student) == pytest.approx([0.1, 0.0, 0.2, 0.0])


def test_command_summarises_clean_clips_of_both_models(timings, tmp_path, capsys):
    def line(mode, clip, words, snr=None):
        return {
            "dataset": "real",
            "id": clip,
            "mode": mode,
            "form": "short",
            "snr_db": snr,
            "words": words,
        }

    rows = [
        line("teacher", "a", _words((" yes", 0.0, 1.0))),
        line("student", "a", _words((" yes", 0.5, 1.0))),
        line("student", "a", _words((" yes", 9.0, 9.0)), snr=10.0),  # noisy: not compared
        line("student", "b", _words((" no", 0.0, 1.0))),  # no teacher words: not compared
    ]
    path = tmp_path / "transcripts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "timings.json"
    assert timings.main([str(path), "--out", str(out)]) == 0
    figures = json.loads(out.read_text())
    assert figures == {
        "clips": 1,
        "matched_words": 1,
        "mean_s": 0.25,
        "median_s": 0.25,
        "p90_s": 0.45,
    }
    assert "1 clips, 1 words transcribed alike" in capsys.readouterr().out
    path.write_text(json.dumps(rows[0]) + "\n")
    with pytest.raises(SystemExit, match="word_timestamps=true"):
        timings.main([str(path)])
