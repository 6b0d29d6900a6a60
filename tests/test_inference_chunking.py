"""Pure long-form helpers: window placement, token merging, segment ownership, timestamps."""

from __future__ import annotations

import pytest

from distilray.inference.chunking import (
    Chunk,
    chunk_spans,
    keep_owned_segments,
    merge_token_sequences,
)
from distilray.inference.shortform import generated_part, split_timestamped


@pytest.mark.parametrize(
    ("num", "expected"),
    [
        (10, [(0, 10, 0, 0)]),
        (30, [(0, 30, 0, 0)]),
        (50, [(0, 30, 0, 5), (20, 50, 5, 0)]),
        (55, [(0, 30, 0, 5), (20, 50, 5, 5), (40, 55, 5, 0)]),
        (0, [(0, 0, 0, 0)]),
    ],
)
def test_chunk_spans(num, expected):
    spans = chunk_spans(num, 30, 5)
    assert [(c.start, c.end, c.left, c.right) for c in spans] == expected


def test_chunk_spans_cover_the_audio_and_owned_regions_tile_it():
    spans = chunk_spans(1000, 300, 50)
    assert spans[0].start == 0 and spans[-1].end == 1000
    owned = [c.owned for c in spans]
    assert owned[0][0] == 0 and owned[-1][1] == 1000
    for (_, end), (start, _) in zip(owned, owned[1:], strict=False):
        assert end == start  # no gap, no double cover


def test_chunk_spans_reject_overlap_longer_than_window():
    with pytest.raises(ValueError, match="longer than 2 x stride"):
        chunk_spans(100, 10, 5)


def test_merge_joins_at_the_overlap():
    left = [1, 2, 3, 4, 5, 6]
    right = [4, 5, 6, 7, 8]
    assert merge_token_sequences([left, right]) == [1, 2, 3, 4, 5, 6, 7, 8]


def test_merge_prefers_the_inner_halves_of_a_disagreeing_overlap():
    # The overlap 4 5 6 7 is decoded as 4 5 X 7 by the left window's cut-off end
    # and 4 5 6 7 by the right window: the left half comes from the left window,
    # the right half (with the correct 6) from the right one.
    left = [1, 2, 3, 4, 5, 99, 7]
    right = [4, 5, 6, 7, 8, 9]
    assert merge_token_sequences([left, right]) == [1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_merge_without_common_tokens_concatenates():
    assert merge_token_sequences([[1, 2], [3, 4], [5]]) == [1, 2, 3, 4, 5]


def test_merge_three_windows_and_degenerate_input():
    a, b, c = [1, 2, 3, 4, 5], [4, 5, 6, 7, 8], [7, 8, 9, 10]
    assert merge_token_sequences([a, b, c]) == list(range(1, 11))
    assert merge_token_sequences([]) == []
    assert merge_token_sequences([[7, 8]]) == [7, 8]


def test_keep_owned_segments_removes_duplicates_in_the_overlap():
    sr = 10
    chunks = [Chunk(0, 300, 0, 50), Chunk(200, 500, 50, 0)]
    first = [(0.0, 10.0, "a"), (10.0, 24.0, "b"), (24.0, 29.0, "c")]  # c: middle 26.5 > 25
    second = [(4.0, 9.0, "c"), (9.0, 20.0, "d")]  # absolute 24-29 and 29-40
    kept = keep_owned_segments(chunks, [first, second], sr)
    assert kept == [(0.0, 10.0, "a"), (10.0, 24.0, "b"), (24.0, 29.0, "c"), (29.0, 40.0, "d")]


def test_split_timestamped_pairs_and_open_end():
    begin = 100  # <|0.00|>
    ids = [100, 1, 2, 150, 150, 3, 175, 4]  # [0.00] 1 2 [1.00][1.00] 3 [1.50] 4 (open)
    assert split_timestamped(ids, begin, end_time=2.0) == [
        (0.0, 1.0, [1, 2]),
        (1.0, 1.5, [3]),
        (1.5, 2.0, [4]),
    ]
    assert split_timestamped([5, 6], begin) == [(0.0, 0.0, [5, 6])]
    assert split_timestamped([], begin) == []
    # a last timestamp past the audio's end (into the padding) is cut to it
    late = [100, 1, 250, 260, 2, 275]  # [0.00] 1 [3.00] [3.20] 2 [3.50]
    assert split_timestamped(late, begin, end_time=3.1) == [
        (0.0, 3.0, [1]),
        (3.1, 3.1, [2]),
    ]


def test_generated_part_strips_prompt_end_and_padding():
    assert generated_part([50, 51, 7, 8, 9, 0, 0], {50, 51}, {0}) == [7, 8, 9]
    assert generated_part([50, 0, 0], {50}, {0}) == []
