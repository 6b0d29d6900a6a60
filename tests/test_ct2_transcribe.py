"""``distilray transcribe --engine ctranslate2``: the transformers engine's transcripts."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from distilray.audio import decode_audio

pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def recordings(synth_clips):
    """Two synthetic clips and one 35 s recording made of them (chunked long-form)."""
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()[:2]]
    paths = [synth_clips.parent / r["audio"] for r in rows]
    clips = [decode_audio(p) for p in paths]
    gap = np.zeros(8000, np.float32)
    long = np.concatenate([part for clip in clips * 5 for part in (clip, gap)])[: 35 * 16000]
    return paths, [*clips, long]


def test_ct2_transcripts_equal_the_transformers_engines(tiny_en, recordings):
    from distilray.engines.ct2_transcriber import CT2Transcriber
    from distilray.inference.engine import Transcriber

    _, audios = recordings
    reference = Transcriber.load(str(tiny_en), batch_size=4)
    ct2 = CT2Transcriber.load(str(tiny_en), batch_size=4, compute_type="float32")
    for timestamps in (False, True):
        want = reference.transcribe(audios, return_timestamps=timestamps)
        got = ct2.transcribe(audios, return_timestamps=timestamps)
        assert [r.text for r in got] == [r.text for r in want]
        assert [r.token_ids for r in got] == [r.token_ids for r in want]
        assert [r.segments for r in got] == [r.segments for r in want]
        assert got[-1].form == "chunked" and got[-1].text


def test_ct2_words_fallback_and_resume_follow_the_transformers_engine(tiny_en, recordings):
    """Word timing reads CTranslate2's encoder output with the teacher's alignment
    heads: the same words at the same times as the transformers engine (one 20 ms step
    of slack for float rounding); Whisper's fallback and decoding on after an early end
    give the same transcripts."""
    from distilray.engines.ct2_transcriber import CT2Transcriber
    from distilray.inference.decoder import Fallback
    from distilray.inference.engine import Transcriber
    from distilray.inference.resume import ResumeRule

    _, audios = recordings
    rules = {"fallback": Fallback(), "resume": ResumeRule()}
    reference = Transcriber.load(str(tiny_en), batch_size=4, **rules)
    ct2 = CT2Transcriber.load(str(tiny_en), batch_size=4, compute_type="float32", **rules)
    want = reference.transcribe(audios, word_timestamps=True)
    got = ct2.transcribe(audios, word_timestamps=True)
    assert [r.text for r in got] == [r.text for r in want]
    for ours, theirs in zip(got, want, strict=True):
        words = [w for s in ours.segments for w in s.words]
        reference_words = [w for s in theirs.segments for w in s.words]
        assert [w.word for w in words] == [w.word for w in reference_words] != []
        for a, b in zip(words, reference_words, strict=True):
            assert abs(a.start - b.start) <= 0.02 and abs(a.end - b.end) <= 0.02
            assert abs(a.probability - b.probability) < 1e-3


def run_cli(*args: str) -> subprocess.CompletedProcess:
    argv = [sys.executable, "-m", "distilray.cli", "transcribe", *args]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    return subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)


def test_transcribe_command_with_the_ct2_engine(tiny_en, recordings, capsys):
    from distilray.cli import main
    from distilray.inference.engine import Transcriber

    paths, audios = recordings
    done = run_cli(
        "-m", str(tiny_en), "--engine", "ctranslate2", "--word-timestamps", "--resume-gap", "2",
        "--json", str(paths[0]),
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["text"] == Transcriber.load(str(tiny_en)).transcribe(audios[:1])[0].text
    words = [w["word"] for s in result["segments"] for w in s["words"]]
    assert "".join(words).strip() == result["text"]
    for wrong in (
        ["--compute-type", "int8"],
        ["--engine", "ctranslate2", "--assistant", str(tiny_en)],
        ["--engine", "ctranslate2", "--long-form", "sequential"],
    ):
        assert main(["transcribe", "-m", str(tiny_en), *wrong, str(paths[0])]) == 2
        assert capsys.readouterr().err.splitlines()[-1].startswith("error: ")
