"""Last step per batch: WER against the reference, and the output schema."""

from __future__ import annotations

import pyarrow as pa

from distilray.labelling.schema import OUTPUT_COLUMNS, OUTPUT_SCHEMA
from distilray.text import wer


def finish_batch(batch: pa.Table, *, teacher: str) -> pa.Table:
    """Add ``wer`` (null without reference or label) and ``teacher``; cast to the schema."""
    texts = batch["text"].to_pylist()
    labels = batch["pseudo_label"].to_pylist()
    scores = [
        None if hyp is None else wer(ref, hyp) for ref, hyp in zip(texts, labels, strict=True)
    ]
    out = batch.append_column("wer", pa.array(scores, pa.float64()))
    out = out.append_column("teacher", pa.array([teacher] * out.num_rows, pa.string()))
    return out.select(OUTPUT_COLUMNS).cast(OUTPUT_SCHEMA)
