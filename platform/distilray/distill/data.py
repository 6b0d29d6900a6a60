"""Pseudo-labelled Parquet into training batches: filter, hold out, featurise, collate.

Rows come from ``distilray label`` (``id, audio, duration_s, text, pseudo_label,
pseudo_label_ids, wer, teacher, error``). Training keeps the rows the teacher
labelled without error and, when a reference exists, with a WER of at most λ
(the paper's filter); the filter is pushed into the Parquet scan. A stable hash of
the id holds rows out for evaluation. Audio is decoded and turned into log-mel in a
Ray Data map, so feature work runs beside the trainers. This module imports no
torch: Ray Data tasks that run its functions start faster without it.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from distilray.audio import decode_audio
from distilray.distill.config import DataSection
from distilray.errors import AudioDecodeError, DataError
from distilray.features import log_mel

logger = logging.getLogger(__name__)

TRAIN_COLUMNS = ["id", "audio", "pseudo_label_ids"]
FILTER_COLUMNS = ["id", "wer", "error", "duration_s"]
_HASH_RANGE = 2**32


@dataclass(frozen=True)
class DataSummary:
    """What the filter and the hold-out did (logged once, written into the model card)."""

    rows: int  # labelled rows read
    held_out: int  # rows set aside for evaluation (0 when data.eval is a separate set)
    candidates: int  # rows left for training before the filter
    kept: int  # training rows after the filter
    hours: float  # audio hours of the kept rows

    def describe(self, cfg: DataSection) -> str:
        rule = "error is null" + (
            f", wer <= {cfg.wer_threshold}" + (" or no reference" if cfg.keep_unscored else "")
            if cfg.wer_threshold is not None
            else ""
        )
        return (
            f"filter ({rule}) kept {self.kept} of {self.candidates} training rows "
            f"({self.hours:.2f} h); {self.held_out} of {self.rows} rows held out for eval"
        )


def keep_expr(wer_threshold: float | None, keep_unscored: bool):
    """The Ray Data expression of the training filter (pushed into the Parquet scan)."""
    from ray.data.expressions import col

    expr = col("error").is_null()
    if wer_threshold is None:
        return expr
    wer_ok = col("wer") <= wer_threshold
    if keep_unscored:
        wer_ok = wer_ok | col("wer").is_null()
    return expr & wer_ok


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


def train_dataset(cfg: DataSection):
    """Training rows: filtered by λ in the scan, minus the held-out ids."""
    columns = [*TRAIN_COLUMNS, "wer", "error"]
    ds = read_parquet(cfg.train, columns).select_columns(columns)
    ds = ds.filter(expr=keep_expr(cfg.wer_threshold, cfg.keep_unscored))
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

    uri = cfg.eval or cfg.train
    ref = cfg.eval_reference
    columns = ["id", "audio", ref]
    ds = read_parquet(uri, columns)
    if "error" in ds.schema().names:
        ds = ds.select_columns([*columns, "error"]).filter(expr=col("error").is_null())
    ds = ds.select_columns(columns).filter(expr=col(ref).is_not_null())
    if cfg.eval is None:
        ds = ds.map_batches(
            _select_split,
            batch_format="pyarrow",
            fn_kwargs={"held_out": True, "fraction": cfg.eval_fraction, "seed": cfg.split_seed},
        )
    ds = ds.rename_columns({ref: "reference"}).select_columns(["id", "audio", "reference"])
    return ds.limit(cfg.eval_max_rows) if cfg.eval_max_rows else ds


def summarize(cfg: DataSection) -> DataSummary:
    """Count rows before and after the filter (the same expression), reading only small columns.

    Runs in the driver with pyarrow: a scan of four narrow columns, no audio.
    """
    import pyarrow.dataset as pads

    from distilray.storage import filesystem_for

    fs, path = filesystem_for(cfg.train)
    try:
        dataset = pads.dataset(path, filesystem=fs, format="parquet")
    except (FileNotFoundError, OSError, ValueError) as exc:
        raise DataError(f"cannot read labelled Parquet {cfg.train}: {exc}") from None
    missing = [c for c in FILTER_COLUMNS if c not in dataset.schema.names]
    if missing:
        raise DataError(f"{cfg.train} lacks column(s) {', '.join(missing)}")
    keep = keep_expr(cfg.wer_threshold, cfg.keep_unscored).to_pyarrow()
    rows = held = kept = 0
    seconds = 0.0
    for batch in dataset.to_batches(columns=FILTER_COLUMNS):
        table = pa.Table.from_batches([batch])
        mask = held_out_mask(table["id"], 0.0 if cfg.eval else cfg.eval_fraction, cfg.split_seed)
        train_rows = table.filter(pa.array(~mask)).filter(keep)
        rows += table.num_rows
        held += int(mask.sum())
        kept += train_rows.num_rows
        seconds += float(pc.sum(train_rows["duration_s"]).as_py() or 0.0)
    return DataSummary(rows, held, rows - held, kept, seconds / 3600)


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
            audios.append(decode_audio(bytes(data), max_duration_s=30.0))
            keep.append(i)
        except AudioDecodeError as exc:
            logger.warning("dropping row %s: %s", row_id, exc)
    out = {k: v[keep] for k, v in batch.items() if k != "audio"}
    if audios:
        out["input_features"] = log_mel(_feature_extractor(feature_size), audios)
    else:
        out["input_features"] = np.zeros((0, feature_size, 3000), dtype=np.float32)
    return out


def featurize(ds, feature_size: int, batch_size: int):
    """``ds`` with ``audio`` replaced by Whisper log-mel ``input_features``."""
    return ds.map_batches(
        add_features,
        fn_kwargs={"feature_size": feature_size},
        batch_size=batch_size,
        batch_format="numpy",
    )
