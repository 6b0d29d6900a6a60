"""How each engine speaks one sentence: ``speak(voice, text, ...)`` -> 16 kHz float32.

Every engine is asked for a speaking rate through its own duration control (espeak-ng
words per minute, flite/festival duration stretch, Piper's length scale), so the rate
changes tempo without changing pitch. Pitch is espeak-ng's own ``-p`` setting; other
engines have no portable pitch control, so they speak ``factor`` times slower and the
result is resampled ``factor`` times faster: duration comes back to the asked rate while
pitch (and formants, as with a shorter or longer vocal tract) move by ``factor``.
"""

from __future__ import annotations

import functools
import io
import re
import subprocess
import threading
import wave
from collections.abc import Callable
from pathlib import Path

import numpy as np

from distilray.audio import SAMPLING_RATE, decode_audio
from distilray.data.augment import change_speed
from distilray.data.voices import INSTALL_HINTS, Voice, piper_models
from distilray.errors import DistilrayError

ESPEAK_WORDS_PER_MINUTE = 175  # espeak-ng's default speaking rate
ESPEAK_PITCH = 50  # espeak-ng's default -p (0-99)
ESPEAK_PITCH_PER_SEMITONE = 4.0  # -p steps per semitone, approximately (measured by ear)
ENGINE_TIMEOUT_S = 60.0
_PIPER_LOCK = threading.Lock()  # piper's espeak phonemiser is not thread-safe


def speak(
    voice: Voice, text: str, rate: float, wav_path: Path, pitch_semitones: float = 0.0
) -> np.ndarray:
    """``text`` spoken by ``voice`` at ``rate`` (1.0 = default) as 16 kHz mono float32."""
    if voice.engine == "espeak-ng":
        return _run(voice, text, _espeak_command(voice, rate, pitch_semitones, wav_path), wav_path)
    factor = 2.0 ** (pitch_semitones / 12.0)
    engine = _ENGINES[voice.engine]
    try:
        audio = engine(voice, text, rate / factor, wav_path)
    except DistilrayError:
        # festival's diphone voices crash on some punctuation (e.g. `." ...`); the same
        # words without it are the same speech, so the reference text stays as it is
        audio = engine(voice, plain_text(text), rate / factor, wav_path)
    return change_speed(audio, factor) if factor != 1.0 else audio


def plain_text(text: str) -> str:
    """``text`` with only the punctuation every engine survives: words and ``, . ? !``."""
    words = re.sub(r"[^A-Za-z0-9$%&'.,?! -]+", " ", text).replace("...", ",")
    return " ".join(words.split()).strip(" ,")


def _espeak_command(voice: Voice, rate: float, semitones: float, wav_path: Path) -> list[str]:
    wpm = str(round(ESPEAK_WORDS_PER_MINUTE * rate))
    pitch = round(min(99.0, max(0.0, ESPEAK_PITCH + ESPEAK_PITCH_PER_SEMITONE * semitones)))
    return [
        "espeak-ng",
        "-v",
        voice.name,
        "-s",
        wpm,
        "-p",
        str(pitch),
        "-w",
        str(wav_path),
        "--stdin",
    ]


def _flite(voice: Voice, text: str, rate: float, wav_path: Path) -> np.ndarray:
    stretch = f"duration_stretch={1.0 / rate:.4f}"
    command = ["flite", "-voice", voice.name, "--setf", stretch, "-o", str(wav_path), "-t", text]
    return _run(voice, text, command, wav_path)


def _festival(voice: Voice, text: str, rate: float, wav_path: Path) -> np.ndarray:
    command = [
        "text2wave",
        "-eval",
        f"(voice_{voice.name})",
        "-eval",
        f"(Parameter.set 'Duration_Stretch {1.0 / rate:.4f})",
        "-o",
        str(wav_path),
    ]
    return _run(voice, text, command, wav_path)


def _piper(voice: Voice, text: str, rate: float, wav_path: Path) -> np.ndarray:
    from piper import SynthesisConfig

    config = SynthesisConfig(length_scale=1.0 / rate)
    buffer = io.BytesIO()
    with _PIPER_LOCK, wave.open(buffer, "wb") as out:
        _piper_voice(voice.name).synthesize_wav(text, out, syn_config=config)
    return decode_audio(buffer.getvalue(), sampling_rate=SAMPLING_RATE)


@functools.lru_cache(maxsize=4)
def _piper_voice(name: str):
    """Load a Piper model once per process (about a second each)."""
    from piper import PiperVoice

    if name not in piper_models():
        raise DistilrayError(f"piper has no voice {name!r}: {INSTALL_HINTS['piper']}")
    model, config = piper_models()[name]
    return PiperVoice.load(model, config_path=config)


_ENGINES: dict[str, Callable[[Voice, str, float, Path], np.ndarray]] = {
    "flite": _flite,
    "festival": _festival,
    "piper": _piper,
}


def _run(voice: Voice, text: str, command: list[str], wav_path: Path) -> np.ndarray:
    """Run one engine process that reads ``text`` on stdin (or its arguments) into a WAV."""
    try:
        done = subprocess.run(
            command, input=text, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S
        )
    except FileNotFoundError:
        raise DistilrayError(
            f"{voice.engine} is not installed: {INSTALL_HINTS[voice.engine]}"
        ) from None
    except subprocess.TimeoutExpired:
        raise DistilrayError(f"{voice} took over {ENGINE_TIMEOUT_S:g} s on {text!r}") from None
    if done.returncode != 0 or not wav_path.exists() or wav_path.stat().st_size <= 44:
        detail = (done.stderr or done.stdout).strip()[-300:] or f"exit code {done.returncode}"
        raise DistilrayError(f"{voice} failed to speak {text!r}: {detail}")
    audio = decode_audio(wav_path)
    wav_path.unlink()
    return audio
