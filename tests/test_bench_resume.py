"""bench/resume.py: each model's WER with and without the resume rule."""

from __future__ import annotations

import json

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def resume():
    with bench_module("resume.py") as module:
        yield module


def test_reports_both_decodings_per_form(resume, synth_clips, tiny_en, tmp_path, capsys):
    out = tmp_path / "resume.json"
    argv = ["--manifest", str(synth_clips), "--model", str(tiny_en), "--limit", "2"]
    assert resume.main([*argv, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"{tiny_en}: short " in printed and "(0 decoded on; 5-grams 0 -> 0)" in printed
    report = json.loads(out.read_text())
    model = report["models"][str(tiny_en)]
    greedy, resumed = model["greedy"]["forms"]["short"], model["resumed"]["forms"]["short"]
    assert greedy["words"] == resumed["words"] > 0
    # the teacher finishes these clean sentences: the rule has nothing to do
    assert resumed["resumed_windows"] == 0 and model["changed"] == {}
    assert greedy["wer"] == resumed["wer"] < 35
    assert "transcripts" not in model["greedy"]  # figures only, unless --per-recording
    assert resume.main([*argv, "--out", str(out), "--per-recording"]) == 0
    kept = json.loads(out.read_text())["models"][str(tiny_en)]["resumed"]
    assert len(kept["transcripts"]) == len(kept["errors"]) == 2


def test_bad_arguments_are_one_line(resume, tmp_path, capsys):
    assert resume.main(["--manifest", str(tmp_path / "no.jsonl"), "--model", "x"]) == 2
    assert "not found" in capsys.readouterr().err
    manifest = tmp_path / "m.jsonl"
    manifest.write_text("")
    assert resume.main(["--manifest", str(manifest), "--model", "x", "--gap", "0"]) == 2
    assert "--gap must be above 0" in capsys.readouterr().err


def test_fallback_decodings_are_offered(resume):
    args = resume.parse_args(
        ["--manifest", "m.jsonl", "--model", "x", "--decodings", "fallback", "fallback+resumed"]
    )
    assert args.decodings == ["fallback", "fallback+resumed"]
    with pytest.raises(SystemExit):
        resume.parse_args(["--manifest", "m.jsonl", "--model", "x", "--decodings", "beam"])
