"""Training batches: pseudo-label sequences padded into Whisper's teacher-forcing tensors."""

from __future__ import annotations

import numpy as np
import torch
from ray.data.collate_fn import NumpyBatchCollateFn

from distilray.distill.losses import IGNORE_INDEX


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


class DistillCollate(NumpyBatchCollateFn):
    """Numpy batch (``input_features``, ``pseudo_label_ids``) → model tensors.

    Output: ``input_features`` ``(batch, n_mels, 3000)`` float32, and from
    :func:`pad_labels` ``decoder_input_ids``, ``labels``, ``decoder_attention_mask``
    ``(batch, seq)`` int64; ``ids`` (row ids, a list of str) when the batch has ``id``.
    """

    def __init__(self, pad_token_id: int, decoder_start_token_id: int, max_tokens: int = 448):
        self.pad_token_id = pad_token_id
        self.decoder_start_token_id = decoder_start_token_id
        self.max_tokens = max_tokens

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
        # Ray hands read-only arrays; torch wants writable memory.
        features = torch.from_numpy(np.array(batch["input_features"], dtype=np.float32, copy=True))
        out = pad_labels(
            list(batch["pseudo_label_ids"]),
            pad_token_id=self.pad_token_id,
            decoder_start_token_id=self.decoder_start_token_id,
            max_tokens=self.max_tokens,
        )
        ids = {"ids": [str(i) for i in batch["id"]]} if "id" in batch else {}
        return {"input_features": features, **out, **ids}
