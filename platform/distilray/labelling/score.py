"""Last step per batch: WER against the reference, and the output schema."""

from __future__ import annotations

import pyarrow as pa

from distilray.labelling.schema import OUTPUT_COLUMNS, OUTPUT_SCHEMA, audio_struct
from distilray.text import wer


def finish_batch(batch: pa.Table, *, teacher: str) -> pa.Table:
    """Add ``wer`` (null without reference or label) and ``teacher``, store the WAV as
    the ``datasets`` Audio struct; cast to the schema."""
    texts = batch["text"].to_pylist()
    labels = batch["pseudo_label"].to_pylist()
    scores = [
        None if hyp is None else wer(ref, hyp) for ref, hyp in zip(texts, labels, strict=True)
    ]
    audio = audio_struct(batch["id"], batch["audio"])
    out = batch.set_column(batch.schema.get_field_index("audio"), "audio", audio)
    out = out.append_column("wer", pa.array(scores, pa.float64()))
    out = out.append_column("teacher", pa.array([teacher] * out.num_rows, pa.string()))
    return out.select(OUTPUT_COLUMNS).cast(OUTPUT_SCHEMA)
