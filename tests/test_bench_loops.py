"""bench/loops.py: loops counted in an evaluation's transcripts after the fact."""

from __future__ import annotations

import json

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def loops():
    with bench_module("loops.py") as module:
        yield module


def _row(mode, hypothesis, id_="mfa_uhum", snr=None):
    return {
        "dataset": "real-test",
        "id": id_,
        "mode": mode,
        "form": "short",
        "snr_db": snr,
        "reference": "montreal forced uh um uh hm hm um forced aligner",
        "hypothesis": hypothesis,
    }


def test_counts_looping_transcripts_per_cell_and_writes_json(loops, tmp_path, capsys):
    rows = [
        _row("teacher", "Montreal Forest, uh, um, uh, um, um, forest designer."),
        _row("student", "Montreal forced, " + "um, " * 51),
        _row("student", "Montreal forced aligner.", id_="other"),
        _row("student", "um " * 9, snr=10.0),
    ]
    path = tmp_path / "transcripts.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    out = tmp_path / "loops.json"
    assert loops.main([str(path), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "real-test/student/short: 1 of 2 loop: mfa_uhum" in printed
    assert "real-test/teacher/short: 0 of 1 loop" in printed
    assert "real-test/student/short@10.0: 1 of 1 loop" in printed
    report = json.loads(out.read_text())[str(path)]
    assert report["real-test/student/short"] == {"transcripts": 2, "loops": ["mfa_uhum"]}


def test_a_missing_file_is_a_clear_error(loops, tmp_path, capsys):
    assert loops.main([str(tmp_path / "nope.jsonl")]) == 2
    assert "not found" in capsys.readouterr().err
