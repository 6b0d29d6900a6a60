"""A Whisper decoder with a KV cache whose rows may hold different numbers of tokens.

Speculative decoding accepts a different number of draft tokens in each row, so
after one round the rows of a batch disagree on how many tokens their cache
holds. Instead of splitting the batch, every cache column carries a per-row
"valid" bit: the attention mask hides invalid columns, and each row's position
ids count only its valid tokens. :meth:`RaggedDecoder.compact` then gathers each
row's valid columns to the right end of the cache (left padding), which keeps the
cache as short as the longest row.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from transformers.cache_utils import DynamicCache, EncoderDecoderCache


class RaggedDecoder:
    """One decoder (teacher or student) with a per-row ragged self-attention cache.

    ``encoder_hidden_states`` ``(batch, frames, d_model)`` is the audio the decoder
    attends to; it is never recomputed (its keys and values are cached on the
    first forward).
    """

    def __init__(self, model, encoder_hidden_states: torch.Tensor, pad_token_id: int):
        self.model = model
        self.encoder_hidden_states = encoder_hidden_states
        self.pad_token_id = pad_token_id
        self.device = encoder_hidden_states.device
        batch = encoder_hidden_states.shape[0]
        self.cache = EncoderDecoderCache(DynamicCache(), DynamicCache())
        self.valid = torch.zeros(batch, 0, dtype=torch.bool, device=self.device)
        self.forward_passes = 0

    @property
    def batch_size(self) -> int:
        return self.valid.shape[0]

    @property
    def lengths(self) -> torch.Tensor:
        """Tokens held in the cache per row ``(batch,)``."""
        return self.valid.sum(dim=1)

    def forward(self, rows: Sequence[Sequence[int]]) -> torch.Tensor:
        """Append each row's tokens to the cache and return their logits.

        Rows may differ in length: shorter ones are left-padded with masked columns.
        Returns ``(batch, max_len, vocab)``; row ``i``'s logits for its ``j``-th
        token sit at ``[i, max_len - len(rows[i]) + j]``.
        """
        width = max(len(r) for r in rows)
        ids = torch.full((len(rows), width), self.pad_token_id, dtype=torch.long)
        new_valid = torch.zeros(len(rows), width, dtype=torch.bool)
        for i, row in enumerate(rows):
            if row:
                ids[i, width - len(row) :] = torch.as_tensor(list(row))
                new_valid[i, width - len(row) :] = True
        ids, new_valid = ids.to(self.device), new_valid.to(self.device)
        positions = self.lengths[:, None] + new_valid.long().cumsum(dim=1) - 1
        mask = torch.cat([self.valid, new_valid], dim=1)
        hidden = self.model.model.decoder(
            input_ids=ids,
            attention_mask=mask.long(),
            encoder_hidden_states=self.encoder_hidden_states,
            past_key_values=self.cache,
            position_ids=positions.clamp(min=0),
            use_cache=True,
        ).last_hidden_state
        self.valid = mask
        self.forward_passes += 1
        return self.model.proj_out(hidden)

    def invalidate_last(self, counts: Sequence[int]) -> None:
        """Drop the last ``counts[i]`` valid tokens of row ``i`` (rejected drafts)."""
        for i, n in enumerate(counts):
            if n <= 0:
                continue
            cols = self.valid[i].nonzero().flatten()[-n:]
            self.valid[i, cols] = False

    def compact(self, slack: int = 0) -> None:
        """Gather each row's valid columns to the right end, dropping all-invalid columns.

        Skipped while the cache is at most ``slack`` columns wider than its longest
        row: masked holes cost a little attention, a gather costs a copy of the cache.
        """
        lengths = self.lengths
        width = int(lengths.max().item()) if lengths.numel() else 0
        if self.valid.shape[1] - width <= slack:
            return
        # Sort key puts valid columns last, in their original order.
        cols = torch.arange(self.valid.shape[1], device=self.device)
        key = self.valid.long() * (cols.numel() + 1) + cols
        index = key.argsort(dim=1)[:, -width:] if width else key[:, :0]
        for layer in self.cache.self_attention_cache.layers:
            if layer.keys is None or layer.keys.numel() == 0:
                continue
            gather = index[:, None, :, None].expand(
                -1, layer.keys.shape[1], -1, layer.keys.shape[3]
            )
            layer.keys = layer.keys.gather(2, gather)
            layer.values = layer.values.gather(2, gather)
        self.valid = torch.arange(width, device=self.device)[None, :] >= (width - lengths)[:, None]

    def select_rows(self, keep: torch.Tensor) -> None:
        """Keep only the rows listed in ``keep`` (finished rows leave the batch)."""
        keep = keep.to(self.device)
        self.cache.batch_select_indices(keep)
        self.valid = self.valid[keep]
        self.encoder_hidden_states = self.encoder_hidden_states[keep]
