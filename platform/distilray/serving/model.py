"""The model deployment: teacher (+ student assistant) behind dynamic batching.

Short recordings (<= 30 s) from concurrent requests are gathered by
``@serve.batch`` and decoded in one forward pass; a long recording is its own
batch: the chunked long-form path decodes its 30 s windows together. One lock
keeps one decode running per replica, so CPU threads are not oversubscribed.
With an assistant, decoding is speculative and returns the teacher's greedy
transcript exactly.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, replace

import numpy as np
from ray import serve

from distilray.inference.longform import owned_ends, split_windows
from distilray.inference.resume import ResumeRule
from distilray.inference.windows import is_long_form
from distilray.serving.config import ServeArgs
from distilray.serving.formats import Segment, Transcript, Word, delta_event, done_event
from distilray.serving.streaming import StreamedMerge
from distilray.serving.validation import ModelInfo

logger = logging.getLogger(__name__)

MODEL_DEPLOYMENT = "WhisperModel"


@dataclass(frozen=True)
class DecodeRequest:
    """How to decode one recording: the request's fields the model needs."""

    timestamps: bool = False  # segment timestamps (srt, vtt, verbose_json)
    words: bool = False  # word timings (timestamp_granularities[]=word)
    scores: bool = False  # per-segment avg_logprob, compression_ratio, no_speech_prob
    language: str | None = None  # language code; None: English-only model, or detect
    task: str = "transcribe"  # or "translate"
    prompt: str = ""  # Whisper's initial prompt
    temperature: float = 0.0  # > 0: sampled by the teacher alone

    def batch_key(self) -> tuple:
        """Requests with equal keys decode in one ``generate`` call."""
        return (
            self.timestamps,
            self.words,
            self.scores,
            self.language,
            self.task,
            self.prompt,
            self.temperature,
        )


@dataclass(frozen=True)
class _Job:
    """One short recording waiting in the batch queue."""

    audio: np.ndarray
    request: DecodeRequest
    enqueued: float  # time.perf_counter() when it joined the queue


def set_torch_threads(configured: int | None) -> int:
    """Set torch's intra-op threads: ``configured``, else the replica's Ray CPUs (>= 1)."""
    import ray
    import torch

    threads = configured
    if threads is None:
        cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1.0)
        threads = max(1, round(cpus))
    torch.set_num_threads(threads)
    return threads


def load_transcriber(args: ServeArgs):
    """Load teacher and assistant onto this replica's device and wrap them."""
    import torch

    from distilray.inference.engine import Transcriber

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = args.dtype
    if dtype == "auto":
        dtype = "float16" if device == "cuda" else "float32"
    load, engine = (
        Transcriber.load,
        {
            "dtype": getattr(torch, dtype),
            "num_draft_tokens": args.num_draft_tokens,
        },
    )
    if args.engine == "ctranslate2":
        from distilray.engines.ct2_transcriber import CT2Transcriber

        load, engine = CT2Transcriber.load, {"compute_type": args.compute_type}
    transcriber = load(
        args.teacher,
        args.assistant,
        device=device,
        **engine,
        max_new_tokens=args.max_new_tokens,
        chunk_length_s=args.chunk_length_s,
        stride_s=args.stride_s,
        # One engine batch holds a full request batch or a long recording's windows.
        batch_size=max(args.long_form_batch_size, args.batching.max_batch_size),
        no_speech_threshold=args.no_speech_threshold,
        logprob_threshold=args.logprob_threshold,
        fallback=args.fallback.rule(),
        resume=ResumeRule.of(args.resume_gap_s),
    )
    logger.info(
        "loaded %s (assistant %s) on %s/%s, %s engine",
        args.teacher,
        args.assistant,
        device,
        dtype,
        args.engine,
    )
    return transcriber


def language_name(code: str | None) -> str:
    """OpenAI reports languages by English name: ``en`` -> ``english``."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    return LANGUAGES.get(code or "en", code or "english")


def model_info(transcriber) -> ModelInfo:
    """What the loaded teacher supports: languages and word timestamps."""
    config = transcriber.teacher.generation_config
    multilingual = bool(getattr(config, "is_multilingual", False))
    codes = [k.strip("<|>") for k in (getattr(config, "lang_to_id", None) or {})]
    languages = tuple(codes) if multilingual and codes else ("en",)
    return ModelInfo(multilingual, languages, words_unavailable(transcriber.teacher))


def words_unavailable(model) -> str | None:
    """Why the served teacher cannot time words (answered with 400), or None."""
    from distilray.inference.words import alignment_problem

    problem = alignment_problem(model)
    if problem is None:
        return None
    return f"word timestamps are not available: {problem}; use timestamp_granularities segment"


def decode_options(transcriber, request: DecodeRequest):
    """The engine's :class:`DecodeOptions` for ``request``."""
    from distilray.inference.engine import DecodeOptions
    from distilray.inference.prompt import text_prompt_ids

    return DecodeOptions(
        # The decoder checks them, and leaves them unset for an English-only model.
        language=request.language,
        task=request.task,
        prompt_ids=text_prompt_ids(transcriber.processor.tokenizer, request.prompt),
        temperature=request.temperature,
        scores=request.scores,
    )


def to_transcript(result, stats: dict, request: DecodeRequest = DecodeRequest()) -> Transcript:
    """Our response-side :class:`Transcript` from the engine's ``TranscriptResult``."""
    segments = tuple(_scored(s, result.windows, request.temperature) for s in result.segments)
    stats = {**stats, "form": result.form, "compute_s": result.compute_s}
    if result.speculative is not None:
        stats["acceptance_rate"] = result.speculative.acceptance_rate
    return Transcript(
        result.text,
        result.duration_s,
        segments,
        stats,
        language=language_name(request.language),
        task=request.task,
        # OpenAI's words carry no surrounding spaces; ours keep Whisper's leading one.
        words=tuple(Word(w.word.strip(), w.start, w.end) for w in result.words),
    )


def _scored(segment, windows, temperature: float) -> Segment:
    """A response segment with the figures of the window that decided it."""
    middle = (segment.start + segment.end) / 2
    window = next((w for w in windows if w.start_s <= middle < w.end_s), None)
    if window is None and windows:
        window = windows[-1] if middle >= windows[-1].start_s else windows[0]
    return Segment(
        segment.start,
        segment.end,
        segment.text,
        tuple(getattr(segment, "tokens", ())),
        window.avg_logprob if window else 0.0,
        window.compression_ratio if window else 0.0,
        window.no_speech_prob if window else 0.0,
        window.temperature if window else temperature,
    )


@serve.deployment(
    name=MODEL_DEPLOYMENT,
    max_ongoing_requests=32,
    # Beyond this many waiting requests the ingress answers 429 with Retry-After.
    max_queued_requests=64,
    ray_actor_options={"num_cpus": 1},
)
class WhisperModel:
    """Transcribes decoded 16 kHz audio; one replica holds one copy of the models."""

    def __init__(self, args: dict) -> None:
        self.args = ServeArgs.model_validate(args)
        self.threads = set_torch_threads(self.args.torch_threads)
        self.transcriber = load_transcriber(self.args)
        self._info = model_info(self.transcriber)
        self._decode_lock = asyncio.Lock()
        self._short.set_max_batch_size(self.args.batching.max_batch_size)
        self._short.set_batch_wait_timeout_s(self.args.batching.batch_wait_timeout_s)
        logger.info("WhisperModel ready (%d torch threads)", self.threads)

    async def info(self) -> ModelInfo:
        """Languages and features of the served teacher (checked by the ingress)."""
        return self._info

    async def transcribe(
        self, audio: np.ndarray, request: DecodeRequest = DecodeRequest()
    ) -> Transcript:
        """Transcript of one recording, batched with others when it is short."""
        request = await self._with_language(audio, request)
        job = _Job(audio, request, time.perf_counter())
        if not is_long_form(len(audio)):
            return await self._short(job)
        return (await self._decode([job], request, 1))[0]

    async def stream(self, audio: np.ndarray, request: DecodeRequest = DecodeRequest()):
        """``transcript.text.delta`` events as the windows are decoded, then ``done``.

        A short recording is one window: one delta. A long one is decoded a few
        windows at a time (``stream_windows``); each delta is text no later window
        can change, so the first arrives after the first windows, not the whole file.
        """
        request = await self._with_language(audio, request)
        if not is_long_form(len(audio)):
            transcript = await self.transcribe(audio, request)
            if transcript.text:
                yield delta_event(transcript.text)
            yield done_event(transcript.text)
            return
        options = decode_options(self.transcriber, request)
        windows, owners = split_windows([audio], self.args.chunk_length_s, self.args.stride_s)
        pieces = StreamedMerge(self.transcriber, [span for _, span in owners])
        step = self.args.stream_windows
        for start in range(0, len(windows), step):
            group = windows[start : start + step]
            # what each window answers for, so that the resume rule acts as in transcribe
            owned = owned_ends(owners[start : start + step])
            async with self._decode_lock:
                decoded = await asyncio.to_thread(
                    self.transcriber.decode_clips, group, False, options=options, owned_ends=owned
                )
            delta = pieces.add(decoded.ids, final=start + step >= len(windows))
            if delta:
                yield delta_event(delta)
        yield done_event(pieces.text)

    async def _with_language(self, audio: np.ndarray, request: DecodeRequest) -> DecodeRequest:
        """``request`` with the language set: detected when a multilingual model got none."""
        if request.language is not None:
            return request
        if not self._info.multilingual:
            return replace(request, language="en")
        async with self._decode_lock:
            code = await asyncio.to_thread(self.transcriber.detect_language, audio)
        return replace(request, language=code)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def _short(self, jobs: list[_Job]) -> list[Transcript]:
        # Rows of one generate call share their decoding settings: one group each.
        groups: dict[tuple, list[int]] = {}
        for i, job in enumerate(jobs):
            groups.setdefault(job.request.batch_key(), []).append(i)
        out: dict[int, Transcript] = {}
        for members in groups.values():
            request = jobs[members[0]].request
            done = await self._decode([jobs[i] for i in members], request, len(jobs))
            out.update(zip(members, done, strict=True))
        return [out[i] for i in range(len(jobs))]

    async def _decode(
        self, jobs: list[_Job], request: DecodeRequest, batch_size: int
    ) -> list[Transcript]:
        options = decode_options(self.transcriber, request)
        async with self._decode_lock:
            start = time.perf_counter()
            results = await asyncio.to_thread(
                self.transcriber.transcribe,
                [job.audio for job in jobs],
                long_form="chunked",
                return_timestamps=request.timestamps,
                word_timestamps=request.words,
                options=options,
            )
            seconds = time.perf_counter() - start
        return [
            to_transcript(
                result,
                {"batch_size": batch_size, "queue_s": start - job.enqueued, "decode_s": seconds},
                request,
            )
            for job, result in zip(jobs, results, strict=True)
        ]
