"""Log-mel features: the one place audio turns into model input."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from distilray.audio import SAMPLING_RATE


def log_mel(feature_extractor, audios: Sequence[np.ndarray]) -> np.ndarray:
    """Whisper log-mel features ``(batch, n_mels, 3000)`` for clips of up to 30 s.

    Each clip is padded (or cut) to 30 s, as Whisper was trained on.
    """
    out = feature_extractor(
        list(audios), sampling_rate=SAMPLING_RATE, return_tensors="np", padding="max_length"
    )
    return out["input_features"].astype(np.float32, copy=False)
