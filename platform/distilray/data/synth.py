"""Synthetic English speech with known references, from every installed synthesiser.

Tests, the demo and benchmarks need labelled speech without downloading any, and a
student distilled on it must still understand people. Each clip is one bank sentence
(or, for long-form clips, several sentences joined with short pauses) spoken by one
voice (espeak-ng with its accents and variants, MBROLA, flite, festival, Piper; see
:mod:`distilray.data.voices`), optionally at a varied speaking rate and pitch, then
augmented (:mod:`distilray.data.augment`: speed, room, noise, telephone band, codec,
level), written as a 16 kHz WAV next to a ``manifest.jsonl`` whose rows name the
voice, its speaker and every augmentation applied.

Everything is deterministic given the seed: clip ``i`` draws its speaking rate from
``numpy.random.default_rng([seed, i])`` and its pitch, augmentation and noise from
generators seeded ``[seed, i, k]``; voices go round-robin.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import random
import tempfile
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilray.audio import SAMPLING_RATE, add_noise, encode_wav
from distilray.data.augment import AugmentConfig, Augmenter, preset
from distilray.data.repetitions import add_repetitions
from distilray.data.sentences import split_sentences, take_sentences
from distilray.data.tts import ENGINE_TIMEOUT_S, ESPEAK_WORDS_PER_MINUTE, speak
from distilray.data.voices import (
    ENGINES,
    INSTALL_HINTS,
    Voice,
    check_voices,
    flite_voices,
    resolve_voices,
)
from distilray.errors import DistilrayError

logger = logging.getLogger(__name__)

# The voices used when none are named: fast, always installed with `make system-deps`.
# Wider sets: voices="split" (this split's speakers) or "all"; see distilray.data.voices.
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
INSTALL_HINT = INSTALL_HINTS["espeak-ng"]
SECONDS_PER_WORD = 0.36  # measured on the bank: both engines speak ~2.8 words/s
LONG_FORM_TARGET_S = (45.0, 80.0)  # planned length; the result lands within 40-90 s
LONG_FORM_MAX_S = 90.0
PAUSE_S = (0.3, 0.8)  # silence between sentences of a long-form clip
SUMMARY_NAME = "synth.json"  # what was made, with the offset of the next disjoint set
__all__ = [
    "DEFAULT_VOICES", "ENGINES", "ENGINE_TIMEOUT_S", "ESPEAK_WORDS_PER_MINUTE", "INSTALL_HINT",
    "SUMMARY_NAME", "ClipPlan", "Voice", "check_voices", "flite_voices", "plan_clips", "speak",
    "synthesize_dataset",
]  # fmt: skip


@dataclass(frozen=True)
class ClipPlan:
    """What one clip will contain; planned up front so synthesis order does not matter."""

    id: str
    voice: Voice
    rate: float  # speaking-rate factor, 1.0 = the engine's default
    sentences: tuple[str, ...]
    pauses_s: tuple[float, ...]  # silence after each sentence but the last
    snr_db: float | None
    noise_seed: tuple[int, int]  # (seed, clip index): every random draw of the clip
    pitch_semitones: float = 0.0  # voice pitch shift applied by the synthesiser
    long_form: bool = False
    repeated: bool = False  # its sentence was rewritten with a spoken repetition


def synthesize_dataset(
    out_dir: str | os.PathLike,
    num_clips: int,
    *,
    voices: str | Sequence[str] = DEFAULT_VOICES,
    snr_db: float | None = None,
    seed: int = 0,
    sentences: list[str] | None = None,
    long_form: int = 0,
    split: str = "train",
    offset: int = 0,
    rate_jitter: float = 0.0,
    workers: int | None = None,
    augment: AugmentConfig | str | None = None,
    repetitions: float = 0.0,
) -> Path:
    """Write ``num_clips`` sentence clips (+ ``long_form`` 40-90 s clips) and their manifest.

    Sentences come from the built-in bank's ``split`` starting at ``offset`` (or from
    ``sentences`` when given), so calls with different splits or non-overlapping
    offsets never share a sentence. ``voices`` is a list of ``ENGINE:VOICE`` specs
    taken round-robin, or ``"split"`` (every installed voice of ``split``'s speaker
    pool) or ``"all"``. ``rate_jitter`` varies the speaking rate uniformly within
    ``1 ± rate_jitter``; ``augment`` (a config or a preset name: none, light, robust)
    adds pitch, speed, room, noise, channel and level variation, recorded per row.
    ``snr_db`` adds white noise at that SNR last. ``repetitions`` is the share of short
    clips whose sentence is rewritten with a spoken repetition (:mod:`.repetitions`).
    Returns the path of ``manifest.jsonl``.
    """
    if num_clips < 0 or long_form < 0:
        raise DistilrayError("the number of clips must be >= 0")
    if not 0 <= rate_jitter < 1:
        raise DistilrayError(f"rate_jitter must be in [0, 1), got {rate_jitter}")
    if not 0 <= repetitions <= 1:
        raise DistilrayError(f"repetitions must be in [0, 1], got {repetitions}")
    parsed = resolve_voices(voices, split, seed)
    config = preset(augment) if isinstance(augment, str) else augment or AugmentConfig()
    augmenter = Augmenter(config)
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
        augmenter=augmenter,
        repetitions=repetitions,
    )
    out = Path(out_dir)
    (out / "audio").mkdir(parents=True, exist_ok=True)
    rows = _synthesize_all(plans, out, workers or min(8, 2 * (os.cpu_count() or 1)), augmenter)
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(row) + "\n" for row in rows))
    summary = _summary(rows, plans, parsed, config, seed, snr_db, rate_jitter, split, offset)
    summary["split"] = None if sentences is not None else split
    summary["repetitions"] = repetitions
    (out / SUMMARY_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    logger.info("wrote %d clips (%.3f h) to %s", len(rows), summary["hours"], manifest)
    return manifest


def _summary(rows, plans, voices, config, seed, snr_db, rate_jitter, split, offset) -> dict:
    """What was made: counts per voice family and augmentation, and the next offset."""
    applied = Counter(a.split(":")[0].split("=")[0] for row in rows for a in row["augment"])
    return {
        "clips": len(rows),
        "hours": round(sum(row["duration_s"] for row in rows) / 3600, 4),
        "voices": list(dict.fromkeys(str(v) for v in voices)),
        "speakers": len({v.speaker for v in voices}),
        "clips_per_family": dict(Counter(Voice.parse(row["voice"]).family for row in rows)),
        "seed": seed,
        "snr_db": snr_db,
        "rate_jitter": rate_jitter,
        "augment": config.model_dump() if config.active else None,
        "augment_counts": dict(sorted(applied.items())),
        "split": split,
        "offset": offset,
        # sentences consumed by this set: the next disjoint set starts here
        "next_offset": offset + sum(len(plan.sentences) for plan in plans),
    }


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
    augmenter: Augmenter | None = None,
    repetitions: float = 0.0,
) -> list[ClipPlan]:
    """Assign sentences, voices, rates, pitch and noise seeds to every clip.

    A share ``repetitions`` of the short clips (drawn per clip from its own seed) says
    its sentence with a spoken repetition; the bank position still advances by one
    sentence, so the next disjoint set starts at the same offset.
    """
    pool = tuple(sentences) if sentences is not None else split_sentences(split)
    prefix = "custom" if sentences is not None else split
    plans: list[ClipPlan] = []
    position = offset
    for index in range(num_clips + long_form):
        rng = np.random.default_rng([seed, index])
        rate = float(1.0 + rng.uniform(-rate_jitter, rate_jitter)) if rate_jitter else 1.0
        repeated = False
        if index < num_clips:
            texts = take_sentences(pool, position, 1)
            clip_id = f"{prefix}-{position:06d}"
            if repetitions and rng.random() < repetitions:
                said = random.Random(f"{seed}-{index}-repetition")
                texts, repeated = [add_repetitions(texts[0], said)], True
        else:
            texts = _long_form_sentences(pool, position, rate, rng)
            clip_id = f"{prefix}-long-{position:06d}"
        pauses = tuple(float(p) for p in rng.uniform(*PAUSE_S, size=len(texts) - 1))
        voice = voices[index % len(voices)]
        pitch = augmenter.pitch(np.random.default_rng([seed, index, 3])) if augmenter else 0.0
        plans.append(
            ClipPlan(clip_id, voice, rate, tuple(texts), pauses, snr_db, (seed, index),
                     pitch, long_form=index >= num_clips, repeated=repeated)
        )  # fmt: skip
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


def _synthesize_all(
    plans: list[ClipPlan], out: Path, workers: int, augmenter: Augmenter
) -> list[dict]:
    """Speak every clip on a small thread pool (each thread drives one engine process).

    With augmentation, clean clips are spoken first into a scratch folder, so babble
    noise can mix in other clips of the same set whatever order the threads finish in.
    """
    with (
        tempfile.TemporaryDirectory(prefix="distilray-synth-") as scratch,
        ThreadPoolExecutor(max_workers=workers) as pool,
    ):
        clean = Path(scratch) / "clean"
        clean.mkdir()
        speak_one = functools.partial(_speak_clip, clean=clean, scratch=Path(scratch))
        texts = list(pool.map(speak_one, plans))
        finish = functools.partial(
            _finish_clip, out=out, clean=clean, plans=plans, augmenter=augmenter
        )
        return list(pool.map(finish, plans, texts))


def _speak_clip(plan: ClipPlan, clean: Path, scratch: Path) -> list[str]:
    """Speak and join one clip's sentences into ``clean/ID.wav``; returns the texts kept."""
    silence = [np.zeros(int(p * SAMPLING_RATE), np.float32) for p in plan.pauses_s]
    parts: list[np.ndarray] = []
    texts: list[str] = []
    total = 0
    for i, text in enumerate(plan.sentences):
        wav = scratch / f"{plan.id}-{i}.wav"
        speech = speak(plan.voice, text, plan.rate, wav, plan.pitch_semitones)
        pause = silence[i - 1] if i else np.zeros(0, np.float32)
        if texts and (total + pause.size + speech.size) / SAMPLING_RATE > LONG_FORM_MAX_S:
            break  # long-form: keep whole sentences only, within the maximum length
        parts += [pause, speech]
        texts.append(text)
        total += pause.size + speech.size
    np.save(clean / f"{plan.id}.npy", np.concatenate(parts))  # exact, no requantising
    return texts


def _finish_clip(
    plan: ClipPlan,
    texts: list[str],
    out: Path,
    clean: Path,
    plans: list[ClipPlan],
    augmenter: Augmenter,
) -> dict:
    """Augment one clean clip, add the requested white noise, write it; its manifest row."""
    audio = np.load(clean / f"{plan.id}.npy")
    rng = np.random.default_rng([*plan.noise_seed, 2])
    talkers = _talkers(plan, plans, clean) if len(plans) > 1 else None
    applied = [f"pitch={plan.pitch_semitones:+.2f}st"] if plan.pitch_semitones else []
    applied += ["repetition"] if plan.repeated else []
    if augmenter.config.active:
        # long-form clips keep their tempo: speed changes would break the 40-90 s bounds
        audio, done = augmenter(audio, rng, talkers, speed=not plan.long_form)
        applied += done
    if plan.snr_db is not None:
        audio = add_noise(audio, plan.snr_db, np.random.default_rng([*plan.noise_seed, 1]))
    relative = f"audio/{plan.id}.wav"
    (out / relative).write_bytes(encode_wav(audio))
    return {
        "id": plan.id,
        "audio": relative,
        "text": " ".join(texts),
        "voice": str(plan.voice),
        "speaker": plan.voice.speaker,
        "duration_s": round(audio.size / SAMPLING_RATE, 3),
        "augment": applied,
    }


def _talkers(plan: ClipPlan, plans: list[ClipPlan], clean: Path):
    """Babble sources for ``plan``: other clean clips of this set, drawn by the clip's seed."""
    others = [p.id for p in plans if p.id != plan.id]
    rng = np.random.default_rng([*plan.noise_seed, 4])

    def draw(count: int) -> list[np.ndarray]:
        chosen = rng.choice(len(others), size=min(count, len(others)), replace=False)
        return [np.load(clean / f"{others[i]}.npy") for i in chosen]

    return draw
