"""Pseudo-labelled Parquet into training batches: filter, hold out, featurise, collate.

Rows come from ``distilray label`` (``id, audio, duration_s, text, pseudo_label,
pseudo_label_ids, wer, teacher, error``). Training keeps the rows the teacher
labelled without error and, when a reference exists, with a WER of at most λ
(the paper's filter); the filter is pushed into the Parquet scan. A stable hash of
the id holds rows out for evaluation. Audio is decoded and turned into log-mel in a
Ray Data map, so feature work runs beside the trainers. ``audio`` is read as WAV
bytes from the ``{bytes, path}`` struct of current shards and from the plain binary
column of older ones alike. This module imports no torch: Ray Data tasks that run
its functions start faster without it.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distilray.audio import decode_audio
from distilray.distill.config import DataSection
from distilray.errors import AudioDecodeError, DataError
from distilray.features import log_mel
from distilray.inference.windows import CHUNK_LENGTH_S, N_FRAMES, TIME_PRECISION
from distilray.labelling.schema import wav_bytes

logger = logging.getLogger(__name__)

TRAIN_COLUMNS = ["id", "audio", "pseudo_label_ids"]
CONFIDENCE_COLUMNS = ["avg_logprob", "compression_ratio", "no_speech_prob"]
FILTER_COLUMNS = ["id", "wer", "error", "duration_s"]
UNFINISHED = "label never ended (no <|endoftext|> within max_label_length)"
_HASH_RANGE = 2**32


@dataclass(frozen=True)
class DataSummary:
    """What the filter and the hold-out did (logged once, written into the model card)."""

    rows: int  # labelled rows read
    held_out: int  # rows set aside for evaluation (0 when data.eval is a separate set)
    candidates: int  # rows left for training before the filter
    kept: int  # training rows after the filter
    hours: float  # audio hours of the kept rows
    dropped: dict[str, int] = field(default_factory=dict)  # training rows dropped, by reason

    def describe(self, cfg: DataSection) -> str:
        rule = "error is null" + (
            f", wer <= {cfg.wer_threshold}" if cfg.wer_threshold is not None else ""
        )
        if cfg.keep_unscored:
            rule += ", unscored rows by teacher confidence"
        if cfg.drop_unfinished:
            rule += ", labels that ended"
        if checks_label_end(cfg):
            rule += ", unscored labels that reach the end of the sound"
        why = ", ".join(f"{n} {reason}" for reason, n in self.dropped.items() if n)
        return (
            f"filter ({rule}) kept {self.kept} of {self.candidates} training rows "
            f"({self.hours:.2f} h)"
            + (f"; dropped: {why}" if why else "")
            + f"; {self.held_out} of {self.rows} rows held out for eval"
        )


def drop_rules(cfg: DataSection) -> list[tuple[str, object]]:
    """``(reason, expression)`` pairs, in order: a row is dropped for the first that holds.

    Rows with a reference are judged by their WER (λ, the paper's filter); rows
    without one are dropped unless ``keep_unscored``, and then judged by the
    teacher's confidence as Whisper's decoding rules judge a window.
    """
    from ray.data.expressions import col

    unscored = col("wer").is_null()
    rules: list[tuple[str, object]] = [("teacher or audio error", col("error").is_not_null())]
    if cfg.wer_threshold is not None:
        rules.append((f"wer > {cfg.wer_threshold:g}", col("wer") > cfg.wer_threshold))
    if not cfg.keep_unscored:
        rules.append(("no reference (keep_unscored is off)", unscored))
        return rules
    if cfg.min_avg_logprob is not None:
        low = unscored & (col("avg_logprob") < cfg.min_avg_logprob)
        rules.append((f"unscored, avg_logprob < {cfg.min_avg_logprob:g}", low))
    if cfg.max_compression_ratio is not None:
        loop = unscored & (col("compression_ratio") > cfg.max_compression_ratio)
        rules.append((f"unscored, compression_ratio > {cfg.max_compression_ratio:g}", loop))
    if cfg.max_no_speech_prob is not None:
        silent = unscored & (col("no_speech_prob") > cfg.max_no_speech_prob)
        rules.append((f"unscored, no_speech_prob > {cfg.max_no_speech_prob:g}", silent))
    return rules


def filter_columns(cfg: DataSection) -> list[str]:
    """The columns :func:`drop_rules` and the label-end rule read."""
    return [
        "wer",
        "error",
        *(CONFIDENCE_COLUMNS if cfg.keep_unscored else []),
        *(["speech_end_s"] if checks_label_end(cfg) else []),
    ]


def checks_label_end(cfg: DataSection) -> bool:
    """Whether ``data.max_speech_after_label_s`` applies (it judges unscored rows only)."""
    return cfg.keep_unscored and cfg.max_speech_after_label_s is not None


def cut_short_reason(cfg: DataSection) -> str:
    """The drop reason :func:`summarize` counts the label-end rule's rows under."""
    return f"unscored, sound goes on > {cfg.max_speech_after_label_s:g} s after the label"


def keep_expr(cfg: DataSection):
    """The Ray Data expression of the training filter (pushed into the Parquet scan).

    A comparison with a null value is null, and a null filter drops the row, so each
    rule is written to be false (not null) for the rows it does not drop.
    """
    from ray.data.expressions import col

    keep = col("error").is_null()
    if cfg.wer_threshold is not None:
        keep = keep & (col("wer").is_null() | (col("wer") <= cfg.wer_threshold))
    if not cfg.keep_unscored:
        return keep & col("wer").is_not_null()
    scored = col("wer").is_not_null()
    if cfg.min_avg_logprob is not None:
        keep = keep & (scored | (col("avg_logprob") >= cfg.min_avg_logprob))
    if cfg.max_compression_ratio is not None:
        keep = keep & (scored | (col("compression_ratio") <= cfg.max_compression_ratio))
    if cfg.max_no_speech_prob is not None:
        keep = keep & (scored | (col("no_speech_prob") <= cfg.max_no_speech_prob))
    return keep


def unfinished(ids: pa.Array | pa.ChunkedArray, eos: int) -> np.ndarray:
    """Where a pseudo-label (token ids, ``<|endoftext|>`` = ``eos`` last when it ended)
    was cut at the labelling token limit instead: empty and null labels count too.

    >>> unfinished(pa.array([[1, 2, 9], [1, 2, 3], [], None]), eos=9).tolist()
    [False, True, True, True]
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(ids), 0).to_numpy(zero_copy_only=False)
    values = pc.list_flatten(ids).to_numpy(zero_copy_only=False)
    last = np.full(len(lengths), -1, dtype=np.int64)
    ended = lengths > 0
    last[ended] = values[np.cumsum(lengths)[ended] - 1]
    return last != eos


def _drop_unfinished(batch: pa.Table, eos: int) -> pa.Table:
    return batch.filter(pa.array(~unfinished(batch["pseudo_label_ids"], eos)))


def speech_after_label(
    ids: pa.Array | pa.ChunkedArray,
    speech_end: pa.Array | pa.ChunkedArray,
    timestamp_begin: int,
) -> np.ndarray:
    """Seconds of sound after each pseudo-label's last timestamp token (ids from
    ``timestamp_begin`` on are ``<|0.00|>``, ``<|0.02|>``, ...), from the labelled
    ``speech_end_s``; NaN where a label has no timestamp or the row no ``speech_end_s``.

    >>> speech_after_label(pa.array([[1, 100, 7, 150], [1, 7], None]),
    ...                    pa.array([3.0, 3.0, 3.0]), timestamp_begin=100).tolist()
    [2.0, nan, nan]
    """
    if isinstance(ids, pa.ChunkedArray):
        ids = ids.combine_chunks()
    values = pc.list_flatten(ids).to_numpy(zero_copy_only=False).astype(np.int64)
    parents = pc.list_parent_indices(ids).to_numpy(zero_copy_only=False)
    stamps = values >= timestamp_begin
    last = np.full(len(ids), -1, dtype=np.int64)
    np.maximum.at(last, parents[stamps], values[stamps] - timestamp_begin)
    end = pc.fill_null(pc.cast(speech_end, pa.float64()), np.nan)
    after = end.to_numpy(zero_copy_only=False) - last * TIME_PRECISION
    return np.where(last >= 0, after, np.nan)


def cut_short(batch: pa.Table, limit_s: float, timestamp_begin: int) -> np.ndarray:
    """Rows of ``batch`` without a reference whose label ends more than ``limit_s``
    before the sound does (:func:`speech_after_label`): the teacher stopped early."""
    after = speech_after_label(batch["pseudo_label_ids"], batch["speech_end_s"], timestamp_begin)
    unscored = pc.is_null(batch["wer"]).to_numpy(zero_copy_only=False)
    with np.errstate(invalid="ignore"):
        return unscored & (after > limit_s)


def _drop_cut_short(batch: pa.Table, limit_s: float, timestamp_begin: int) -> pa.Table:
    return batch.filter(pa.array(~cut_short(batch, limit_s, timestamp_begin)))


def is_held_out(row_id: str, fraction: float, seed: int = 0) -> bool:
    """Whether ``row_id`` belongs to the eval split: a stable hash, independent of row order."""
    if fraction <= 0:
        return False
    return zlib.crc32(f"{seed}:{row_id}".encode()) < fraction * _HASH_RANGE


def held_out_mask(ids: pa.Array | pa.ChunkedArray, fraction: float, seed: int) -> np.ndarray:
    """:func:`is_held_out` for a column of ids."""
    return np.array([is_held_out(str(i), fraction, seed) for i in ids.to_pylist()], dtype=bool)


def _select_split(batch: pa.Table, *, held_out: bool, fraction: float, seed: int) -> pa.Table:
    mask = held_out_mask(batch["id"], fraction, seed)
    return batch.filter(pa.array(mask if held_out else ~mask))


def read_parquet(uri: str, required: list[str]):
    """``ray.data.read_parquet`` of ``uri`` (local or s3://), checking ``required`` columns."""
    import ray.data

    from distilray.storage import filesystem_for

    fs, path = filesystem_for(uri)
    try:
        ds = ray.data.read_parquet(path, filesystem=fs)
        names = ds.schema().names
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise DataError(f"cannot read labelled Parquet {uri}: {exc}") from None
    missing = [c for c in required if c not in names]
    if missing:
        raise DataError(
            f"{uri} lacks column(s) {', '.join(missing)}: expected the output of `distilray label`"
        )
    return ds


def train_dataset(cfg: DataSection, eos: int | None, timestamp_begin: int | None = None):
    """Training rows: filtered by λ in the scan, minus unfinished labels (``eos``: the
    ``<|endoftext|>`` id, when ``data.drop_unfinished``), labels that stopped before the
    sound (``timestamp_begin``: the ``<|0.00|>`` id, when ``data.max_speech_after_label_s``)
    and the held-out ids."""
    columns = [*TRAIN_COLUMNS, *filter_columns(cfg)]
    parts = [
        read_parquet(uri, columns).select_columns(columns).filter(expr=keep_expr(cfg))
        for uri in train_uris(cfg)
    ]
    if cfg.drop_unfinished and eos is not None:
        parts = [
            part.map_batches(_drop_unfinished, batch_format="pyarrow", fn_kwargs={"eos": eos})
            for part in parts
        ]
    if checks_label_end(cfg):
        kwargs = {
            "limit_s": cfg.max_speech_after_label_s,
            "timestamp_begin": _need(timestamp_begin),
        }
        parts = [
            part.map_batches(_drop_cut_short, batch_format="pyarrow", fn_kwargs=kwargs)
            for part in parts
        ]
    ds = _union([with_wav_bytes(part) for part in parts])
    if cfg.eval is None:
        ds = ds.map_batches(
            _select_split,
            batch_format="pyarrow",
            fn_kwargs={"held_out": False, "fraction": cfg.eval_fraction, "seed": cfg.split_seed},
        )
    return ds.select_columns(TRAIN_COLUMNS)


def eval_dataset(cfg: DataSection):
    """Held-out rows with a reference: ``id, audio, reference``, at most ``eval_max_rows``."""
    from ray.data.expressions import col

    ref = cfg.eval_reference
    columns = ["id", "audio", ref]
    parts = []
    for uri in eval_uris(cfg) or train_uris(cfg):
        part = read_parquet(uri, columns)
        if "error" in part.schema().names:
            part = part.select_columns([*columns, "error"]).filter(expr=col("error").is_null())
        part = part.select_columns(columns).filter(expr=col(ref).is_not_null())
        parts.append(with_wav_bytes(part))
    ds = _union(parts)
    if cfg.eval is None:
        ds = ds.map_batches(
            _select_split,
            batch_format="pyarrow",
            fn_kwargs={"held_out": True, "fraction": cfg.eval_fraction, "seed": cfg.split_seed},
        )
    ds = ds.rename_columns({ref: "reference"}).select_columns(["id", "audio", "reference"])
    return ds.limit(cfg.eval_max_rows) if cfg.eval_max_rows else ds


def with_wav_bytes(ds):
    """``ds`` with its ``audio`` column as WAV bytes (see the module docstring)."""
    return ds.map_batches(_wav_audio, batch_format="pyarrow")


def _wav_audio(batch: pa.Table) -> pa.Table:
    index = batch.schema.get_field_index("audio")
    return batch.set_column(index, "audio", wav_bytes(batch["audio"]))


def _union(parts: list):
    return parts[0].union(*parts[1:]) if len(parts) > 1 else parts[0]


def train_uris(cfg: DataSection) -> list[str]:
    """``data.train`` as a list."""
    return [cfg.train] if isinstance(cfg.train, str) else list(cfg.train)


def eval_uris(cfg: DataSection) -> list[str]:
    """``data.eval`` as a list (empty when rows are held out of the training set)."""
    if cfg.eval is None:
        return []
    return [cfg.eval] if isinstance(cfg.eval, str) else list(cfg.eval)


def _need(timestamp_begin: int | None) -> int:
    if timestamp_begin is None:
        raise DataError(
            "data.max_speech_after_label_s needs the student's <|0.00|> token id "
            "(no_timestamps_token_id in its generation_config.json)"
        )
    return timestamp_begin


def summarize(cfg: DataSection, eos: int | None, timestamp_begin: int | None = None) -> DataSummary:
    """Count rows before and after the filter (the same rules), reading only small columns.

    Runs in the driver with pyarrow: a scan of a few narrow columns, no audio. ``eos``
    and ``timestamp_begin`` as for :func:`train_dataset`.
    """
    check_ends = cfg.drop_unfinished and eos is not None
    check_cuts = checks_label_end(cfg)
    if check_cuts:
        _need(timestamp_begin)
    extra = ["pseudo_label_ids"] if check_ends or check_cuts else []
    needed = list(dict.fromkeys([*FILTER_COLUMNS, *filter_columns(cfg), *extra]))
    datasets = [_labelled_dataset(uri, needed) for uri in train_uris(cfg)]
    keep = keep_expr(cfg).to_pyarrow()
    rules = [(reason, expr.to_pyarrow()) for reason, expr in drop_rules(cfg)]
    dropped = dict.fromkeys((reason for reason, _ in rules), 0)
    if check_ends:
        dropped[UNFINISHED] = 0
    if check_cuts:
        dropped[cut_short_reason(cfg)] = 0
    rows = held = kept = 0
    seconds = 0.0
    fraction = 0.0 if cfg.eval else cfg.eval_fraction
    batches = (b for dataset in datasets for b in dataset.to_batches(columns=needed))
    for batch in batches:
        table = pa.Table.from_batches([batch])
        mask = held_out_mask(table["id"], fraction, cfg.split_seed)
        candidates = table.filter(pa.array(~mask))
        train_rows = candidates.filter(keep)
        if check_ends:
            cut = unfinished(train_rows["pseudo_label_ids"], eos)
            dropped[UNFINISHED] += int(cut.sum())
            train_rows = train_rows.filter(pa.array(~cut))
        if check_cuts:
            short = cut_short(train_rows, cfg.max_speech_after_label_s, timestamp_begin)
            dropped[cut_short_reason(cfg)] += int(short.sum())
            train_rows = train_rows.filter(pa.array(~short))
        rows += table.num_rows
        held += int(mask.sum())
        kept += train_rows.num_rows
        seconds += float(pc.sum(train_rows["duration_s"]).as_py() or 0.0)
        _count_drops(candidates, rules, dropped)
    return DataSummary(rows, held, rows - held, kept, seconds / 3600, dropped)


def _labelled_dataset(uri: str, needed: list[str]):
    """A pyarrow dataset over labelled Parquet, checked for the columns the filter reads."""
    import pyarrow.dataset as pads

    from distilray.storage import filesystem_for

    fs, path = filesystem_for(uri)
    try:
        dataset = pads.dataset(path, filesystem=fs, format="parquet")
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise DataError(f"cannot read labelled Parquet {uri}: {exc}") from None
    missing = [c for c in needed if c not in dataset.schema.names]
    if missing:
        hint = ""
        if set(missing) & set(CONFIDENCE_COLUMNS):
            hint = (
                ": relabel with this version of `distilray label` (it records the teacher's "
                "confidence), or set data.keep_unscored=false"
            )
        elif "speech_end_s" in missing:
            hint = (
                ": relabel with this version of `distilray label` (it records where the "
                "sound ends), or set data.max_speech_after_label_s=null"
            )
        raise DataError(f"{uri} lacks column(s) {', '.join(missing)}{hint}")
    return dataset


def _count_drops(table: pa.Table, rules: list, counts: dict[str, int]) -> None:
    """Add to ``counts`` each row's first reason to be dropped."""
    for reason, expr in rules:
        if not table.num_rows:
            return
        match = pc.fill_null(_evaluate(table, expr), False)
        counts[reason] += int(pc.sum(match).as_py() or 0)
        table = table.filter(pc.invert(match))


def _evaluate(table: pa.Table, expr) -> pa.ChunkedArray:
    """The boolean value of a pyarrow compute expression on every row of ``table``."""
    import pyarrow.dataset as pads

    return pads.dataset(table).to_table(columns={"v": expr})["v"]


@lru_cache(maxsize=4)
def _feature_extractor(feature_size: int):
    from transformers import WhisperFeatureExtractor

    return WhisperFeatureExtractor(feature_size=feature_size)


def add_features(batch: dict[str, np.ndarray], feature_size: int) -> dict[str, np.ndarray]:
    """Decode ``audio`` and compute ``input_features`` ``(rows, n_mels, 3000)``.

    Rows whose audio does not decode are dropped with a warning; ``audio`` is
    dropped from the output (the features replace it).
    """
    audios, keep = [], []
    for i, (row_id, data) in enumerate(zip(batch["id"], batch["audio"], strict=True)):
        try:
            audios.append(decode_audio(bytes(data), max_duration_s=CHUNK_LENGTH_S))
            keep.append(i)
        except AudioDecodeError as exc:
            logger.warning("dropping row %s: %s", row_id, exc)
    out = {k: v[keep] for k, v in batch.items() if k != "audio"}
    if audios:
        out["input_features"] = log_mel(_feature_extractor(feature_size), audios)
    else:
        out["input_features"] = np.zeros((0, feature_size, N_FRAMES), dtype=np.float32)
    return out


def featurize(ds, feature_size: int, batch_size: int):
    """``ds`` with ``audio`` replaced by Whisper log-mel ``input_features``."""
    return ds.map_batches(
        add_features,
        fn_kwargs={"feature_size": feature_size},
        batch_size=batch_size,
        batch_format="numpy",
    )
