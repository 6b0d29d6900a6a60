"""Frozen-encoder outputs on local disk, shared by labelling and distillation.

The student's encoder is the teacher's, frozen. Labelling runs it on every row and
distillation runs it again on the same rows (and again in every ablation), so with
a store folder the first stage to encode a row leaves its output on disk and the
others read it. A file is named by a hash of the encoder's identity (the teacher's
resolved folder and dtype) and of the row's log-mel features, not by the row id
(another labelled set may reuse an id): identical input to the same frozen encoder
gives the same output. Files are plain ``.npy`` (no pickle), written atomically.
A 30 s window is 1500 x d_model float32 values: 2.3 MB for tiny.en, 7.7 MB for large-v3.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import torch


def encoder_namespace(teacher: str, dtype: torch.dtype | str) -> str:
    """The identity of a frozen encoder: its resolved model folder and its dtype."""
    from distilray.models.resolve import resolve_model

    name = str(dtype).removeprefix("torch.")
    return f"{Path(resolve_model(teacher)).resolve()}:{name}"


class EncoderStore:
    """Encoder outputs in ``directory``, one file per (encoder, features) pair."""

    def __init__(self, directory: str | Path, namespace: str):
        self.directory = Path(directory)
        self.namespace = namespace
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, features: torch.Tensor | np.ndarray) -> Path:
        """Where the output for one row's ``(n_mels, frames)`` features lives."""
        data = features.detach().to("cpu", torch.float32) if torch.is_tensor(features) else features
        array = np.ascontiguousarray(np.asarray(data, dtype=np.float32))
        digest = hashlib.blake2b(self.namespace.encode(), digest_size=20)
        digest.update(array.tobytes())
        return self.directory / f"{digest.hexdigest()}.npy"

    def load(self, features: torch.Tensor | np.ndarray) -> torch.Tensor | None:
        """The stored output ``(frames, d_model)`` for these features, or None."""
        path = self.path(features)
        if not path.is_file():
            return None
        try:
            return torch.from_numpy(np.load(path, allow_pickle=False))
        except (OSError, ValueError):
            return None  # a damaged file: the caller recomputes (and rewrites) it

    def save(self, features: torch.Tensor | np.ndarray, hidden: torch.Tensor) -> None:
        """Store one row's output (an existing file is replaced atomically)."""
        path = self.path(features)
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, hidden.detach().to("cpu", torch.float32).numpy(), allow_pickle=False)
        os.replace(tmp, path)
