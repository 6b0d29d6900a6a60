"""Input manifests: which audio to transcribe or train on, and its reference text.

Four layouts are accepted, local or on ``s3://``:

* **Parquet** files with an audio column, optionally a transcript and an id, where
  the audio is a path/URI string or a ``{bytes, path}`` struct as Hugging Face
  ``datasets`` writes it;
* **JSONL** files with the same fields (the audio a path/URI string);
* a **folder of audio files**, each with an optional same-stem ``.txt`` reference
  or a line in a LibriSpeech ``*.trans.txt`` or CMU Sphinx ``*.transcription`` list
  (:mod:`distilray.data.reference_lists`);
* a **Kaldi data directory** (``wav.scp`` and ``text``; :mod:`distilray.data.kaldi`).

The columns are ``audio``, ``text`` and ``id`` unless :class:`ManifestColumns` maps
them to others (Common Voice: ``path``/``sentence``); a manifest without ids gets
them from a stable hash of each row's audio path, or of its bytes when it has no path.
Every layout is normalised to one schema, :data:`MANIFEST_SCHEMA`; relative paths
are resolved against the folder of the manifest file that names them.
"""

from __future__ import annotations

import json
import os
import posixpath
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from distilray.data.kaldi import WAV_SCP, is_kaldi_scp, kaldi_table
from distilray.data.reference_lists import ReferenceLists, is_reference_list
from distilray.errors import DataError
from distilray.hashing import stable_id
from distilray.storage import filesystem_for, is_s3, list_files, read_text

MANIFEST_SCHEMA = pa.schema(
    [
        pa.field("id", pa.string(), nullable=False),
        pa.field("audio_bytes", pa.binary()),  # encoded audio, when the manifest embeds it
        pa.field("audio_path", pa.string()),  # absolute local path or s3:// URI otherwise
        pa.field("text", pa.string()),  # reference transcript; null when unknown
    ]
)
AUDIO_EXTENSIONS = (
    *(".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a", ".webm", ".aif", ".aiff", ".sph"),
    *(".raw", ".pcm"),  # headerless 16 kHz 16-bit mono PCM (distilray.audio)
)
FILE_FORMATS = {".parquet": "parquet", ".pq": "parquet", ".jsonl": "jsonl", ".json": "jsonl"}
AUDIO_KINDS = "a path/URI string, or a {bytes, path} struct"


@dataclass(frozen=True)
class ManifestColumns:
    """Which columns of a manifest file hold each row's audio, transcript and id."""

    audio: str = "audio"  # a path/URI string or a {bytes, path} struct
    text: str | None = None  # the reference transcript; None: `text` if there is one
    id: str | None = None  # None: `id` if there is one, else a hash of the audio

    def select(self, names: list[str], source: str) -> dict[str, str]:
        """``{manifest field: column}`` for a file with columns ``names``.

        A column named in the mapping must exist; ``text`` and ``id`` are optional
        only while they keep their default names.

        >>> ManifestColumns(text="sentence").select(["path", "audio", "sentence"], "cv")
        {'audio': 'audio', 'text': 'sentence'}
        """
        chosen = {"audio": self.audio}
        for field, column in (("text", self.text), ("id", self.id)):
            if column is not None or field in names:
                chosen[field] = column or field
        for field, column in chosen.items():
            if column not in names:
                raise DataError(
                    f"{source}: no column {column!r} for the {field} "
                    f"(set {field}_column to one of the columns it has: {', '.join(names)})"
                )
        return chosen

    def apply(self, table: pa.Table, source: str) -> pa.Table:
        """``table``'s mapped columns, renamed to ``audio``, ``text`` and ``id``."""
        chosen = self.select(table.column_names, source)
        return pa.table({field: table[column] for field, column in chosen.items()})


DEFAULT_COLUMNS = ManifestColumns()  # audio, text and id under those names


def manifest_files(uri: str | os.PathLike) -> tuple[str, list[str]]:
    """The manifest's format (``parquet``, ``jsonl`` or ``folder``) and its files.

    A single file is recognised by its extension; a folder/prefix is a Parquet
    manifest if it holds ``*.parquet`` files, else JSONL if it holds ``*.jsonl``,
    else a folder of audio files (whose audio files are returned).
    """
    fs, path = filesystem_for(uri)
    info = fs.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise DataError(f"manifest {uri} does not exist")
    scp = kaldi_scp(uri)
    if scp is not None:
        return "folder", [scp]
    if info.type == pafs.FileType.File:
        return _format_of(str(uri)), [_uri(uri, path)]
    files = [f for f in list_files(uri) if not _hidden(f, path)]
    for fmt, extensions in (("parquet", (".parquet", ".pq")), ("jsonl", (".jsonl",))):
        found = [f for f in files if f.lower().endswith(extensions)]
        if found:
            return fmt, found
    audio = [f for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
    if audio:
        return "folder", audio
    raise DataError(
        f"{uri} holds no *.parquet, *.jsonl or audio files "
        f"({', '.join(AUDIO_EXTENSIONS)}): nothing to read"
    )


def _format_of(uri: str) -> str:
    extension = posixpath.splitext(uri.lower())[1]
    if extension not in FILE_FORMATS:
        raise DataError(
            f"{uri}: unknown manifest type {extension or '(no extension)'!r}; "
            "use .parquet, .jsonl or a folder of audio files"
        )
    return FILE_FORMATS[extension]


def _uri(uri: str | os.PathLike, path: str) -> str:
    return f"s3://{path}" if is_s3(uri) else path


def _hidden(file: str, root: str) -> bool:
    """Bookkeeping files (``_SUCCESS``, ``.crc``, ``.cache``) below the manifest root."""
    relative = file.split(root, 1)[-1]
    return any(part.startswith((".", "_")) for part in relative.split("/") if part)


def read_manifest(uri: str | os.PathLike, columns: ManifestColumns = DEFAULT_COLUMNS) -> pa.Table:
    """The whole manifest as one normalised table (for small or local manifests)."""
    fmt, files = manifest_files(uri)
    if fmt == "folder":
        return folder_table(uri)
    table = pa.concat_tables([read_manifest_file(f, fmt, columns) for f in files])
    check_unique_ids(table, str(uri))
    return table


def read_manifest_file(uri: str, fmt: str, columns: ManifestColumns = DEFAULT_COLUMNS) -> pa.Table:
    """One Parquet or JSONL manifest file, normalised (paths resolved against its folder)."""
    # Both readers return the mapped columns under their manifest names already.
    raw = _read_parquet(uri, columns) if fmt == "parquet" else _read_jsonl(uri, columns)
    return normalize_manifest_table(raw, _parent(uri), source=uri)


def _parent(uri: str) -> str:
    return uri.rsplit("/", 1)[0] if "/" in uri else "."


def _read_parquet(uri: str, columns: ManifestColumns) -> pa.Table:
    fs, path = filesystem_for(uri)
    try:
        names = pq.read_schema(path, filesystem=fs).names
        chosen = columns.select(names, uri)
        table = pq.read_table(path, filesystem=fs, columns=list(dict.fromkeys(chosen.values())))
    except (pa.ArrowException, OSError) as exc:
        raise DataError(f"cannot read Parquet manifest {uri}: {exc}") from None
    return columns.apply(table, uri)


def _read_jsonl(uri: str, columns: ManifestColumns) -> pa.Table:
    records = []
    lines = read_text(uri, "JSONL manifest ").splitlines()
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise DataError(f"{uri} line {number}: invalid JSON ({exc.msg})") from None
        if not isinstance(record, dict):
            raise DataError(f"{uri} line {number}: expected a JSON object, got {line[:60]!r}")
        records.append(record)
    return _records_table(records, uri, columns)


def _records_table(records: list[dict], uri: str, columns: ManifestColumns) -> pa.Table:
    names = list(dict.fromkeys(k for r in records for k in r))
    chosen = columns.select(names, uri)
    values = {
        field: [_scalar_text(r.get(key)) for r in records]
        for field, key in chosen.items()
        if field != "audio"
    }
    values["audio"] = [_json_audio(r.get(chosen["audio"]), uri) for r in records]
    return pa.table({name: pa.array(column, pa.string()) for name, column in values.items()})


def _scalar_text(value) -> str | None:
    return None if value is None else str(value)


def _json_audio(value, uri: str) -> str | None:
    """A JSONL ``audio`` value: a path string, or a ``{"path": ...}`` object."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, dict) and value.get("bytes") is None:
        return value.get("path")
    raise DataError(
        f"{uri}: audio must be a path/URI string in JSONL (embed bytes with Parquet), "
        f"got {str(value)[:60]!r}"
    )


def normalize_manifest_table(
    table: pa.Table,
    base_dir: str,
    *,
    source: str | None = None,
    columns: ManifestColumns = DEFAULT_COLUMNS,
) -> pa.Table:
    """Convert a raw manifest table to :data:`MANIFEST_SCHEMA`.

    ``columns`` says which columns hold the audio, text and id (a table that
    already has them renamed passes through the default mapping). ``id`` values are
    cast to strings, or derived from the audio (:func:`derived_ids`); relative audio
    paths are resolved against ``base_dir`` (a local folder or ``s3://`` prefix);
    rows with embedded bytes get ``audio_path`` null. ``source`` names the file in
    error messages.
    """
    source = source or base_dir
    table = columns.apply(table, source)
    data, paths = _audio_values(table["audio"], source)
    if "id" in table.column_names:
        ids = _id_column(table["id"], source)
    else:
        ids = _hashed_ids(data, paths, source)
    resolved = [
        None if d is not None else resolve_audio_path(p, base_dir, source)
        for p, d in zip(paths, data, strict=True)
    ]
    audio_bytes, audio_path = pa.array(data, pa.binary()), pa.array(resolved, pa.string())
    text = _text_column(table, source)
    out = pa.Table.from_arrays([ids, audio_bytes, audio_path, text], schema=MANIFEST_SCHEMA)
    check_unique_ids(out, source)
    return out


def derived_ids(audio: pa.ChunkedArray | pa.Array, source: str = "manifest") -> pa.Array:
    """Ids for rows that have none: a hash of each audio path as the manifest writes it
    (so the same on every machine), or of the audio bytes for rows without a path."""
    return _hashed_ids(*_audio_values(audio, source), source)


def _hashed_ids(data: list[bytes | None], paths: list[str | None], source: str) -> pa.Array:
    keys = [p or d for p, d in zip(paths, data, strict=True)]
    if not all(keys):
        row = next(i for i, k in enumerate(keys) if not k)
        raise DataError(f"{source}: row {row} has no audio (neither a path nor bytes)")
    return pa.array([stable_id(k) for k in keys], pa.string())


def _id_column(column: pa.ChunkedArray, source: str) -> pa.Array:
    try:
        ids = pc.cast(column, pa.string()).combine_chunks()
    except pa.ArrowException:
        raise DataError(f"{source}: id must be a string or number, got {column.type}") from None
    if ids.null_count or pc.any(pc.equal(ids, "")).as_py():
        raise DataError(f"{source}: every row needs a non-empty id")
    return ids


def _audio_values(
    column: pa.ChunkedArray | pa.Array, source: str
) -> tuple[list[bytes | None], list[str | None]]:
    """Each row's embedded bytes and its path as written (a row with bytes keeps its
    path here, for its derived id; it is not read from)."""
    kind = column.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_null(kind):
        return [None] * len(column), column.to_pylist()
    if pa.types.is_binary(kind) or pa.types.is_large_binary(kind):
        return column.to_pylist(), [None] * len(column)
    if pa.types.is_struct(kind) and {"bytes", "path"} & {f.name for f in kind}:
        rows = [r or {} for r in column.to_pylist()]
        return [r.get("bytes") for r in rows], [r.get("path") for r in rows]
    raise DataError(f"{source}: the audio column has type {kind}; expected {AUDIO_KINDS}")


def resolve_audio_path(path: str | None, base_dir: str, source: str = "manifest") -> str | None:
    """An absolute local path or ``s3://`` URI for a manifest's audio reference."""
    if not path:
        return None
    if is_s3(path):
        return path
    path = path.removeprefix("file://")
    if "://" in path:
        raise DataError(f"{source}: unsupported audio location {path!r}; use local paths or s3://")
    if is_s3(base_dir):
        joined = posixpath.join(base_dir.removeprefix("s3://"), path)
        return "s3://" + posixpath.normpath(joined)
    base = os.path.abspath(os.path.expanduser(base_dir.removeprefix("file://")))
    return os.path.normpath(os.path.join(base, os.path.expanduser(path)))


def _text_column(table: pa.Table, source: str) -> pa.Array:
    if "text" not in table.column_names:
        return pa.nulls(table.num_rows, pa.string())
    try:
        return pc.cast(table["text"], pa.string()).combine_chunks()
    except pa.ArrowException:
        raise DataError(f"{source}: text must be a string, got {table['text'].type}") from None


def check_unique_ids(table: pa.Table, source: str) -> None:
    """Raise :class:`DataError` listing a few ids that occur more than once."""
    counts = pc.value_counts(table["id"])
    repeated = pc.greater(counts.field("counts"), 1)
    duplicates = pc.filter(counts.field("values"), repeated).to_pylist()
    if duplicates:
        shown = ", ".join(repr(d) for d in duplicates[:5])
        more = f" and {len(duplicates) - 5} more" if len(duplicates) > 5 else ""
        raise DataError(f"{source}: {len(duplicates)} duplicate ids: {shown}{more}")


def kaldi_scp(uri: str | os.PathLike) -> str | None:
    """The ``wav.scp`` of a Kaldi data directory named by ``uri`` (the folder or the
    file itself), or None."""
    fs, path = filesystem_for(uri)
    if is_kaldi_scp(path):
        return _uri(uri, path)
    candidate = posixpath.join(path, WAV_SCP)
    if fs.get_file_info(candidate).type == pafs.FileType.File:
        return _uri(uri, candidate)
    return None


def folder_table(uri: str | os.PathLike) -> pa.Table:
    """A folder of audio files as a manifest: ids are relative stem paths (``spk1/utt3``);
    a Kaldi data directory: its ``wav.scp`` ids (:mod:`distilray.data.kaldi`)."""
    scp = kaldi_scp(uri)
    if scp is not None:
        table = kaldi_table(scp)
        return pa.Table.from_arrays(
            [
                table["id"],
                pa.nulls(table.num_rows, pa.binary()),
                table["audio_path"],
                table["text"],
            ],
            schema=MANIFEST_SCHEMA,
        )
    _, root = filesystem_for(uri)
    prefix = _uri(uri, root)
    files = [f for f in list_files(uri) if not _hidden(f, root)]
    audio = [f for f in files if f.lower().endswith(AUDIO_EXTENSIONS)]
    if not audio:
        raise DataError(f"{uri} holds no audio files ({', '.join(AUDIO_EXTENSIONS)})")
    lists = {f for f in files if is_reference_list(f)}
    references = {
        posixpath.splitext(f)[0]: f for f in files if f.endswith(".txt") and f not in lists
    }
    stems = [posixpath.splitext(f)[0] for f in audio]
    with ThreadPoolExecutor(max_workers=8) as pool:  # S3 reads are latency-bound
        texts = list(pool.map(lambda stem: _reference(references.get(stem)), stems))
        listed = ReferenceLists(
            {f: text for f, text in zip(lists, pool.map(read_text, lists), strict=True)}
        )
    if len(listed):
        texts = [
            text if text is not None else listed.reference(f)
            for text, f in zip(texts, audio, strict=True)
        ]
    ids = [stem[len(prefix) :].lstrip("/") for stem in stems]
    table = pa.Table.from_arrays(
        [
            pa.array(ids),
            pa.nulls(len(ids), pa.binary()),
            pa.array(audio),
            pa.array(texts, pa.string()),
        ],
        schema=MANIFEST_SCHEMA,
    )
    check_unique_ids(table, str(uri))
    return table


def _reference(uri: str | None) -> str | None:
    return None if uri is None else read_text(uri, "reference ").strip()
