"""Word timestamps from the teacher's alignment heads (``timestamp_granularities[]=word``).

This is the serving side's seam for word timing: :func:`word_timings` turns the
segments of a transcript into a flat list of :class:`~distilray.serving.formats.Word`
s. It follows openai/whisper's ``find_alignment``: one teacher-forced pass over each
segment's tokens with the 30 s window starting at the segment, the cross-attention
of the model's ``alignment_heads`` normalised and median-filtered, then dynamic time
warping from tokens to 20 ms frames (transformers' own DTW and filter).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import numpy as np

from distilray.audio import SAMPLING_RATE
from distilray.serving.formats import Segment, Word

FRAMES_PER_SECOND = 50  # encoder positions per second: 1500 per 30 s window
MEDIAN_FILTER_WIDTH = 7  # whisper's default
# Languages written without spaces between words: split into characters instead.
NO_SPACE_LANGUAGES = {"zh", "ja", "th", "lo", "my", "yue"}


def words_unavailable(model) -> str | None:
    """Why ``model`` cannot time words (no valid ``alignment_heads``), or None."""
    heads = getattr(model.generation_config, "alignment_heads", None)
    layers, width = model.config.decoder_layers, model.config.decoder_attention_heads
    if not heads:
        return (
            "word timestamps are not available: the served teacher has no alignment_heads "
            "in its generation config; use timestamp_granularities segment"
        )
    if any(not (0 <= layer < layers and 0 <= head < width) for layer, head in heads):
        return (
            "word timestamps are not available: the teacher's alignment_heads name "
            f"attention heads it does not have ({layers} layers x {width} heads)"
        )
    return None


def word_timings(
    transcriber,
    audio: np.ndarray,
    segments: Sequence[Segment],
    language: str | None = None,
    task: str | None = None,
) -> list[Word]:
    """Words of every segment with start and end times in seconds, in order.

    ``language`` and ``task`` complete a multilingual teacher's prompt.
    """
    model = transcriber.teacher
    previous = model.config._attn_implementation
    model.set_attn_implementation("eager")  # only eager attention returns attention weights
    try:
        words: list[Word] = []
        for segment in segments:
            if segment.tokens:
                words.extend(_segment_words(transcriber, audio, segment, language, task))
        return words
    finally:
        model.set_attn_implementation(previous)


def _segment_words(
    transcriber, audio: np.ndarray, segment: Segment, language: str | None, task: str | None
) -> list[Word]:
    import torch
    from transformers.models.whisper.generation_whisper import (
        _dynamic_time_warping,
        _median_filter,
    )

    from distilray.features import log_mel
    from distilray.inference.prompt import prompt_ids
    from distilray.inference.shortform import to_model

    model, tokenizer = transcriber.teacher, transcriber.processor.tokenizer
    config = model.generation_config
    begin = int(segment.start * SAMPLING_RATE)
    clip = audio[begin : begin + 30 * SAMPLING_RATE]
    features = torch.from_numpy(log_mel(transcriber.processor.feature_extractor, [clip]))
    prompt = prompt_ids(config, language, task, return_timestamps=False)
    eos = config.eos_token_id[0] if isinstance(config.eos_token_id, list) else config.eos_token_id
    tokens = list(segment.tokens)
    sequence = torch.tensor([[*prompt, *tokens, eos]], device=model.device)
    with torch.inference_mode():
        out = model(
            input_features=to_model(model, features),
            decoder_input_ids=sequence,
            output_attentions=True,
        )
    frames = max(1, len(clip) * FRAMES_PER_SECOND // SAMPLING_RATE)
    weights = torch.stack(
        [out.cross_attentions[layer][0, head] for layer, head in config.alignment_heads]
    )[:, :, :frames].float()
    std, mean = torch.std_mean(weights, dim=-2, keepdim=True, unbiased=False)
    weights = _median_filter((weights - mean) / std, MEDIAN_FILTER_WIDTH)
    # Rows from the last prompt token on: each predicts one text token (then end of text).
    matrix = weights.mean(dim=0)[len(prompt) - 1 : -1]
    text_indices, time_indices = _dynamic_time_warping(-matrix.cpu().double().numpy())
    jumps = np.pad(np.diff(text_indices), (1, 0), constant_values=1).astype(bool)
    jump_times = time_indices[jumps] / FRAMES_PER_SECOND
    return _words(tokenizer, tokens, jump_times, segment)


def _words(tokenizer, tokens: list[int], jump_times: np.ndarray, segment: Segment) -> list[Word]:
    """Group tokens into words and give each the times of its first and last token."""
    groups = split_words([tokenizer.decode([t]) for t in tokens])
    out: list[Word] = []
    index = 0
    for group in groups:
        first, last = index, index + len(group)
        index = last
        text = tokenizer.decode(tokens[first:last]).strip()
        if not text:
            continue
        start = segment.start + float(jump_times[min(first, len(jump_times) - 1)])
        end = segment.start + float(jump_times[min(last, len(jump_times) - 1)])
        start, end = min(start, segment.end), min(max(end, start), segment.end)
        if out and all(c in string.punctuation for c in text):
            out[-1] = Word(out[-1].word + text, out[-1].start, max(out[-1].end, end))
            continue
        out.append(Word(text, start, end))
    return out


def split_words(pieces: Sequence[str]) -> list[list[int]]:
    """Token indices grouped into words: a word starts at a token that starts with a space.

    >>> split_words([" Hello", ",", " wor", "ld", "."])
    [[0], [1], [2, 3], [4]]
    """
    groups: list[list[int]] = []
    for i, piece in enumerate(pieces):
        starts = piece.startswith(" ") or piece.strip() in string.punctuation or not groups
        if starts:
            groups.append([i])
        else:
            groups[-1].append(i)
    return groups
