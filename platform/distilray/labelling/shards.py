"""The output folder: labelled shards from every run, and what they already hold.

Each run writes into its own ``run-<UTC time>-<random>`` subfolder with Ray's
unique file names, so runs never overwrite each other. A writer killed mid-file
leaves a Parquet file without its footer (on S3 an unfinished multipart upload
leaves nothing at all); :func:`scan_output` renames such files to ``*.partial``,
which no Parquet reader picks up, and their rows are labelled again. Only one run
may write to an output folder at a time.
"""

from __future__ import annotations

import json
import logging
import re
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from distilray.errors import DataError
from distilray.labelling.schema import OUTPUT_SCHEMA, STATE_COLUMNS
from distilray.storage import filesystem_for, is_s3, read_bytes, write_bytes

logger = logging.getLogger(__name__)

MANIFEST_NAME = "_manifest.json"
PARTIAL_SUFFIX = ".partial"
_STATE_SCHEMA = pa.schema([OUTPUT_SCHEMA.field(name) for name in STATE_COLUMNS])


@dataclass
class OutputState:
    """What the output folder holds: the small columns of every complete shard."""

    table: pa.Table  # STATE_COLUMNS of every row written so far
    shards: list[str] = field(default_factory=list)  # complete shard URIs
    partial: list[str] = field(default_factory=list)  # broken files set aside this scan
    tables: list[pa.Table] = field(default_factory=list)  # per shard, parallel to `shards`

    def done_ids(self, retry: RetryErrors = False) -> pa.Array:
        """Every input id already labelled (packed rows count for each part), less the
        ids of errored rows that ``retry`` says to label again."""
        done = pc.list_flatten(self.table["source_ids"]).combine_chunks()
        again = self.retry_ids(retry)
        return done.filter(pc.invert(pc.is_in(done, value_set=again))) if len(again) else done

    def retry_ids(self, retry: RetryErrors) -> pa.Array:
        """Input ids of errored rows to label again: transient errors (``True``), any (``"all"``)."""
        if not retry or not self.table.num_rows:
            return pa.array([], pa.string())
        errors = self.table["error"].to_pylist()
        again = [e is not None and (retry == "all" or is_transient(e)) for e in errors]
        rows = self.table.filter(pa.array(again, pa.bool_()))
        return pc.list_flatten(rows["source_ids"]).combine_chunks()

    def teachers(self) -> list[str]:
        return pc.unique(self.table["teacher"]).to_pylist() if self.table.num_rows else []


RetryErrors = bool | Literal["all"]  # LabelConfig.retry_errors

# Errors worth a second try: the input could not be *read* (a missing file may appear,
# an S3 hiccup passes), or something unexpected failed. Audio that was read but does
# not decode, or is too long, fails the same way every time. The messages are those of
# distilray.audio / distilray.storage (via labelling.prepare.decode_row) and teacher.py.
TRANSIENT_PREFIXES = (
    "cannot open audio file ",  # a local file missing, unreadable, I/O error
    "cannot read ",  # storage.read_bytes: an s3:// object missing or unreachable
    "teacher failed: ",  # e.g. out of memory on the teacher's device
)
_UNEXPECTED = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception): ")  # decode_row's catch-all


def is_transient(error: str) -> bool:
    """Whether a row's ``error`` may go away when the row is labelled again.

    >>> is_transient("cannot open audio file /a.wav: No such file or directory")
    True
    >>> is_transient("cannot decode audio from /a.wav: InvalidDataError: Invalid data")
    False
    """
    return error.startswith(TRANSIENT_PREFIXES) or bool(_UNEXPECTED.match(error))


def _uri(root: str, path: str) -> str:
    return f"s3://{path}" if is_s3(root) else path


def list_shards(output: str) -> list[str]:
    """Parquet files below ``output`` (hidden ``_``/``.`` entries skipped), sorted."""
    fs, root = filesystem_for(output)
    selector = pafs.FileSelector(root, recursive=True, allow_not_found=True)
    files = []
    for info in fs.get_file_info(selector):
        relative = info.path[len(root) :].lstrip("/")
        hidden = any(part.startswith(("_", ".")) for part in relative.split("/"))
        if info.type == pafs.FileType.File and info.path.endswith(".parquet") and not hidden:
            files.append(_uri(output, info.path))
    return sorted(files)


def _read_state(uri: str) -> pa.Table | None:
    """A shard's state columns, or None when the file is not a complete Parquet file."""
    fs, path = filesystem_for(uri)
    try:
        return pq.read_table(path, filesystem=fs, columns=STATE_COLUMNS).cast(_STATE_SCHEMA)
    except pa.ArrowInvalid as exc:
        logger.warning("setting aside unreadable shard %s (%s)", uri, exc)
        return None
    except (pa.ArrowException, KeyError, OSError) as exc:
        raise DataError(
            f"{uri} is not a labelled shard ({exc}): is output the right folder?"
        ) from None


def scan_output(output: str) -> OutputState:
    """Read what every shard holds; set aside files a killed writer left unfinished."""
    shards = list_shards(output)
    with ThreadPoolExecutor(max_workers=8) as pool:  # S3 reads are latency-bound
        tables = list(pool.map(_read_state, shards))
    partial = [uri for uri, table in zip(shards, tables, strict=True) if table is None]
    for uri in partial:
        fs, path = filesystem_for(uri)
        fs.move(path, path + PARTIAL_SUFFIX)
    good = [t for t in tables if t is not None]
    table = pa.concat_tables(good) if good else _STATE_SCHEMA.empty_table()
    complete = [uri for uri, t in zip(shards, tables, strict=True) if t is not None]
    return OutputState(table, complete, partial, good)


def superseded_rows(state: OutputState) -> dict[str, np.ndarray]:
    """Per shard URI, a mask of its errored rows that a later run labelled again.

    Runs sort by their folder name (start time); a row is superseded when any of its
    input ids is in a shard of a later run. Only errored rows are ever dropped.
    """
    later = pa.array([], pa.string())
    out: dict[str, np.ndarray] = {}
    runs = sorted({_run_of(uri) for uri in state.shards}, reverse=True)
    for run in runs:
        members = [
            (u, t) for u, t in zip(state.shards, state.tables, strict=True) if _run_of(u) == run
        ]
        for uri, table in members:
            mask = _rows_with_ids(table, later) & table["error"].is_valid().to_numpy(
                zero_copy_only=False
            )
            if mask.any():
                out[uri] = mask
        ids = [pc.list_flatten(t["source_ids"]) for _, t in members]
        later = pa.concat_arrays([later, *(i.combine_chunks() for i in ids)])
    return out


def _run_of(uri: str) -> str:
    return uri.rsplit("/", 1)[0]


def _rows_with_ids(table: pa.Table, ids: pa.Array) -> np.ndarray:
    """Mask of the rows with any ``source_ids`` entry in ``ids``."""
    mask = np.zeros(table.num_rows, bool)
    if not len(ids) or not table.num_rows:
        return mask
    lists = table["source_ids"].combine_chunks()
    hit = pc.is_in(pc.list_flatten(lists), value_set=ids).to_numpy(zero_copy_only=False)
    mask[pc.list_parent_indices(lists).to_numpy()[hit]] = True
    return mask


def prune_superseded(state: OutputState) -> int:
    """Rewrite shards without their superseded rows (see :func:`superseded_rows`).

    Called after a run with ``retry_errors`` wrote its new rows, and again at the start
    of the next run in case a crash came in between; returns the rows dropped.
    """
    dropped = 0
    for uri, mask in superseded_rows(state).items():
        rewrite_without(uri, mask)
        dropped += int(mask.sum())
    if dropped:
        logger.info("dropped %d errored rows that were labelled again", dropped)
    return dropped


def rewrite_without(uri: str, drop: np.ndarray) -> None:
    """Rewrite the shard ``uri`` without the rows in ``drop``, streaming row groups.

    The new file is written under a hidden name and moved over the old one, so a crash
    leaves either the old shard or the new one; an emptied shard is deleted.
    """
    fs, path = filesystem_for(uri)
    if drop.all():
        fs.delete_file(path)
        return
    folder, name = path.rsplit("/", 1)
    temp = f"{folder}/.{name}.rewrite"
    source = pq.ParquetFile(path, filesystem=fs)
    with pq.ParquetWriter(temp, source.schema_arrow, filesystem=fs) as writer:
        start = 0
        for batch in source.iter_batches():
            keep = ~drop[start : start + batch.num_rows]
            start += batch.num_rows
            if keep.any():
                writer.write_table(pa.Table.from_batches([batch]).filter(pa.array(keep)))
    fs.move(temp, path)


def new_run_dir(output: str) -> str:
    """A fresh subfolder URI for this run's shards (sortable by start time)."""
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    return f"{output.rstrip('/')}/run-{stamp}-{secrets.token_hex(3)}"


def read_manifest(output: str) -> dict | None:
    """The output's ``_manifest.json``, if there is one."""
    uri = f"{output.rstrip('/')}/{MANIFEST_NAME}"
    fs, path = filesystem_for(uri)
    if fs.get_file_info(path).type == pafs.FileType.NotFound:
        return None
    try:
        return json.loads(read_bytes(uri))
    except json.JSONDecodeError as exc:  # a crash while writing it: the shards are the truth
        logger.warning("ignoring unreadable %s (%s); it will be rewritten", uri, exc)
        return None


def write_manifest(output: str, data: dict) -> str:
    """Write ``_manifest.json`` into ``output``; returns its URI."""
    uri = f"{output.rstrip('/')}/{MANIFEST_NAME}"
    write_bytes(uri, (json.dumps(data, indent=2, default=str) + "\n").encode())
    return uri
