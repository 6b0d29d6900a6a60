"""Read the ScummVM "QTBL" resource archive of Flight of the Amazon Queen (``queen.1c``).

The layout follows ScummVM's ``engines/queen/resource.cpp`` (``detectVersion`` and
``readTableEntries``), all integers big-endian::

    header   "QTBL"  version (6 bytes, e.g. "CEM10\\0")  2 bytes skipped
             compression (1 byte: 1 = MP3)  entry count (uint16)         = 15 bytes
    entries  name (12 bytes, NUL padded)  bundle (uint8)
             offset (uint32, from the start of the file)  size (uint32)  = 21 bytes each

Speech entries are named ``*.SB`` and, in the compressed release Debian ships, each
is a bare MP3 stream that :func:`distilray.audio.decode_audio` reads as it is.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

from distilray.errors import DataError

MAGIC = b"QTBL"
HEADER = struct.Struct(">4s6s2xBH")  # magic, version, (skip 2), compression, entry count
ENTRY = struct.Struct(">12sBII")  # name, bundle, offset, size
COMPRESSION_MP3 = 1


@dataclass(frozen=True)
class Entry:
    """One resource in the archive."""

    name: str  # e.g. "020006J1.SB"
    offset: int  # byte offset from the start of the archive
    size: int  # bytes


def read_table(path: Path) -> list[Entry]:
    """Every entry of the archive at ``path``, checked to lie inside the file."""
    with open(path, "rb") as handle:
        head = handle.read(HEADER.size)
        if len(head) < HEADER.size or head[:4] != MAGIC:
            raise DataError(f"{path} is not a ScummVM QTBL archive (no {MAGIC!r} header)")
        _, _, compression, count = HEADER.unpack(head)
        table = handle.read(count * ENTRY.size)
    if len(table) < count * ENTRY.size:
        raise DataError(f"{path}: truncated table ({count} entries announced)")
    file_size = path.stat().st_size
    entries = [_entry(table, i) for i in range(count)]
    for entry in entries:
        if entry.offset + entry.size > file_size:
            raise DataError(f"{path}: entry {entry.name} runs past the end of the file")
    return entries


def _entry(table: bytes, index: int) -> Entry:
    name, _bundle, offset, size = ENTRY.unpack_from(table, index * ENTRY.size)
    return Entry(name.split(b"\0", 1)[0].decode("ascii", "replace"), offset, size)


def read_entry(path: Path, entry: Entry) -> bytes:
    """The bytes of one entry."""
    with open(path, "rb") as handle:
        handle.seek(entry.offset)
        return handle.read(entry.size)


def build_archive(entries: dict[str, bytes], version: bytes = b"CEM10\0") -> bytes:
    """An archive holding ``entries`` (name -> bytes): the inverse of :func:`read_table`.

    Used by the tests to build stand-ins with the real layout.
    """
    offset = HEADER.size + ENTRY.size * len(entries)
    head = HEADER.pack(MAGIC, version, COMPRESSION_MP3, len(entries))
    table, blobs = b"", b""
    for name, data in entries.items():
        table += ENTRY.pack(name.encode("ascii"), 1, offset + len(blobs), len(data))
        blobs += data
    return head + table + blobs
