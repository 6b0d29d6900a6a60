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
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from distilray.audio import SAMPLING_RATE
from distilray.errors import DistilrayError
from distilray.features import log_mel
from distilray.inference.decoder import Decoded, RowStats, make_decoder
from distilray.inference.longform import (
    SequentialOptions,
    transcribe_chunked,
)
from distilray.inference.shortform import Segment
from distilray.inference.silence import LOGPROB_THRESHOLD, is_digital_silence, silent_windows
from distilray.inference.speculative import SpeculativeStats
from distilray.inference.windows import is_long_form

logger = logging.getLogger(__name__)

LongForm = Literal["chunked", "sequential"]
LONG_FORMS = ("chunked", "sequential")


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

    @property
    def rtfx(self) -> float:
        """Inverse real-time factor: audio seconds per compute second."""
        return self.duration_s / self.compute_s if self.compute_s > 0 else float("inf")

    @property
    def words(self) -> list:
        """Every segment's words in order (empty unless word timestamps were asked for)."""
        return [w for s in self.segments for w in s.words]

    def as_dict(self) -> dict:
        return {
            "text": self.text,
            "token_ids": self.token_ids,
            "segments": [s.as_dict() for s in self.segments],
            "duration_s": self.duration_s,
            "compute_s": self.compute_s,
            "form": self.form,
            "generated_tokens": self.generated_tokens,
            "speculative": self.speculative.as_dict() if self.speculative else None,
        }


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
        if not 0 < chunk_length_s <= 30 or not 0 <= 2 * stride_s < chunk_length_s:
            raise DistilrayError(
                f"chunk_length_s must be in (0, 30] and stride_s below half of it "
                f"(got {chunk_length_s} and {stride_s})"
            )
        if batch_size < 1:
            raise DistilrayError(f"batch_size must be >= 1, got {batch_size}")
        self.decoder = make_decoder(
            teacher,
            processor,
            assistant,
            num_draft_tokens=num_draft_tokens,
            draft_schedule=draft_schedule,
            max_new_tokens=max_new_tokens,
            language=language,
            task=task,
        )
        self.teacher, self.processor, self.assistant = teacher, processor, assistant
        self.chunk_length_s, self.stride_s = chunk_length_s, stride_s
        self.batch_size = batch_size
        self.sequential = sequential or SequentialOptions()
        # Whisper's no-speech rule on every ≤ 30 s window (silence.py); None: raw output.
        self.no_speech_threshold, self.logprob_threshold = no_speech_threshold, logprob_threshold

    @property
    def max_new_tokens(self) -> int:
        """Generated tokens per window at most."""
        return self.decoder.max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, value: int) -> None:
        self.decoder.max_new_tokens = value

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
        word_timestamps: bool = False,
    ) -> list[TranscriptResult]:
        """Transcripts of 16 kHz mono recordings, in input order.

        ``word_timestamps`` fills every segment's ``words`` (and implies timestamps);
        it needs a model with valid alignment heads, and short-form or chunked audio.
        """
        if long_form not in LONG_FORMS:
            raise DistilrayError(f"long_form must be one of {LONG_FORMS}, got {long_form!r}")
        long = [i for i, a in enumerate(audios) if is_long_form(len(a))]
        if word_timestamps and long and long_form == "sequential":
            raise DistilrayError(
                "word timestamps are available for clips up to 30 s and chunked long-form; "
                "use --long-form chunked"
            )
        timestamps = return_timestamps or word_timestamps
        results: list[TranscriptResult | None] = [None] * len(audios)
        short = [i for i, a in enumerate(audios) if not is_long_form(len(a))]
        if short:
            done = self._short([audios[i] for i in short], timestamps, word_timestamps)
            for i, r in zip(short, done, strict=True):
                results[i] = r
        if long and long_form == "chunked":
            done = self._chunked([audios[i] for i in long], timestamps, word_timestamps)
            for i, r in zip(long, done, strict=True):
                results[i] = r
        elif long:
            for i, r in zip(
                long, self._sequential([audios[i] for i in long], timestamps), strict=True
            ):
                results[i] = r
        return [r for r in results if r is not None]

    def decode_clips(
        self, clips: Sequence[np.ndarray], return_timestamps: bool, word_timestamps: bool = False
    ) -> Decoded:
        """Decoded ≤ 30 s clips, in batches (speculative with an assistant)."""
        parts: list[Decoded] = []
        for start in range(0, len(clips), self.batch_size):
            batch = list(clips[start : start + self.batch_size])
            features = torch.from_numpy(log_mel(self.processor.feature_extractor, batch))
            decoded = self.decoder.decode(
                features,
                return_timestamps=return_timestamps,
                word_timestamps=word_timestamps,
                end_times=[len(c) / SAMPLING_RATE for c in batch],
            )
            if self.no_speech_threshold is not None:
                decoded = self._blank_silence(features, decoded, batch)
            parts.append(decoded)
        return Decoded(
            ids=[row for d in parts for row in d.ids],
            prompts=[row for d in parts for row in d.prompts],
            segments=[row for d in parts for row in d.segments],
            stats=[row for d in parts for row in d.stats],
        )

    def _blank_silence(
        self, features: torch.Tensor, decoded: Decoded, clips: list[np.ndarray]
    ) -> Decoded:
        """``decoded`` with the windows Whisper's no-speech rule calls silence emptied."""
        silent = silent_windows(
            self.teacher,
            features,
            decoded.ids,
            prompts=decoded.prompts,
            max_new_tokens=self.max_new_tokens,
            no_speech_threshold=self.no_speech_threshold,
            logprob_threshold=self.logprob_threshold,
        )
        quiet = [s or is_digital_silence(c) for s, c in zip(silent, clips, strict=True)]
        return Decoded(
            ids=[[] if q else row for row, q in zip(decoded.ids, quiet, strict=True)],
            prompts=decoded.prompts,
            segments=[[] if q else row for row, q in zip(decoded.segments, quiet, strict=True)],
            stats=decoded.stats,
        )

    def _short(
        self, audios: list[np.ndarray], timestamps: bool, word_timestamps: bool
    ) -> list[TranscriptResult]:
        decoded = self.decode_clips(audios, timestamps, word_timestamps)
        results = []
        for audio, ids, segments, stats in zip(
            audios, decoded.ids, decoded.segments, decoded.stats, strict=True
        ):
            duration = len(audio) / SAMPLING_RATE
            results.append(
                self._result(self._text_ids(ids), segments, duration, "short", len(ids), stats)
            )
        return results

    def _chunked(
        self, audios: list[np.ndarray], timestamps: bool, word_timestamps: bool
    ) -> list[TranscriptResult]:
        outputs = transcribe_chunked(
            audios,
            lambda windows: self.decode_clips(windows, timestamps, word_timestamps),
            self.processor,
            self.decoder.timestamp_begin,
            chunk_length_s=self.chunk_length_s,
            stride_s=self.stride_s,
            return_timestamps=timestamps,
        )
        return [
            self._result(
                out.token_ids,
                out.segments,
                len(audio) / SAMPLING_RATE,
                "chunked",
                out.generated_tokens,
                RowStats(out.compute_s, out.speculative),
            )
            for audio, out in zip(audios, outputs, strict=True)
        ]

    def _sequential(self, audios: list[np.ndarray], timestamps: bool) -> list[TranscriptResult]:
        import time

        results = []
        for start in range(0, len(audios), self.batch_size):
            batch = audios[start : start + self.batch_size]
            began = time.perf_counter()
            outputs = self.decoder.sequential(batch, self.sequential)
            share = (time.perf_counter() - began) / len(batch)
            for audio, (output, stats) in zip(batch, outputs, strict=True):
                segments = output.segments if timestamps else []
                results.append(
                    self._result(
                        output.token_ids,
                        segments,
                        len(audio) / SAMPLING_RATE,
                        "sequential",
                        len(output.token_ids),
                        RowStats(share, stats),
                    )
                )
        return results

    def _text_ids(self, ids: list[int]) -> list[int]:
        special = set(self.processor.tokenizer.all_special_ids)
        return [t for t in ids if t < self.decoder.timestamp_begin and t not in special]

    def _result(
        self,
        text_ids: list[int],
        segments: list[Segment],
        duration: float,
        form: str,
        generated: int,
        stats: RowStats,
    ) -> TranscriptResult:
        text = self.processor.tokenizer.decode(text_ids, skip_special_tokens=True).strip()
        return TranscriptResult(
            text=text,
            token_ids=text_ids,
            segments=segments,
            duration_s=duration,
            compute_s=stats.compute_s,
            form=form,
            generated_tokens=generated,
            speculative=stats.speculative,
        )
