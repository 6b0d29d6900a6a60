"""Word-level timestamps from cross-attention, as openai/whisper's ``timing.py`` does.

A few decoder cross-attention heads (the model's ``alignment_heads``) attend to the
audio where the token they predict is spoken. One teacher-forced pass over
``prompt <|notimestamps|> text <|endoftext|>`` gives their attention; normalised,
median-filtered and averaged, it is aligned to the audio frames by dynamic time
warping, and each word starts where its first token's row first moves forward.
Works for any decoder's output (greedy or speculative): it reads tokens, not how
they were chosen.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence

import numpy as np
import torch

from distilray.inference.prompt import end_of_text, prompt_vocabulary
from distilray.inference.shortform import Segment, Word
from distilray.inference.windows import FRAMES_PER_POSITION, N_FRAMES, TIME_PRECISION

MEDIAN_FILTER_WIDTH = 7  # openai/whisper's default
PUNCTUATION = "\"'“¿([{-.,!?:;)]}、。，！？：”"  # marks that belong to the word before them


def has_alignment_heads(model) -> bool:
    """Whether the model's ``alignment_heads`` exist in its decoder (exported students
    once kept the teacher's, which point at layers they do not have)."""
    return alignment_problem(model) is None


def alignment_problem(model) -> str | None:
    """Why ``model`` cannot time words (its ``alignment_heads`` are missing or name
    heads it does not have), or None when it can."""
    heads = getattr(model.generation_config, "alignment_heads", None)
    if not heads:
        return "the model has no alignment_heads in its generation config"
    layers, per_layer = model.config.decoder_layers, model.config.decoder_attention_heads
    if all(0 <= int(layer) < layers and 0 <= int(h) < per_layer for layer, h in heads):
        return None
    return (
        "the model's alignment_heads name attention heads it does not have "
        f"({layers} layers x {per_layer} heads)"
    )


def add_words(
    model,
    processor,
    encoded: torch.Tensor,
    prompts: Sequence[Sequence[int]],
    generated: Sequence[Sequence[int]],
    end_times: Sequence[float | None],
) -> list[list[Segment]]:
    """Timestamped segments of each row of ``encoded`` (the encoder's output for the
    rows' log-mel features, as the decoder computed it), each with its words."""
    return [
        timed_segments(model, processor, encoded[i : i + 1], prompts[i], generated[i], end_times[i])
        for i in range(len(generated))
    ]


def timed_segments(
    model, processor, encoded: torch.Tensor, prompt, generated, end_time: float | None
) -> list[Segment]:
    """The segments of one window's ``generated`` ids (window clock), words included.

    Without predicted timestamps the whole text is one segment from its first word
    to its last.
    """
    from distilray.inference.shortform import split_timestamped, timestamp_begin_id

    begin = timestamp_begin_id(model.generation_config)
    special = set(processor.tokenizer.all_special_ids)
    triples = [
        (start, end, [t for t in tokens if t not in special])
        for start, end, tokens in split_timestamped(generated, begin, end_time=end_time)
    ]
    text = [t for _, _, tokens in triples for t in tokens]
    if not text:
        return []
    times, probs = token_times(model, encoded, prompt, text, end_time)
    timestamped = any(t >= begin for t in generated)
    out, cursor = [], 0
    for start, end, tokens in triples:
        words = []
        for word, word_tokens in split_words(processor, tokens):
            n = len(word_tokens)
            w_start, w_end = float(times[cursor]), float(times[cursor + n])
            if end_time is not None:
                w_start, w_end = min(w_start, end_time), min(w_end, end_time)
            p = float(np.mean(probs[cursor : cursor + n]))
            words.append(Word(round(w_start, 2), round(w_end, 2), word, round(p, 4)))
            cursor += n
        body = processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        if not body:
            continue
        if not timestamped:
            start, end = words[0].start, words[-1].end
        out.append(Segment(start, end, body, words=tuple(words), tokens=tuple(tokens)))
    return out


def token_times(
    model, encoded: torch.Tensor, prompt, text: Sequence[int], end_time: float | None
) -> tuple[np.ndarray, np.ndarray]:
    """Start time of each text token plus the end of the last (``len(text) + 1`` values,
    seconds on the window clock), and the probability of each text token."""
    config = model.generation_config
    vocab = prompt_vocabulary(config) - {config.no_timestamps_token_id}
    sot = [t for t in prompt if t in vocab] + [config.no_timestamps_token_id]
    tokens = sot + list(text) + [end_of_text(config)]
    weights, probs = _attention(model, encoded, tokens, len(sot), len(text))
    frames = N_FRAMES if end_time is None else min(N_FRAMES, int(end_time * 100))
    weights = weights[:, :, : max(1, frames // FRAMES_PER_POSITION)]
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = (weights - mean) / (std + 1e-8)
    weights = _median_filter(weights, MEDIAN_FILTER_WIDTH)
    matrix = weights.mean(dim=0)[len(sot) - 1 : -1]  # rows: <|notimestamps|>, text tokens
    text_index, time_index = _dynamic_time_warping(-matrix.double().cpu().numpy())
    jumps = np.pad(np.diff(text_index), (1, 0), constant_values=1).astype(bool)
    return time_index[jumps] * TIME_PRECISION, probs


def split_words(processor, tokens: Sequence[int]) -> list[tuple[str, list[int]]]:
    """Group text tokens into words: a word starts at a token that begins with a space;
    a token of punctuation alone stays with the word before it (languages written
    with spaces, as openai/whisper's ``split_tokens_on_spaces``)."""
    words: list[tuple[str, list[int]]] = []
    for token in tokens:
        piece = processor.tokenizer.decode([token])
        stripped = piece.strip()
        punctuation = bool(stripped) and all(c in PUNCTUATION for c in stripped)
        if words and (not piece.startswith(" ") or punctuation):
            word, toks = words[-1]
            words[-1] = (word + piece, [*toks, token])
        else:
            words.append((piece, [token]))
    return words


@contextlib.contextmanager
def eager_attention(model, on: bool = True):
    """Eager attention while ``on`` (only it returns attention weights), then as it was."""
    if not on:
        yield
        return
    saved = model.config._attn_implementation
    model.config._attn_implementation = "eager"
    try:
        yield
    finally:
        model.config._attn_implementation = saved


def _attention(model, encoded, tokens, n_sot: int, n_text: int):
    """Alignment-head cross-attention ``(heads, tokens, positions)`` and text-token probabilities."""
    heads = [(int(layer), int(h)) for layer, h in model.generation_config.alignment_heads]
    ids = torch.tensor([tokens], device=model.device)
    with eager_attention(model), torch.inference_mode():
        out = model(
            encoder_outputs=(encoded,),
            decoder_input_ids=ids,
            output_attentions=True,
            use_cache=False,
        )
    weights = torch.stack([out.cross_attentions[layer][0, h] for layer, h in heads]).float()
    logits = out.logits[0, n_sot - 1 : n_sot - 1 + n_text].float()
    probs = logits.softmax(-1).gather(-1, ids[0, n_sot : n_sot + n_text, None])[:, 0]
    return weights, probs.cpu().numpy()


def _median_filter(x: torch.Tensor, width: int) -> torch.Tensor:
    from transformers.models.whisper.generation_whisper import _median_filter as median

    return median(x, width)


def _dynamic_time_warping(matrix: np.ndarray):
    from transformers.models.whisper.generation_whisper import _dynamic_time_warping as dtw

    return dtw(matrix)
