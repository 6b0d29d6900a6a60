"""The transcription engine used by serving, evaluation and the ``transcribe`` command.

:class:`Transcriber` holds a teacher (and optionally a student as speculative
assistant) and turns recordings of any length into :class:`TranscriptResult` s:
clips of up to 30 s go through short-form decoding in batches; longer ones through
chunked or sequential long-form. With an assistant, every short-form batch (clips,
or the windows of chunked long-form) is decoded speculatively; the text is the
teacher's greedy text either way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import torch

from distilray.audio import SAMPLING_RATE
from distilray.errors import DistilrayError
from distilray.features import log_mel
from distilray.inference.confidence import compression_ratio
from distilray.inference.longform import (
    WINDOW_SAMPLES,
    SequentialOptions,
    split_windows,
    transcribe_chunked,
    transcribe_sequential,
)
from distilray.inference.shortform import (
    Segment,
    generate_greedy,
    segments_from_ids,
    timestamp_begin_id,
    to_model,
)
from distilray.inference.silence import (
    LOGPROB_THRESHOLD,
    is_digital_silence,
    is_silence,
    window_scores,
)
from distilray.inference.speculative import (
    SCHEDULES,
    SpeculativeStats,
    check_assistant,
    speculative_generate,
)

logger = logging.getLogger(__name__)

LongForm = Literal["chunked", "sequential"]
LONG_FORMS = ("chunked", "sequential")
PROMPT_ALLOWANCE = 4  # start of transcript, language, task, no-timestamps


@dataclass(frozen=True)
class DecodeOptions:
    """Per-call decoding settings (one request's), on top of the Transcriber's own."""

    language: str | None = None  # code or name; None: the Transcriber's language
    task: str | None = None  # "transcribe" or "translate"; None: the Transcriber's task
    prompt_ids: tuple[int, ...] = ()  # Whisper's initial prompt (prompt.text_prompt_ids)
    # > 0 samples, with the teacher alone: speculative decoding reproduces greedy output
    # only, so a sampled request does not use the assistant.
    temperature: float = 0.0
    scores: bool = False  # score every window (TranscriptResult.windows)


@dataclass(frozen=True)
class WindowScore:
    """Whisper's quality signals of one decoded ≤ 30 s window (OpenAI's per-segment fields)."""

    start_s: float  # the stretch of the recording whose segments this window decided
    end_s: float
    avg_logprob: float  # mean log-probability of its tokens and end of text
    no_speech_prob: float  # P(<|nocaptions|>) at its start of transcript
    compression_ratio: float  # gzip ratio of its text (loops compress well)
    temperature: float  # the temperature it was decoded at


@dataclass
class TranscriptResult:
    """The transcript of one recording and what it cost."""

    text: str  # decoded transcript, special tokens removed
    token_ids: list[int]  # text tokens of the transcript (no special or timestamp tokens)
    segments: list[Segment]  # timestamped segments (empty unless timestamps were asked for)
    duration_s: float  # audio length
    compute_s: float  # decoding time attributed to it (its share of each batch)
    form: str  # "short", "chunked" or "sequential"
    generated_tokens: int  # tokens decoded, timestamps included (end of text not counted)
    speculative: SpeculativeStats | None = None  # drafts and acceptance, with an assistant
    windows: list[WindowScore] = field(default_factory=list)  # with DecodeOptions.scores

    @property
    def rtfx(self) -> float:
        """Inverse real-time factor: audio seconds per compute second."""
        return self.duration_s / self.compute_s if self.compute_s > 0 else float("inf")

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "segments": [vars(s) for s in self.segments],
            "duration_s": self.duration_s,
            "compute_s": self.compute_s,
            "form": self.form,
            "generated_tokens": self.generated_tokens,
            "speculative": self.speculative.as_dict() if self.speculative else None,
        }


@dataclass
class _Decoded:
    """Short-form decoding of a list of clips: ids, time and drafts per clip."""

    ids: list[list[int]] = field(default_factory=list)
    seconds: list[float] = field(default_factory=list)
    stats: list[SpeculativeStats | None] = field(default_factory=list)
    scores: list[tuple[float, float] | None] = field(default_factory=list)  # (logprob, no speech)


class Transcriber:
    """Teacher (plus optional speculative assistant) transcription of any-length audio."""

    def __init__(
        self,
        teacher,
        processor,
        assistant=None,
        *,
        num_draft_tokens: int = 5,
        draft_schedule: str = "constant",
        chunk_length_s: float = 30.0,
        stride_s: float = 5.0,
        batch_size: int = 8,
        max_new_tokens: int | None = None,
        language: str | None = None,
        task: str | None = None,
        sequential: SequentialOptions | None = None,
        no_speech_threshold: float | None = None,
        logprob_threshold: float | None = LOGPROB_THRESHOLD,
    ):
        if assistant is not None:
            check_assistant(teacher, assistant)
        if not 0 < chunk_length_s <= 30 or not 0 <= 2 * stride_s < chunk_length_s:
            raise DistilrayError(
                f"chunk_length_s must be in (0, 30] and stride_s below half of it "
                f"(got {chunk_length_s} and {stride_s})"
            )
        if draft_schedule not in SCHEDULES:
            raise DistilrayError(
                f"draft_schedule must be one of {SCHEDULES}, got {draft_schedule!r}"
            )
        if batch_size < 1:
            raise DistilrayError(f"batch_size must be >= 1, got {batch_size}")
        self.teacher, self.processor, self.assistant = teacher, processor, assistant
        self.num_draft_tokens = num_draft_tokens
        self.draft_schedule = draft_schedule
        self.chunk_length_s, self.stride_s = chunk_length_s, stride_s
        self.batch_size = batch_size
        limit = teacher.config.max_target_positions - PROMPT_ALLOWANCE
        self.max_new_tokens = min(max_new_tokens or limit, limit)
        self.language, self.task = language, task
        self.sequential = sequential or SequentialOptions()
        self.timestamp_begin = timestamp_begin_id(teacher.generation_config)
        # Whisper's no-speech rule on every ≤ 30 s window (silence.py); None: raw output.
        self.no_speech_threshold, self.logprob_threshold = no_speech_threshold, logprob_threshold

    @classmethod
    def load(
        cls,
        model: str,
        assistant: str | None = None,
        *,
        device: str = "cpu",
        dtype: torch.dtype | None = None,
        **kwargs,
    ) -> Transcriber:
        """Load the teacher (and assistant) by reference: hub id, folder, ``s3://`` or ``tiny.en``."""
        from distilray.models import load_whisper

        teacher, processor = load_whisper(model, device=device, dtype=dtype)
        student = load_whisper(assistant, device=device, dtype=dtype)[0] if assistant else None
        return cls(teacher, processor, student, **kwargs)

    def transcribe(
        self,
        audios: Sequence[np.ndarray],
        *,
        long_form: LongForm = "chunked",
        return_timestamps: bool = False,
        options: DecodeOptions | None = None,
    ) -> list[TranscriptResult]:
        """Transcripts of 16 kHz mono recordings, in input order.

        ``options`` (language, task, text prompt, temperature, window scores) apply to
        every recording of the call; sequential long-form takes language and task only.
        """
        options = self._options(options)
        if long_form not in LONG_FORMS:
            raise DistilrayError(f"long_form must be one of {LONG_FORMS}, got {long_form!r}")
        results: list[TranscriptResult | None] = [None] * len(audios)
        short = [i for i, a in enumerate(audios) if len(a) <= WINDOW_SAMPLES]
        long = [i for i, a in enumerate(audios) if len(a) > WINDOW_SAMPLES]
        if short:
            done = self._short([audios[i] for i in short], return_timestamps, options)
            for i, r in zip(short, done, strict=True):
                results[i] = r
        if long:
            clips = [audios[i] for i in long]
            if long_form == "chunked":
                done = self._chunked(clips, return_timestamps, options)
            else:
                done = self._sequential(clips, return_timestamps, options)
            for i, r in zip(long, done, strict=True):
                results[i] = r
        return [r for r in results if r is not None]

    def _options(self, options: DecodeOptions | None) -> DecodeOptions:
        """``options`` with the Transcriber's language and task where it names none."""
        options = options or DecodeOptions()
        return replace(
            options,
            language=options.language if options.language is not None else self.language,
            task=options.task if options.task is not None else self.task,
        )

    def detect_language(self, audio: np.ndarray) -> str:
        """Language code (``en``) a multilingual teacher hears in the first 30 s."""
        config = self.teacher.generation_config
        if not getattr(config, "is_multilingual", False):
            return "en"
        features = torch.from_numpy(
            log_mel(self.processor.feature_extractor, [audio[:WINDOW_SAMPLES]])
        )
        with torch.inference_mode():
            token = int(self.teacher.detect_language(to_model(self.teacher, features))[0])
        names = {v: k for k, v in config.lang_to_id.items()}
        return names[token].strip("<|>")

    def decode_clips(
        self,
        clips: Sequence[np.ndarray],
        return_timestamps: bool,
        options: DecodeOptions | None = None,
    ) -> _Decoded:
        """Generated ids of ≤ 30 s clips in batches (speculative with an assistant)."""
        options = self._options(options)
        scored = options.scores or self.no_speech_threshold is not None
        out = _Decoded()
        for start in range(0, len(clips), self.batch_size):
            batch = list(clips[start : start + self.batch_size])
            features = torch.from_numpy(log_mel(self.processor.feature_extractor, batch))
            began = time.perf_counter()
            ids, stats = self._decode_features(features, return_timestamps, options)
            scores: list = [None] * len(batch)
            if scored:
                scores = self._window_scores(features, ids, return_timestamps, options)
            if self.no_speech_threshold is not None:
                ids = [
                    [] if self._is_silence(score) or is_digital_silence(clip) else row
                    for row, score, clip in zip(ids, scores, batch, strict=True)
                ]
            share = (time.perf_counter() - began) / len(batch)
            out.ids.extend(ids)
            out.seconds.extend([share] * len(batch))
            out.stats.extend(stats)
            out.scores.extend(scores)
        return out

    def _decode_features(
        self, features: torch.Tensor, return_timestamps: bool, options: DecodeOptions
    ):
        kwargs = dict(
            max_new_tokens=self.max_new_tokens,
            return_timestamps=return_timestamps,
            language=options.language,
            task=options.task,
            prompt_ids=options.prompt_ids,
        )
        if options.temperature > 0:  # sampling: the teacher alone (see DecodeOptions)
            ids = generate_greedy(
                self.teacher,
                self.processor,
                features,
                temperature=options.temperature,
                **kwargs,
            )
            return ids, [None] * len(ids)
        if self.assistant is None:
            ids = generate_greedy(self.teacher, self.processor, features, **kwargs)
            return ids, [None] * len(ids)
        result = speculative_generate(
            self.teacher,
            self.assistant,
            features,
            num_draft_tokens=self.num_draft_tokens,
            schedule=self.draft_schedule,
            **kwargs,
        )
        _synchronize(self.teacher)
        return result.sequences, result.row_stats

    def _window_scores(
        self,
        features: torch.Tensor,
        ids: list[list[int]],
        return_timestamps: bool,
        options: DecodeOptions,
    ) -> list[tuple[float, float]]:
        """``(avg_logprob, no_speech_prob)`` of each decoded window, scored by the teacher."""
        from distilray.inference.prompt import prompt_ids

        config = self.teacher.generation_config
        language = options.language
        if getattr(config, "is_multilingual", False) and language is None:
            language = "en"  # scored as English when the request did not say (rare)
        return window_scores(
            self.teacher,
            features,
            ids,
            prompt=prompt_ids(config, language, options.task, return_timestamps),
            max_new_tokens=self.max_new_tokens,
            text_prompt=options.prompt_ids,
        )

    def _is_silence(self, score: tuple[float, float] | None) -> bool:
        """Whisper's no-speech rule on a window's ``(avg_logprob, no_speech_prob)``."""
        if score is None or self.no_speech_threshold is None:
            return False
        logprob, no_speech = score
        return is_silence(no_speech, logprob, self.no_speech_threshold, self.logprob_threshold)

    def _window(
        self, start_s: float, end_s: float, ids: list[int], score, options: DecodeOptions
    ) -> list[WindowScore]:
        """The window's :class:`WindowScore` (none unless scores were asked for)."""
        if not options.scores or score is None:
            return []
        text = self.processor.tokenizer.decode(self._text_ids(ids), skip_special_tokens=True)
        logprob, no_speech = score
        ratio = compression_ratio(text.strip())
        return [WindowScore(start_s, end_s, logprob, no_speech, ratio, options.temperature)]

    def _short(
        self, audios: list[np.ndarray], return_timestamps: bool, options: DecodeOptions
    ) -> list[TranscriptResult]:
        decoded = self.decode_clips(audios, return_timestamps, options)
        results = []
        for audio, ids, seconds, stats, score in zip(
            audios, decoded.ids, decoded.seconds, decoded.stats, decoded.scores, strict=True
        ):
            duration = len(audio) / SAMPLING_RATE
            text_ids = self._text_ids(ids)
            segments = (
                segments_from_ids(self.processor, ids, self.timestamp_begin, end_time=duration)
                if return_timestamps
                else []
            )
            result = self._result(text_ids, segments, duration, seconds, "short", ids, stats)
            result.windows = self._window(0.0, duration, ids, score, options)
            results.append(result)
        return results

    def _chunked(
        self, audios: list[np.ndarray], return_timestamps: bool, options: DecodeOptions
    ) -> list[TranscriptResult]:
        decoded = _Decoded()

        def decode(windows: list[np.ndarray]) -> list[list[int]]:
            nonlocal decoded
            decoded = self.decode_clips(windows, return_timestamps, options)
            return decoded.ids

        outputs = transcribe_chunked(
            audios,
            decode,
            self.processor,
            self.timestamp_begin,
            chunk_length_s=self.chunk_length_s,
            stride_s=self.stride_s,
            return_timestamps=return_timestamps,
        )
        _, owners = split_windows(audios, self.chunk_length_s, self.stride_s)
        results, cursor = [], 0
        for audio, output in zip(audios, outputs, strict=True):
            n = output.windows or 0
            window_ids = decoded.ids[cursor : cursor + n]
            seconds = sum(decoded.seconds[cursor : cursor + n])
            stats = _sum_stats(decoded.stats[cursor : cursor + n])
            duration = len(audio) / SAMPLING_RATE
            generated = [t for ids in window_ids for t in ids]
            result = self._result(
                output.token_ids,
                output.segments,
                duration,
                seconds,
                "chunked",
                generated,
                stats,
            )
            for i in range(cursor, cursor + n):
                lo, hi = (x / SAMPLING_RATE for x in owners[i][1].owned)
                result.windows += self._window(lo, hi, decoded.ids[i], decoded.scores[i], options)
            cursor += n
            results.append(result)
        return results

    def _sequential(
        self, audios: list[np.ndarray], return_timestamps: bool, options: DecodeOptions
    ) -> list[TranscriptResult]:
        if self.assistant is not None:
            logger.warning("sequential long-form runs the teacher alone (no speculative decoding)")
        results = []
        for start in range(0, len(audios), self.batch_size):
            batch = audios[start : start + self.batch_size]
            began = time.perf_counter()
            outputs = transcribe_sequential(
                self.teacher,
                self.processor,
                batch,
                self.sequential,
                language=options.language,
                task=options.task,
            )
            _synchronize(self.teacher)
            share = (time.perf_counter() - began) / len(batch)
            for audio, output in zip(batch, outputs, strict=True):
                segments = output.segments if return_timestamps else []
                duration = len(audio) / SAMPLING_RATE
                results.append(
                    self._result(
                        output.token_ids, segments, duration, share, "sequential", output.token_ids
                    )
                )
        return results

    def _text_ids(self, ids: list[int]) -> list[int]:
        special = set(self.processor.tokenizer.all_special_ids)
        return [t for t in ids if t < self.timestamp_begin and t not in special]

    def _result(
        self,
        text_ids: list[int],
        segments: list[Segment],
        duration: float,
        seconds: float,
        form: str,
        generated: list[int],
        stats: SpeculativeStats | None = None,
    ) -> TranscriptResult:
        text = self.processor.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        return TranscriptResult(
            text=text,
            token_ids=text_ids,
            segments=segments,
            duration_s=duration,
            compute_s=seconds,
            form=form,
            generated_tokens=len(generated),
            speculative=stats,
        )


def _sum_stats(stats: Sequence[SpeculativeStats | None]) -> SpeculativeStats | None:
    present = [s for s in stats if s is not None]
    if not present:
        return None
    total = SpeculativeStats()
    for s in present:
        total = total + s
    return total


def _synchronize(model) -> None:
    """Wait for queued GPU work so that timings are real."""
    if model.device.type == "cuda":
        torch.cuda.synchronize(model.device)
