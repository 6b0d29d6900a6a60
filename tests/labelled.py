"""Labelled rows as ``distilray label`` writes them, made from the synthetic clips
without running a teacher: the pseudo-label is the tokenised reference (WER 0)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def labelled_table(manifest: Path, tokenizer, copies: int) -> pa.Table:
    """Each clip of ``manifest`` ``copies`` times, under distinct ids (``<id>-<copy>``)."""
    rows = [json.loads(line) for line in Path(manifest).read_text().splitlines()]
    records = [
        {
            "id": f"{row['id']}-{copy}",
            "audio": (Path(manifest).parent / row["audio"]).read_bytes(),
            "duration_s": 2.0,
            "text": row["text"],
            "pseudo_label": row["text"],
            "pseudo_label_ids": tokenizer(row["text"]).input_ids,
            "wer": 0.0,
            "teacher": "tiny-random",
            "error": None,
        }
        for copy in range(copies)
        for row in rows
    ]
    return pa.Table.from_pylist(records)


def parquet_bytes(table: pa.Table) -> bytes:
    buf = io.BytesIO()
    pq.write_table(table, buf)
    return buf.getvalue()
