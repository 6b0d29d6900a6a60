"""Distillation data: the λ filter, the held-out split, features and the collator."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from distilray.audio import encode_wav
from distilray.distill.collate import DistillCollate, TimestampMix, pad_labels
from distilray.distill.config import DataSection
from distilray.distill.data import (
    UNFINISHED,
    add_features,
    eval_dataset,
    is_held_out,
    speech_after_label,
    summarize,
    train_dataset,
)
from distilray.errors import DataError

# (id, wer, error[, (avg_logprob, compression_ratio, no_speech_prob)]): what labelling writes.
CONFIDENT = (-0.2, 1.5, 0.01)
ROWS = [
    ("a", 0.0, None),
    ("b", 0.1, None),  # exactly λ: kept
    ("c", 0.1000001, None),  # just above: dropped
    ("d", 0.5, None),
    ("e", None, None),  # no reference, confident teacher: kept only with keep_unscored
    ("f", 0.0, "AudioDecodeError: bad"),  # failed row: always dropped
    ("g", None, "boom"),
    ("h", 0.05, None),
    ("i", None, None, (-1.5, 1.5, 0.01)),  # unscored, unsure teacher: dropped
    ("j", None, None, (-0.3, 3.1, 0.01)),  # unscored, a repetition loop: dropped
    ("k", None, None, (-0.3, 1.2, 0.9)),  # unscored, probably silence: dropped
    ("l", 0.0, None, (-3.0, 5.0, 0.99)),  # scored: judged by WER alone, kept
]


EOS = 50256  # tiny.en's <|endoftext|>: every finished label ends with it


def _write_labels(path, rows=ROWS, text=True, cut=()):
    """``cut``: ids whose label was cut at the token limit (no <|endoftext|>)."""
    n = len(rows)
    table = pa.table(
        {
            "id": [r[0] for r in rows],
            "audio": [b"RIFF" + r[0].encode() for r in rows],
            "duration_s": [1.5] * n,
            "text": [f"reference {r[0]}" if text and r[1] is not None else None for r in rows],
            "pseudo_label": [f"label {r[0]}" for r in rows],
            "pseudo_label_ids": pa.array(
                [
                    [50257, 50362, 10 + i, *([11] * 6 if r[0] in cut else [EOS])]
                    for i, r in enumerate(rows)
                ],
                pa.list_(pa.int32()),
            ),
            "wer": pa.array([r[1] for r in rows], pa.float64()),
            **{
                name: pa.array([(r[3] if len(r) > 3 else CONFIDENT)[k] for r in rows], pa.float64())
                for k, name in enumerate(["avg_logprob", "compression_ratio", "no_speech_prob"])
            },
            "teacher": ["tiny.en"] * n,
            "error": pa.array([r[2] for r in rows], pa.string()),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table.slice(0, 5), path / "part-0.parquet")
    pq.write_table(table.slice(5), path / "part-1.parquet")
    return path


def _ids(ds) -> list[str]:
    return sorted(r["id"] for r in ds.take_all())


CASES = [
    # (λ, keep_unscored, ids kept)
    (0.1, True, ["a", "b", "e", "h", "l"]),
    (0.1, False, ["a", "b", "h", "l"]),
    (0.0, False, ["a", "l"]),
    (None, False, ["a", "b", "c", "d", "h", "l"]),
    (None, True, ["a", "b", "c", "d", "e", "h", "l"]),
]


def _cfg(labels, threshold, keep_unscored) -> DataSection:
    # A separate eval set: nothing is held out of the training rows.
    return DataSection(
        train=str(labels), wer_threshold=threshold, keep_unscored=keep_unscored, eval="eval.parquet"
    )


@pytest.mark.parametrize(("threshold", "keep_unscored", "expected"), CASES)
def test_filter_counts(tmp_path, threshold, keep_unscored, expected):
    summary = summarize(_cfg(_write_labels(tmp_path / "labels"), threshold, keep_unscored), EOS)
    assert (summary.rows, summary.held_out, summary.candidates, summary.kept) == (
        12,
        0,
        12,
        len(expected),
    )
    assert summary.hours == pytest.approx(len(expected) * 1.5 / 3600)
    assert sum(summary.dropped.values()) == 12 - len(expected)


def test_filter_records_why_rows_were_dropped(tmp_path):
    summary = summarize(_cfg(_write_labels(tmp_path / "labels"), 0.1, True), EOS)
    assert summary.dropped == {
        "teacher or audio error": 2,
        "wer > 0.1": 2,
        "unscored, avg_logprob < -1": 1,
        "unscored, compression_ratio > 2.4": 1,
        "unscored, no_speech_prob > 0.6": 1,
        UNFINISHED: 0,
    }
    assert "dropped: 2 teacher or audio error, 2 wer > 0.1" in summary.describe(
        _cfg(tmp_path / "labels", 0.1, True)
    )
    strict = summarize(_cfg(tmp_path / "labels", 0.1, False), EOS)
    assert strict.dropped["no reference (keep_unscored is off)"] == 4


def test_labels_that_never_ended_are_dropped_and_counted(tmp_path):
    # "e" (unscored) looped to the token limit with a low compression ratio; "a" (scored)
    # was cut too; "d" was cut but is over λ anyway: it counts under its first reason
    labels = _write_labels(tmp_path / "labels", cut=("a", "d", "e"))
    summary = summarize(_cfg(labels, 0.1, True), EOS)
    assert summary.kept == 3  # b, h, l of CASES[0]'s a, b, e, h, l
    assert summary.dropped[UNFINISHED] == 2 and summary.dropped["wer > 0.1"] == 2
    assert f"2 {UNFINISHED}" in summary.describe(_cfg(labels, 0.1, True))
    # off, or without the end-of-text id (older callers): every label counts as ended
    kept_all = DataSection(**{**_cfg(labels, 0.1, True).model_dump(), "drop_unfinished": False})
    assert summarize(kept_all, EOS).kept == 5 and UNFINISHED not in summarize(kept_all, EOS).dropped
    assert summarize(_cfg(labels, 0.1, True), None).kept == 5
    assert DataSection(train="labels").drop_unfinished is True


@pytest.mark.ray
def test_training_rows_leave_out_labels_that_never_ended(ray_local, tmp_path):
    labels = _write_labels(tmp_path / "labels", cut=("a", "e"))
    assert _ids(train_dataset(_cfg(labels, 0.1, True), EOS)) == ["b", "h", "l"]
    assert _ids(train_dataset(_cfg(labels, 0.1, True), None)) == ["a", "b", "e", "h", "l"]


# tiny.en's <|0.00|>: a label's last timestamp token says where the teacher stopped
T0_ID = 50363


def _write_timed_labels(path, rows):
    """Labels with timestamps: ``rows`` of (id, wer, last timestamp in s or None,
    speech_end_s or None)."""
    table = pa.table(
        {
            "id": [r[0] for r in rows],
            "audio": [b"RIFF"] * len(rows),
            "duration_s": [30.0] * len(rows),
            "speech_end_s": pa.array([r[3] for r in rows], pa.float64()),
            "pseudo_label_ids": pa.array(
                [
                    [50257, 50362, 400, EOS]  # <|notimestamps|>
                    if r[2] is None
                    else [50257, T0_ID, 400, T0_ID + round(r[2] / 0.02), EOS]
                    for r in rows
                ],
                pa.list_(pa.int32()),
            ),
            "wer": pa.array([r[1] for r in rows], pa.float64()),
            **{name: [v] * len(rows) for name, v in zip(CONFIDENCE_NAMES, CONFIDENT, strict=True)},
            "error": pa.array([None] * len(rows), pa.string()),
        }
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path / "part-0.parquet")
    return path


CONFIDENCE_NAMES = ["avg_logprob", "compression_ratio", "no_speech_prob"]
TIMED = [
    ("whole", None, 12.0, 12.4),  # the label reaches the end of the sound
    ("stopped", None, 8.0, 26.0),  # the teacher stopped 18 s before the sound did: dropped
    ("near", None, 10.0, 10.9),  # 0.9 s of sound after it: within the 1 s allowed
    ("scored", 0.05, 4.0, 26.0),  # has a reference: its WER judges it, kept
    ("untimed", None, None, 26.0),  # no timestamps in the label: cannot be judged, kept
    ("unknown", None, 8.0, None),  # no speech_end_s recorded: kept
]


def test_speech_after_label_reads_the_last_timestamp():
    ids = pa.array([[50257, T0_ID, 400, T0_ID + 150, T0_ID + 150, 401, T0_ID + 300, EOS]])
    after = speech_after_label(ids, pa.array([7.5]), T0_ID)
    assert after.tolist() == pytest.approx([1.5])  # the label ends at <|6.00|>


def test_labels_that_stop_before_the_sound_are_dropped_and_counted(tmp_path):
    labels = _write_timed_labels(tmp_path / "labels", TIMED)
    cfg = DataSection(
        train=str(labels), keep_unscored=True, max_speech_after_label_s=1.0, eval="e.parquet"
    )
    summary = summarize(cfg, EOS, timestamp_begin=T0_ID)
    assert summary.kept == 5
    assert summary.dropped["unscored, sound goes on > 1 s after the label"] == 1
    assert "1 unscored, sound goes on > 1 s after the label" in summary.describe(cfg)
    # the rule needs the student's timestamp ids, and is off by default
    with pytest.raises(DataError, match="no_timestamps_token_id"):
        summarize(cfg, EOS)
    assert DataSection(train="labels").max_speech_after_label_s is None
    off = DataSection(train=str(labels), keep_unscored=True, eval="e.parquet")
    assert summarize(off, EOS).kept == 6


def test_label_end_rule_needs_the_speech_end_column(tmp_path):
    labels = _write_timed_labels(tmp_path / "labels", TIMED)
    table = pq.read_table(labels / "part-0.parquet").drop_columns(["speech_end_s"])
    pq.write_table(table, labels / "part-0.parquet")
    cfg = DataSection(
        train=str(labels), keep_unscored=True, max_speech_after_label_s=1.0, eval="e.parquet"
    )
    with pytest.raises(DataError, match="speech_end_s.*relabel.*max_speech_after_label_s=null"):
        summarize(cfg, EOS, timestamp_begin=T0_ID)


@pytest.mark.ray
def test_training_rows_leave_out_labels_that_stop_before_the_sound(ray_local, tmp_path):
    labels = _write_timed_labels(tmp_path / "labels", TIMED)
    cfg = DataSection(
        train=str(labels), keep_unscored=True, max_speech_after_label_s=1.0, eval="e.parquet"
    )
    kept = _ids(train_dataset(cfg, EOS, timestamp_begin=T0_ID))
    assert kept == ["near", "scored", "unknown", "untimed", "whole"]
    strict = DataSection(**{**cfg.model_dump(), "max_speech_after_label_s": 0.5})
    assert "near" not in _ids(train_dataset(strict, EOS, timestamp_begin=T0_ID))


def test_unscored_rows_are_excluded_by_default():
    assert DataSection(train="labels").keep_unscored is False


def test_confidence_filter_needs_the_confidence_columns(tmp_path):
    labels = _write_labels(tmp_path / "labels")
    table = pq.read_table(labels / "part-0.parquet").drop_columns(["avg_logprob"])
    pq.write_table(table, labels / "part-0.parquet")
    pq.write_table(table, labels / "part-1.parquet")
    with pytest.raises(DataError, match="relabel"):
        summarize(_cfg(labels, 0.1, True), EOS)
    assert summarize(_cfg(labels, 0.1, False), EOS).kept > 0


@pytest.mark.ray
@pytest.mark.parametrize(("threshold", "keep_unscored", "expected"), CASES[:2])
def test_wer_filter_keeps_exactly_the_right_rows(
    ray_local, tmp_path, threshold, keep_unscored, expected
):
    cfg = _cfg(_write_labels(tmp_path / "labels"), threshold, keep_unscored)
    assert _ids(train_dataset(cfg, EOS)) == expected


@pytest.mark.ray
def test_held_out_rows_never_train(ray_local, tmp_path):
    ids = [f"clip-{i:03d}" for i in range(40)]
    rows = [(i, 0.0, None) for i in ids]
    cfg = DataSection(
        train=str(_write_labels(tmp_path / "labels", rows)),
        eval_fraction=0.25,
        eval_max_rows=None,
    )
    held = {i for i in ids if is_held_out(i, 0.25)}
    assert 0 < len(held) < 40
    assert set(_ids(train_dataset(cfg, EOS))) == set(ids) - held
    eval_rows = eval_dataset(cfg).take_all()
    assert {r["id"] for r in eval_rows} == held
    assert all(r["reference"] == f"reference {r['id']}" for r in eval_rows)
    summary = summarize(cfg, EOS)
    assert (summary.held_out, summary.kept) == (len(held), 40 - len(held))


@pytest.mark.ray
def test_missing_columns_are_a_clear_error(ray_local, tmp_path):
    pq.write_table(pa.table({"id": ["x"], "audio": [b""]}), tmp_path / "bad.parquet")
    with pytest.raises(DataError, match="lacks column"):
        train_dataset(DataSection(train=str(tmp_path / "bad.parquet")), EOS)


def test_held_out_split_is_stable_and_proportional():
    ids = [f"utt{i}" for i in range(20000)]
    picked = [i for i in ids if is_held_out(i, 0.1, seed=3)]
    assert picked == [i for i in ids if is_held_out(i, 0.1, seed=3)]
    assert 0.09 < len(picked) / len(ids) < 0.11
    assert not any(is_held_out(i, 0.0) for i in ids[:100])
    assert picked != [i for i in ids if is_held_out(i, 0.1, seed=4)]


def test_pad_labels_shifts_and_masks():
    out = pad_labels(
        [np.array([1, 5, 6, 7, 2], np.int32), [1, 8, 2], [9, 2]],
        pad_token_id=2,
        decoder_start_token_id=1,
        max_tokens=448,
    )
    assert out["decoder_input_ids"].tolist() == [[1, 5, 6, 7], [1, 8, 2, 2], [1, 9, 2, 2]]
    assert out["labels"].tolist() == [[5, 6, 7, 2], [8, 2, -100, -100], [9, 2, -100, -100]]
    assert out["decoder_attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]]
    cut = pad_labels([[1, 3, 4, 5, 6, 2]], pad_token_id=2, decoder_start_token_id=1, max_tokens=4)
    assert cut["decoder_input_ids"].tolist() == [[1, 3, 4]]
    assert cut["labels"].tolist() == [[3, 4, 5]]


def test_collator_copies_read_only_arrays():
    features = np.ones((2, 80, 3000), np.float32)
    features.setflags(write=False)
    ids = np.empty(2, dtype=object)
    ids[0], ids[1] = np.array([1, 4, 2]), np.array([1, 4, 5, 6, 2])
    out = DistillCollate(pad_token_id=2, decoder_start_token_id=1)(
        {"input_features": features, "pseudo_label_ids": ids}
    )
    assert out["input_features"].shape == (2, 80, 3000)
    assert out["input_features"].dtype == torch.float32
    out["input_features"][0, 0, 0] = 5  # writable, and not the Ray buffer
    assert features[0, 0, 0] == 1
    assert out["labels"].tolist() == [[4, 2, -100, -100], [4, 5, 6, 2]]


def test_add_features_drops_undecodable_rows():
    tone = np.sin(np.linspace(0, 800 * np.pi, 16000)).astype(np.float32) * 0.1
    audio = np.empty(3, dtype=object)
    audio[:] = [encode_wav(tone), b"not audio", encode_wav(tone[:8000])]
    batch = {"id": np.array(["x", "y", "z"]), "audio": audio, "pseudo_label_ids": np.arange(3)}
    out = add_features(batch, feature_size=80)
    assert out["id"].tolist() == ["x", "z"]
    assert out["input_features"].shape == (2, 80, 3000)
    assert "audio" not in out
    assert out["pseudo_label_ids"].tolist() == [0, 2]


# tiny.en: <|startoftranscript|>, <|notimestamps|>, <|0.00|>, <|endoftext|>.
SOT, NO_TS, T0, EOT = 50257, 50362, 50363, 50256
MIX = TimestampMix(0.5, no_timestamps_id=NO_TS, timestamp_begin=T0, prompt_ids=frozenset({SOT}))
TIMESTAMPED = [SOT, T0, 383, 2068, T0 + 50, T0 + 60, 1474, T0 + 110, EOT]


def test_timestamp_mix_keeps_or_strips_exact_sequences():
    assert MIX.apply(TIMESTAMPED, keep=True) == TIMESTAMPED
    assert MIX.apply(TIMESTAMPED, keep=False) == [SOT, NO_TS, 383, 2068, 1474, EOT]
    plain = [SOT, NO_TS, 383, 2068, EOT]  # labelled without timestamps: used as it is
    assert MIX.apply(plain, keep=True) == MIX.apply(plain, keep=False) == plain
    cut = [SOT, T0, 383, T0 + 20, T0 + 20, 2068]  # cut at the label limit: no end of text
    assert MIX.apply(cut, keep=False) == [SOT, NO_TS, 383, 2068]


def test_timestamp_mix_share_and_epochs():
    ids = [f"clip-{i}" for i in range(2000)]
    share = sum(MIX.keeps(i) for i in ids) / len(ids)
    assert 0.45 < share < 0.55
    assert not any(replace(MIX, probability=0.0).keeps(i) for i in ids)
    assert all(replace(MIX, probability=1.0).keeps(i) for i in ids)
    other_epoch = replace(MIX, seed=1)
    assert [MIX.keeps(i) for i in ids] != [other_epoch.keeps(i) for i in ids]


def test_timestamp_mix_matches_the_teacher_vocabulary(tiny_en):
    from transformers import GenerationConfig

    mix = TimestampMix.from_config(GenerationConfig.from_pretrained(tiny_en), 0.2)
    assert (mix.no_timestamps_id, mix.timestamp_begin, mix.prompt_ids) == (
        NO_TS,
        T0,
        frozenset({SOT}),
    )


def test_collator_mixes_timestamps_per_row():
    ids = np.empty(2, dtype=object)
    ids[0], ids[1] = np.array(TIMESTAMPED), np.array(TIMESTAMPED)
    batch = {
        "id": np.array(["kept", "stripped"]),
        "input_features": np.zeros((2, 80, 3000), np.float32),
        "pseudo_label_ids": ids,
    }
    always = DistillCollate(2, SOT, timestamps=replace(MIX, probability=1.0))(batch)
    never = DistillCollate(2, SOT, timestamps=replace(MIX, probability=0.0))(batch)
    assert always["labels"][0].tolist() == TIMESTAMPED[1:]
    assert never["labels"][1].tolist()[:5] == [NO_TS, 383, 2068, 1474, EOT]
    assert never["decoder_input_ids"][1].tolist()[:5] == [SOT, NO_TS, 383, 2068, 1474]
