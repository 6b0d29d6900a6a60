"""Beneath a Steel Sky (CD talkie): 3,650 voice-acted lines (2.2 h) with their subtitles.

A second cast of voice actors beside Flight of the Amazon Queen's, recorded for a
1994 CD: 8-bit unsigned PCM at 11,025 Hz, so band-limited to 5.5 kHz. The game's
subtitles are Huffman-coded in its text files and paired with the lines by text number
(:mod:`.steel_sky_text`): 3,363 lines carry the subtitle as their text, the rest none.
Which actor speaks a line is not recorded (one speaker label, ``steelsky:cast``): the
source goes to training (``data real --steel-sky-clips``) or to a test set of its own
(``--steel-sky-test``), never both.

The archive follows ScummVM's ``engines/sky/disk.cpp`` (``Disk::loadFile``). ``sky.dnr``
is a little-endian table: an entry count (uint32), then 8 bytes per file::

    file number (uint16)  offset (uint24; bit 23: stored in 16-byte units)
    flags (uint24: size in bits 0-21, bit 22 "packed without its header",
                   bit 23 "never packed")

Each file in ``sky.dsk`` starts with a 22-byte header whose first word's bit 7 marks
RNC ProPack (method 1) compression of the rest; a packed file's decompressed size is
in that header. Speech files are numbered 50,000-59,999 (``Sound::startSpeech``) and
hold raw unsigned 8-bit mono samples after the header.
"""

from __future__ import annotations

import io
import struct
import wave
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilray.audio import decode_audio
from distilray.data.sources import Clip, Package, Source, steel_sky_text
from distilray.errors import DataError

KEY = "steelsky"
FOLDER = "usr/share/scummvm/beneath-a-steel-sky"
SOURCE = Source(
    key=KEY,
    packages=(
        Package(
            registry="deb",
            name="beneath-a-steel-sky",
            version="0.0372-8",
            licence="Beneath-a-Steel-Sky-License (freeware: free redistribution, keep readme)",
            licence_file="usr/share/doc/beneath-a-steel-sky/copyright",
        ),
    ),
    files=(
        f"{FOLDER}/sky.dnr + sky.dsk: files 50000-59999 (RNC-packed 8-bit PCM, 11,025 Hz)",
        f"{FOLDER}/sky.dsk: files 60600-60607 (the English subtitles, Huffman-coded)",
    ),
    note="game voice acting (CD talkie), a cast of voice actors; the game's subtitle of "
    "each line as its text where it decodes (3,363 of 3,650 lines)",
)
SPEECH_FIRST, SPEECH_END = 50_000, 60_000  # Sound::startSpeech loads speech file + 50000
SAMPLE_RATE = 11_025
HEADER_BYTES = 22  # ScummVM's dataFileHeader: eleven little-endian uint16
RNC_SIGNATURE = b"RNC\x01"  # RNC ProPack, method 1
_ENTRY = struct.Struct("<H3s3s")  # file number, offset (uint24), flags (uint24)


@dataclass(frozen=True)
class Entry:
    """One file of ``sky.dsk`` as ``sky.dnr`` lists it."""

    number: int
    offset: int  # bytes from the start of sky.dsk
    size: int  # bytes stored there
    never_packed: bool  # flags bit 23
    headerless: bool  # flags bit 22: a packed file that decompresses without its header


def read_table(dnr: Path, dsk_size: int) -> list[Entry]:
    """Every entry of ``sky.dnr``, checked to lie inside a ``sky.dsk`` of ``dsk_size`` bytes."""
    data = dnr.read_bytes()
    if len(data) < 4:
        raise DataError(f"{dnr}: too short for a Beneath a Steel Sky file table")
    (count,) = struct.unpack_from("<I", data)
    if count == 0 or len(data) < 4 + count * _ENTRY.size:
        raise DataError(f"{dnr}: table of {count} entries does not fit in {len(data)} bytes")
    entries = []
    for index in range(count):
        number, offset_raw, flags_raw = _ENTRY.unpack_from(data, 4 + index * _ENTRY.size)
        offset, flags = int.from_bytes(offset_raw, "little"), int.from_bytes(flags_raw, "little")
        if offset >> 23 & 1:
            offset = (offset & 0x7FFFFF) << 4
        size = flags & 0x3FFFFF
        if offset + size > dsk_size:
            raise DataError(f"{dnr}: file {number} lies outside sky.dsk ({dsk_size} bytes)")
        entries.append(Entry(number, offset, size, bool(flags >> 23 & 1), bool(flags >> 22 & 1)))
    return entries


def archive_table(root: Path) -> list[Entry]:
    """Every entry of ``sky.dnr`` of the game unpacked under ``root``."""
    folder = root / FOLDER
    return read_table(folder / "sky.dnr", (folder / "sky.dsk").stat().st_size)


def speech_entries(root: Path, table: list[Entry] | None = None) -> list[Entry]:
    """The speech files of the game unpacked under ``root`` (of ``table``, its
    :func:`archive_table` when already read), in file-number order."""
    entries = archive_table(root) if table is None else table
    return sorted(
        (e for e in entries if SPEECH_FIRST <= e.number < SPEECH_END), key=lambda e: e.number
    )


def stored(dsk: Path, entry: Entry) -> bytes:
    """The file's bytes as ``sky.dsk`` stores them (header included, not unpacked)."""
    with open(dsk, "rb") as handle:
        handle.seek(entry.offset)
        data = handle.read(entry.size)
    if len(data) != entry.size or entry.size < HEADER_BYTES:
        raise DataError(f"{dsk}: file {entry.number} is truncated")
    return data


def read_file(dsk: Path, entry: Entry) -> bytes:
    """The file's content after its 22-byte header, decompressed when packed."""
    stored_bytes = stored(dsk, entry)
    (flag,) = struct.unpack_from("<H", stored_bytes)
    packed = stored_bytes[HEADER_BYTES:]
    if entry.never_packed or not flag >> 7 & 1 or not packed.startswith(RNC_SIGNATURE):
        return packed  # stored as it is (ScummVM too reads a file without the signature so)
    from propack import unpack  # RNC ProPack (method 1), with its CRC checks

    try:
        content = unpack(packed)
    except ValueError as error:
        raise DataError(f"{dsk}: file {entry.number} does not unpack: {error}") from None
    # ScummVM puts the header back in front of what unpacks, except for "headerless"
    # files, and the speech player then skips 22 bytes: of a headerless file, samples
    return content[HEADER_BYTES:] if entry.headerless else content


def speech_wav(samples: bytes) -> bytes:
    """Unsigned 8-bit 11,025 Hz samples as WAV bytes (WAV's own 8-bit format is unsigned)."""
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(1)
        out.setframerate(SAMPLE_RATE)
        out.writeframes(samples)
    return buffer.getvalue()


def load_line(dsk: Path, entry: Entry) -> np.ndarray:
    """One speech line, 16 kHz mono float32 (resampled by :func:`decode_audio`)."""
    return decode_audio(speech_wav(read_file(dsk, entry)))


def line_texts(dsk: Path, table: list[Entry]) -> dict[int, str]:
    """Speech file number -> the game's subtitle for that line (:mod:`.steel_sky_text`),
    read from ``dsk`` by its ``table``; empty where it holds no English text files."""
    by_number = {e.number: e for e in table}
    if not all(n in by_number for n in steel_sky_text.SECTION_FILES):
        return {}
    try:
        return steel_sky_text.subtitles(lambda number: stored(dsk, by_number[number]))
    except (struct.error, IndexError) as error:
        raise DataError(f"{dsk}: the text files do not read as the game's: {error}") from None


def clips(root: Path) -> list[Clip]:
    """One clip per speech file of the game unpacked under ``root``, with the line's
    subtitle as its text where it decodes (None otherwise: pseudo-label it)."""
    dsk = root / FOLDER / "sky.dsk"
    table = archive_table(root)  # sky.dnr, read once for the speech and the text files
    texts = line_texts(dsk, table)
    return [
        Clip(
            id=f"{KEY}-{entry.number}",
            source=KEY,
            speaker=f"{KEY}:cast",
            text=texts.get(entry.number),
            load=lambda entry=entry: load_line(dsk, entry),
        )
        for entry in speech_entries(root, table)
    ]
