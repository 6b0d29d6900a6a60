"""Training batches: pseudo-label sequences padded into Whisper's teacher-forcing tensors.

Pseudo-labels are recorded with timestamp tokens. Each epoch, a share of the rows
(``TimestampMix.probability``) keeps them and the rest are stripped to the
``<|notimestamps|>`` form, so one student learns both Whisper tasks: plain
transcripts, and the timestamped ones that sequential long-form decoding needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from distilray.distill.losses import IGNORE_INDEX
from distilray.hashing import unit_hash


def pad_labels(
    sequences: list[np.ndarray] | list[list[int]],
    *,
    pad_token_id: int,
    decoder_start_token_id: int,
    max_tokens: int,
) -> dict[str, torch.Tensor]:
    """Teacher-forcing tensors from full token sequences (prompt ... end of text).

    For each sequence ``ids`` (cut to ``max_tokens``, with the start-of-transcript token
    prepended if missing): ``decoder_input_ids = ids[:-1]`` and ``labels = ids[1:]``.
    Rows are right-padded to the longest: inputs with ``pad_token_id``, labels with -100,
    ``decoder_attention_mask`` 0. All three are ``(batch, longest - 1)`` int64.
    """
    rows = []
    for seq in sequences:
        ids = [int(t) for t in seq]
        if not ids or ids[0] != decoder_start_token_id:
            ids.insert(0, decoder_start_token_id)
        rows.append(ids[:max_tokens])
    width = max(max(len(r) for r in rows) - 1, 1)
    inputs = torch.full((len(rows), width), pad_token_id, dtype=torch.long)
    labels = torch.full((len(rows), width), IGNORE_INDEX, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, ids in enumerate(rows):
        n = len(ids) - 1
        inputs[i, :n] = torch.tensor(ids[:-1])
        labels[i, :n] = torch.tensor(ids[1:])
        mask[i, :n] = 1
    return {"decoder_input_ids": inputs, "labels": labels, "decoder_attention_mask": mask}


@dataclass(frozen=True)
class TimestampMix:
    """Which rows keep their timestamp tokens, and how the others are stripped."""

    probability: float  # share of rows trained with timestamps
    no_timestamps_id: int  # <|notimestamps|>
    timestamp_begin: int  # <|0.00|>: every id from here on is a timestamp
    prompt_ids: frozenset[int]  # forced-prompt tokens (start of transcript, language, task)
    seed: int = 0  # varies the choice from epoch to epoch

    @classmethod
    def from_config(cls, generation_config, probability: float, seed: int = 0) -> TimestampMix:
        from distilray.inference.shortform import prompt_token_ids, timestamp_begin_id

        no_ts = generation_config.no_timestamps_token_id
        prompt = prompt_token_ids(generation_config) - {no_ts}
        return cls(
            probability, no_ts, timestamp_begin_id(generation_config), frozenset(prompt), seed
        )

    def keeps(self, row_id: str) -> bool:
        """Whether ``row_id`` trains with timestamps this epoch (a stable hash)."""
        return unit_hash(f"{self.seed}:{row_id}") < self.probability

    def apply(self, ids: Sequence[int], keep: bool) -> list[int]:
        """``ids`` with timestamps kept, or stripped to prompt + ``<|notimestamps|>`` + text.

        Rows labelled without timestamps (their prompt holds ``<|notimestamps|>``)
        are returned as they are either way.
        """
        ids = [int(t) for t in ids]
        if self.no_timestamps_id in ids:
            return ids
        start = 0
        while start < len(ids) and ids[start] in self.prompt_ids:
            start += 1
        if keep:
            return ids
        text = [t for t in ids[start:] if t < self.timestamp_begin]
        return [*ids[:start], self.no_timestamps_id, *text]


class DistillCollate(NumpyBatchCollateFn):
    """Numpy batch (``input_features``, ``pseudo_label_ids``) → model tensors.

    Output: ``input_features`` ``(batch, n_mels, 3000)`` float32, and from
    :func:`pad_labels` ``decoder_input_ids``, ``labels``, ``decoder_attention_mask``
    ``(batch, seq)`` int64; ``ids`` (row ids, a list of str) when the batch has ``id``.
    """

    def __init__(
        self,
        pad_token_id: int,
        decoder_start_token_id: int,
        max_tokens: int = 448,
        timestamps: TimestampMix | None = None,
    ):
        self.pad_token_id = pad_token_id
        self.decoder_start_token_id = decoder_start_token_id
        self.max_tokens = max_tokens
        self.timestamps = timestamps  # None: sequences are used as labelled

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # Ray hands read-only arrays; torch wants writable memory.
        features = torch.from_numpy(np.array(batch["input_features"], dtype=np.float32, copy=True))
        sequences = list(batch["pseudo_label_ids"])
        if self.timestamps is not None:
            mix = self.timestamps
            sequences = [
                mix.apply(seq, mix.keeps(str(row_id)))
                for seq, row_id in zip(sequences, batch["id"], strict=True)
            ]
        out = pad_labels(
            sequences,
            pad_token_id=self.pad_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
            max_tokens=self.max_tokens,
        )
        ids = {"ids": [str(i) for i in batch["id"]]} if "id" in batch else {}
        return {"input_features": features, **out, **ids}
