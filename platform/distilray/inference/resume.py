"""Keep decoding a window whose transcript ends while its audio goes on.

A greedy decoder sometimes ends a window early: ``<|endoftext|>`` after "thanks." with
half of the window's speech still to come. Distilled students do it more often than
their teacher, and on a long recording it costs a whole window of words (README
"Keeping going after an early end"). Whisper's short-form and chunked decoding have
no remedy for it: the window's text is final once the end of text is chosen.

The rule here, off unless a :class:`ResumeRule` is given: where a window's transcript
ends (its last word, timed by cross-attention, or its last timestamp) more than
``gap_s`` before the window's last sound (:func:`distilray.levels.speech_end_s`, a
level detector), the rest of the window is decoded as a window of its own, starting
where the text ended, and its tokens are appended; ``rounds`` times at most. Only the
part of a window it is responsible for counts (a chunked window's right overlap is
the next window's to transcribe), and windows that filled their token budget or were
called silence are left as they are.

Pure functions; :class:`distilray.inference.engine.Transcriber` applies them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from distilray.inference.shortform import Segment
from distilray.inference.windows import TIME_PRECISION

LAST_TIMESTAMP = round(30.0 / TIME_PRECISION)  # <|30.00|>, relative to <|0.00|>


@dataclass(frozen=True)
class ResumeRule:
    """When and how often to decode the rest of a window whose text ended early."""

    gap_s: float = 2.0  # sound going on this long after the text's end resumes decoding
    rounds: int = 1  # resumptions per window at most

    def __post_init__(self) -> None:
        if not self.gap_s > 0:
            raise ValueError(f"gap_s must be > 0, got {self.gap_s}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")

    @classmethod
    def of(cls, gap_s: float | None) -> ResumeRule | None:
        """The rule of a ``resume_gap_s`` setting (None: off)."""
        return None if gap_s is None else cls(gap_s=gap_s)


def text_end(segments: Sequence[Segment]) -> float | None:
    """Where a window's transcript ends on its clock: its last word's end when words
    were timed, else its last segment's end; None without any segment."""
    if not segments:
        return None
    last = segments[-1]
    return last.words[-1].end if last.words else last.end


def rows_to_resume(
    text_ends: Sequence[float | None],
    sound_ends: Sequence[float],
    owned_ends: Sequence[float],
    gap_s: float,
) -> list[int]:
    """Rows whose text ends more than ``gap_s`` before their last sound, counting only
    the sound up to ``owned_ends`` (what the row is responsible for; the clip's
    length for a short clip). Rows without text (None) are not resumed.

    >>> rows_to_resume([8.5, 27.0, None, 10.0], [28.4, 30.0, 20.0, 11.0], [25.0] * 4, 2.0)
    [0]
    """
    return [
        row
        for row, (text, sound, owned) in enumerate(
            zip(text_ends, sound_ends, owned_ends, strict=True)
        )
        if text is not None and min(sound, owned) - text > gap_s
    ]


def resume_point(text_end_s: float) -> float:
    """Where to start decoding again: the text's end on the 20 ms timestamp grid, so
    the resumed part's timestamp tokens shift by a whole number of steps."""
    return round(text_end_s / TIME_PRECISION) * TIME_PRECISION


def shift_timestamps(ids: Sequence[int], offset_s: float, timestamp_begin: int) -> list[int]:
    """``ids`` decoded from audio starting ``offset_s`` into the window, their timestamp
    tokens moved onto the window's clock (at most ``<|30.00|>``); text ids unchanged."""
    steps = round(offset_s / TIME_PRECISION)
    last = timestamp_begin + LAST_TIMESTAMP
    return [min(last, t + steps) if t >= timestamp_begin else t for t in ids]
