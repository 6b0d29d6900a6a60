"""Frozen encoder outputs kept across epochs, so that later epochs skip the encoder.

The student's encoder is the teacher's and never trains, so a row's encoder output
is the same at every epoch. On small multi-epoch runs (the CPU demo) the encoder is
most of a step's cost; :class:`EncoderCache` computes each row's output once and
serves it from memory afterwards. Rows beyond the memory budget are simply
recomputed each time. Single-pass runs on large data gain nothing and leave it off.

With a store (:class:`~distilray.models.encoder_store.EncoderStore`) the outputs
also go to local disk, where labelling may already have left them, so a rerun, a
resumed run or an ablation over the same labels skips the encoder from its first
epoch.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from distilray.models.encoder_store import EncoderStore


class EncoderCache:
    """Encoder outputs by row id, held in CPU memory up to ``max_bytes`` (and on disk)."""

    def __init__(self, max_bytes: int, disk: EncoderStore | None = None):
        self.max_bytes = max_bytes
        self.used_bytes = 0
        self.hits = 0
        self.misses = 0
        self.disk_hits = 0
        self._store: dict[str, torch.Tensor] = {}
        self.disk = disk

    def __len__(self) -> int:
        return len(self._store)

    def encode(
        self, encoder: nn.Module, features: torch.Tensor, ids: Sequence[str]
    ) -> torch.Tensor:
        """``encoder(features).last_hidden_state``, computing only the rows not cached yet."""
        if len(ids) != features.shape[0]:
            raise ValueError(f"{len(ids)} ids for a batch of {features.shape[0]} rows")
        found: list[torch.Tensor | None] = []
        for i, row in enumerate(ids):
            cached = self._store.get(row)
            if cached is None:
                cached = self._load(row, features[i])
            else:
                self.hits += 1
            found.append(cached)
        missing = [i for i, hidden in enumerate(found) if hidden is None]
        if missing:
            fresh = encoder(features[missing]).last_hidden_state
            for taken, i in enumerate(missing):
                self.misses += 1
                found[i] = fresh[taken]
                self._save(features[i], fresh[taken])
                self._put(ids[i], fresh[taken])
        return torch.stack([h.to(features.device, non_blocking=True) for h in found])

    def _load(self, row: str, features: torch.Tensor) -> torch.Tensor | None:
        """``row``'s output from disk (kept in memory too, within budget), or None."""
        hidden = self.disk.load(features) if self.disk is not None else None
        if hidden is not None:
            self.disk_hits += 1
            self.hits += 1
            self._put(row, hidden)
        return hidden

    def _save(self, features: torch.Tensor, hidden: torch.Tensor) -> None:
        if self.disk is not None:
            self.disk.save(features, hidden)

    def _put(self, row: str, hidden: torch.Tensor) -> None:
        size = hidden.numel() * hidden.element_size()
        if self.used_bytes + size <= self.max_bytes:
            self._store[row] = hidden.detach().to("cpu", copy=True)
            self.used_bytes += size

    def describe(self) -> str:
        seen = self.hits + self.misses
        rate = self.hits / seen if seen else 0.0
        disk = f", {self.disk_hits} read from disk" if self.disk is not None else ""
        return (
            f"encoder cache {len(self)} rows, {self.used_bytes / 2**20:.0f} MiB, "
            f"hit rate {100 * rate:.0f}%{disk}"
        )
