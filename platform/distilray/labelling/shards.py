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
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

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

    def done_ids(self) -> pa.Array:
        """Every input id already labelled (packed rows count for each part)."""
        return pc.list_flatten(self.table["source_ids"]).combine_chunks()

    def teachers(self) -> list[str]:
        return pc.unique(self.table["teacher"]).to_pylist() if self.table.num_rows else []


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
    return OutputState(table, complete, partial)


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
