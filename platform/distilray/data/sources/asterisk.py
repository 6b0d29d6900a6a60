"""Asterisk's English prompts (Allison Smith), with exact scripts: the validation core.

The 16 kHz G.722 edition is used rather than the 8 kHz WAV one, so validation audio
is wideband like the rest. The ``.g722`` files are raw G.722 streams with no
container, which :func:`distilray.audio.decode_audio` rightly refuses (it only opens
sniffed containers); they come from a pinned Debian package, so they are decoded
here with PyAV's ``g722`` demuxer named explicitly.
"""

from __future__ import annotations

import gzip
from pathlib import Path

import av
import numpy as np

from distilray.audio import SAMPLING_RATE
from distilray.data.sources import Clip, Package, Source
from distilray.data.sources.transcripts import clean_reference, parse_asterisk_index
from distilray.errors import AudioDecodeError

KEY = "allison"
SOUNDS = "usr/share/asterisk/sounds/en_US_f_Allison"
INDEX = "usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz"
AUDIO_PACKAGE = Package(
    registry="deb",
    name="asterisk-core-sounds-en-g722",
    version="1.6.1-1",
    licence="CC-BY-SA-3.0 (Copyright 2003-2010 Allison Smith; Digium)",
    licence_file="usr/share/doc/asterisk-core-sounds-en-g722/copyright",
)
INDEX_PACKAGE = Package(
    registry="deb",
    name="asterisk-core-sounds-en",
    version="1.6.1-1",
    licence="CC-BY-SA-3.0",
    licence_file="usr/share/doc/asterisk-core-sounds-en/copyright",
)
SOURCE = Source(
    key=KEY,
    packages=(AUDIO_PACKAGE, INDEX_PACKAGE),
    files=(f"{SOUNDS}/**/*.g722", INDEX),
    note="IVR prompts read by one speaker; text = the prompt script (core-sounds-en.txt)",
)


def clips(audio_root: Path, index_root: Path) -> list[Clip]:
    """Every prompt whose script line is speech (not ``[beep tone]``), sorted by name."""
    index = parse_asterisk_index(gzip.decompress((index_root / INDEX).read_bytes()).decode())
    sounds = audio_root / SOUNDS
    found = []
    for path in sorted(sounds.rglob("*.g722")):
        name = path.relative_to(sounds).with_suffix("").as_posix()
        text = clean_reference(index.get(name))
        if text is None:
            continue
        found.append(
            Clip(
                id=f"{KEY}-{name.replace('/', '-')}",
                source=KEY,
                speaker=f"{KEY}:allison-smith",
                text=text,
                load=lambda path=path: decode_g722(path),
            )
        )
    return found


def decode_g722(path: Path) -> np.ndarray:
    """A raw G.722 file as 16 kHz mono float32."""
    try:
        with av.open(str(path), format="g722") as container:
            resampler = av.AudioResampler(format="flt", layout="mono", rate=SAMPLING_RATE)
            chunks = [
                frame.to_ndarray().reshape(-1)
                for decoded in container.decode(audio=0)
                for frame in resampler.resample(decoded)
            ]
            chunks += [f.to_ndarray().reshape(-1) for f in resampler.resample(None)]
    except (av.error.FFmpegError, ValueError) as exc:
        raise AudioDecodeError(f"cannot decode G.722 {path}: {exc}") from None
    if not chunks:
        raise AudioDecodeError(f"no audio samples in {path}")
    return np.concatenate(chunks).astype(np.float32)
