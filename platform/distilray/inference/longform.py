"""Long-form (> 30 s) transcription: chunked windows or Whisper's sequential sliding.

*Chunked*: the recording is cut into overlapping windows (:mod:`.chunking`), all
windows of all recordings are decoded as one batch stream by any short-form
decoder (greedy or speculative), and the window transcripts are merged.

*Sequential*: transformers' Whisper ``generate`` on the un-truncated features
slides a 30 s window forward to the last predicted timestamp, optionally
conditions on the previous window's text, and falls back to higher
temperatures when an output looks repetitive (gzip compression ratio) or
unlikely (average log-probability). We use it as is; it is the reference
implementation of OpenAI's algorithm.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import torch

from distilray.audio import SAMPLING_RATE
from distilray.inference.chunking import (
    Chunk,
    chunk_spans,
    keep_owned_segments,
    merge_token_sequences,
)
from distilray.inference.shortform import Segment, to_model
from distilray.inference.speculative import SpeculativeStats
from distilray.inference.windows import N_SAMPLES

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    from distilray.inference.decoder import Decoded

WindowDecoder = Callable[[list[np.ndarray]], "Decoded"]
"""Decodes ≤ 30 s clips (:class:`~distilray.inference.decoder.Decoded`, one row per clip)."""


@dataclass(frozen=True)
class SequentialOptions:
    """Settings of Whisper's sequential long-form algorithm (OpenAI's defaults)."""

    condition_on_prev_tokens: bool = False  # prompt each window with the previous text
    temperatures: tuple[float, ...] = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)  # fallback ladder
    compression_ratio_threshold: float | None = 1.35  # gzip ratio above which to fall back
    logprob_threshold: float | None = -1.0  # mean log-prob below which to fall back
    no_speech_threshold: float | None = None  # skip windows judged silent (needs logprob)
    # Windows that fall back to sampling draw from torch's generator seeded with this for
    # each recording, so a recording's transcript is the same in every run, whatever
    # batch it came in, with or without an assistant. None: torch's global random state,
    # and the recordings of a batch decode together (faster on a GPU, not repeatable).
    seed: int | None = 0


@dataclass
class LongFormOutput:
    """The merged transcript of one recording."""

    token_ids: list[int]  # text tokens (no timestamps, no special tokens)
    segments: list[Segment] = field(default_factory=list)  # when timestamps were asked for
    windows: int | None = None  # 30 s windows decoded for it (chunked mode)
    compute_s: float = 0.0  # decoding time of its windows (chunked mode)
    generated_tokens: int = 0  # tokens its windows generated, timestamps included (chunked)
    speculative: SpeculativeStats | None = None  # its windows' drafts (chunked, speculative)


def split_windows(
    audios: Sequence[np.ndarray], chunk_length_s: float, stride_s: float
) -> tuple[list[np.ndarray], list[tuple[int, Chunk]]]:
    """All windows of all recordings, and for each the recording it belongs to."""
    chunk, stride = int(chunk_length_s * SAMPLING_RATE), int(stride_s * SAMPLING_RATE)
    windows, owners = [], []
    for index, audio in enumerate(audios):
        for span in chunk_spans(len(audio), chunk, stride):
            windows.append(audio[span.start : span.end])
            owners.append((index, span))
    return windows, owners


def owned_ends(owners: Sequence[tuple[int, Chunk]]) -> list[float]:
    """How far into each window of :func:`split_windows` its text answers for, in
    seconds on the window's clock (its span minus half of its right overlap)."""
    return [(span.owned[1] - span.start) / SAMPLING_RATE for _, span in owners]


def transcribe_chunked(
    audios: Sequence[np.ndarray],
    decode: WindowDecoder,
    processor,
    timestamp_begin: int,
    *,
    chunk_length_s: float = 30.0,
    stride_s: float = 5.0,
    return_timestamps: bool = False,
) -> list[LongFormOutput]:
    """Chunked long-form transcription of each recording with a short-form decoder."""
    windows, owners = split_windows(audios, chunk_length_s, stride_s)
    decoded = decode(windows)
    per_audio: list[list[tuple[Chunk, int]]] = [[] for _ in audios]
    for row, (index, span) in enumerate(owners):
        per_audio[index].append((span, row))
    special = set(processor.tokenizer.all_special_ids)
    return [
        _merge_recording(parts, decoded, special, timestamp_begin, return_timestamps)
        for parts in per_audio
    ]


def _merge_recording(
    parts: list[tuple[Chunk, int]],
    decoded: Decoded,
    special: set[int],
    timestamp_begin: int,
    return_timestamps: bool,
) -> LongFormOutput:
    """One recording's windows (rows of ``decoded``) as one transcript."""
    rows = [row for _, row in parts]
    texts = [
        [t for t in decoded.ids[row] if t < timestamp_begin and t not in special] for row in rows
    ]
    merged = merge_token_sequences(texts, [span for span, _ in parts])
    segments: list[Segment] = []
    if return_timestamps:
        # keep_owned_segments carries each segment along as the "text" of its triple
        per_window = [[(s.start, s.end, s) for s in decoded.segments[row]] for row in rows]
        kept = keep_owned_segments([span for span, _ in parts], per_window, SAMPLING_RATE)
        segments = [seg.shifted(start - seg.start) for start, _, seg in kept if seg.text]
    present = [decoded.stats[row].speculative for row in rows]
    drafts = None
    if any(s is not None for s in present):
        drafts = sum((s for s in present if s is not None), SpeculativeStats())
    return LongFormOutput(
        token_ids=merged,
        segments=segments,
        windows=len(parts),
        compute_s=sum(decoded.stats[row].compute_s for row in rows),
        generated_tokens=sum(len(decoded.ids[row]) for row in rows),
        speculative=drafts,
    )


def long_features(processor, audios: Sequence[np.ndarray]) -> tuple[torch.Tensor, torch.Tensor]:
    """Un-truncated log-mel features ``(batch, n_mels, frames)`` and their frame mask.

    Padded (with silence) to the longest recording and to at least one 30 s window.
    """
    longest = max(len(a) for a in audios)
    out = processor.feature_extractor(
        list(audios),
        sampling_rate=SAMPLING_RATE,
        return_tensors="pt",
        truncation=False,
        padding="max_length",
        max_length=max(longest, N_SAMPLES),
        return_attention_mask=True,
    )
    return out["input_features"], out["attention_mask"]


def transcribe_sequential(
    model,
    processor,
    audios: Sequence[np.ndarray],
    options: SequentialOptions = SequentialOptions(),
    *,
    language: str | None = None,
    task: str | None = None,
) -> list[LongFormOutput]:
    """Whisper's sequential long-form algorithm on a batch, through ``model.generate``.

    Inside :func:`.drafted.drafted_windows` its greedy windows are speculative.
    """
    features, mask = long_features(processor, audios)
    kwargs = _sequential_kwargs(options, language, task)
    with torch.inference_mode():
        out = model.generate(
            to_model(model, features),
            attention_mask=mask.to(model.device),
            return_timestamps=True,
            return_segments=True,
            **kwargs,
        )
    special = set(processor.tokenizer.all_special_ids)
    begin = model.generation_config.no_timestamps_token_id + 1
    results = []
    for row in out["segments"]:
        ids: list[int] = []
        segments = []
        for seg in row:
            tokens = [int(t) for t in seg["tokens"] if int(t) < begin and int(t) not in special]
            ids.extend(tokens)
            text = processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
            if text:
                segments.append(
                    Segment(
                        round(float(seg["start"]), 2),
                        round(float(seg["end"]), 2),
                        text,
                        tokens=tuple(tokens),
                    )
                )
        results.append(LongFormOutput(token_ids=ids, segments=segments))
    return results


def _sequential_kwargs(options: SequentialOptions, language: str | None, task: str | None) -> dict:
    kwargs: dict = {
        "condition_on_prev_tokens": options.condition_on_prev_tokens,
        "temperature": options.temperatures,
        "compression_ratio_threshold": options.compression_ratio_threshold,
        "logprob_threshold": options.logprob_threshold,
        "no_speech_threshold": options.no_speech_threshold,
        "do_sample": False,
        "num_beams": 1,
    }
    if language is not None:
        kwargs["language"] = language
    if task is not None:
        kwargs["task"] = task
    return kwargs
