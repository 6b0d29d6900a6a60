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
from dataclasses import dataclass

import numpy as np
from ray import serve

from distilray.inference.windows import is_long_form
from distilray.serving.config import ServeArgs
from distilray.serving.formats import Segment, Transcript

logger = logging.getLogger(__name__)

MODEL_DEPLOYMENT = "WhisperModel"


@dataclass(frozen=True)
class _Job:
    """One short recording waiting in the batch queue."""

    audio: np.ndarray
    return_timestamps: bool
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
    transcriber = Transcriber.load(
        args.teacher,
        args.assistant,
        device=device,
        dtype=getattr(torch, dtype),
        num_draft_tokens=args.num_draft_tokens,
        chunk_length_s=args.chunk_length_s,
        stride_s=args.stride_s,
        # One engine batch holds a full request batch or a long recording's windows.
        batch_size=max(args.long_form_batch_size, args.batching.max_batch_size),
        no_speech_threshold=args.no_speech_threshold,
        logprob_threshold=args.logprob_threshold,
    )
    logger.info("loaded %s (assistant %s) on %s/%s", args.teacher, args.assistant, device, dtype)
    return transcriber


def to_transcript(result, stats: dict) -> Transcript:
    """Our response-side :class:`Transcript` from the engine's ``TranscriptResult``."""
    segments = tuple(Segment(s.start, s.end, s.text) for s in result.segments)
    stats = {**stats, "form": result.form, "compute_s": result.compute_s}
    if result.speculative is not None:
        stats["acceptance_rate"] = result.speculative.acceptance_rate
    return Transcript(result.text, result.duration_s, segments, stats)


@serve.deployment(
    name=MODEL_DEPLOYMENT,
    max_ongoing_requests=32,
    ray_actor_options={"num_cpus": 1},
)
class WhisperModel:
    """Transcribes decoded 16 kHz audio; one replica holds one copy of the models."""

    def __init__(self, args: dict) -> None:
        self.args = ServeArgs.model_validate(args)
        self.threads = set_torch_threads(self.args.torch_threads)
        self.transcriber = load_transcriber(self.args)
        self._decode_lock = asyncio.Lock()
        self._short.set_max_batch_size(self.args.batching.max_batch_size)
        self._short.set_batch_wait_timeout_s(self.args.batching.batch_wait_timeout_s)
        logger.info("WhisperModel ready (%d torch threads)", self.threads)

    async def transcribe(self, audio: np.ndarray, return_timestamps: bool = False) -> Transcript:
        """Transcript of one recording, batched with others when it is short."""
        if not is_long_form(len(audio)):
            return await self._short(_Job(audio, return_timestamps, time.perf_counter()))
        return await self._long(audio, return_timestamps)

    @serve.batch(max_batch_size=8, batch_wait_timeout_s=0.05)
    async def _short(self, jobs: list[_Job]) -> list[Transcript]:
        # Rows of one generate call share the timestamp setting: one group each.
        out: dict[int, Transcript] = {}
        for flag in (False, True):
            group = [i for i, job in enumerate(jobs) if job.return_timestamps == flag]
            if group:
                done = await self._decode([jobs[i] for i in group], flag, len(jobs))
                out.update(zip(group, done, strict=True))
        return [out[i] for i in range(len(jobs))]

    async def _long(self, audio: np.ndarray, return_timestamps: bool) -> Transcript:
        job = _Job(audio, return_timestamps, time.perf_counter())
        return (await self._decode([job], return_timestamps, 1))[0]

    async def _decode(
        self, jobs: list[_Job], timestamps: bool, batch_size: int
    ) -> list[Transcript]:
        async with self._decode_lock:
            start = time.perf_counter()
            results = await asyncio.to_thread(
                self.transcriber.transcribe,
                [job.audio for job in jobs],
                long_form="chunked",
                return_timestamps=timestamps,
            )
            seconds = time.perf_counter() - start
        return [
            to_transcript(
                result,
                {"batch_size": batch_size, "queue_s": start - job.enqueued, "decode_s": seconds},
            )
            for job, result in zip(jobs, results, strict=True)
        ]
