"""Response bodies in the OpenAI formats: json, text, srt, vtt and verbose_json.

The model deployment returns a :class:`Transcript`; :func:`render` turns it into
the body and media type the client asked for. srt, vtt and verbose_json need
segment timestamps, so :func:`needs_timestamps` tells the ingress to ask for them.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

RESPONSE_FORMATS = ("json", "text", "srt", "vtt", "verbose_json")
TIMESTAMPED_FORMATS = frozenset({"srt", "vtt", "verbose_json"})
STREAM_FORMATS = ("json", "text")  # stream=true sends text events, OpenAI's shapes
FRAMES_PER_SECOND = 100  # Whisper's mel hop is 10 ms: OpenAI's `seek` is in these frames


@dataclass(frozen=True)
class Segment:
    """One timestamped piece of a transcript, times in seconds from the start.

    The scores are those of the ≤ 30 s window the segment was decoded in (Whisper
    judges windows, and OpenAI repeats a window's figures on each of its segments).
    """

    start: float
    end: float
    text: str
    tokens: tuple[int, ...] = ()  # text token ids
    avg_logprob: float = 0.0  # mean log-probability of the window's tokens
    compression_ratio: float = 0.0  # gzip ratio of the window's text (> 2.4: a loop)
    no_speech_prob: float = 0.0  # P(<|nocaptions|>) at the window's start
    temperature: float = 0.0  # decoded at


@dataclass(frozen=True)
class Word:
    """One word with its time span, in seconds from the start."""

    word: str
    start: float
    end: float


@dataclass(frozen=True)
class Transcript:
    """What the model deployment answers for one recording."""

    text: str  # the whole transcript
    duration_s: float  # length of the decoded audio
    segments: tuple[Segment, ...] = ()  # filled when timestamps were asked for
    stats: dict = field(default_factory=dict)  # batch size, timings, acceptance rate
    language: str = "english"  # the spoken language's name (OpenAI reports names)
    task: str = "transcribe"  # or "translate"
    # Word timings (timestamp_granularities[]=word): a flat, time-ordered list over
    # the whole recording, from the engine's word timestamps (inference/words.py).
    words: tuple[Word, ...] = ()


def needs_timestamps(response_format: str) -> bool:
    return response_format in TIMESTAMPED_FORMATS


def render(
    transcript: Transcript,
    response_format: str,
    granularities: frozenset[str] = frozenset({"segment"}),
) -> tuple[str, str]:
    """``(body, media_type)`` of ``transcript`` in ``response_format``."""
    if response_format == "json":
        return _json({"text": transcript.text, "usage": _usage(transcript)}), "application/json"
    if response_format == "verbose_json":
        return _json(verbose_json(transcript, granularities)), "application/json"
    if response_format == "text":
        return transcript.text + "\n", "text/plain; charset=utf-8"
    if response_format == "srt":
        return srt(_segments(transcript)), "application/x-subrip; charset=utf-8"
    if response_format == "vtt":
        return vtt(_segments(transcript)), "text/vtt; charset=utf-8"
    raise ValueError(f"unknown response format {response_format!r}")


def _json(body: dict) -> str:
    return json.dumps(body, ensure_ascii=False)


def _usage(transcript: Transcript) -> dict:
    # OpenAI bills audio by the second, rounded up.
    return {"type": "duration", "seconds": math.ceil(transcript.duration_s)}


def _segments(transcript: Transcript) -> tuple[Segment, ...]:
    """The segments, or the whole text as one segment when the model gave none."""
    if transcript.segments or not transcript.text:
        return transcript.segments
    return (Segment(0.0, transcript.duration_s, transcript.text),)


def verbose_json(
    transcript: Transcript, granularities: frozenset[str] = frozenset({"segment"})
) -> dict:
    """OpenAI's ``TranscriptionVerbose``: segments unless only words were asked for,
    words when they were."""
    body: dict = {
        "task": transcript.task,
        "language": transcript.language,
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
    }
    if "segment" in granularities:
        body["segments"] = [_segment(i, seg) for i, seg in enumerate(_segments(transcript))]
    if "word" in granularities:
        body["words"] = [
            {"word": w.word, "start": round(w.start, 3), "end": round(w.end, 3)}
            for w in transcript.words
        ]
    body["usage"] = _usage(transcript)
    return body


def _segment(index: int, seg: Segment) -> dict:
    return {
        "id": index,
        "seek": int(seg.start * FRAMES_PER_SECOND),
        "start": round(seg.start, 3),
        "end": round(seg.end, 3),
        "text": seg.text,
        "tokens": list(seg.tokens),
        "temperature": seg.temperature,
        "avg_logprob": round(seg.avg_logprob, 6),
        "compression_ratio": round(seg.compression_ratio, 6),
        "no_speech_prob": round(seg.no_speech_prob, 6),
    }


def sse(event: dict) -> bytes:
    """One server-sent event carrying ``event`` as JSON (OpenAI's stream framing)."""
    return f"data: {_json(event)}\n\n".encode()


def delta_event(text: str) -> dict:
    """``transcript.text.delta``: the next piece of the transcript."""
    return {"type": "transcript.text.delta", "delta": text}


def done_event(text: str) -> dict:
    """``transcript.text.done``: the whole transcript, last event of a stream."""
    return {"type": "transcript.text.done", "text": text}


def _clock(seconds: float, decimal: str) -> str:
    ms = max(0, round(seconds * 1000))
    hours, ms = divmod(ms, 3_600_000)
    minutes, ms = divmod(ms, 60_000)
    secs, ms = divmod(ms, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def srt(segments: tuple[Segment, ...]) -> str:
    """SubRip: numbered cues, ``HH:MM:SS,mmm`` times, a blank line after each."""
    cues = [
        f"{i}\n{_clock(s.start, ',')} --> {_clock(s.end, ',')}\n{s.text.strip()}\n"
        for i, s in enumerate(segments, start=1)
    ]
    return "\n".join(cues)


def vtt(segments: tuple[Segment, ...]) -> str:
    """WebVTT: a ``WEBVTT`` header, then ``HH:MM:SS.mmm`` cues."""
    cues = [
        f"{_clock(s.start, '.')} --> {_clock(s.end, '.')}\n{s.text.strip()}\n" for s in segments
    ]
    return "WEBVTT\n\n" + "\n".join(cues)
