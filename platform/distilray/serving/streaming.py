"""Streaming a long recording's transcript while its windows are still being decoded.

Chunked long-form merges the text tokens of overlapping 30 s windows
(:func:`~distilray.inference.chunking.merge_token_sequences`). After window ``k``
is added, the merged tokens shared with the merge of windows ``0..k-1`` are final:
later windows only cut into the last window's right overlap, which lies after
them. :class:`StreamedMerge` sends exactly those, so the concatenated deltas equal
the finished transcript, which is the non-streamed transcript of the same audio.
"""

from __future__ import annotations

from collections.abc import Sequence

from distilray.inference.chunking import Chunk, merge_token_sequences


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """Length of the longest common prefix.

    >>> common_prefix([1, 2, 3], [1, 2, 4])
    2
    """
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return n


class StreamedMerge:
    """Window ids in, text deltas out; :attr:`text` is the whole transcript so far."""

    def __init__(self, transcriber, spans: Sequence[Chunk]) -> None:
        self.spans = list(spans)  # every window's place in the recording, in order
        self.tokenizer = transcriber.processor.tokenizer
        self.timestamp_begin = transcriber.timestamp_begin
        self.special = set(self.tokenizer.all_special_ids)
        self.windows: list[list[int]] = []  # text tokens of each window so far
        self.sent = ""  # text already sent as deltas
        self.text = ""  # the transcript of every window so far (the last one's tail may change)

    def add(self, window_ids: Sequence[Sequence[int]], final: bool) -> str:
        """Add decoded windows (generated ids, in order); the new final text (may be "")."""
        for ids in window_ids:
            self.windows.append(
                [t for t in ids if t < self.timestamp_begin and t not in self.special]
            )
        count = len(self.windows)
        before = merge_token_sequences(self.windows[:-1], self.spans[: count - 1])
        merged = merge_token_sequences(self.windows, self.spans[:count])
        self.text = self._decode(merged)
        stable = merged if final else merged[: common_prefix(before, merged)]
        text = self.text if final else self._decode(stable)
        if not text.startswith(self.sent):  # a byte-level piece changed: wait for more
            return ""
        delta, self.sent = text[len(self.sent) :], text
        return delta

    def _decode(self, ids: Sequence[int]) -> str:
        return self.tokenizer.decode(list(ids), skip_special_tokens=True).strip()
