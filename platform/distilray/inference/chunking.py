"""Chunked long-form: cut audio into overlapping 30 s windows, merge their transcripts.

Pure functions (no model): where the windows go, and how the per-window token
sequences and timestamped segments are joined back into one transcript.

Windows of ``chunk`` samples start every ``chunk - 2 * stride`` samples, so
neighbours overlap by ``2 * stride``. Text is merged at the overlap by aligning the
end of the transcript so far with the start of the next window's tokens (the
longest-common-sequence merge of transformers' ASR pipeline, tolerant of windows that
tokenise the shared audio a little differently, and guarded against windows that share
no text and against alignments longer than the shared audio can hold:
:func:`_best_overlap`); segments with
timestamps are merged by time: each window owns the audio between the middles
of its overlaps.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Chunk:
    """One window of a long recording, in samples."""

    start: int  # first sample of the window
    end: int  # one past its last sample
    left: int  # half the samples it shares with the previous window (0 for the first)
    right: int  # half the samples it shares with the next window (0 for the last)

    @property
    def owned(self) -> tuple[int, int]:
        """The samples this window is responsible for: its span minus half of each overlap."""
        return self.start + self.left, self.end - self.right


def chunk_spans(num_samples: int, chunk: int, stride: int) -> list[Chunk]:
    """Windows covering ``num_samples`` samples: ``chunk`` long, overlapping by ``2 * stride``.

    >>> [(c.start, c.end) for c in chunk_spans(50, 30, 5)]
    [(0, 30), (20, 50)]
    """
    if chunk <= 0 or stride < 0 or chunk - 2 * stride <= 0:
        raise ValueError(f"chunk {chunk} must be positive and longer than 2 x stride {stride}")
    if num_samples <= chunk:
        return [Chunk(0, max(num_samples, 0), 0, 0)]
    step = chunk - 2 * stride
    spans = []
    start = 0
    while True:
        end = min(start + chunk, num_samples)
        last = end >= num_samples
        spans.append(Chunk(start, end, stride if start else 0, 0 if last else stride))
        if last:
            return spans
        start += step


SHIFT_SLACK = 4  # tokens a shift may reach past the shorter window's transcript
MIN_AGREEMENT = 0.1  # share of equal tokens below which an alignment is chance
RATE_SLACK = 2.0  # how much denser than its window's average the shared audio's speech may be
BEYOND_LIMIT_AGREEMENT = 0.5  # share of equal tokens a shift past shift_limit must reach
DRIFT = 2  # tokens one window may say more or fewer than the other inside an alignment


def shift_limit(n_left: int, n_right: int, left: Chunk, right: Chunk) -> int:
    """Most tokens two neighbouring windows' transcripts can share, from their audio.

    Windows of 30 s overlapping by 5 s share about a sixth of their words, not most
    of them: the tokens each window says per sample of its audio, times the shared
    samples, times :data:`RATE_SLACK` (speech is not evenly spread), plus
    :data:`SHIFT_SLACK`.

    >>> shift_limit(60, 60, Chunk(0, 30, 0, 2), Chunk(25, 55, 2, 0))
    24
    """
    shared = max(0, left.end - right.start)
    rate = max(n_left / max(1, left.end - left.start), n_right / max(1, right.end - right.start))
    return math.ceil(RATE_SLACK * rate * shared) + SHIFT_SLACK


def matched_pairs(a: Sequence[int], b: Sequence[int], drift: int = DRIFT) -> list[tuple[int, int]]:
    """Positions ``(i, j)`` with ``a[i] == b[j]`` of a longest common subsequence of two
    equally long token runs, kept within ``drift`` positions of each other.

    Two windows rarely tokenise their shared audio identically: one hears " I'm" (two
    tokens) where the other hears " in", or ". And" where the other hears " and", and
    every token after such a spot is one place off. Compared position by position, a
    real overlap of 26 tokens then scores 13 matches; within a small drift it scores 23,
    while tokens that agree by chance gain little (they rarely sit within two places).

    >>> matched_pairs([7, 1, 2, 3, 4], [7, 9, 1, 2, 3])
    [(0, 0), (1, 2), (2, 3), (3, 4)]
    """
    n, m = len(a), len(b)
    width = 2 * drift + 1
    # length[i][k]: LCS of a[:i] and b[:j] with j = i + k - drift (cells outside b: -1)
    length = [[0] * width for _ in range(n + 1)]
    for i in range(1, n + 1):
        for k in range(width):
            j = i + k - drift
            if j < 0 or j > m:
                length[i][k] = -1
                continue
            if j == 0:
                continue
            best = length[i - 1][k] + 1 if a[i - 1] == b[j - 1] else 0  # (i-1, j-1)
            if k + 1 < width:  # (i-1, j): same j, one row up
                best = max(best, length[i - 1][k + 1])
            if k > 0:  # (i, j-1)
                best = max(best, length[i][k - 1])
            length[i][k] = max(best, 0)
    pairs = []
    i, k = n, m - n + drift
    if not 0 <= k < width:
        return []
    while i > 0 and 0 <= k < width and i + k - drift > 0:
        j = i + k - drift
        if a[i - 1] == b[j - 1] and length[i][k] == length[i - 1][k] + 1:
            pairs.append((i - 1, j - 1))
            i -= 1
        elif k + 1 < width and length[i][k] == length[i - 1][k + 1]:
            i, k = i - 1, k + 1
        elif k > 0 and length[i][k] == length[i][k - 1]:
            k -= 1
        else:
            i -= 1
    return pairs[::-1]


def in_runs(pairs: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The ``pairs`` that belong to a run of at least two consecutive ones (the next
    token agrees too, in both sequences): single tokens that agree (".", " the") are
    mostly chance, words heard by both windows come in runs.

    >>> in_runs([(0, 0), (2, 3), (3, 4), (5, 5)])
    [(2, 3), (3, 4)]
    """
    keep = set()
    for (i, j), (k, m) in zip(pairs, pairs[1:], strict=False):
        if k == i + 1 and m == j + 1:
            keep.update({(i, j), (k, m)})
    return [p for p in pairs if p in keep]


def _best_overlap(
    left: Sequence[int], right: Sequence[int], max_shift: int | None = None
) -> tuple[int, int]:
    """Where to join ``left`` and ``right``: the cut ``(left_cut, right_cut)`` that
    keeps ``left[:left_cut] + right[right_cut:]``.

    Tries every shift ``i`` (``left``'s last ``i`` tokens against ``right``'s first
    ``i``, clipped to both); scores it by the share of tokens that agree (a common
    subsequence within :data:`DRIFT` places, :func:`matched_pairs`, counting only
    runs of two or more, :func:`in_runs`) plus a tiny bonus for longer shifts, and
    needs at least two matches. The join is at the
    agreeing pair nearest the middle of the best alignment, the earlier one on a tie
    (a window's tokens near its cut-off edge are its least reliable). Without any
    alignment, the windows are joined end to end.

    Three guards that transformers' pipeline lacks, all for windows whose texts
    agree by chance somewhere (the earlier window stopped before the overlap, or
    looped to its token limit, or the overlap was heard differently), where its
    merge kept the first part of one window and the last of the other and lost
    everything between:

    - past ``max_shift`` (:func:`shift_limit`) a shift says that the two windows
      heard more words in common than their shared audio holds at their pace; it
      is taken only where at least half its tokens agree (a sentence alone in the
      shared audio, silence around it), never on chance agreements;
    - ``i`` stops a few tokens past the shorter sequence (the windows tokenise the
      shared audio a little differently: a word cut at the edge, other punctuation);
      a longer shift would say that the later window heard words well before the
      earlier window's first one, or the earlier window well after the later one's
      last, and only wins by its length bonus;
    - fewer than one token in ten agreeing is chance (" the", ","), not an overlap:
      such windows are joined end to end.
    """
    n_left, n_right = len(left), len(right)
    best, cut = 0.0, (n_left, 0)
    longest = min(n_left + n_right - 1, min(n_left, n_right) + SHIFT_SLACK)
    for i in range(1, longest + 1):
        left_start, left_stop = max(0, n_left - i), min(n_left, n_left + n_right - i)
        right_start, right_stop = max(0, i - n_left), min(n_right, i)
        pairs = in_runs(matched_pairs(left[left_start:left_stop], right[right_start:right_stop]))
        matches = len(pairs)
        score = matches / i + i / 10000.0
        agreement = MIN_AGREEMENT if max_shift is None or i <= max_shift else BEYOND_LIMIT_AGREEMENT
        if matches > 1 and matches >= agreement * i and score > best:
            middle = (left_stop - left_start) // 2
            before = [p for p in pairs if p[0] <= middle]
            x, y = before[-1] if before else pairs[0]
            best, cut = score, (left_start + x, right_start + y)
    return cut


def merge_token_sequences(
    sequences: Sequence[Sequence[int]], spans: Sequence[Chunk] | None = None
) -> list[int]:
    """Join the text tokens of consecutive overlapping windows into one sequence.

    At each overlap the left window contributes the first half of the aligned
    span and the right window the rest, joined at a token both heard
    (:func:`_best_overlap`): tokens near a window's edge, decoded from cut-off audio,
    are the least reliable. ``spans``, the windows' places in the
    recording, bound each alignment by the audio the two windows share
    (:func:`shift_limit`); without them any shift is tried.
    """
    if not sequences:
        return []
    if spans is not None and len(spans) != len(sequences):
        raise ValueError(f"{len(sequences)} windows' tokens but {len(spans)} spans")
    merged: list[int] = []
    left = list(sequences[0])
    for k, right in enumerate(sequences[1:], start=1):
        limit = None
        if spans is not None:
            limit = shift_limit(len(sequences[k - 1]), len(right), spans[k - 1], spans[k])
        left_cut, right_cut = _best_overlap(left, right, limit)
        merged.extend(left[:left_cut])
        left = list(right[right_cut:])
    merged.extend(left)
    return merged


def keep_owned_segments(
    chunks: Sequence[Chunk],
    segments: Sequence[Sequence[tuple[float, float, str]]],
    sampling_rate: int,
) -> list[tuple[float, float, str]]:
    """Timestamped segments of all windows, on the recording's clock, without duplicates.

    ``segments[i]`` are window ``i``'s ``(start, end, text)`` with times relative to
    the window; a segment is kept by the window that owns its midpoint.
    """
    kept = []
    for chunk, window in zip(chunks, segments, strict=True):
        offset = chunk.start / sampling_rate
        lo, hi = (x / sampling_rate for x in chunk.owned)
        last = chunk.right == 0
        for start, end, text in window:
            start, end = start + offset, end + offset
            middle = (start + end) / 2
            if lo <= middle and (middle < hi or last):
                kept.append((start, end, text))
    return kept
