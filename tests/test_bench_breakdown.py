"""bench/breakdown.py: an evaluation's WER per source or speaker of its manifest."""

from __future__ import annotations

import json

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def breakdown():
    with bench_module("breakdown.py") as module:
        yield module


def _write(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def run(tmp_path):
    manifest = _write(
        tmp_path / "manifest.jsonl",
        [
            {"id": "read-1", "audio": "a.wav", "text": "x", "speaker": "reader"},
            {"id": "read-2", "audio": "b.wav", "text": "x", "speaker": "reader"},
            {"id": "chat-1", "audio": "c.wav", "text": "x", "speaker": "two people"},
        ],
    )

    def row(id_, mode, reference, hypothesis, snr=None):
        return {
            "dataset": "real-test",
            "id": id_,
            "mode": mode,
            "form": "short",
            "snr_db": snr,
            "reference": reference,
            "hypothesis": hypothesis,
        }

    transcripts = _write(
        tmp_path / "transcripts.jsonl",
        [
            row("read-1", "teacher", "the cat sat down", "the cat sat down"),
            row("read-1", "student", "the cat sat down", "the cat sat"),
            row("read-2", "teacher", "big dog", "big dog"),
            row("read-2", "student", "big dog", "big fog"),
            row("chat-1", "teacher", "hello there", "hello"),
            row("chat-1", "student", "hello there", "hello there"),
            row("chat-1", "student", "hello there", "yellow bear", snr=10.0),
            {**row("x", "teacher", "a", "a"), "dataset": "synth-test"},  # no manifest: left out
        ],
    )
    return transcripts, manifest


def test_wer_per_speaker_and_model(breakdown, run, tmp_path, capsys):
    transcripts, manifest = run
    out = tmp_path / "breakdown.json"
    args = [str(transcripts), "--manifest", f"real-test={manifest}", "--by", "speaker"]
    assert breakdown.main([*args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # the student lost 2 of 6 words; two clips are too few for an interval
    assert "| reader | 2 | 6 | 0.0 | 33.3 | +33.3 (n < 10) |" in printed
    assert "| two people | 1 | 2 | 50.0 | 0.0 | -50.0 (n < 10) |" in printed
    assert "student - teacher (95 % CI)" in printed
    assert "real-test/short@10.0" in printed and "synth-test" not in printed
    report = json.loads(out.read_text())
    reader = report["real-test/short"]["reader"]
    assert {k: reader["student"][k] for k in ("n", "errors", "words")} == {
        "n": 2,
        "errors": 2,
        "words": 6,
    }
    assert reader["student"]["vs_teacher"]["points"] == pytest.approx(1 / 3)
    assert "vs_teacher" not in reader["teacher"]
    # no teacher at 10 dB: nothing to compare with
    assert "vs_teacher" not in report["real-test/short@10.0"]["two people"]["student"]
    assert report["real-test/short@10.0"]["two people"]["student"]["errors"] == 2


def test_unknown_utterances_and_bad_arguments_are_one_line_errors(breakdown, run, tmp_path, capsys):
    transcripts, manifest = run
    other = _write(tmp_path / "other.jsonl", [{"id": "read-1", "audio": "a.wav"}])
    assert breakdown.main([str(transcripts), "--manifest", f"real-test={other}"]) == 2
    assert "read-2 is not in its manifest" in capsys.readouterr().err
    assert breakdown.main([str(transcripts), "--manifest", str(manifest)]) == 2
    assert "expected DATASET=PATH" in capsys.readouterr().err
    assert breakdown.main([str(tmp_path / "none.jsonl"), "--manifest", f"a={manifest}"]) == 2
    assert "none.jsonl not found" in capsys.readouterr().err
