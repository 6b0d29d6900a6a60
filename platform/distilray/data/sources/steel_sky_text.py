"""Beneath a Steel Sky's subtitles: the text of each voice line, as references.

The game keeps its English text in eight section files of ``sky.dsk`` (60600-60607, one
per section of the script). A section file starts with two little-endian uint16: where
its message lengths start and where its bit stream starts; between them and the
lengths, one uint16 per block of 32 messages gives the block's length. Lengths and
offsets count 2-bit steps (a length byte with bit 7 set counts 8 steps per unit), so a
message starts at byte ``offset // 4``, bit ``7 - 2 * (offset % 4)``, and its bits are
read from the high bit down. Each message is Huffman-coded text ending in a NUL.

A line of speech belongs to the message of the same number: text number ``n`` (section
``n >> 12``, message ``n & 0xFFF``) is spoken by speech file ``50000 +
SPEECH_OFFSETS[n >> 12] + (n & 0xFFF)``.

The Huffman code is not in the game's data files (the original executable held it). The
table below was recovered for this project from the data itself: the game's short voice
lines were transcribed by the tiny.en teacher, a known-plaintext search over their bit
strings fixed the codes of the common characters, and each remaining code was the one
that made most transcribed lines decode to their transcript. It decodes 3,363 of the
3,428 voiced messages to the end of text exactly where their lengths say they end (65
hold a character whose code is still unknown: they are left without text, never
guessed). Words the script stresses are written in capitals ("It's got no CIRCUIT
BOARD!"), which the WER normaliser lowercases.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

SECTION_FILES = tuple(range(60_600, 60_608))  # English; other languages follow in eights
SPEECH_OFFSETS = (0, 600, 1100, 2430, 3380, 4530, 5080, 5230)  # speech file - 50000, by section
SPEECH_BASE = 50_000

END = "\0"
CODES: dict[str, str] = {
    " ": "000", "e": "0010", "a": "0011", "r": "0111", "o": "01000", "s": "01001",
    "t": "01010", "n": "01011", "!": "01100", "i": "01101", "u": "10001", "m": "10010",
    "A": "10011", "T": "10111", END: "100000", "E": "100001", "l": "101000", "I": "101001",
    "d": "101010", "R": "101011", "N": "101100", "S": "101101", "c": "110001",
    "D": "110010", "g": "110011", "M": "110111", "O": "1100000", "h": "1100001",
    "L": "1101000", "C": "1101001", "p": "1101010", "U": "1101011", ".": "1101100",
    "y": "1101101", "H": "1110001", "?": "1110010", "b": "1110011", ",": "1110101",
    "G": "1110110", "B": "1110111", "P": "11100000", "v": "11100001", "'": "11101000",
    "f": "11101001", "F": "11110001", "q": "11110010", "w": "11110011", "W": "11110101",
    "J": "11110110", "V": "111100000", "k": "111100001", "K": "111101000", "-": "111101001",
    "z": "111110000", "Y": "111110001", "j": "111110010", "Q": "1111101000",
    "Z": "1111101100", "x": "11111101100", "X": "11111101101",
}  # fmt: skip
_BY_CODE = {bits: char for char, bits in CODES.items()}
_LONGEST = max(map(len, CODES.values()))


def text_number(speech_file: int) -> int | None:
    """The text number whose message speech file ``speech_file`` speaks.

    >>> text_number(50_011), text_number(50_611), text_number(55_230)
    (11, 4107, 28672)
    """
    line = speech_file - SPEECH_BASE
    if line < 0:
        return None
    section = max(i for i, first in enumerate(SPEECH_OFFSETS) if first <= line)
    return section << 12 | (line - SPEECH_OFFSETS[section])


def message_spans(section: bytes) -> list[tuple[int, int]]:
    """``(start, length)`` of each message of a section file, in 2-bit steps from its bit
    stream; a length of 128 steps or more is stored in units of 8 steps, rounded up."""
    lengths_at, bits_at = struct.unpack_from("<HH", section)
    blocks = struct.unpack_from(f"<{(lengths_at - 4) // 2}H", section, 4)
    spans, block_start = [], 0
    for block, block_length in enumerate(blocks):
        position = block_start
        for index in range(32):
            at = lengths_at + block * 32 + index
            length = section[at] if at < bits_at else 0
            if length & 0x80:
                length = (length & 0x7F) << 3
            spans.append((position, length))
            position += length
        block_start += block_length
    return spans


def decode_message(section: bytes, offset: int, length: int | None = None) -> str | None:
    """The text of the message at ``offset`` (2-bit steps). None where a code is not in
    :data:`CODES`, or, given its ``length``, where its end of text does not fall where
    that length says (the check that a code table is right)."""
    _, bits_at = struct.unpack_from("<HH", section)
    byte, bit = bits_at + (offset >> 2), 7 - 2 * (offset & 3)
    out, code, read = [], "", 0
    while byte < len(section):
        code += "1" if section[byte] >> bit & 1 else "0"
        byte, bit, read = (byte, bit - 1, read + 1) if bit else (byte + 1, 7, read + 1)
        char = _BY_CODE.get(code)
        if char is None:
            if len(code) >= _LONGEST:
                return None
            continue
        if char != END:
            out.append(char)
            code = ""
            continue
        used = -(-read // 2)  # whole 2-bit steps
        if length is not None and not (
            used == length or (length >= 128 and 0 <= length - used < 8)
        ):
            return None
        return "".join(out)
    return None


def decode_section(section: bytes) -> dict[int, str]:
    """Message number within the section -> text, for every message that decodes."""
    texts = {}
    for number, (offset, length) in enumerate(message_spans(section)):
        text = decode_message(section, offset, length)
        if text is not None:
            texts[number] = text
    return texts


def subtitles(read_file: Callable[[int], bytes]) -> dict[int, str]:
    """Speech file number -> the subtitle of its line, for the lines whose text decodes.

    ``read_file(number)`` returns a section file's bytes as stored in ``sky.dsk``.
    """
    by_speech = {}
    for section_number, file_number in enumerate(SECTION_FILES):
        for message, text in decode_section(read_file(file_number)).items():
            if text.strip(" !?.,-'"):  # a line of punctuation alone is no reference
                by_speech[SPEECH_BASE + SPEECH_OFFSETS[section_number] + message] = text
    return by_speech
