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
    separated by a pause (:func:`pause_before`) of ``gap_s[0]``-``gap_s[1]`` seconds,
    which counts towards the limit.
    """
    limit = int(max_chunk_s * SAMPLING_RATE)
    out: list[Clip] = []
    group: list[Clip] = []
    size = 0
    for clip in clips:
        if clip.audio is None:
            out.append(clip)
            continue
        pause = pause_before(clip.ids[0], group[-1].audio, gap_s) if group else None
        extra = clip.audio.size + (pause.size if pause is not None else 0)
        if group and size + extra > limit:
            out.append(_join(group))
            group, size, pause, extra = [], 0, None, clip.audio.size
        if pause is not None and pause.size:
            group.append(Clip([], "", pause))  # silence: no id, no words
        group.append(clip)
        size += extra
    if group:
        out.append(_join(group))
    return out


def pause_before(clip_id: str, previous: np.ndarray, gap_s: tuple[float, float]) -> np.ndarray:
    """The pause a packed chunk puts between ``previous`` and clip ``clip_id``.

    Its length is drawn from ``gap_s`` by a stable hash of the id (the same clip gets
    the same pause in every run). Real long recordings pause between sentences for a
    second or more, and the student must go on transcribing after a pause instead of
    ending the transcript there; clips packed end to end never show it one. Half the
    pauses (by another hash) are digital silence, as in edited or joined recordings,
    the other half Gaussian noise at ``previous``'s noise floor (the 10th percentile
    of its 20 ms frame levels), as a room sounds between two sentences.
    """
    low, high = gap_s
    samples = int(round((low + (high - low) * unit_hash(f"gap:{clip_id}")) * SAMPLING_RATE))
    if samples <= 0:
        return np.zeros(0, np.float32)
    if unit_hash(f"gap-fill:{clip_id}") < 0.5:
        return np.zeros(samples, np.float32)
    floor = noise_floor(previous)
    rng = np.random.default_rng(int(unit_hash(f"gap-noise:{clip_id}") * 2**32))
    return (rng.standard_normal(samples) * floor).astype(np.float32)


def noise_floor(audio: np.ndarray) -> float:
    """RMS level of ``audio``'s quiet parts: the 10th percentile of its 20 ms frames'."""
    frame = SAMPLING_RATE // 50
    frames = audio[: audio.size // frame * frame].reshape(-1, frame).astype(np.float64)
    return float(np.percentile(np.sqrt((frames**2).mean(axis=1)), 10)) if frames.size else 0.0


def _join(group: list[Clip]) -> Clip:
    if len(group) == 1:
        return group[0]
    texts = [c.text for c in group if c.ids]
    text = None if any(t is None for t in texts) else " ".join(t.strip() for t in texts)
    ids = [i for c in group for i in c.ids]
    return Clip(ids, text, np.concatenate([c.audio for c in group]))


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
    """Manifest rows → ``id, source_ids, audio, duration_s, text, error, input_features``."""
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
            "text": pa.array([c.text for c in clips], pa.string()),
            "error": pa.array([c.error for c in clips], pa.string()),
            FEATURES: ArrowTensorArray.from_numpy(features),
        }
    )


def _wav(clip: Clip) -> bytes | None:
    return None if clip.audio is None else encode_wav(clip.audio, SAMPLING_RATE)


def _seconds(clip: Clip) -> float | None:
    return None if clip.audio is None else clip.audio.size / SAMPLING_RATE
