"""CPU side of labelling: decode, optionally pack, re-encode and featurise clips.

:func:`prepare_batch` runs in Ray Data tasks. Every failure is per row: a clip
that does not decode (corrupt, empty, missing, too long) becomes a row with
``error`` set and zero features, which the teacher skips; nothing is dropped.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from distilray.audio import SAMPLING_RATE, decode_audio, encode_wav
from distilray.errors import AudioDecodeError
from distilray.features import log_mel
from distilray.hashing import unit_hash
from distilray.inference.windows import N_FRAMES
from distilray.labelling.schema import FEATURES
from distilray.levels import noise_floor, speech_end_s

logger = logging.getLogger(__name__)

ID_JOINER = "+"  # packed chunk ids: "a+b+c" (source_ids keeps the parts)


@dataclass
class Clip:
    """One row on its way to the teacher: a decoded input clip or a packed chunk."""

    ids: list[str]  # input ids it holds (one unless packed)
    text: str | None  # reference transcript, if every part has one
    audio: np.ndarray | None  # 16 kHz mono float32; None when decoding failed
    error: str | None = None  # why there is no audio


def decode_row(row: dict, max_duration_s: float) -> Clip:
    """Decode one manifest row, turning any failure into the clip's ``error``."""
    source = row["audio_bytes"] if row["audio_bytes"] is not None else row["audio_path"]
    clip = Clip([row["id"]], row["text"], None)
    if source is None:
        clip.error = "row has neither audio bytes nor an audio path"
        return clip
    try:
        clip.audio = decode_audio(source, max_duration_s=max_duration_s)
    except AudioDecodeError as exc:
        clip.error = str(exc)
    except Exception as exc:  # noqa: BLE001 - one bad row must never stop the job
        clip.error = f"{type(exc).__name__}: {exc}"
    if clip.error:
        logger.warning("row %s: %s", row["id"], clip.error)
    return clip


def pack(
    clips: list[Clip], max_chunk_s: float, gap_s: tuple[float, float] = (0.0, 0.0)
) -> list[Clip]:
    """Join consecutive decoded clips into chunks of at most ``max_chunk_s`` seconds.

    Failed clips pass through on their own. A chunk's text is its parts' texts
    joined by spaces, or None when any part has no reference. Consecutive parts are
    separated by a pause (:func:`pause_length`, :func:`make_pause`) of
    ``gap_s[0]``-``gap_s[1]`` seconds, which counts towards the limit.
    """
    limit = int(max_chunk_s * SAMPLING_RATE)
    out: list[Clip] = []
    group: list[Clip] = []
    parts: list[np.ndarray] = []  # the group's audio: its clips and the pauses between them
    size = 0
    for clip in clips:
        if clip.audio is None:
            out.append(clip)
            continue
        gap = pause_length(clip.ids[0], gap_s) if group else 0
        if group and size + gap + clip.audio.size > limit:
            out.append(_join(group, parts))
            group, parts, size, gap = [], [], 0, 0
        if gap:
            silent = unit_hash(f"gap-fill:{clip.ids[0]}") < 0.5
            seed = int(unit_hash(f"gap-noise:{clip.ids[0]}") * 2**32)
            parts.append(make_pause(gap, group[-1].audio, silent=silent, seed=seed))
        group.append(clip)
        parts.append(clip.audio)
        size += gap + clip.audio.size
    if group:
        out.append(_join(group, parts))
    return out


def pause_length(clip_id: str, gap_s: tuple[float, float]) -> int:
    """Samples of the pause a packed chunk puts before clip ``clip_id``.

    Drawn from ``gap_s`` by a stable hash of the id: the same clip gets the same
    pause in every run. Real long recordings pause between sentences for a second
    or more, and the student must go on transcribing after a pause instead of
    ending the transcript there; clips packed end to end never show it one.
    """
    low, high = gap_s
    return max(0, int(round((low + (high - low) * unit_hash(f"gap:{clip_id}")) * SAMPLING_RATE)))


def make_pause(samples: int, previous: np.ndarray, *, silent: bool, seed: int) -> np.ndarray:
    """A pause after ``previous``: digital silence, or the room between two sentences.

    Packing makes half its pauses silent (as in edited or joined recordings), the
    other half Gaussian noise at ``previous``'s noise floor (:func:`noise_floor`).
    """
    if silent or samples <= 0:
        return np.zeros(max(samples, 0), np.float32)
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(samples) * noise_floor(previous)).astype(np.float32)


def _join(group: list[Clip], parts: list[np.ndarray]) -> Clip:
    """One chunk of ``group``'s clips, its audio ``parts`` (clips and pauses) in order."""
    if len(group) == 1:
        return group[0]
    texts = [c.text for c in group]
    text = None if any(t is None for t in texts) else " ".join(t.strip() for t in texts)
    return Clip([i for c in group for i in c.ids], text, np.concatenate(parts))


def is_packed(row_id: str, fraction: float) -> bool:
    """Whether clip ``row_id`` goes into a packed chunk: a stable hash, independent of order.

    >>> is_packed("a", 1.0), is_packed("a", 0.0)
    (True, False)
    """
    return unit_hash(f"pack:{row_id}") < fraction


def mix_packed(
    clips: list[Clip],
    max_chunk_s: float,
    fraction: float,
    gap_s: tuple[float, float] = (0.0, 0.0),
) -> list[Clip]:
    """Pack the ``fraction`` of clips :func:`is_packed` picks; the others stay single.

    The paper trains on clips packed to 30 s; single clips are kept beside them so
    the student also learns to end short utterances (and not to run on).
    """
    chosen = [c for c in clips if is_packed(c.ids[0], fraction)]
    single = [c for c in clips if not is_packed(c.ids[0], fraction)]
    return pack(chosen, max_chunk_s, gap_s) + single


def prepare_batch(
    batch: pa.Table,
    *,
    feature_extractor,
    max_duration_s: float,
    concatenate: bool = False,
    max_chunk_s: float = 30.0,
    pack_fraction: float = 1.0,
    pack_gap_s: tuple[float, float] = (0.0, 0.0),
) -> pa.Table:
    """Manifest rows → ``id, source_ids, audio, duration_s, speech_end_s, text, error,
    input_features``."""
    # Ray hands task arguments over zero-copy, as read-only arrays; torch warns about
    # (and must not write through) a read-only mel filter bank.
    if not feature_extractor.mel_filters.flags.writeable:
        feature_extractor.mel_filters = feature_extractor.mel_filters.copy()
    clips = [decode_row(row, max_duration_s) for row in batch.to_pylist()]
    if concatenate:
        clips = mix_packed(clips, max_chunk_s, pack_fraction, pack_gap_s)
    return clips_table(clips, feature_extractor)


def clips_table(clips: list[Clip], feature_extractor) -> pa.Table:
    """The clips as an Arrow table with WAV bytes and a log-mel tensor column.

    The features are computed from the stored 16-bit WAV, decoded again: exactly what
    distillation will compute from the labelled row, so the teacher labels what the
    student hears and the two stages can share encoder outputs.
    """
    from ray.data.extensions import ArrowTensorArray

    wavs = [_wav(c) for c in clips]
    stored = [decode_audio(w) for w in wavs if w is not None]
    n_mels = feature_extractor.feature_size
    features = np.zeros((len(clips), n_mels, N_FRAMES), np.float32)
    if stored:
        mask = np.array([w is not None for w in wavs])
        features[mask] = log_mel(feature_extractor, stored)
    return pa.table(
        {
            "id": pa.array([ID_JOINER.join(c.ids) for c in clips], pa.string()),
            "source_ids": pa.array([c.ids for c in clips], pa.list_(pa.string())),
            "audio": pa.array(wavs, pa.binary()),
            "duration_s": pa.array([_seconds(c) for c in clips], pa.float64()),
            "speech_end_s": pa.array(
                [None if c.audio is None else speech_end_s(c.audio) for c in clips], pa.float64()
            ),
            "text": pa.array([c.text for c in clips], pa.string()),
            "error": pa.array([c.error for c in clips], pa.string()),
            FEATURES: ArrowTensorArray.from_numpy(features),
        }
    )


def _wav(clip: Clip) -> bytes | None:
    return None if clip.audio is None else encode_wav(clip.audio, SAMPLING_RATE)


def _seconds(clip: Clip) -> float | None:
    return None if clip.audio is None else clip.audio.size / SAMPLING_RATE
