"""Short-form (≤ 30 s) batched greedy transcription through ``model.generate``.

This is the path every other stage shares: labelling, evaluation and serving all
turn a batch of clips into token ids here, so the decoding settings (greedy, no
sampling, the model's own generation config) are the same everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from distilray.features import log_mel
from distilray.inference.prompt import end_ids, prompt_vocabulary, split_output
from distilray.inference.windows import TIME_PRECISION

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Word:
    """One word of a transcript and when it is spoken (:mod:`.words`)."""

    start: float  # seconds, on the same clock as its segment
    end: float  # seconds
    word: str  # the word as decoded, leading space included (as whisper prints it)
    probability: float  # mean probability the model gave the word's tokens


@dataclass(frozen=True)
class Segment:
    """One timestamped stretch of a transcript."""

    start: float  # seconds from the start of the audio
    end: float  # seconds from the start of the audio
    text: str  # decoded text of the stretch, special tokens removed
    words: tuple[Word, ...] = ()  # its words with their times, when word timestamps were asked
    tokens: tuple[int, ...] = ()  # its text token ids (no timestamps), when known

    def shifted(self, offset: float) -> Segment:
        """The same segment (and its words) ``offset`` seconds later, rounded to 10 ms."""
        words = tuple(
            Word(round(w.start + offset, 2), round(w.end + offset, 2), w.word, w.probability)
            for w in self.words
        )
        return Segment(
            round(self.start + offset, 2),
            round(self.end + offset, 2),
            self.text,
            words=words,
            tokens=self.tokens,
        )

    def as_dict(self) -> dict:
        """JSON-ready; ``words`` only when there are any."""
        out: dict = {"start": self.start, "end": self.end, "text": self.text}
        if self.words:
            out["words"] = [vars(w) for w in self.words]
        return out


def _generate_kwargs(
    max_new_tokens: int,
    return_timestamps: bool,
    language: str | None,
    task: str | None,
    prompt_ids: Sequence[int] = (),
    temperature: float = 0.0,
) -> dict:
    kwargs: dict = {
        # Whisper's generate counts `max_length` from the end of the decoder prompt (it
        # adds the prompt's length, capped at max_target_positions), so this allows
        # exactly `max_new_tokens` tokens. Passing `max_new_tokens` instead makes
        # transformers warn on every call: the checkpoints' generation config sets
        # max_length=448.
        "max_length": max_new_tokens,
        "return_timestamps": return_timestamps,
        "do_sample": temperature > 0,
        "num_beams": 1,
        # One decoding pass per clip: without this, v5 re-seeks inside a 30 s window
        # after a timestamped segment ends early (sequential long-form behaviour).
        "force_unique_generate_call": True,
    }
    if temperature > 0:
        kwargs["temperature"] = temperature
    # Whisper's initial prompt: <|startofprev|> + text, before the start of transcript.
    if len(prompt_ids):
        kwargs["prompt_ids"] = torch.tensor(list(prompt_ids), dtype=torch.long)
    # English-only checkpoints reject language/task; pass them only when asked for.
    if language is not None:
        kwargs["language"] = language
    if task is not None:
        kwargs["task"] = task
    return kwargs


def window_mask(batch: int, frames: int, device: torch.device) -> torch.Tensor:
    """An all-ones ``(batch, frames)`` attention mask for short-form features.

    Every clip is padded to the same 30 s window and Whisper attends to all of it, so
    nothing is masked; without a mask ``generate`` warns about batched input whose
    padding it cannot infer (Whisper pads with end of text).
    """
    return torch.ones(batch, frames, dtype=torch.long, device=device)


def prompt_token_ids(generation_config) -> set[int]:
    """Ids of Whisper's forced decoder prompt (see :func:`.prompt.prompt_vocabulary`)."""
    return prompt_vocabulary(generation_config)


def generated_part(row: Sequence[int], prompt_ids: set[int], eos_ids: set[int]) -> list[int]:
    """The generated tokens of one output row: forced prompt, end of text and padding removed."""
    return split_output(row, prompt_ids, eos_ids)[1]


def eos_token_ids(generation_config) -> set[int]:
    """End-of-text and padding ids (Whisper pads with end of text)."""
    return end_ids(generation_config)


def to_model(model, input_features: torch.Tensor | np.ndarray) -> torch.Tensor:
    """Features as a tensor on the model's device and in its floating dtype."""
    feats = torch.as_tensor(input_features)
    return feats.to(device=model.device, dtype=model.dtype)


def generate_greedy(model, processor, input_features, **kwargs) -> list[list[int]]:
    """Greedy token ids per row for a batch of ≤ 30 s log-mel features.

    Each row holds the tokens the model generated, special tokens (timestamps)
    included as generated; the forced decoder prompt, the end-of-text token and
    the batch padding are removed. Keyword arguments as :func:`generate_prompted`.
    """
    return [ids for _, ids in generate_prompted(model, processor, input_features, **kwargs)]


def generate_prompted(
    model,
    processor,
    input_features: torch.Tensor | None,
    *,
    max_new_tokens: int = 128,
    return_timestamps: bool = False,
    language: str | None = None,
    task: str | None = None,
    encoder_hidden_states: torch.Tensor | None = None,
    prompt_ids: Sequence[int] = (),
    temperature: float = 0.0,
) -> list[tuple[list[int], list[int]]]:
    """``(prompt, generated)`` per row for a batch of ≤ 30 s log-mel features.

    ``prompt`` is the forced decoder prompt ``generate`` started the row from;
    ``generated`` the tokens after it, timestamps included, end of text and batch
    padding removed. ``encoder_hidden_states`` (the encoder's output for
    ``input_features``, when the caller already has it) skips the encoder pass.
    ``prompt_ids`` (``<|startofprev|>`` + text, :func:`~distilray.inference.prompt.
    text_prompt_ids`) condition decoding as Whisper's initial prompt, and ``prompt``
    then starts with them; ``temperature`` above 0 samples instead of taking the argmax.
    """
    kwargs = _generate_kwargs(
        max_new_tokens, return_timestamps, language, task, prompt_ids, temperature
    )
    with torch.inference_mode():
        if encoder_hidden_states is None:
            features = to_model(model, input_features)
            mask = window_mask(features.shape[0], features.shape[-1], model.device)
            sequences = model.generate(features, attention_mask=mask, **kwargs)
        else:
            from transformers.modeling_outputs import BaseModelOutput

            encoded = BaseModelOutput(last_hidden_state=encoder_hidden_states)
            # Two log-mel frames per encoder position (the convolutions' stride).
            batch, positions = encoder_hidden_states.shape[:2]
            mask = window_mask(batch, 2 * positions, model.device)
            sequences = model.generate(encoder_outputs=encoded, attention_mask=mask, **kwargs)
    if isinstance(sequences, dict):  # some settings return a dict with "sequences"
        sequences = sequences["sequences"]
    config = model.generation_config
    vocabulary, eos = prompt_vocabulary(config), end_ids(config)
    # generate returns the text prompt in front of each row: it is part of the prompt.
    previous = list(prompt_ids)
    out = []
    for row in sequences:
        ids = row.tolist()
        forced, generated = split_output(ids[len(previous) :], vocabulary, eos)
        out.append(([*previous, *forced], generated))
    return out


def transcribe_batch(
    model,
    processor,
    audios: list[np.ndarray],
    *,
    max_new_tokens: int = 128,
    return_timestamps: bool = False,
    language: str | None = None,
    task: str | None = None,
) -> list[str]:
    """Decoded text (special tokens skipped) for a batch of ≤ 30 s 16 kHz clips."""
    if not audios:
        return []
    features = torch.from_numpy(log_mel(processor.feature_extractor, audios))
    ids = generate_greedy(
        model,
        processor,
        features,
        max_new_tokens=max_new_tokens,
        return_timestamps=return_timestamps,
        language=language,
        task=task,
    )
    return [text.strip() for text in processor.batch_decode(ids, skip_special_tokens=True)]


def split_timestamped(
    ids: Sequence[int], timestamp_begin: int, *, end_time: float | None = None
) -> list[tuple[float, float, list[int]]]:
    """Split timestamped token ids into ``(start, end, text_tokens)`` triples.

    Whisper brackets each segment by ``<|start|> text <|end|>``; a segment left open
    at the end of the output ends at ``end_time`` (or its start when not given).
    With ``end_time`` (the audio's length) no segment ends after it: Whisper's last
    timestamp sometimes overshoots into the padding. Times are relative to the start
    of the window the tokens were decoded from.
    """
    segments: list[tuple[float, float, list[int]]] = []
    start: float | None = None
    tokens: list[int] = []
    for tok in ids:
        if tok < timestamp_begin:
            tokens.append(tok)
            continue
        t = (tok - timestamp_begin) * TIME_PRECISION
        if start is None:
            start = t
        else:
            segments.append((start, t, tokens))
            start, tokens = None, []
    if tokens:
        begin = start if start is not None else (segments[-1][1] if segments else 0.0)
        segments.append((begin, end_time if end_time is not None else begin, tokens))
    if end_time is None:
        return segments
    clamped = []
    for start, end, tokens in segments:
        end = min(end, end_time)
        clamped.append((min(start, end), end, tokens))
    return clamped


def timestamp_begin_id(generation_config) -> int:
    """Id of ``<|0.00|>``: the token after ``<|notimestamps|>``."""
    return generation_config.no_timestamps_token_id + 1


def segments_from_ids(
    processor,
    ids: Sequence[int],
    timestamp_begin: int,
    *,
    time_offset: float = 0.0,
    end_time: float | None = None,
) -> list[Segment]:
    """Timestamped :class:`Segment` s (text decoded) from ids generated with timestamps.

    With ``end_time`` (the audio's length) no segment ends after the audio does.
    """
    out = []
    for start, end, tokens in split_timestamped(ids, timestamp_begin, end_time=end_time):
        text = processor.tokenizer.decode(tokens, skip_special_tokens=True).strip()
        if text:
            out.append(Segment(start + time_offset, end + time_offset, text, tokens=tuple(tokens)))
    return out
