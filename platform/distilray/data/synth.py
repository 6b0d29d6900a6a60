"""Synthetic English speech with known references, from espeak-ng and flite.

Tests, the demo and benchmarks need labelled speech without downloading any. Each
clip is one bank sentence (or, for long-form clips, several sentences joined with
short pauses) spoken by one of several voices, optionally at a varied speaking rate
and with white noise, written as a 16 kHz WAV next to a ``manifest.jsonl``.

Everything is deterministic given the seed: clip ``i`` draws its speaking rate and
noise from ``numpy.random.default_rng([seed, i])``, and voices go round-robin.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilray.audio import SAMPLING_RATE, add_noise, decode_audio, encode_wav
from distilray.data.sentences import split_sentences, take_sentences
from distilray.errors import DistilrayError

logger = logging.getLogger(__name__)

DEFAULT_VOICES = (
    "espeak-ng:en-us",
    "espeak-ng:en-gb",
    "espeak-ng:en+m3",
    "espeak-ng:en-us+f3",
    "flite:slt",
    "flite:rms",
    "flite:awb",
    "flite:kal",
)
ENGINES = ("espeak-ng", "flite")
INSTALL_HINT = "install the speech synthesisers with: apt-get install espeak-ng flite"
ESPEAK_WORDS_PER_MINUTE = 175  # espeak-ng's default speaking rate
SECONDS_PER_WORD = 0.36  # measured on the bank: both engines speak ~2.8 words/s
LONG_FORM_TARGET_S = (45.0, 80.0)  # planned length; the result lands within 40-90 s
LONG_FORM_MAX_S = 90.0
PAUSE_S = (0.3, 0.8)  # silence between sentences of a long-form clip
ENGINE_TIMEOUT_S = 60.0
SUMMARY_NAME = "synth.json"  # what was made, with the offset of the next disjoint set


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: ``engine:name`` such as ``espeak-ng:en-gb`` or ``flite:slt``."""

    engine: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> Voice:
        engine, sep, name = spec.strip().partition(":")
        if not sep or engine not in ENGINES or not name:
            raise DistilrayError(
                f"bad voice {spec!r}: write ENGINE:VOICE with ENGINE one of {', '.join(ENGINES)}, "
                "e.g. espeak-ng:en-us or flite:slt"
            )
        return cls(engine, name)

    def __str__(self) -> str:
        return f"{self.engine}:{self.name}"


@dataclass(frozen=True)
class ClipPlan:
    """What one clip will contain; planned up front so synthesis order does not matter."""

    id: str
    voice: Voice
    rate: float  # speaking-rate factor, 1.0 = the engine's default
    sentences: tuple[str, ...]
    pauses_s: tuple[float, ...]  # silence after each sentence but the last
    snr_db: float | None
    noise_seed: tuple[int, int]


def synthesize_dataset(
    out_dir: str | os.PathLike,
    num_clips: int,
    *,
    voices: list[str] | tuple[str, ...] = DEFAULT_VOICES,
    snr_db: float | None = None,
    seed: int = 0,
    sentences: list[str] | None = None,
    long_form: int = 0,
    split: str = "train",
    offset: int = 0,
    rate_jitter: float = 0.0,
    workers: int | None = None,
) -> Path:
    """Write ``num_clips`` sentence clips (+ ``long_form`` 40-90 s clips) and their manifest.

    Sentences come from the built-in bank's ``split`` starting at ``offset`` (or from
    ``sentences`` when given), so calls with different splits or non-overlapping
    offsets never share a sentence. ``rate_jitter`` varies the speaking rate
    uniformly within ``1 ± rate_jitter``. Returns the path of ``manifest.jsonl``.
    """
    if num_clips < 0 or long_form < 0:
        raise DistilrayError("the number of clips must be >= 0")
    if not 0 <= rate_jitter < 1:
        raise DistilrayError(f"rate_jitter must be in [0, 1), got {rate_jitter}")
    parsed = [Voice.parse(v) for v in voices]
    if not parsed:
        raise DistilrayError("no voices given")
    check_voices(parsed)
    plans = plan_clips(
        num_clips,
        parsed,
        snr_db=snr_db,
        seed=seed,
        sentences=sentences,
        long_form=long_form,
        split=split,
        offset=offset,
        rate_jitter=rate_jitter,
    )
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows = _synthesize_all(plans, out, workers or min(8, 2 * (os.cpu_count() or 1)))
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = {
        "clips": len(rows),
        "hours": round(sum(row["duration_s"] for row in rows) / 3600, 4),
        "voices": [str(v) for v in parsed],
        "seed": seed,
        "snr_db": snr_db,
        "rate_jitter": rate_jitter,
        "split": None if sentences is not None else split,
        "offset": offset,
        # sentences consumed by this set: the next disjoint set starts here
        "next_offset": offset + sum(len(plan.sentences) for plan in plans),
    }
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote %d clips (%.3f h) to %s", len(rows), summary["hours"], manifest)
    return manifest


def plan_clips(
    num_clips: int,
    voices: list[Voice],
    *,
    snr_db: float | None,
    seed: int,
    sentences: list[str] | None,
    long_form: int,
    split: str,
    offset: int,
    rate_jitter: float,
) -> list[ClipPlan]:
    """Assign sentences, voices, rates and noise seeds to every clip."""
    pool = tuple(sentences) if sentences is not None else split_sentences(split)
    prefix = "custom" if sentences is not None else split
    plans: list[ClipPlan] = []
    position = offset
    for index in range(num_clips + long_form):
        rng = np.random.default_rng([seed, index])
        rate = float(1.0 + rng.uniform(-rate_jitter, rate_jitter)) if rate_jitter else 1.0
        if index < num_clips:
            texts = take_sentences(pool, position, 1)
            clip_id = f"{prefix}-{position:06d}"
        else:
            texts = _long_form_sentences(pool, position, rate, rng)
            clip_id = f"{prefix}-long-{position:06d}"
        pauses = tuple(float(p) for p in rng.uniform(*PAUSE_S, size=len(texts) - 1))
        voice = voices[index % len(voices)]
        plans.append(ClipPlan(clip_id, voice, rate, tuple(texts), pauses, snr_db, (seed, index)))
        position += len(texts)
    return plans


def _long_form_sentences(pool: tuple[str, ...], position: int, rate: float, rng) -> list[str]:
    """Enough consecutive sentences for a recording of a random planned length."""
    target = rng.uniform(*LONG_FORM_TARGET_S)
    texts: list[str] = []
    planned = 0.0
    while planned < target:
        texts.extend(take_sentences(pool, position + len(texts), 1))
        planned += len(texts[-1].split()) * SECONDS_PER_WORD / rate + sum(PAUSE_S) / 2
    return texts


def _synthesize_all(plans: list[ClipPlan], out: Path, workers: int) -> list[dict]:
    """Synthesise clips on a small thread pool (each thread drives one engine process)."""
    with (
        tempfile.TemporaryDirectory(prefix="distilray-synth-") as scratch,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        job = functools.partial(_synthesize_clip, out=out, scratch=Path(scratch))
        return list(pool.map(job, plans))


def _synthesize_clip(plan: ClipPlan, out: Path, scratch: Path) -> dict:
    """Speak, join, add noise, and write one clip; returns its manifest row."""
    silence = [np.zeros(int(p * SAMPLING_RATE), np.float32) for p in plan.pauses_s]
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    for i, text in enumerate(plan.sentences):
        speech = speak(plan.voice, text, plan.rate, scratch / f"{plan.id}-{i}.wav")
        pause = silence[i - 1] if i else np.zeros(0, np.float32)
        if texts and (total + pause.size + speech.size) / SAMPLING_RATE > LONG_FORM_MAX_S:
            break  # long-form: keep whole sentences only, within the maximum length
        parts += [pause, speech]
        texts.append(text)
        total += pause.size + speech.size
    audio = np.concatenate(parts)
    if plan.snr_db is not None:
        audio = add_noise(audio, plan.snr_db, np.random.default_rng([*plan.noise_seed, 1]))
    relative = f"audio/{plan.id}.wav"
    (out / relative).write_bytes(encode_wav(audio))
    return {
        "id": plan.id,
        "audio": relative,
        "text": " ".join(texts),
        "voice": str(plan.voice),
        "duration_s": round(audio.size / SAMPLING_RATE, 3),
    }


def speak(voice: Voice, text: str, rate: float, wav_path: Path) -> np.ndarray:
    """One engine call: ``text`` spoken by ``voice`` as 16 kHz mono float32."""
    if voice.engine == "espeak-ng":
        wpm = str(round(ESPEAK_WORDS_PER_MINUTE * rate))
        command = ["espeak-ng", "-v", voice.name, "-s", wpm, "-w", str(wav_path), "--stdin"]
    else:
        stretch = f"duration_stretch={1.0 / rate:.4f}"
        command = [
            "flite",
            "-voice",
            voice.name,
            "--setf",
            stretch,
            "-o",
            str(wav_path),
            "-t",
            text,
        ]
    try:
        done = subprocess.run(
            command, input=text, capture_output=True, text=True, timeout=ENGINE_TIMEOUT_S
        )
    except FileNotFoundError:
        raise DistilrayError(f"{voice.engine} is not installed: {INSTALL_HINT}") from None
    except subprocess.TimeoutExpired:
        raise DistilrayError(f"{voice} took over {ENGINE_TIMEOUT_S:g} s on {text!r}") from None
    if done.returncode != 0 or not wav_path.exists():
        detail = (done.stderr or done.stdout).strip() or f"exit code {done.returncode}"
        raise DistilrayError(f"{voice} failed to speak {text!r}: {detail}")
    audio = decode_audio(wav_path)
    wav_path.unlink()
    return audio


def check_voices(voices: list[Voice]) -> None:
    """Fail early, with the fix, if an engine or a voice is missing."""
    for engine in sorted({v.engine for v in voices}):
        if shutil.which(engine) is None:
            raise DistilrayError(f"{engine} is not installed: {INSTALL_HINT}")
    for voice in voices:
        if voice.engine == "flite" and voice.name not in flite_voices():
            raise DistilrayError(
                f"flite has no voice {voice.name!r}; installed: {', '.join(flite_voices())}"
            )
        if voice.engine == "espeak-ng":
            _check_espeak_voice(voice.name)


@functools.lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """The voices compiled into the installed flite (``flite -lv``)."""
    done = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=30)
    _, _, listed = done.stdout.partition(":")
    return tuple(listed.split())


@functools.lru_cache(maxsize=64)
def _check_espeak_voice(name: str) -> None:
    done = subprocess.run(
        ["espeak-ng", "-q", "-v", name, "x"], capture_output=True, text=True, timeout=30
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise DistilrayError(
            f"espeak-ng has no voice {name!r} ({detail}); list them with: espeak-ng --voices=en"
        )
