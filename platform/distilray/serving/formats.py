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
FRAMES_PER_SECOND = 100  # Whisper's mel hop is 10 ms: OpenAI's `seek` is in these frames


@dataclass(frozen=True)
class Segment:
    """One timestamped piece of a transcript, times in seconds from the start."""

    start: float
    end: float
    text: str


@dataclass(frozen=True)
class Transcript:
    """What the model deployment answers for one recording."""

    text: str  # the whole transcript
    duration_s: float  # length of the decoded audio
    segments: tuple[Segment, ...] = ()  # filled when timestamps were asked for
    stats: dict = field(default_factory=dict)  # batch size, timings, acceptance rate


def needs_timestamps(response_format: str) -> bool:
    return response_format in TIMESTAMPED_FORMATS


def render(transcript: Transcript, response_format: str) -> tuple[str, str]:
    """``(body, media_type)`` of ``transcript`` in ``response_format``."""
    if response_format == "json":
        return _json({"text": transcript.text, "usage": _usage(transcript)}), "application/json"
    if response_format == "verbose_json":
        return _json(verbose_json(transcript)), "application/json"
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


def verbose_json(transcript: Transcript) -> dict:
    segments = [
        {
            "id": i,
            "seek": int(seg.start * FRAMES_PER_SECOND),
            "start": round(seg.start, 3),
            "end": round(seg.end, 3),
            "text": seg.text,
            "temperature": 0.0,
        }
        for i, seg in enumerate(_segments(transcript))
    ]
    return {
        "task": "transcribe",
        "language": "english",
        "duration": round(transcript.duration_s, 3),
        "text": transcript.text,
        "segments": segments,
        "usage": _usage(transcript),
    }


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
