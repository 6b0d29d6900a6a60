"""bench/compare.py: two evaluations of the same clips, utterance by utterance."""

from __future__ import annotations

import json

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def compare():
    with bench_module("compare.py") as module:
        yield module


REFERENCE = "the cat sat on the mat"


def _run(path, hypotheses, mode="student", form="short", snr=None, extra=()):
    rows = [
        {
            "dataset": "real-test",
            "id": f"u{i}",
            "mode": mode,
            "form": form,
            "snr_db": snr,
            "reference": REFERENCE,
            "hypothesis": hypothesis,
        }
        for i, hypothesis in enumerate(hypotheses)
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in [*rows, *extra]))
    return path


def test_a_change_on_every_clip_is_told_apart_and_one_lucky_clip_is_not(compare, tmp_path, capsys):
    right, wrong = REFERENCE, "the cat sat on a mat"  # one substitution in six words
    base = _run(tmp_path / "a.jsonl", [wrong] * 30)
    better = _run(tmp_path / "b.jsonl", [right] * 30)
    assert compare.main([str(base), str(better), "--label", "old", "--label", "new"]) == 0
    out = capsys.readouterr().out
    assert (
        "| real-test | short | clean | 30 | 16.7 | 0.0 | 30 / 0 | -16.7 (-16.7, -16.7) | yes |"
        in out
    )
    assert "new - old, points (95 % CI)" in out
    # the same runs but for one clip: a draw
    one = _run(tmp_path / "c.jsonl", [right] + [wrong] * 29)
    table = compare.compare(compare.edits(base, "student"), compare.edits(one, "student"))
    [cell] = table
    assert cell["difference"] == pytest.approx(-1 / 180)
    assert cell["low"] < 0 and cell["high"] == 0
    assert "| no |" in compare.markdown(table, ("A", "B"))


def test_cells_pair_by_utterance_form_and_snr_and_say_what_was_left_out(compare, tmp_path, capsys):
    teacher = [{"dataset": "real-test", "id": "u0", "mode": "teacher", "form": "short",
                "snr_db": None, "reference": REFERENCE, "hypothesis": REFERENCE}]  # fmt: skip
    a = _run(tmp_path / "a.jsonl", ["the cat"] * 12, extra=teacher)
    noisy = [{"dataset": "real-test", "id": "u0", "mode": "student", "form": "short",
              "snr_db": 10.0, "reference": REFERENCE, "hypothesis": ""}]  # fmt: skip
    b = _run(tmp_path / "b.jsonl", ["the cat"] * 11, extra=noisy)
    assert compare.main([str(a), str(b)]) == 0
    out = capsys.readouterr().out
    # u11 is only in A; the 10 dB cell only in B; A's teacher rows are not the student's
    assert (
        "| real-test | short | clean | 11 | 66.7 | 66.7 | 44 / 44 | +0.0 (+0.0, +0.0) | no |" in out
    )
    assert "10 dB" not in out
    assert "1 utterances scored in one run only were left out" in out
    # the student against the teacher of the same run
    assert compare.main([str(a), str(a), "--mode", "teacher", "--mode-b", "student"]) == 0
    out = capsys.readouterr().out  # one clip paired: u0, said whole by the teacher
    assert "| clean | 1 | 0.0 | 66.7 | 0 / 4 | +66.7 (n < 10) | too few to tell |" in out


def test_an_excluded_utterance_leaves_both_runs(compare, tmp_path, capsys):
    right, wrong = REFERENCE, "the cat sat on a mat"
    base = _run(tmp_path / "a.jsonl", [right] * 12)
    # B loses one recording badly (a loop) and is the same on the other eleven
    b = _run(tmp_path / "b.jsonl", [f"{REFERENCE} mat mat mat mat mat mat"] + [right] * 11)
    assert compare.main([str(base), str(b)]) == 0
    assert "| 12 | 0.0 | 8.3 | 0 / 6 |" in capsys.readouterr().out
    assert compare.main([str(base), str(b), "--exclude", "u0"]) == 0
    out = capsys.readouterr().out
    assert "| 11 | 0.0 | 0.0 | 0 / 0 | +0.0 (+0.0, +0.0) | no |" in out
    assert "left out" not in out  # set apart on purpose, not unpaired
    b2 = _run(tmp_path / "b2.jsonl", [wrong] * 12)
    assert compare.main([str(base), str(b2), "--exclude", "u0", "--exclude", "u1"]) == 0
    assert "| 10 | 0.0 | 16.7 | 0 / 10 |" in capsys.readouterr().out


def test_bad_input_is_one_line(compare, tmp_path, capsys):
    good = _run(tmp_path / "a.jsonl", ["the cat"])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"dataset": "x"}\n')
    assert compare.main([str(good), str(tmp_path / "missing.jsonl")]) == 2
    assert "missing.jsonl not found" in capsys.readouterr().err
    assert compare.main([str(good), str(bad)]) == 2
    assert "bad.jsonl:1: not an evaluation transcript line" in capsys.readouterr().err
    assert compare.main([str(good), str(good), "--mode", "speculative"]) == 2
    assert "no dataset, form and SNR with scored speculative" in capsys.readouterr().err
    assert compare.main([str(good), str(good), "--label", "only-one"]) == 2
    assert "give --label twice" in capsys.readouterr().err
