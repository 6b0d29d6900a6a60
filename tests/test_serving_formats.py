"""Response formats, OpenAI-shaped errors and request checks: pure functions, no Ray."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest
from starlette.requests import Request

from distilray.audio import encode_wav
from distilray.errors import ConfigError
from distilray.serving.app import parse_args
from distilray.serving.config import LimitsConfig
from distilray.serving.errors import APIError, quote
from distilray.serving.formats import (
    Segment,
    Transcript,
    Word,
    delta_event,
    done_event,
    render,
    srt,
    sse,
    vtt,
)
from distilray.serving.validation import (
    FORM_OVERHEAD_BYTES,
    BodyLimit,
    check_bearer,
    check_content_length,
    decode_upload,
)

SEGMENTS = (Segment(0.0, 1.5, " Hello there."), Segment(1.5, 3661.25, " General Kenobi."))
TRANSCRIPT = Transcript("Hello there. General Kenobi.", 3661.25, SEGMENTS, {"batch_size": 2})


def _request(headers: dict[str, str]) -> Request:
    raw = [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    return Request({"type": "http", "method": "POST", "path": "/", "headers": raw})


def test_json_and_text():
    body, media = render(TRANSCRIPT, "json")
    assert media == "application/json"
    assert json.loads(body) == {
        "text": "Hello there. General Kenobi.",
        "usage": {"type": "duration", "seconds": 3662},
    }
    body, media = render(TRANSCRIPT, "text")
    assert (body, media.split(";")[0]) == ("Hello there. General Kenobi.\n", "text/plain")


def test_srt_numbers_cues_with_comma_millis():
    assert srt(SEGMENTS) == (
        "1\n00:00:00,000 --> 00:00:01,500\nHello there.\n\n"
        "2\n00:00:01,500 --> 01:01:01,250\nGeneral Kenobi.\n"
    )


def test_vtt_has_header_and_dot_millis():
    assert vtt(SEGMENTS) == (
        "WEBVTT\n\n00:00:00.000 --> 00:00:01.500\nHello there.\n\n"
        "00:00:01.500 --> 01:01:01.250\nGeneral Kenobi.\n"
    )


def test_verbose_json_segments():
    body = json.loads(render(TRANSCRIPT, "verbose_json")[0])
    assert body["task"] == "transcribe" and body["language"] == "english"
    assert body["duration"] == 3661.25
    assert [(s["id"], s["start"], s["end"], s["text"]) for s in body["segments"]] == [
        (0, 0.0, 1.5, " Hello there."),
        (1, 1.5, 3661.25, " General Kenobi."),
    ]
    assert body["segments"][1]["seek"] == 150
    # OpenAI's TranscriptionSegment: every field the SDK declares is present.
    assert set(body["segments"][0]) == {
        "id", "seek", "start", "end", "text", "tokens", "temperature",
        "avg_logprob", "compression_ratio", "no_speech_prob",
    }  # fmt: skip
    assert "words" not in body


def test_verbose_json_words_and_language():
    words = (Word("Hello", 0.0, 0.4), Word("there.", 0.4, 1.5))
    transcript = Transcript("Hello there.", 1.5, SEGMENTS[:1], language="german", words=words)
    body = json.loads(render(transcript, "verbose_json", frozenset({"word"}))[0])
    assert body["language"] == "german" and "segments" not in body
    assert body["words"] == [
        {"word": "Hello", "start": 0.0, "end": 0.4},
        {"word": "there.", "start": 0.4, "end": 1.5},
    ]
    both = json.loads(render(transcript, "verbose_json", frozenset({"word", "segment"}))[0])
    assert len(both["segments"]) == 1 and len(both["words"]) == 2


def test_stream_events_are_openai_shaped():
    assert sse(delta_event("Hi")) == b'data: {"type": "transcript.text.delta", "delta": "Hi"}\n\n'
    assert done_event("Hi there") == {"type": "transcript.text.done", "text": "Hi there"}


def test_text_without_segments_becomes_one_cue():
    body = render(Transcript("Hi.", 2.0), "srt")[0]
    assert body == "1\n00:00:00,000 --> 00:00:02,000\nHi.\n"
    body = render(Transcript("", 2.0), "vtt")[0]
    assert body == "WEBVTT\n\n"


def test_error_body_is_openai_shaped():
    err = APIError(413, "too big", code="file_too_large", param="file")
    assert err.body() == {
        "error": {
            "message": "too big",
            "type": "invalid_request_error",
            "param": "file",
            "code": "file_too_large",
        }
    }
    assert err.response().status_code == 413


@pytest.mark.parametrize(
    ("header", "ok"),
    [
        (None, False),
        ("Bearer wrong", False),
        ("Basic s3cret", False),
        ("Bearer ", False),
        ("Bearer s3cret", True),
        ("bearer s3cret", True),
    ],
)
def test_bearer(header, ok):
    request = _request({"Authorization": header} if header else {})
    if ok:
        check_bearer(request, "s3cret")
    else:
        with pytest.raises(APIError) as info:
            check_bearer(request, "s3cret")
        assert info.value.status == 401
    check_bearer(request, "")  # auth off: anything passes


def test_declared_size_checked_before_reading():
    check_content_length(_request({"Content-Length": "1000"}), 1000)
    with pytest.raises(APIError) as info:
        check_content_length(_request({"Content-Length": str(10**9)}), 1000)
    assert info.value.status == 413


def test_body_limit_stops_reading_at_the_limit():
    """A chunked body (no Content-Length) is cut off once it passes the limit."""
    piece = {"type": "http.request", "body": b"x" * 1000, "more_body": True}
    reads = 0

    async def receive() -> dict:
        nonlocal reads
        reads += 1
        return piece

    async def read_all(limit: BodyLimit) -> None:
        while True:
            await limit()

    limit = BodyLimit(receive, max_upload_bytes=5000)
    with pytest.raises(APIError) as info:
        asyncio.run(read_all(limit))
    assert (info.value.status, info.value.code) == (413, "file_too_large")
    assert reads == (5000 + FORM_OVERHEAD_BYTES) // 1000 + 1  # not one piece more


def test_decode_upload_maps_errors():
    wav = encode_wav(np.zeros(16000 * 3, np.float32))
    assert decode_upload(wav, LimitsConfig(max_audio_s=5.0)).shape == (48000,)
    with pytest.raises(APIError) as info:
        decode_upload(wav, LimitsConfig(max_audio_s=2.0))
    assert (info.value.status, info.value.code) == (413, "audio_too_long")
    with pytest.raises(APIError) as info:
        decode_upload(b"this is not audio at all" * 10, LimitsConfig())
    assert (info.value.status, info.value.code) == (400, "invalid_audio")
    with pytest.raises(APIError) as info:
        decode_upload(b"ffconcat version 1.0\nfile clip.wav\n", LimitsConfig())
    assert (info.value.status, info.value.code) == (400, "invalid_audio")


def test_audio_below_the_minimum_is_refused():
    tiny = encode_wav(np.full(8, 0.1, np.float32))  # 60 bytes, 0.5 ms
    with pytest.raises(APIError) as info:
        decode_upload(tiny, LimitsConfig())
    assert (info.value.status, info.value.code) == (400, "audio_too_short")
    assert "minimum is 0.1 s" in info.value.message
    assert decode_upload(tiny, LimitsConfig(min_audio_s=0)).shape == (8,)


def test_error_messages_quote_client_values_cut_short():
    assert quote("whisper-1") == "'whisper-1'"
    assert quote("x" * 10_000) == f"{'x' * 64!r}... (10000 characters)"
    error = APIError(422, "m" * 10**6, code="invalid_value", param="p" * 10**6)
    assert len(error.message) < 600 and len(error.param) < 100


def test_app_args_are_strict():
    with pytest.raises(ConfigError, match="teachr: unknown key"):
        parse_args({"teachr": "tiny.en"})
    assert parse_args({"batching": {"max_batch_size": 4}}).batching.max_batch_size == 4
