"""The decoding rules ``generate`` applies, for decoders we drive by hand.

Speculative decoding must produce exactly the teacher's greedy output, so it
needs exactly the prompt and the logits processors Whisper's ``generate`` uses:
the forced prompt (start of transcript, language, task, ``<|notimestamps|>``),
token suppression, suppression at the first position, and the timestamp rules.
We build them with the model's own preparation steps rather than re-deriving them,
so they follow the installed transformers version.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from transformers import LogitsProcessor, LogitsProcessorList
from transformers.generation.logits_process import (
    SuppressTokensAtBeginLogitsProcessor,
    SuppressTokensLogitsProcessor,
)

from distilray.inference.windows import N_FRAMES


@dataclass
class DecodingSetup:
    """What greedy decoding of one batch needs besides the models."""

    prompt: torch.Tensor  # (batch, prompt_len) forced decoder prompt per row
    processors: LogitsProcessorList  # Whisper's rules, applied before every argmax
    eos_token_id: int  # end of text: a row stops after generating it
    max_new_tokens: int  # generated tokens per row at most (end of text included)


def prepare_decoding(
    model,
    input_features: torch.Tensor,
    *,
    encoder_hidden_states: torch.Tensor | None = None,
    max_new_tokens: int = 128,
    return_timestamps: bool = False,
    language: str | None = None,
    task: str | None = None,
    prompt_ids: Sequence[int] = (),
) -> DecodingSetup:
    """Prompt and logits processors exactly as ``model.generate`` builds them (short-form).

    ``encoder_hidden_states`` avoids a second encoder pass when a multilingual model
    has to detect the language. ``prompt_ids`` (``<|startofprev|>`` + text) go in
    front of the forced prompt, as ``generate(prompt_ids=...)`` puts them.
    """
    config = copy.deepcopy(model.generation_config)
    model._set_return_timestamps(return_timestamps, is_shortform=True, generation_config=config)
    model._set_language_and_task(
        language=language, task=task, is_multilingual=None, generation_config=config
    )
    model._set_thresholds_and_condition(
        generation_config=config,
        logprob_threshold=None,
        compression_ratio_threshold=None,
        no_speech_threshold=None,
        condition_on_prev_tokens=None,
    )
    kwargs = {}
    if encoder_hidden_states is not None:
        kwargs["encoder_outputs"] = (encoder_hidden_states,)
    prompt = model._retrieve_init_tokens(
        input_features,
        batch_size=input_features.shape[0],
        generation_config=config,
        config=model.config,
        num_segment_frames=N_FRAMES,
        kwargs=kwargs,
    )
    if len(prompt_ids):
        previous = torch.tensor(list(prompt_ids), dtype=prompt.dtype, device=prompt.device)
        prompt = torch.cat([previous[None].repeat(prompt.shape[0], 1), prompt], dim=-1)
    processors = model._retrieve_logit_processors(
        generation_config=config,
        logits_processor=None,
        begin_index=prompt.shape[1],
        num_beams=1,
        device=model.device,
    )
    limit = model.config.max_target_positions - prompt.shape[1]
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    return DecodingSetup(
        prompt=prompt.clone(),
        processors=LogitsProcessorList([_faster(p) for p in processors or []]),
        eos_token_id=eos,
        max_new_tokens=min(max_new_tokens, limit),
    )


def greedy_tokens(
    processors: LogitsProcessorList,
    prefixes: Sequence[Sequence[int]],
    logits: torch.Tensor,
    *,
    return_scores: bool = False,
):
    """Greedy next token for each prefix, after Whisper's logits processors.

    ``prefixes[i]`` is the full decoder input (prompt included) that produced
    ``logits[i]`` ``(vocab,)``. Token suppression alone (no timestamps) depends only
    on the prefix length and runs as one batched call; otherwise prefixes of equal
    length are processed together (timestamp rules read each prefix). With
    ``return_scores`` it returns ``(tokens, scores)``: the processed scores too.
    """
    if all(isinstance(p, MaskedSuppression) for p in processors):
        lengths = torch.tensor([len(p) for p in prefixes], device=logits.device)
        scores = logits.float()
        for processor in processors:
            scores = processor.by_length(lengths, scores)
        tokens = scores.argmax(dim=-1).tolist()
        return (tokens, scores) if return_scores else tokens
    out = [0] * len(prefixes)
    processed = torch.empty_like(logits, dtype=torch.float32) if return_scores else None
    groups: dict[int, list[int]] = {}
    for i, prefix in enumerate(prefixes):
        groups.setdefault(len(prefix), []).append(i)
    for rows in groups.values():
        ids = torch.tensor([list(prefixes[i]) for i in rows], device=logits.device)
        scores = logits[rows].float()
        scores = processors(ids, scores)
        if processed is not None:
            processed[rows] = scores
        for i, token in zip(rows, scores.argmax(dim=-1).tolist(), strict=True):
            out[i] = token
    return (out, processed) if return_scores else out


class MaskedSuppression(LogitsProcessor):
    """Token suppression with the vocabulary mask built once.

    Same result as transformers' ``SuppressTokensLogitsProcessor`` (``begin_index``
    None) and ``SuppressTokensAtBeginLogitsProcessor`` (only when the prefix is
    exactly ``begin_index`` long), which rebuild the mask with ``torch.isin`` on
    every call: the dominant cost of a round on CPU.
    """

    def __init__(self, tokens: torch.Tensor, begin_index: int | None = None):
        self.tokens = tokens
        self.begin_index = begin_index
        self._mask: torch.Tensor | None = None

    def set_begin_index(self, begin_index: int) -> None:
        if self.begin_index is not None:
            self.begin_index = begin_index

    def _mask_for(self, scores: torch.Tensor) -> torch.Tensor:
        mask = self._mask
        if mask is None or mask.shape[-1] != scores.shape[-1] or mask.device != scores.device:
            mask = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
            tokens = self.tokens.to(scores.device)
            mask[tokens[(tokens >= 0) & (tokens < scores.shape[-1])]] = True
            self._mask = mask
        return mask

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        if self.begin_index is not None and input_ids.shape[-1] != self.begin_index:
            return scores
        return scores.masked_fill(self._mask_for(scores), -float("inf"))

    def by_length(self, lengths: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """The same for rows of different prefix lengths ``lengths`` ``(rows,)``."""
        mask = self._mask_for(scores)[None, :]
        if self.begin_index is not None:
            mask = mask & (lengths == self.begin_index)[:, None]
        return scores.masked_fill(mask, -float("inf"))


def _faster(processor: LogitsProcessor) -> LogitsProcessor:
    """An equivalent processor without per-call set-up, where we have one."""
    if type(processor) is SuppressTokensLogitsProcessor:
        return MaskedSuppression(processor.suppress_tokens)
    if type(processor) is SuppressTokensAtBeginLogitsProcessor:
        return MaskedSuppression(processor.begin_suppress_tokens, processor.begin_index)
    return processor
