"""Whisper English normalisation and WER counting (the numbers every report rests on)."""

from __future__ import annotations

import pytest

from distilray.text import WerStats, corpus_wer, normalize, wer, wer_stats


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # numbers are spelled as digits, currencies and percentages as symbols
        ("twenty five", "25"),
        ("one hundred and two", "102"),
        ("Twenty-five dollars", "$25"),
        ("50% of 1,000 people", "50% of 1000 people"),
        ("It costs $5.50!", "it costs $5.50"),
        # contractions are expanded
        ("I can't do it, won't you?", "i can not do it will not you"),
        ("we're", "we are"),
        # British spellings become American
        ("The colour of the centre", "the color of the center"),
        ("behaviour organise", "behavior organize"),
        # titles are spelled out
        ("Mr. Smith and Dr. Jones", "mister smith and doctor jones"),
        ("St. John", "saint john"),
        # punctuation, case and spacing vanish
        ("Hello,   World!!", "hello world"),
        ('He said: "okay"', "he said okay"),
        ("It's 3:30 pm", "it is 3 30 pm"),
        # bracketed annotations and hesitations are dropped
        ("[laughs] um hello", "hello"),
        ("", ""),
        (None, ""),
    ],
)
def test_normalize(text, expected):
    assert normalize(text) == expected


@pytest.mark.parametrize(
    ("ref", "hyp", "counts"),
    [
        # (substitutions, deletions, insertions, hits)
        ("the cat sat on the mat", "the cat sat on the mat", (0, 0, 0, 6)),
        ("the cat sat on the mat", "the cat sat on mat", (0, 1, 0, 5)),
        ("the cat sat", "a cat sat down", (1, 0, 1, 2)),
        ("the cat sat", "the dog stood", (2, 0, 0, 1)),
        ("red green blue black", "red blue black white pink", (0, 1, 2, 3)),
        ("Hello, World!", "hello world", (0, 0, 0, 2)),  # normalised before counting
        ("twenty five apples", "25 apples", (0, 0, 0, 2)),
        ("hello world", "", (0, 2, 0, 0)),
        ("", "hello world", (0, 0, 2, 0)),
        (None, None, (0, 0, 0, 0)),
    ],
)
def test_wer_counts(ref, hyp, counts):
    stats = wer_stats(ref, hyp)
    assert (stats.substitutions, stats.deletions, stats.insertions, stats.hits) == counts


def test_wer_rates():
    stats = wer_stats("red green blue black", "red blue black white pink")
    assert stats.ref_words == 4
    assert stats.errors == 3
    assert stats.wer == pytest.approx(0.75)
    d = stats.as_dict()
    assert d["deletion_rate"] == pytest.approx(0.25)
    assert d["insertion_rate"] == pytest.approx(0.5)
    assert d["substitution_rate"] == 0.0


def test_wer_without_reference():
    assert wer(None, "anything") is None
    assert wer("", "anything") is None
    assert wer("[inaudible]", "anything") is None  # normalises to nothing
    assert wer("Hello.", "hello") == 0.0
    assert wer("a b", "a c") == 0.5
    assert WerStats().wer == 0.0
    assert WerStats(insertions=2).wer == 2.0


def test_corpus_wer_sums_edits_rather_than_averaging_rates():
    refs = ["a b c d e f g h i j", "x y", None]
    hyps = ["a b c d e f g h i j", "z", "extra words"]
    total = corpus_wer(refs, hyps)
    # utterance rates are 0 and 1 (mean 0.5); the corpus has 1 S + 1 D + 2 I over 12 words
    assert (total.substitutions, total.deletions, total.insertions, total.hits) == (1, 1, 2, 10)
    assert total.wer == pytest.approx(4 / 12)
    assert total == wer_stats(refs[0], hyps[0]) + wer_stats(refs[1], hyps[1]) + wer_stats(
        refs[2], hyps[2]
    )


def test_corpus_wer_rejects_mismatched_lengths():
    with pytest.raises(ValueError, match="2 references but 1 hypotheses"):
        corpus_wer(["a", "b"], ["a"])
