"""The run's metrics, one JSON line per report, next to its checkpoints.

Ray Train keeps the metrics of retained checkpoints only; this file keeps every
report of every attempt, so a training curve survives checkpoint deletion and
resumes. Rank 0 rewrites it whole (S3 has no append); it stays small.
"""

from __future__ import annotations

import json

from distilray import storage
from distilray.errors import DataError

HISTORY_FILE = "history.jsonl"


def history_uri(run_storage: str, run_name: str) -> str:
    return f"{run_storage.rstrip('/')}/{run_name}/{HISTORY_FILE}"


def read_history(uri: str) -> list[dict]:
    """All reports so far (empty before the first)."""
    try:
        text = storage.read_bytes(uri).decode()
    except DataError:
        return []
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def append_history(uri: str, metrics: dict) -> None:
    """Add one report (non-finite floats become null)."""
    rows = read_history(uri) + [{k: _plain(v) for k, v in metrics.items()}]
    storage.write_bytes(uri, "".join(json.dumps(r) + "\n" for r in rows).encode())


def _plain(value):
    if isinstance(value, float) and value != value:  # nan: JSON has no NaN
        return None
    return value
