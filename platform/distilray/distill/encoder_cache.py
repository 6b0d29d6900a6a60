"""Frozen encoder outputs kept across epochs, so that later epochs skip the encoder.

The student's encoder is the teacher's and never trains, so a row's encoder output
is the same at every epoch. On small multi-epoch runs (the CPU demo) the encoder is
most of a step's cost; :class:`EncoderCache` computes each row's output once and
serves it from memory afterwards. Rows beyond the memory budget are simply
recomputed each time. Single-pass runs on large data gain nothing and leave it off.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn


class EncoderCache:
    """Encoder outputs by row id, held in CPU memory up to ``max_bytes``."""

    def __init__(self, max_bytes: int):
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self._store: dict[str, torch.Tensor] = {}

    def __len__(self) -> int:
        return len(self._store)

    def encode(self, encoder: nn.Module, features: torch.Tensor, ids: Sequence[str]) -> torch.Tensor:
        """``encoder(features).last_hidden_state``, computing only the rows not cached yet."""
        if len(ids) != features.shape[0]:
            raise ValueError(f"{len(ids)} ids for a batch of {features.shape[0]} rows")
        missing = [i for i, row in enumerate(ids) if row not in self._store]
        fresh = encoder(features[missing]).last_hidden_state if missing else None
        rows, taken = [], 0
        for row in ids:
            cached = self._store.get(row)
            if cached is not None:
                self.hits += 1
                rows.append(cached.to(features.device, non_blocking=True))
                continue
            self.misses += 1
            hidden = fresh[taken]
            taken += 1
            self._put(row, hidden)
            rows.append(hidden)
        return torch.stack(rows)

    def _put(self, row: str, hidden: torch.Tensor) -> None:
        size = hidden.numel() * hidden.element_size()
        if self.used_bytes + size <= self.max_bytes:
            self._store[row] = hidden.detach().to("cpu", copy=True)
            self.used_bytes += size

    def describe(self) -> str:
        seen = self.hits + self.misses
        rate = self.hits / seen if seen else 0.0
        return (
            f"encoder cache {len(self)} rows, {self.used_bytes / 2**20:.0f} MiB, "
            f"hit rate {100 * rate:.0f}%"
        )
