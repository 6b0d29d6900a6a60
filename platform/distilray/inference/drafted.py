"""Speculative decoding inside Whisper's sequential long-form algorithm.

transformers' sequential ``generate`` slides a 30 s window over the recording and,
for each window and each fallback temperature, calls the plain
``GenerationMixin.generate`` with the window's features, its decoder prompt and
Whisper's logits processors. :func:`drafted_windows` puts a step between the two:
a window decoded greedily goes through the speculative loop of
:mod:`.speculative` (the student drafts, the teacher verifies) and comes back in
the form ``generate`` would have returned it, processed scores included (the
log-probability fallback test reads them). Anything else (a window that falls
back to temperature sampling, or a setting the loop does not cover) is decoded by
the teacher alone, untouched. So the transcript is exactly the teacher's: greedy
windows are token for token its greedy output, and sampled windows draw the same
random numbers in the same order as without an assistant.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from transformers import LogitsProcessorList
from transformers.generation import GenerationMixin
from transformers.generation.utils import GenerateEncoderDecoderOutput

from distilray.inference.decoding import DecodingSetup, _faster
from distilray.inference.prompt import end_of_text
from distilray.inference.speculative import SpeculativeStats, _SpeculativeLoop, encode

_DRAFTER = "_distilray_drafter"  # instance attribute holding the active _Drafter


class _Drafter:
    """The assistant and the counters of one sequential ``generate`` call."""

    def __init__(self, assistant, num_draft_tokens: int, heuristic: bool):
        self.assistant = assistant
        self.num_draft_tokens, self.heuristic = num_draft_tokens, heuristic
        self.stats = SpeculativeStats()
        self.drafted_windows = 0  # window decodings that went through the speculative loop
        self.teacher_windows = 0  # window decodings left to the teacher (sampling fallback)

    def covers(self, args: tuple, kwargs: dict) -> bool:
        """Whether this ``generate`` call is one the speculative loop reproduces exactly."""
        config = kwargs.get("generation_config")
        processors = kwargs.get("logits_processor") or []
        mask = kwargs.get("decoder_attention_mask")
        return (
            config is not None
            and not config.do_sample
            and (config.num_beams or 1) == 1
            and kwargs.get("decoder_input_ids") is not None
            and (mask is None or bool(mask.all()))  # left-padded prompts shift positions
            and not kwargs.get("prefix_allowed_tokens_fn")
            and not kwargs.get("stopping_criteria")
            and not getattr(config, "output_attentions", False)
            and config.cache_implementation != "static"
            and not any(type(p).__name__ == "WhisperNoSpeechDetection" for p in processors)
            and len(args) == 1
        )

    def generate(self, teacher, features: torch.Tensor, kwargs: dict):
        """The speculative loop's output in ``GenerationMixin.generate``'s form."""
        config = kwargs["generation_config"]
        prompt = kwargs["decoder_input_ids"]
        max_new = config.max_new_tokens
        if max_new is None:
            max_new = config.max_length - prompt.shape[1]
        processors = LogitsProcessorList([_faster(p) for p in kwargs["logits_processor"] or []])
        setup = DecodingSetup(prompt.clone(), processors, end_of_text(config), max_new)
        with torch.inference_mode():
            encoded = encode(teacher, features)
            loop = _SpeculativeLoop(
                teacher, self.assistant, encoded, setup, self.num_draft_tokens, keep_scores=True
            )
            loop.heuristic = self.heuristic
            out = loop.run()
        self.drafted_windows += len(out.sequences)
        for row in out.row_stats:
            self.stats = self.stats + row
        return _as_generate_output(prompt, out, config, teacher.dtype)


def _as_generate_output(prompt: torch.Tensor, out, config, dtype):
    """Rows ``prompt + generated + end of text``, padded as greedy ``generate`` pads them."""
    pad = config.pad_token_id
    rows = [
        p + ids + ([] if len(scores) == len(ids) else [end_of_text(config)])
        for p, ids, scores in zip(out.prompts, out.sequences, out.scores, strict=True)
    ]
    width = max(len(r) for r in rows)
    sequences = torch.full((len(rows), width), pad, dtype=torch.long, device=prompt.device)
    for i, row in enumerate(rows):
        sequences[i, : len(row)] = torch.tensor(row, dtype=torch.long)
    if not config.return_dict_in_generate:
        return sequences
    scores = None
    if config.output_scores:
        steps = width - prompt.shape[1]
        vocab = out.scores[0][0].shape[-1]
        zeros = torch.zeros(vocab, dtype=dtype, device=prompt.device)
        scores = tuple(
            torch.stack([r[t].to(dtype) if t < len(r) else zeros for r in out.scores])
            for t in range(steps)
        )
    return GenerateEncoderDecoderOutput(sequences=sequences, scores=scores)


class _DraftedGenerate(GenerationMixin):
    """Sits between Whisper's ``generate`` and the plain one (see the module doc)."""

    def generate(self, *args, **kwargs):
        drafter = self.__dict__.get(_DRAFTER)
        if drafter is None or not drafter.covers(args, kwargs):
            if drafter is not None:
                drafter.teacher_windows += 1
            return super().generate(*args, **kwargs)
        return drafter.generate(self, args[0], kwargs)


@functools.cache
def _drafted_class(cls: type) -> type:
    # MRO: cls, WhisperGenerationMixin, _DraftedGenerate, GenerationMixin, ...: the
    # ``super().generate`` inside Whisper's generate now lands in _DraftedGenerate.
    return type(f"Drafted{cls.__name__}", (cls, _DraftedGenerate), {})


@contextmanager
def drafted_windows(
    teacher, assistant, *, num_draft_tokens: int = 5, heuristic: bool = False
) -> Iterator[_Drafter]:
    """Within the block, greedy window decodings of ``teacher.generate`` are speculative.

    Yields the drafter, whose counters say what happened. Not for a teacher that
    another thread is using at the same time (serving keeps one decode per replica).
    """
    original = type(teacher)
    drafter = _Drafter(assistant, num_draft_tokens, heuristic)
    teacher.__class__ = _drafted_class(original)
    teacher.__dict__[_DRAFTER] = drafter
    try:
        yield drafter
    finally:
        teacher.__class__ = original
        teacher.__dict__.pop(_DRAFTER, None)
