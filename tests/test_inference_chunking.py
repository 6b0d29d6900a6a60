"""Pure long-form helpers: window placement, token merging, segment ownership, timestamps."""

from __future__ import annotations

import pytest

from distilray.inference.chunking import (
    Chunk,
    chunk_spans,
    keep_owned_segments,
    merge_token_sequences,
    shift_limit,
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


def test_a_window_that_looped_does_not_swallow_its_neighbours_text():
    # The first window says 1..10, then loops (50 51 …) to its token limit; the next
    # window's text (60..79) ends with two tokens of the first window's opening. The
    # only "alignment" is the impossible one (the later window hearing the earlier
    # window's first words after all of its own): every token of both windows stays.
    left = list(range(1, 11)) + [50, 51] * 100
    right = list(range(60, 80)) + [1, 2]
    merged = merge_token_sequences([left, right])
    assert merged[:10] == list(range(1, 11))
    assert merged[-len(right) :] == right


# tiny.en's transcripts of two neighbouring 30 s windows of a synthetic recording: the
# first stopped before the overlap ("... I walk over it."), the second starts after it
# ("This live aircraft flight in the 21st century ...").
EARLY_STOP = [
    6350, 750, 262, 1524, 5888, 290, 1051, 262, 649, 2775, 287, 262, 1748, 3641, 30, 1375,
    373, 4642, 319, 28947, 12, 1065, 1507, 13, 9368, 286, 262, 1612, 395, 762, 287, 262,
    1181, 3112, 1138, 287, 262, 5228, 286, 262, 12699, 284, 2686, 617, 49172, 13, 1649,
    262, 3594, 3303, 3011, 287, 616, 835, 11, 314, 2513, 625, 340, 13,
]  # fmt: skip
NEXT_WINDOW = [
    770, 2107, 6215, 5474, 287, 262, 2310, 301, 4289, 481, 1464, 307, 287, 7421, 1903,
    4571, 29203, 2208, 1559, 291, 11, 3272, 3360, 14123, 284, 2148, 262, 3224, 2250, 2622,
    284, 4259, 262, 5445, 17075, 13, 2011, 1266, 1545, 11856, 262, 6050, 33964, 287, 262,
    24296, 878, 262, 10650, 5284, 13, 1002, 534, 3772, 2984, 67, 15091, 319, 644, 8276,
    2073, 857, 11, 314, 4724, 345, 466, 423, 257, 1917, 13,
]  # fmt: skip


def test_windows_that_share_no_text_are_joined_end_to_end():
    # They share only common tokens (" the", " in", ",") that agree by chance at some
    # shifts; transformers' merge took the longest such shift (5 of 68 tokens equal)
    # and kept the first half of one window and the second half of the other.
    assert merge_token_sequences([EARLY_STOP, NEXT_WINDOW]) == EARLY_STOP + NEXT_WINDOW


# A distilled student's transcripts of the first two windows (0-30 s and 25-55 s, 5 s
# shared) of a real recording: the first ends "... and that should be all thanks.", the
# second starts "Thanks. So this is the sick purpose ..." and goes on to words the first
# never reached.
FIRST_WINDOW = [
    770, 318, 262, 26071, 35789, 13, 314, 1101, 3375, 2495, 3049, 994, 13, 1318, 338, 2147,
    1016, 2073, 1016, 319, 13, 775, 821, 655, 345, 760, 11, 612, 338, 617, 4046, 8563, 11,
    475, 16609, 13, 770, 318, 502, 3375, 1107, 3105, 290, 4622, 2793, 287, 12245, 13, 775,
    821, 655, 2282, 617, 2456, 290, 994, 338, 617, 517, 2456, 2456, 13, 21039, 11, 290, 326,
    815, 307, 477, 5176, 13,
]  # fmt: skip
SECOND_WINDOW = [
    6930, 13, 1406, 428, 318, 262, 6639, 4007, 13, 314, 423, 257, 4692, 11, 523, 314, 1053,
    2826, 1180, 621, 262, 26071, 35789, 13, 383, 6447, 2858, 318, 635, 2407, 1180, 13, 843,
    314, 1101, 2282, 257, 7684, 286, 1180, 2456, 326, 314, 750, 407, 910, 290, 262, 2656,
    530, 13, 843, 994, 338, 257, 890, 14985, 290, 314, 892, 428, 318, 2192, 922, 13, 40967,
    11, 5176, 13, 40967, 11,
]  # fmt: skip


def test_chance_agreements_longer_than_the_shared_audio_are_not_taken():
    # Shifted by 68 tokens, 9 tokens (".", ",", " this", " is" ...) agree one by one by
    # chance: transformers' merge takes that shift and keeps the first window up to
    # "speech errors, but" and the second from "bunch of different words" (60 words
    # lost). Single agreeing tokens do not count, and the windows' places bound the shift.
    chunks = chunk_spans(55 * 16000, 30 * 16000, int(2.5 * 16000))
    for merged in (
        merge_token_sequences([FIRST_WINDOW, SECOND_WINDOW], chunks),
        merge_token_sequences([FIRST_WINDOW, SECOND_WINDOW]),
    ):
        assert merged[: len(FIRST_WINDOW)] == FIRST_WINDOW
        assert merged[-len(SECOND_WINDOW) + 2 :] == SECOND_WINDOW[2:]  # from ". So this is"


# A distilled student's transcripts of the second and third windows (20-50 s and 40-70 s,
# 10 s shared) of a real recording. Both heard the shared audio, "And I'm saying a bunch
# of different words that I did not say in the original one. And here's a long pause and
# I think this", but tokenised it differently: " I'm" (two tokens) for " in", ". And" for
# " and".
SHARED_BY_DRIFT_LEFT = [
    2773, 517, 2456, 2456, 2456, 13, 843, 326, 815, 307, 477, 13, 6930, 13, 1406, 428, 318,
    262, 6639, 35789, 13, 314, 423, 257, 4692, 11, 523, 314, 1053, 2192, 3377, 2407, 1180,
    13, 843, 262, 26071, 35789, 13, 383, 6447, 2858, 318, 635, 2407, 1180, 13, 843, 314,
    1101, 2282, 257, 7684, 286, 1180, 2456, 326, 314, 750, 407, 910, 314, 1101, 262, 2656,
    530, 13, 843, 994, 338, 257, 890, 14985, 13, 843, 314, 892, 428,
]  # fmt: skip
SHARED_BY_DRIFT_RIGHT = [
    843, 314, 1101, 2282, 257, 7684, 286, 1180, 2456, 326, 314, 750, 407, 910, 287, 262,
    2656, 530, 13, 843, 994, 338, 257, 890, 14985, 290, 314, 892, 428, 318, 2192, 922, 13,
    40967, 11, 5176, 13, 40967, 11, 523, 428, 318, 262, 6639, 35789, 13, 19996, 262, 8296,
    2974, 389, 8788, 13, 314, 423, 262, 4692, 13, 1406, 428, 2192, 5238, 10226, 13,
]  # fmt: skip


def test_an_overlap_heard_a_little_differently_is_joined_once():
    # Compared position by position the real overlap agrees on 13 of its 27 tokens, less
    # than " And I" at the start of a 4-token shift (2 of 4): transformers' merge (and
    # this one before it tolerated drift) wrote the shared 25 tokens twice.
    chunks = [Chunk(320000, 800000, 80000, 80000), Chunk(640000, 1120000, 80000, 80000)]
    merged = merge_token_sequences([SHARED_BY_DRIFT_LEFT, SHARED_BY_DRIFT_RIGHT], chunks)
    said = SHARED_BY_DRIFT_RIGHT[:14]  # "And I'm saying a bunch ... did not say"
    starts = [i for i in range(len(merged)) if merged[i : i + len(said)] == said]
    assert len(starts) == 1  # once, not twice
    # the left window up to the shared part ("... quite different."), the right one
    # from where the two tokenisations part ("in the original one ...") to its end
    assert merged[: starts[0]] == SHARED_BY_DRIFT_LEFT[:47]
    assert merged[-len(SHARED_BY_DRIFT_RIGHT) + 14 :] == SHARED_BY_DRIFT_RIGHT[14:]


def test_a_sentence_alone_in_the_shared_audio_is_still_aligned():
    # Both windows are silent but for one sentence in their shared 10 s: 20 tokens
    # over 30 s is below the pace shift_limit expects, yet every token agrees.
    sentence = list(range(100, 120))
    chunks = chunk_spans(50 * 16000, 30 * 16000, 5 * 16000)
    assert shift_limit(20, 20, *chunks) < len(sentence)
    assert merge_token_sequences([sentence, sentence], chunks) == sentence


def test_shift_limit_follows_the_shared_audio():
    # 30 s windows sharing 5 s hold about a sixth of their tokens in common; twice that
    # (speech is not spread evenly) plus a few tokens of slack.
    left, right = Chunk(0, 30, 0, 2), Chunk(25, 55, 2, 0)
    assert shift_limit(60, 60, left, right) == 2 * 10 + 4
    assert shift_limit(60, 6, left, Chunk(25, 28, 2, 0)) == 2 * 10 + 4  # a short last window
    assert shift_limit(60, 60, Chunk(0, 30, 0, 5), Chunk(20, 50, 5, 0)) == 2 * 20 + 4
    with pytest.raises(ValueError, match="2 windows' tokens but 1 spans"):
        merge_token_sequences([[1], [2]], [left])


def test_merge_aligns_a_short_last_window_inside_the_overlap():
    assert merge_token_sequences([[1, 2, 3, 4, 5, 6], [5, 6]]) == [1, 2, 3, 4, 5, 6]
    assert merge_token_sequences([[4, 5], [4, 5, 6, 7]]) == [4, 5, 6, 7]


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
