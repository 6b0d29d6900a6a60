"""Sound levels of a clip: 20 ms frame RMS, its noise floor, where its last sound ends.

Level detectors, not speech detectors: cheap (one pass over the samples), and enough
to tell a transcript that stops while the audio goes on.
"""

from __future__ import annotations

import numpy as np

from distilray.audio import SAMPLING_RATE

FRAME = SAMPLING_RATE // 50  # 20 ms: the frames the level detectors below measure


def frame_rms(audio: np.ndarray) -> np.ndarray:
    """RMS level of each whole 20 ms frame of ``audio`` (a trailing part frame is left out)."""
    frames = audio[: audio.size // FRAME * FRAME].reshape(-1, FRAME).astype(np.float64)
    return np.sqrt((frames**2).mean(axis=1))


def noise_floor(audio: np.ndarray, rms: np.ndarray | None = None) -> float:
    """RMS level of ``audio``'s quiet parts: the 10th percentile of its 20 ms frames'
    (``rms``: :func:`frame_rms` of ``audio``, when the caller has it already)."""
    rms = frame_rms(audio) if rms is None else rms
    return float(np.percentile(rms, 10)) if rms.size else 0.0


# A 20 ms frame is loud enough to count as sound when its RMS reaches 5 % of the
# loudest frame's (-26 dB) and three times the clip's noise floor.
ACTIVE_SHARE_OF_PEAK = 0.05
ACTIVE_OVER_FLOOR = 3.0


def speech_end_s(audio: np.ndarray) -> float:
    """Where ``audio``'s last sound ends, in seconds: the end of its last 20 ms frame
    that is loud enough (:data:`ACTIVE_SHARE_OF_PEAK`, :data:`ACTIVE_OVER_FLOOR`);
    0.0 for silence. A level detector, not a speech detector: what distillation compares
    with the end of the teacher's label to find labels that stopped while the audio
    went on, and what decoding compares with the end of a window's transcript
    (:mod:`distilray.inference.resume`).

    >>> tone = np.sin(np.arange(16000) / 5).astype(np.float32)
    >>> speech_end_s(np.concatenate([tone, np.zeros(8000, np.float32)]))
    1.0
    """
    rms = frame_rms(audio)
    if not rms.size:
        return 0.0
    level = max(ACTIVE_SHARE_OF_PEAK * rms.max(), ACTIVE_OVER_FLOOR * noise_floor(audio, rms))
    loud = np.flatnonzero((rms >= level) & (rms > 0))
    return float((loud[-1] + 1) * FRAME / SAMPLING_RATE) if loud.size else 0.0
