"""Evaluation metrics and report tables on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pyarrow as pa
import pytest

from distilray.evaluation.config import EvalConfig
from distilray.evaluation.metrics import (
    Utterance,
    cell_metrics,
    corpus_repeated_ngrams,
    paired_difference,
    relative_latency,
    repeated_ngrams,
    rtfx,
)
from distilray.evaluation.report import build_cells, markdown_table
from distilray.text import WerStats


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", 0),
        ("one two three four", 0),  # shorter than a 5-gram
        ("a b c d e", 0),
        ("a b c d e a b c d e", 1),  # 6 five-grams, 5 distinct
        ("a b c d e a b c d e a b c d e", 6),  # 11 five-grams, 5 distinct
        ("the cat sat on the mat the cat sat on the mat", 2),  # 8 grams, 6 distinct
        ("Hello, hello. Hello hello hello!", 0),  # normalised: one 5-gram of "hello"
        ("Hello hello hello hello hello hello", 1),  # two identical 5-grams
    ],
)
def test_repeated_ngrams(text, expected):
    assert repeated_ngrams(text) == expected


def test_repeated_ngrams_other_n():
    assert repeated_ngrams("x y x y x y", n=2) == 3  # xy yx xy yx xy: 2 distinct of 5


def test_rtfx_and_relative_latency():
    assert rtfx(60.0, 2.0) == 30.0
    assert rtfx(60.0, 0.0) is None
    assert relative_latency(1.0, 4.0) == 0.25
    assert relative_latency(1.0, None) is None


def test_cell_metrics_hand_computed():
    utts = [
        # ref 4 words; hyp: one substitution (sat->sit), one insertion (down)
        Utterance("the cat sat there", "the cat sit there down", 2.0, 0.5, 10, 10, 6, 3),
        # ref 2 words; hyp deletes one
        Utterance("good morning", "good", 1.0, 0.5, 4, 5, 4, 2),
        # no reference: timed but not scored
        Utterance(None, "whatever", 1.0, 1.0, 6),
    ]
    m = cell_metrics(utts)
    assert m["utterances"] == 3 and m["scored"] == 2
    assert m["ref_words"] == 6
    assert m["wer"] == pytest.approx(3 / 6)
    assert m["substitution_rate"] == pytest.approx(1 / 6)
    assert m["deletion_rate"] == pytest.approx(1 / 6)
    assert m["insertion_rate"] == pytest.approx(1 / 6)
    assert m["rtfx"] == pytest.approx(4.0 / 2.0)
    assert m["tokens_per_s"] == pytest.approx(20 / 2.0)
    assert m["acceptance_rate"] == pytest.approx(10 / 15)
    assert m["teacher_passes"] == 5
    assert m["repeated_5grams"] == 0


def test_cell_metrics_without_references_or_drafts():
    m = cell_metrics([Utterance(None, "a b", 1.0, 1.0, 2)])
    assert m["wer"] is None and m["acceptance_rate"] is None and m["teacher_passes"] is None


def _row(mode, snr, hyp, compute, form="short"):
    return {
        "dataset": "d",
        "id": "x",
        "snr_db": snr,
        "mode": mode,
        "form": form,
        "reference": "hello world",
        "hypothesis": hyp,
        "duration_s": 2.0,
        "compute_s": compute,
        "generated_tokens": 3,
        "drafted": 0,
        "accepted": 0,
        "teacher_passes": 0,
        "error": None,
    }


def test_build_cells_groups_orders_and_relates_latency():
    rows = [
        _row("student", math.nan, "hello word", 0.25),
        _row("teacher", math.nan, "hello world", 1.0),
        _row("teacher", 10.0, "hello", 1.0),
        {**_row("teacher", 10.0, "", 0.0), "error": "AudioDecodeError: bad", "mode": None},
    ]
    cells = build_cells(rows)
    keys = [(c["mode"], c["snr_db"]) for c in cells]
    assert keys == [("teacher", None), ("student", None), ("teacher", 10.0)]
    assert cells[0]["wer"] == 0.0 and cells[1]["wer"] == 0.5 and cells[2]["wer"] == 0.5
    assert cells[1]["latency_vs_teacher"] == 0.25
    table = markdown_table(cells)
    assert table.count("\n") == 5  # header, rule, three cells
    assert "| d | student | short | clean | 1 | 50.00 |" in table


def _edits(errors: list[int], words: int = 10) -> dict[str, WerStats]:
    return {f"u{i}": WerStats(substitutions=e, hits=words - e) for i, e in enumerate(errors)}


def test_a_difference_from_the_teacher_comes_with_its_bootstrap_interval():
    teacher = _edits([1, 3, 0, 2] * 10)
    # one error more on every utterance: +10 points, and no resample says otherwise
    worse = paired_difference(_edits([2, 4, 1, 3] * 10), teacher)
    assert worse.points == pytest.approx(0.1) and worse.utterances == 40
    assert worse.low == pytest.approx(0.1) and worse.high == pytest.approx(0.1)
    # the same +10 points from 4 utterances of 40, 10 errors more each: far less certain
    lumpy = [e + (10 if i % 10 == 0 else 0) for i, e in enumerate([1, 3, 0, 2] * 10)]
    lumpy = paired_difference(_edits(lumpy, words=20), _edits([1, 3, 0, 2] * 10, words=20))
    assert lumpy.points == pytest.approx(0.05)
    assert lumpy.low < 0.025 and lumpy.high > 0.075
    # a model that is better on some utterances and worse on others: 0 inside
    mixed = paired_difference(_edits([0, 4, 1, 1] * 10), teacher)
    assert mixed.points == 0 and mixed.low < 0 < mixed.high
    # the same draw every run; only shared utterances count; nothing shared, no figure
    assert paired_difference(_edits([0, 4, 1, 1] * 10), teacher) == mixed
    assert paired_difference({**_edits([2]), "other": WerStats(10)}, _edits([1])).points == 0.1
    assert paired_difference(_edits([1]), {"other": WerStats(hits=3)}) is None


def test_cells_give_their_difference_from_the_teacher():
    def row(mode, id_, hyp, snr=math.nan):
        return {**_row(mode, snr, hyp, 1.0), "id": id_, "reference": "the cat sat down"}

    rows = [row("teacher", f"c{i}", "the cat sat down") for i in range(12)]
    rows += [row("student", f"c{i}", "the cat sat" if i < 6 else "the cat sat down")
             for i in range(12)]  # fmt: skip
    rows += [row("teacher", "c0", "the cat", snr=5.0), row("student", "c0", "the", snr=5.0)]
    rows += [row("student", "c0", "the", snr=10.0)]  # no teacher cell at 10 dB
    cells = {(c["mode"], c["snr_db"]): c for c in build_cells(rows)}
    student = cells[("student", None)]
    assert student["wer_vs_teacher"] == pytest.approx(6 / 48)
    assert 0 < student["wer_vs_teacher_low"] < student["wer_vs_teacher"]
    assert student["wer_vs_teacher_high"] > student["wer_vs_teacher"]
    assert cells[("teacher", None)]["wer_vs_teacher"] is None
    assert cells[("student", 10.0)]["wer_vs_teacher"] is None
    low, high = 100 * student["wer_vs_teacher_low"], 100 * student["wer_vs_teacher_high"]
    table = markdown_table(list(cells.values()))
    assert "vs teacher, points (95 % CI)" in table
    assert f"| +12.50 ({low:+.2f}, {high:+.2f}) |" in table
    # one clip at 5 dB: the difference, but no interval from resampling one clip
    assert cells[("student", 5.0)]["wer_vs_teacher"] == pytest.approx(0.25)
    assert cells[("student", 5.0)]["wer_vs_teacher_low"] is None
    assert "| +25.00 (n < 10) |" in table


def test_corpus_repeated_ngrams_count_across_utterances():
    stock = "thank you for watching the video"  # the same hallucinated line on two clips
    texts = [stock, f"and {stock}", "a b c d e", None]
    assert sum(repeated_ngrams(t) for t in texts) == 0  # no clip repeats itself
    assert corpus_repeated_ngrams(texts) == 2  # its two 5-grams come back in clip two
    assert corpus_repeated_ngrams(["a b c d", "e f g h"]) == 0  # no n-gram spans two clips
    looping = "much longer than it was " * 3
    assert (
        corpus_repeated_ngrams([looping]) == repeated_ngrams(looping) == 6
    )  # 11 5-grams, 5 distinct
    cell = cell_metrics([Utterance("x", t or "", 1.0, 0.1, 3) for t in texts])
    assert (cell["repeated_5grams"], cell["repeated_5grams_corpus"]) == (0, 2)


def test_student_chunk_length_is_its_own_setting():
    from pydantic import ValidationError

    base = {"datasets": [{"name": "x", "manifest": "m.jsonl"}], "output_dir": "out"}
    cfg = EvalConfig.model_validate({**base, "runtime": {"student_chunk_length_s": 15}})
    assert cfg.runtime.chunk_length_for("student") == 15
    assert cfg.runtime.chunk_length_for("teacher") == 30
    assert cfg.runtime.chunk_length_for("speculative") == 30  # stays the teacher's output
    assert EvalConfig.model_validate(base).runtime.chunk_length_for("student") == 30
    with pytest.raises(ValidationError, match="stride_s must be below half"):
        EvalConfig.model_validate({**base, "runtime": {"student_chunk_length_s": 8}})


def test_noise_levels_per_dataset():
    from distilray.audio import encode_wav
    from distilray.evaluation.steps import decode_rows

    cfg = EvalConfig.model_validate(
        {
            "datasets": [
                {"name": "synth", "manifest": "a.jsonl"},
                {"name": "real", "manifest": "b.jsonl", "snr_db": [None]},
            ],
            "noise": {"snr_db": [None, 10]},
            "output_dir": "out",
        }
    )
    levels = cfg.snr_by_dataset()
    assert levels == {"synth": [None, 10], "real": [None]}
    tone = encode_wav(np.sin(np.linspace(0, 400 * np.pi, 16000)).astype(np.float32) * 0.1)
    batch = pa.table(
        {
            "dataset": ["synth", "real"],
            "id": ["a", "b"],
            "text": ["x", "y"],
            "audio_bytes": [tone, tone],
            "audio_path": pa.array([None, None], pa.string()),
        }
    )
    out = decode_rows(batch, levels, seed=0).to_pylist()
    assert [(r["dataset"], math.isnan(r["snr_db"])) for r in out] == [
        ("synth", True),
        ("synth", False),
        ("real", True),
    ]


def test_eval_config_requires_student_for_student_modes():
    from pydantic import ValidationError

    base = {"datasets": [{"name": "x", "manifest": "m.jsonl"}], "output_dir": "out"}
    assert EvalConfig.model_validate(base).modes == ["teacher"]
    with pytest.raises(ValidationError, match="need models.student"):
        EvalConfig.model_validate({**base, "modes": ["speculative"]})
    with pytest.raises(ValidationError, match="unique"):
        EvalConfig.model_validate({**base, "forms": ["short", "short"]})


def test_build_cells_reports_share_identical_to_the_teacher():
    rows = [
        _row("teacher", math.nan, "hello world", 1.0),
        {**_row("teacher", math.nan, "good day", 1.0), "id": "y"},
        _row("speculative", math.nan, "hello world", 0.5),
        {**_row("speculative", math.nan, "good day", 0.5), "id": "y"},
        _row("student", math.nan, "hello world", 0.2),
        {**_row("student", math.nan, "good bay", 0.2), "id": "y"},
        _row("student", 5.0, "hello", 0.2),  # no teacher at this SNR
    ]
    by_key = {(c["mode"], c["snr_db"]): c for c in build_cells(rows)}
    assert by_key[("speculative", None)]["identical_to_teacher"] == 1.0
    assert by_key[("student", None)]["identical_to_teacher"] == 0.5
    assert by_key[("teacher", None)]["identical_to_teacher"] == 1.0
    assert by_key[("student", 5.0)]["identical_to_teacher"] is None
    assert "| 100 |" in markdown_table(list(by_key.values()))


def test_worst_utterances_are_named_and_left_out_of_the_trimmed_wer(tmp_path):
    from distilray.evaluation.report import write_report

    def row(i, hyp, mode="student"):
        return {**_row(mode, math.nan, hyp, 0.5), "id": f"clip-{i}", "reference": "a b c d"}

    loop = "a b c d " + "e " * 30  # one recording looped to the token limit: 30 insertions
    rows = [row(0, "a b c d"), row(1, loop), row(2, "a b x d"), row(3, "a b c")]
    rows += [row(i, "a b c d") for i in range(4, 10)]
    rows += [row(i, "a b c d", mode="teacher") for i in range(10)]
    cells = build_cells(rows, worst=1)
    student = next(c for c in cells if c["mode"] == "student")
    assert student["wer"] == pytest.approx(32 / 40)  # the loop decides the cell's WER
    assert student["worst"] == [{"id": "clip-1", "errors": 30, "ref_words": 4}]
    assert student["wer_without_worst"] == pytest.approx(2 / 36)  # the rest: 1 sub, 1 del
    teacher = next(c for c in cells if c["mode"] == "teacher")
    assert teacher["worst"] == [] and teacher["wer_without_worst"] == 0.0  # nothing to name
    # the two worst: ties keep manifest order; 10 clips are enough to leave 2 out, not 3
    two = build_cells(rows, worst=2)[1]
    assert [w["id"] for w in two["worst"]] == ["clip-1", "clip-2"]
    assert two["wer_without_worst"] == pytest.approx(1 / 32)
    three = build_cells(rows, worst=3)[1]
    assert len(three["worst"]) == 3 and three["wer_without_worst"] is None

    write_report(tmp_path, cells, {}, rows)
    md = (tmp_path / "results.md").read_text()
    assert "| d | student | short | clean | 10 | 80.00 | 5.56 |" in md
    assert "| d | student | short | `clip-1` 30/4 |" in md
    # off (worst=0): no column, no section
    md_off = markdown_table(build_cells(rows))
    assert "w/o worst" not in md_off and build_cells(rows)[1]["worst"] == []


def test_worst_utterances_default_and_validation():
    from pydantic import ValidationError

    base = {"datasets": [{"name": "x", "manifest": "m.jsonl"}], "output_dir": "out"}
    assert EvalConfig.model_validate(base).worst_utterances == 3
    with pytest.raises(ValidationError, match="worst_utterances"):
        EvalConfig.model_validate({**base, "worst_utterances": -1})


def test_cells_count_utterances_that_hit_the_token_limit():
    """A loop on fillers ("um, um, …") is invisible to WER and 5-grams once normalised;
    the cell still counts the utterance whose window ran to the token limit."""
    loop = "montreal forced " + "um, " * 60
    utterances = [
        Utterance("montreal forced um aligner", loop, 5.0, 1.0, 128, unfinished_windows=1),
        Utterance("hello world", "hello world", 1.0, 1.0, 3, unfinished_windows=0),
        Utterance("a long recording", "a long recording", 60.0, 1.0, 9, unfinished_windows=2),
    ]
    m = cell_metrics(utterances)
    assert m["unfinished"] == 2
    assert m["repeated_5grams"] == 0  # the normaliser drops the fillers
    assert cell_metrics(utterances[1:2])["unfinished"] == 0
    untracked = [Utterance("a", "a", 1.0, 1.0, 1)]  # sequential: not tracked
    assert cell_metrics(untracked)["unfinished"] is None

    rows = [
        {**_row("student", math.nan, "hello", 0.5), "unfinished_windows": 1},
        {**_row("student", math.nan, "hello world", 0.5), "id": "y", "unfinished_windows": 0},
        {**_row("teacher", math.nan, "hello world", 1.0), "unfinished_windows": math.nan},
    ]
    cells = {c["mode"]: c for c in build_cells(rows)}
    assert cells["student"]["unfinished"] == 1 and cells["teacher"]["unfinished"] is None
    table = markdown_table(list(cells.values()))
    assert "hit token limit" in table.splitlines()[0]


def test_loops_are_counted_on_the_raw_transcript_against_the_speakers_own_repeats():
    from distilray.evaluation.metrics import is_loop, longest_run, raw_words

    # the demo student's filler loop: invisible to the normalised metrics, a loop here
    filler = "Montreal forced, " + "um, " * 51
    assert is_loop(filler, "montreal forced uh um uh hm hm um forced aligner")
    # a speaker who says "word" five times, transcribed six times: not a loop ...
    assert not is_loop("Word, word, word, word, word, word.", "word word word word word")
    # ... nine times is (four more than said)
    assert is_loop("word " * 9, "word word word word word")
    # a phrase of several words, hyphenated pieces split as words
    assert longest_run(raw_words("fence-in-re-in-re-in-re-in-re-in-re")) == 5
    assert is_loop("the broken fence-in-re-in-re-in-re-in-re-in-re", "the broken fence")
    # phrases longer than four words are not counted; without a reference, five in a row
    assert longest_run(raw_words("a b c d e a b c d e")) == 1
    assert is_loop("ha ha ha ha ha") and not is_loop("ha ha ha ha")
    assert longest_run([]) == 0 and not is_loop("")
    # a run of punctuation with no word (the mass taken from a repeat went to "..."):
    # invisible to WER, 5-grams and word repeats, a loop here; ordinary punctuation is not
    dots = "Here's some more word... word... ...word... ...... " + "." * 40
    assert longest_run(raw_words(dots)) == 3 and is_loop(dots, "word")
    assert not is_loop('Well... I don\'t know?! ... Maybe -- "yes".', "well i don't know maybe yes")
    # letters of any script are words: a transcript in another script is no punctuation run
    assert not is_loop("Привет, как дела? Хорошо, спасибо.") and not is_loop(
        "日本語のテキストです。" * 3
    )

    utterances = [
        Utterance("montreal forced um aligner", filler, 5.0, 1.0, 110),
        Utterance("hello hello oh hello", "Hello. Hello. Oh, hello.", 2.0, 1.0, 8),
    ]
    assert cell_metrics(utterances)["loops"] == 1
    rows = [
        {**_row("student", math.nan, "um " * 20, 0.5)},
        {**_row("teacher", math.nan, "hello world", 1.0)},
    ]
    cells = {c["mode"]: c for c in build_cells(rows)}
    assert cells["student"]["loops"] == 1 and cells["teacher"]["loops"] == 0
    assert "| loops |" in markdown_table(list(cells.values())).splitlines()[0]
