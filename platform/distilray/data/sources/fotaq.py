"""Flight of the Amazon Queen: 6,745 voice-acted lines (4.6 h), the unlabelled train pool.

The game's dialogue text is not paired with the audio in any simple way (ScummVM's
``queen/talk.cpp`` would have to be reimplemented), so the clips carry no text: they
are meant for pseudo-labelling by the Whisper teacher. Speaker identities are not
recorded either; the file names only tell Joe (the hero: ``JOE*`` and ``??????J?``)
from everyone else, which is what :func:`speaker_of` reports.
"""

from __future__ import annotations

from pathlib import Path

from distilray.audio import decode_audio
from distilray.data.sources import Clip, Package, Source
from distilray.data.sources.scummvm import Entry, read_entry, read_table

KEY = "fotaq"
ARCHIVE = "usr/share/scummvm/flight-of-the-amazon-queen/queen.1c"
SOURCE = Source(
    key=KEY,
    packages=(
        Package(
            registry="deb",
            name="flight-of-the-amazon-queen",
            version="1.0.0-9",
            licence="Flight-of-the-Amazon-Queen-License (freeware: free redistribution, keep readme)",
            licence_file="usr/share/doc/flight-of-the-amazon-queen/copyright",
        ),
    ),
    files=(f"{ARCHIVE}: *.SB entries (MP3)",),
    note="game voice acting, 20-40 actors; no transcripts (pseudo-label with the teacher)",
)


def speaker_of(name: str) -> str:
    """``fotaq:joe`` for the hero's lines, ``fotaq:cast`` for all other actors."""
    stem = name.split(".", 1)[0]
    joe = stem.startswith("JOE") or (len(stem) == 8 and stem[6] == "J")  # 020006J1, 06002AJ1
    return f"{KEY}:joe" if joe else f"{KEY}:cast"


def speech_entries(archive: Path) -> list[Entry]:
    """The speech (``*.SB``) entries of the archive."""
    return [e for e in read_table(archive) if e.name.upper().endswith(".SB")]


def clips(root: Path) -> list[Clip]:
    """One unlabelled clip per speech entry of the archive under ``root``."""
    archive = root / ARCHIVE
    return [
        Clip(
            id=f"{KEY}-{entry.name.split('.', 1)[0]}",
            source=KEY,
            speaker=speaker_of(entry.name),
            text=None,
            load=lambda entry=entry: decode_audio(read_entry(archive, entry)),
        )
        for entry in speech_entries(archive)
    ]
