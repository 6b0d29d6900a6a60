"""One decoder interface for every stage: log-mel features in, :class:`Decoded` out.

Labelling, distillation's evaluation step, evaluation and serving all turn
features into tokens through a :class:`Decoder`: :class:`GreedyDecoder` (the model
alone, through ``generate``) or :class:`SpeculativeDecoder` (a student drafts, the
teacher verifies; the output is the teacher's greedy output). Each checks its
settings once, in its constructor, and says in :attr:`Decoder.capabilities` what
it can do, so callers ask instead of deciding again. A call's own settings (a
request's language, task, text prompt or temperature: :class:`DecodeOptions`) are
checked when the call makes them.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Protocol

import numpy as np
import torch

from distilray.errors import DistilrayError
from distilray.inference.longform import LongFormOutput, SequentialOptions, transcribe_sequential
from distilray.inference.shortform import (
    Segment,
    generate_prompted,
    segments_from_ids,
    timestamp_begin_id,
)
from distilray.inference.speculative import SCHEDULES, SpeculativeStats, check_assistant, encode

TASKS = ("transcribe", "translate")


@dataclass(frozen=True)
class Fallback:
    """Whisper's temperature fallback for windows decoded at temperature 0.

    A window whose text compresses too well (a repetition loop) or whose tokens the
    decoding model found too unlikely is decoded again, sampled at the next
    temperature of the ladder, until one passes or the ladder ends; the last try is
    kept (openai/whisper ``transcribe``). Sampling is seeded per window, so a window
    gets the same text in every call, whatever it is batched with.
    A window that falls back is the decoding model's own sample: with an assistant
    it is decoded by the teacher alone, as any sampled call is.
    """

    temperatures: tuple[float, ...] = (0.2, 0.4, 0.6, 0.8, 1.0)
    compression_ratio_threshold: float | None = 2.4  # above: a loop
    logprob_threshold: float | None = -1.0  # below: too unsure (None: not checked)
    seed: int = 0

    def __post_init__(self):
        if not self.temperatures or any(not 0 < t <= 1 for t in self.temperatures):
            raise DistilrayError(
                f"fallback temperatures must be in (0, 1]; got {list(self.temperatures)}"
            )


@dataclass(frozen=True)
class DecodeOptions:
    """Per-call decoding settings (one request's), on top of the decoder's own."""

    language: str | None = None  # code or name; None: the decoder's language
    task: str | None = None  # "transcribe" or "translate"; None: the decoder's task
    prompt_ids: tuple[int, ...] = ()  # Whisper's initial prompt (prompt.text_prompt_ids)
    # > 0 samples, with the model alone: speculative decoding reproduces greedy output
    # only, so a sampled call does not use the assistant.
    temperature: float = 0.0
    scores: bool = False  # the Transcriber scores every window (TranscriptResult.windows)
    # at temperature 0: Whisper's fallback ladder for loops and unsure windows; None: off
    fallback: Fallback | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a decoder can produce; callers ask this instead of re-deciding it."""

    timestamps: bool  # segment timestamps (every Whisper decoder)
    sequential: bool  # Whisper's sequential long-form algorithm (window sliding, fallback)
    word_timestamps: bool  # word timings: the model has alignment heads it really has
    # decode takes the model's own (transformers) encoder output as encoder_hidden_states,
    # as :meth:`BaseDecoder.encode` returns it: a caller that also scores the windows
    # encodes a batch once for both
    encoder_states: bool = False


@dataclass(frozen=True)
class RowStats:
    """What decoding one row cost."""

    compute_s: float  # its share of the batch's decoding time
    speculative: SpeculativeStats | None = None  # drafts and acceptance (speculative only)
    # where decoding picked up again after the text ended early (window clock, seconds;
    # inference.resume), and whether a resumed part filled its token budget (None: not
    # resumed, judge by the ids' length)
    resumed_at: tuple[float, ...] = ()
    filled_budget: bool | None = None


@dataclass(frozen=True)
class Decoded:
    """The decoded rows of one batch, in input order."""

    ids: list[list[int]]  # generated tokens per row: timestamps kept, no prompt, no end of text
    prompts: list[list[int]]  # the forced decoder prompt each row was generated from
    segments: list[list[Segment]]  # window-relative segments (with words when asked); [] without
    stats: list[RowStats]  # per row

    @classmethod
    def joined(cls, parts: Sequence[Decoded]) -> Decoded:
        """The rows of ``parts``, one batch after the other."""
        return cls(
            ids=[row for d in parts for row in d.ids],
            prompts=[row for d in parts for row in d.prompts],
            segments=[row for d in parts for row in d.segments],
            stats=[row for d in parts for row in d.stats],
        )


class Decoder(Protocol):
    """Turns a batch of ≤ 30 s log-mel features into :class:`Decoded` rows."""

    model: object  # the model whose greedy output this is (the teacher when speculative)
    processor: object  # its processor (tokenizer + feature extractor)
    capabilities: Capabilities
    max_new_tokens: int  # generated tokens per row at most
    timestamp_begin: int  # id of <|0.00|>: ids from it on are timestamps

    def decode(
        self,
        features: torch.Tensor | np.ndarray,
        *,
        return_timestamps: bool = False,
        word_timestamps: bool = False,
        end_times: Sequence[float] | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        options: DecodeOptions | None = None,
    ) -> Decoded: ...

    def encode(self, features: torch.Tensor | np.ndarray):
        """The encoder output :meth:`decode` takes as ``encoder_hidden_states``."""
        ...

    def sequential(
        self,
        audios: Sequence[np.ndarray],
        options: SequentialOptions,
        decode: DecodeOptions | None = None,
    ) -> list[tuple[LongFormOutput, SpeculativeStats | None]]:
        """Whisper's sequential long-form (refused where ``capabilities.sequential`` is off)."""
        ...


PROMPT_ALLOWANCE = 4  # start of transcript, language, task, no-timestamps


class BaseDecoder:
    """Settings shared by every decoder, checked once; subclasses give ``_generate``."""

    # whether ``_generate`` always reads the encoder's output (an engine that decodes
    # encoder states only): :meth:`decode` then encodes first, inside its timing
    decodes_encoder_states = False

    def __init__(
        self,
        model,
        processor,
        *,
        max_new_tokens: int | None = None,
        language: str | None = None,
        task: str | None = None,
    ):
        from distilray.inference.words import has_alignment_heads

        self.model, self.processor = model, processor
        limit = model.config.max_target_positions - PROMPT_ALLOWANCE
        if max_new_tokens is not None and max_new_tokens < 1:
            raise DistilrayError(f"max_new_tokens must be >= 1, got {max_new_tokens}")
        self.max_new_tokens = min(max_new_tokens or limit, limit)
        self.language, self.task = language, task
        self._check(DecodeOptions(language=language, task=task))
        self.timestamp_begin = timestamp_begin_id(model.generation_config)
        self.capabilities = Capabilities(
            timestamps=True,
            sequential=True,
            word_timestamps=has_alignment_heads(model),
            encoder_states=True,
        )

    def decode(
        self,
        features,
        *,
        return_timestamps: bool = False,
        word_timestamps: bool = False,
        end_times: Sequence[float] | None = None,
        encoder_hidden_states: torch.Tensor | None = None,
        options: DecodeOptions | None = None,
    ) -> Decoded:
        settings = self.settings(options)
        if word_timestamps and not self.capabilities.word_timestamps:
            from distilray.inference.words import alignment_problem

            raise DistilrayError(
                f"word timestamps are not available: {alignment_problem(self.model)}; "
                "re-export the student (distilray export) or init it again"
            )
        features = torch.as_tensor(features)
        began = time.perf_counter()
        falls_back = settings.fallback is not None and settings.temperature == 0
        needs_states = falls_back or word_timestamps or self.decodes_encoder_states
        if needs_states and encoder_hidden_states is None:
            # one encoder pass for the greedy pass, the fallback's scores and every
            # temperature of its ladder (the rows sampled again reuse their states), and
            # the words' cross-attention; timed with the rest of the rows' decoding
            encoder_hidden_states = self.encode(features)
        prompts, ids, stats = self._generate(
            features, return_timestamps, encoder_hidden_states, settings
        )
        if falls_back:
            prompts, ids, stats = self._fall_back(
                features, return_timestamps, encoder_hidden_states, settings, prompts, ids, stats
            )
        segments: list[list[Segment]] = [[] for _ in ids]
        if return_timestamps or word_timestamps:
            segments = self._segments(
                encoder_hidden_states, prompts, ids, end_times, word_timestamps
            )
        share = (time.perf_counter() - began) / max(1, len(ids))
        return Decoded(ids, prompts, segments, [RowStats(share, s) for s in stats])

    def transcribe(self, clips: Sequence[np.ndarray]) -> list[str]:
        """Plain text of ≤ 30 s 16 kHz clips, decoded as one batch (no timestamps)."""
        from distilray.features import log_mel

        if not clips:
            return []
        decoded = self.decode(log_mel(self.processor.feature_extractor, list(clips)))
        texts = self.processor.batch_decode(decoded.ids, skip_special_tokens=True)
        return [text.strip() for text in texts]

    def _segments(self, encoded, prompts, ids, end_times, words: bool) -> list[list[Segment]]:
        """Each row's segments; with ``words``, timed by cross-attention on ``encoded``
        (the encoder output :meth:`decode` computes whenever words are asked for)."""
        ends = list(end_times) if end_times is not None else [None] * len(ids)
        if words:
            from distilray.inference.words import add_words

            return add_words(self.model, self.processor, encoded, prompts, ids, ends)
        return [
            segments_from_ids(self.processor, row, self.timestamp_begin, end_time=end)
            for row, end in zip(ids, ends, strict=True)
        ]

    def settings(self, options: DecodeOptions | None) -> DecodeOptions:
        """``options`` checked, with the decoder's language and task where they name none
        (a multilingual model transcribes unless told to translate: Whisper's prompt
        always names the task, also when the language is detected); an English-only
        model's are left unset (``generate`` refuses them)."""
        if options is None:
            options = DecodeOptions()
        else:
            self._check(options)
        options = replace(
            options,
            language=options.language if options.language is not None else self.language,
            task=options.task if options.task is not None else self.task,
        )
        if not _multilingual(self.model):
            return replace(options, language=None, task=None)
        if options.task is None:
            options = replace(options, task="transcribe")
        return options

    def _check(self, options: DecodeOptions) -> None:
        """Clear errors for settings ``generate`` would refuse with a traceback."""
        from distilray.inference.prompt import language_token

        config = self.model.generation_config
        if options.task is not None and options.task not in TASKS:
            raise DistilrayError(f"task must be one of {TASKS}, got {options.task!r}")
        if not options.temperature >= 0:  # NaN included
            raise DistilrayError(f"temperature must be >= 0, got {options.temperature}")
        if options.prompt_ids:
            start_of_prev = self.processor.tokenizer.convert_tokens_to_ids("<|startofprev|>")
            if options.prompt_ids[0] != start_of_prev:
                raise DistilrayError(
                    "prompt_ids must start with <|startofprev|> (use prompt.text_prompt_ids)"
                )
        if _multilingual(self.model):
            if options.language is not None:
                language_token(config, options.language)
            return
        if options.language is not None and options.language.strip().lower() not in (
            "en",
            "english",
        ):
            raise DistilrayError(
                f"this model is English-only: it cannot decode language {options.language!r}"
            )
        if options.task == "translate":
            raise DistilrayError("this model is English-only: it cannot translate")

    def _generate(self, features, return_timestamps, encoder_hidden_states, settings):
        raise NotImplementedError

    def _fall_back(
        self, features, return_timestamps, encoder_states, settings, prompts, ids, stats
    ):
        """Rows that fail :class:`Fallback`'s tests, sampled again up its ladder.

        Each row is sampled alone, from the generator seeded for that temperature: a
        window's sample depends on the window, never on the others batched with it (a
        served request's text does not change with the traffic beside it, and an
        evaluation's teacher and speculative runs sample alike whatever else they batch)."""
        rule = settings.fallback
        prompts, ids, stats = list(prompts), list(ids), list(stats)
        todo = self._failing(rule, encoder_states, range(len(ids)), prompts, ids)
        for step, temperature in enumerate(rule.temperatures):
            if not todo:
                break
            sampled = replace(settings, temperature=temperature)
            for row in todo:
                one = slice(row, row + 1)
                with torch.random.fork_rng(devices=_cuda_devices(self.model)):
                    torch.manual_seed(rule.seed + step)
                    again = self._greedy(
                        features[one], return_timestamps, encoder_states[one], sampled
                    )
                prompts[row], ids[row] = again[0][0], again[1][0]
                stats[row] = None  # sampled by the model alone: no speculative counters
            todo = self._failing(rule, encoder_states, todo, prompts, ids)
        return prompts, ids, stats

    def encode(self, features) -> torch.Tensor:
        """The model's encoder output for a batch of log-mel ``features``, as
        :meth:`decode` takes it (``encoder_hidden_states``)."""
        with torch.inference_mode():
            return encode(self.model, features)

    def _failing(self, rule: Fallback, encoder_states, rows, prompts, ids) -> list[int]:
        """Those of ``rows`` that loop or are too unsure (:class:`Fallback`)."""
        from distilray.inference.confidence import compression_ratio
        from distilray.inference.silence import window_scores

        rows = list(rows)
        failing: set[int] = set()
        if rule.compression_ratio_threshold is not None:
            texts = self.processor.batch_decode([ids[r] for r in rows], skip_special_tokens=True)
            failing |= {
                r
                for r, text in zip(rows, texts, strict=True)
                if compression_ratio(text) > rule.compression_ratio_threshold
            }
        if rule.logprob_threshold is not None and rows:
            scores = window_scores(
                self.model,
                None,
                [ids[r] for r in rows],
                prompts=[prompts[r] for r in rows],
                max_new_tokens=self.max_new_tokens,
                encoded=encoder_states[torch.tensor(rows).to(encoder_states.device)],
            )
            failing |= {
                r
                for r, (logprob, _) in zip(rows, scores, strict=True)
                if logprob < rule.logprob_threshold
            }
        return [r for r in rows if r in failing]

    def _greedy(self, features, return_timestamps, encoder_hidden_states, settings):
        """The model's own ``generate`` (greedy, or sampled above temperature 0)."""
        rows = generate_prompted(
            self.model,
            self.processor,
            None if encoder_hidden_states is not None else features,
            max_new_tokens=self.max_new_tokens,
            return_timestamps=return_timestamps,
            language=settings.language,
            task=settings.task,
            encoder_hidden_states=encoder_hidden_states,
            prompt_ids=settings.prompt_ids,
            temperature=settings.temperature,
        )
        return [p for p, _ in rows], [g for _, g in rows], [None] * len(rows)

    def sequential(
        self,
        audios: Sequence[np.ndarray],
        options: SequentialOptions,
        decode: DecodeOptions | None = None,
    ) -> list[tuple[LongFormOutput, SpeculativeStats | None]]:
        """Whisper's sequential long-form transcription of a batch of recordings.

        Of ``decode`` it takes language and task: the algorithm has its own
        temperature ladder, and a text prompt is not supported there.
        """
        settings = self.settings(decode)
        if settings.prompt_ids or settings.temperature > 0:
            raise DistilrayError(
                "a text prompt or a temperature applies to clips up to 30 s and chunked "
                "long-form; sequential long-form has its own temperature fallback"
            )

        def run(batch: Sequence[np.ndarray]) -> list[LongFormOutput]:
            return transcribe_sequential(
                self.model,
                self.processor,
                batch,
                options,
                language=settings.language,
                task=settings.task,
            )

        if options.seed is None:
            outputs = run(audios)
        else:  # one recording at a time, each from the same seeded random state
            outputs = []
            for audio in audios:
                with torch.random.fork_rng(devices=_cuda_devices(self.model)):
                    torch.manual_seed(options.seed)
                    outputs.extend(run([audio]))
        synchronize(self.model)
        return [(out, None) for out in outputs]


class GreedyDecoder(BaseDecoder):
    """The model's own greedy decoding, through transformers' ``generate``."""

    def _generate(self, features, return_timestamps, encoder_hidden_states, settings):
        return self._greedy(features, return_timestamps, encoder_hidden_states, settings)


class SpeculativeDecoder(BaseDecoder):
    """The teacher's greedy output, drafted by an assistant (:mod:`.speculative`)."""

    def __init__(
        self,
        teacher,
        assistant,
        processor,
        *,
        num_draft_tokens: int = 5,
        draft_schedule: str = "constant",
        **kwargs,
    ):
        check_assistant(teacher, assistant)
        if draft_schedule not in SCHEDULES:
            raise DistilrayError(
                f"draft_schedule must be one of {SCHEDULES}, got {draft_schedule!r}"
            )
        if num_draft_tokens < 0:
            raise DistilrayError(f"num_draft_tokens must be >= 0, got {num_draft_tokens}")
        super().__init__(teacher, processor, **kwargs)
        self.assistant = assistant
        self.num_draft_tokens, self.draft_schedule = num_draft_tokens, draft_schedule

    def _generate(self, features, return_timestamps, encoder_hidden_states, settings):
        from distilray.inference.speculative import speculative_generate

        if settings.temperature > 0:  # sampling: the teacher alone (see DecodeOptions)
            return self._greedy(features, return_timestamps, encoder_hidden_states, settings)
        result = speculative_generate(
            self.model,
            self.assistant,
            features,
            num_draft_tokens=self.num_draft_tokens,
            schedule=self.draft_schedule,
            max_new_tokens=self.max_new_tokens,
            return_timestamps=return_timestamps,
            language=settings.language,
            task=settings.task,
            encoder_hidden_states=encoder_hidden_states,
            prompt_ids=settings.prompt_ids,
            check=False,
        )
        synchronize(self.model)
        return result.prompts, result.sequences, result.row_stats

    def sequential(
        self,
        audios: Sequence[np.ndarray],
        options: SequentialOptions,
        decode: DecodeOptions | None = None,
    ) -> list[tuple[LongFormOutput, SpeculativeStats | None]]:
        """The teacher's sequential transcription, its greedy windows drafted by the assistant.

        One recording at a time, so that each gets its own counters; the text is what
        the teacher alone gives that recording (:mod:`.drafted`).
        """
        from distilray.inference.drafted import drafted_windows

        out = []
        for audio in audios:
            with drafted_windows(
                self.model,
                self.assistant,
                num_draft_tokens=self.num_draft_tokens,
                heuristic=self.draft_schedule == "heuristic",
            ) as drafter:
                [result] = super().sequential([audio], options, decode)
            out.append((result[0], drafter.stats))
        return out


def make_decoder(
    model,
    processor,
    assistant=None,
    *,
    num_draft_tokens: int = 5,
    draft_schedule: str = "constant",
    max_new_tokens: int | None = None,
    language: str | None = None,
    task: str | None = None,
) -> GreedyDecoder | SpeculativeDecoder:
    """The greedy decoder of ``model``, or the speculative one when an assistant is given."""
    common = {"max_new_tokens": max_new_tokens, "language": language, "task": task}
    if assistant is None:
        return GreedyDecoder(model, processor, **common)
    return SpeculativeDecoder(
        model,
        assistant,
        processor,
        num_draft_tokens=num_draft_tokens,
        draft_schedule=draft_schedule,
        **common,
    )


def _multilingual(model) -> bool:
    return bool(getattr(model.generation_config, "is_multilingual", False))


def _cuda_devices(model) -> list[int]:
    """The GPU whose random state sampling uses (none on CPU)."""
    return [model.device.index or 0] if model.device.type == "cuda" else []


def synchronize(model) -> None:
    """Wait for queued GPU work so that timings are real."""
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
