"""How sure the teacher was of a transcript: Whisper's own decoding-quality signals.

Whisper judges each decoded window by three numbers (openai/whisper ``transcribe``):
the average log-probability of its tokens, the gzip compression ratio of its text
(loops compress well), and the probability of ``<|nocaptions|>`` at the start of
the transcript (silence). Labelling records them for every row so that rows with
no reference transcript, which the WER filter cannot judge, can be filtered by
the teacher's confidence instead (:mod:`distilray.distill.data`).

The scores come from one teacher-forced decoder pass over the finished sequences,
reusing the encoder output that generation already computed, so they cost a
fraction of the generation itself.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Confidence:
    """The teacher's confidence in one transcript."""

    avg_logprob: float  # mean log-probability of the generated tokens and end of text
    compression_ratio: float  # len(text) / len(gzip(text)) in bytes; > 2.4: likely a loop
    no_speech_prob: float  # P(<|nocaptions|>) at the start of the transcript


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression (Whisper's loop detector).

    >>> compression_ratio("") == 0.0
    True
    >>> compression_ratio("la " * 50) > 2.4
    True
    """
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def no_speech_token_id(generation_config) -> int:
    """``<|nocaptions|>``: the token just before ``<|notimestamps|>`` in every Whisper vocabulary."""
    return int(generation_config.no_timestamps_token_id) - 1


def sequence_scores(
    model,
    encoder_hidden_states: torch.Tensor,
    sequences: Sequence[Sequence[int]],
    prompt_lengths: Sequence[int],
    *,
    suppress_tokens: Sequence[int] = (),
    no_speech_id: int,
    start_positions: Sequence[int] | None = None,
) -> list[tuple[float, float]]:
    """``(avg_logprob, no_speech_prob)`` of each full decoder sequence.

    ``sequences[i]`` is the prompt (``prompt_lengths[i]`` tokens) followed by what
    was generated for encoder row ``i`` (end of text included when it was produced);
    ``encoder_hidden_states`` is ``(batch, frames, d_model)``. Log-probabilities are
    taken after masking ``suppress_tokens``, as Whisper scores tokens after its
    suppression filters. A sequence with nothing generated scores 0.0.
    ``start_positions[i]`` is where the start of transcript sits in ``sequences[i]``
    (after a ``<|startofprev|>`` text prompt); the no-speech probability is read
    there. Default: position 0.
    """
    if not len(sequences):
        return []
    width = max(len(s) for s in sequences)
    pad = sequences[0][0]
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, seq in enumerate(sequences):
        ids[row, : len(seq)] = torch.tensor(list(seq), dtype=torch.long)
        mask[row, : len(seq)] = 1
    device = encoder_hidden_states.device
    with torch.inference_mode():
        hidden = model.model.decoder(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            encoder_hidden_states=encoder_hidden_states,
        ).last_hidden_state
        logits = model.proj_out(hidden).float()
        starts = torch.tensor(list(start_positions or [0] * len(sequences)), device=device)
        first = logits[torch.arange(len(sequences), device=device), starts]
        no_speech = first.softmax(dim=-1)[:, no_speech_id].tolist()
        if len(suppress_tokens):
            logits[..., list(suppress_tokens)] = -float("inf")
        logprobs = logits.log_softmax(dim=-1)
        return [
            (_mean_logprob(logprobs[row], seq, start), no_speech[row])
            for row, (seq, start) in enumerate(zip(sequences, prompt_lengths, strict=True))
        ]


def _mean_logprob(logprobs: torch.Tensor, seq: Sequence[int], start: int) -> float:
    """Mean log-probability of ``seq[start:]``; ``logprobs`` is ``(positions, vocab)``."""
    if start >= len(seq):
        return 0.0
    targets = torch.tensor(list(seq[start:]), dtype=torch.long, device=logprobs.device)
    # the token at position t is predicted by the logits at position t - 1
    return float(logprobs[start - 1 : len(seq) - 1].gather(-1, targets[:, None]).mean())
