"""Input manifests as a Ray dataset in the manifest schema, and the input ids on the driver.

Parquet manifests are read with ``ray.data.read_parquet`` (split by row group, so a
large manifest with embedded audio streams) and normalised per block; JSONL
manifests, small text files, go through the manifest module's own reader, one file
per task, so every stage parses them the same way; a folder of audio files is
listed on the driver. Filesystems are always passed explicitly.
"""

from __future__ import annotations

import logging
import posixpath

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from distilray.data.manifest import (
    DEFAULT_COLUMNS,
    ManifestColumns,
    check_unique_ids,
    derived_ids,
    folder_table,
    manifest_files,
    normalize_manifest_table,
    read_manifest_file,
)
from distilray.errors import DataError
from distilray.storage import filesystem_for, is_s3

logger = logging.getLogger(__name__)

PATH_COLUMN = "path"  # added by read_parquet(include_paths=True)


def input_ids(uri: str, columns: ManifestColumns = DEFAULT_COLUMNS) -> pa.Array:
    """Every input id, in manifest file order, checked for duplicates (driver side).

    Reads only the id column of Parquet manifests (or, without one, the audio
    paths the ids derive from); resume and ``limit`` are decided on these ids
    before any audio is read.
    """
    fmt, files = manifest_files(uri)
    if fmt == "folder":
        ids = folder_table(uri)["id"]
    elif fmt == "parquet":
        ids = pa.chunked_array([_parquet_ids(f, columns) for f in files], pa.string())
    else:
        ids = [read_manifest_file(f, fmt, columns)["id"] for f in files]
        ids = pa.chunked_array(ids, pa.string())
    table = pa.table({"id": ids.combine_chunks()})
    check_unique_ids(table, uri)
    return table["id"].combine_chunks()


def _parquet_ids(uri: str, columns: ManifestColumns) -> pa.Array:
    fs, path = filesystem_for(uri)
    try:
        schema = pq.read_schema(path, filesystem=fs)
        chosen = columns.select(schema.names, uri)
        if "id" not in chosen:
            return _parquet_derived_ids(uri, schema.field(chosen["audio"]))
        column = pq.read_table(path, filesystem=fs, columns=[chosen["id"]])[chosen["id"]]
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read Parquet manifest {uri}: {exc}") from None
    try:
        return pc.cast(column, pa.string()).combine_chunks()
    except pa.ArrowException:
        raise DataError(f"{uri}: id must be a string or number, got {column.type}") from None


def _parquet_derived_ids(uri: str, audio: pa.Field) -> pa.Array:
    """The hashed ids of a Parquet manifest without ids: from the audio paths alone
    when every row has one (no audio bytes are read), else from the whole column."""
    fs, path = filesystem_for(uri)
    if pa.types.is_struct(audio.type) and audio.type.get_field_index("path") >= 0:
        paths = pq.read_table(path, filesystem=fs, columns=[f"{audio.name}.path"]).column(0)
        if not paths.null_count and not pc.any(pc.equal(paths, "")).as_py():
            return derived_ids(paths, uri)
    return derived_ids(pq.read_table(path, filesystem=fs, columns=[audio.name])[0], uri)


def read_inputs(uri: str, columns: ManifestColumns = DEFAULT_COLUMNS):
    """The manifest at ``uri`` as a Ray dataset of ``id, audio_bytes, audio_path, text``."""
    import ray.data

    fmt, files = manifest_files(uri)
    if fmt == "folder":
        return ray.data.from_arrow(folder_table(uri))
    if fmt == "jsonl":
        return ray.data.from_items([{"file": f} for f in files]).map_batches(
            _read_jsonl_files, fn_kwargs={"columns": columns}, batch_size=1, batch_format="pyarrow"
        )
    fs, _ = filesystem_for(uri)
    paths = [filesystem_for(f)[1] for f in files]
    names = pq.read_schema(paths[0], filesystem=fs).names
    chosen = list(dict.fromkeys(columns.select(names, files[0]).values()))
    ds = ray.data.read_parquet(paths, filesystem=fs, include_paths=True)
    return ds.select_columns([*chosen, PATH_COLUMN]).map_batches(
        _normalize_parquet_block,
        fn_kwargs={"s3": is_s3(uri), "columns": columns},
        batch_format="pyarrow",
    )


def _read_jsonl_files(batch: pa.Table, columns: ManifestColumns) -> pa.Table:
    files = batch["file"].to_pylist()
    return pa.concat_tables([read_manifest_file(f, "jsonl", columns) for f in files])


def _normalize_parquet_block(batch: pa.Table, s3: bool, columns: ManifestColumns) -> pa.Table:
    """Normalise rows per source file: relative audio paths resolve against its folder."""
    parts = []
    for path in pc.unique(batch[PATH_COLUMN]).to_pylist():
        rows = batch.filter(pc.equal(batch[PATH_COLUMN], path)).drop_columns([PATH_COLUMN])
        source = f"s3://{path}" if s3 else path
        parts.append(
            normalize_manifest_table(
                rows, posixpath.dirname(source), source=source, columns=columns
            )
        )
    return pa.concat_tables(parts)


def keep_rows(batch: pa.Table, skip: pa.Array | None, only: pa.Array | None) -> pa.Table:
    """Rows whose id is not in ``skip`` (already labelled) and, if given, is in ``only``."""
    mask = pa.array([True] * batch.num_rows)
    if skip is not None and len(skip):
        mask = pc.invert(pc.is_in(batch["id"], value_set=skip))
    if only is not None:
        mask = pc.and_(mask, pc.is_in(batch["id"], value_set=only))
    return batch.filter(mask)
