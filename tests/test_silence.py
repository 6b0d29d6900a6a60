"""Whisper's no-speech rule in the engine: silence gets empty text, speech is unchanged,
and speculative decoding still returns exactly the teacher's output."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distilray.audio import SAMPLING_RATE, decode_audio
from distilray.inference.silence import is_silence

# Room noise: tiny.en says "you" (P(no speech) 0.84, average log-probability -1.43).
NOISE = (0.01 * np.random.default_rng(0).standard_normal(5 * SAMPLING_RATE)).astype(np.float32)


@pytest.mark.parametrize(
    ("no_speech", "logprob", "threshold", "logprob_threshold", "silent"),
    [
        (0.95, -0.38, 0.6, -1.0, False),  # Whisper's rule keeps a confident "you"
        (0.95, -0.38, 0.6, None, True),  # the no-speech probability alone drops it
        (0.90, -1.13, 0.6, -1.0, True),
        (0.45, -2.00, 0.6, None, False),  # quiet speech: the model saw speech
        (0.60, -2.00, 0.6, -1.0, False),  # "above" the threshold, as in Whisper
    ],
)
def test_rule(no_speech, logprob, threshold, logprob_threshold, silent):
    assert is_silence(no_speech, logprob, threshold, logprob_threshold) is silent


@pytest.fixture(scope="module")
def speech(synth_clips) -> list[np.ndarray]:
    rows = [json.loads(line) for line in Path(synth_clips).read_text().splitlines() if line]
    return [decode_audio(Path(synth_clips).parent / row["audio"]) for row in rows[:2]]


@pytest.fixture(scope="module")
def models(tiny_en, tmp_path_factory):
    """tiny.en and a 2-layer student made from it (the speculative assistant)."""
    from distilray.models import load_whisper
    from distilray.student import StudentInitConfig, init_student

    out = tmp_path_factory.mktemp("student")
    init_student(StudentInitConfig(teacher=str(tiny_en), decoder_layers=2, out=str(out)))
    teacher, processor = load_whisper(tiny_en)
    return teacher, processor, load_whisper(out)[0]


def texts(transcriber, audios) -> list[str]:
    return [r.text for r in transcriber.transcribe(audios)]


def test_silence_is_empty_and_speech_unchanged(models, speech):
    from distilray.inference.engine import Transcriber

    teacher, processor, assistant = models
    pause = np.zeros(SAMPLING_RATE, np.float32)
    long = np.concatenate([*speech, pause, np.zeros(30 * SAMPLING_RATE, np.float32), *speech])
    audios = [NOISE, *speech, long]  # long: chunked windows, one all silence
    raw = texts(Transcriber(teacher, processor), audios)
    assert raw[0], "tiny.en invents text for noise without the rule"
    rule = {"no_speech_threshold": 0.6, "logprob_threshold": -1.0}  # Whisper's defaults
    ruled = texts(Transcriber(teacher, processor, **rule), audios)
    assert ruled[0] == ""
    assert ruled[1:3] == raw[1:3]  # speech clips: exactly the raw decoding
    assert ruled[3]  # the long recording keeps its speech
    speculative = texts(Transcriber(teacher, processor, assistant, **rule), audios)
    assert speculative == ruled
    zeros = np.zeros(3 * SAMPLING_RATE, np.float32)  # digital silence: a confident "you"
    assert texts(Transcriber(teacher, processor), [zeros])[0]
    assert texts(Transcriber(teacher, processor, **rule), [zeros]) == [""]
