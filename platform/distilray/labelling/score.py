"""Last step per batch: WER against the reference, the output schema, progress counts."""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from distilray.labelling.schema import OUTPUT_COLUMNS, OUTPUT_SCHEMA
from distilray.text import wer


def finish_batch(batch: pa.Table, *, teacher: str, progress=None) -> pa.Table:
    """Add ``wer`` (null without reference or label) and ``teacher``; cast to the schema.

    ``progress`` is an optional :class:`~distilray.labelling.progress.ProgressCounter`
    actor handle told what this batch added.
    """
    texts = batch["text"].to_pylist()
    labels = batch["pseudo_label"].to_pylist()
    scores = [
        None if hyp is None else wer(ref, hyp) for ref, hyp in zip(texts, labels, strict=True)
    ]
    out = batch.append_column("wer", pa.array(scores, pa.float64()))
    out = out.append_column("teacher", pa.array([teacher] * out.num_rows, pa.string()))
    out = out.select(OUTPUT_COLUMNS).cast(OUTPUT_SCHEMA)
    if progress is not None and out.num_rows:
        progress.add.remote(**batch_counts(out))
    return out


def batch_counts(table: pa.Table) -> dict:
    """Rows, input clips, audio seconds and errors in a labelled table."""
    seconds = pc.sum(table["duration_s"]).as_py() or 0.0
    return {
        "rows": table.num_rows,
        "inputs": pc.sum(pc.list_value_length(table["source_ids"])).as_py() or 0,
        "audio_s": float(seconds),
        "errors": table.num_rows - pc.count(table["error"], mode="only_null").as_py(),
    }
