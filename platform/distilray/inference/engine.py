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
from distilray.inference.decoder import (
    Decoded,
    DecodeOptions,
    Decoder,
    Fallback,
    RowStats,
    make_decoder,
)
from distilray.inference.longform import (
    SequentialOptions,
    owned_ends,
    split_windows,
    transcribe_chunked,
)
from distilray.inference.prompt import MAX_PROMPT_TOKENS
from distilray.inference.resume import (
    ResumeRule,
    resume_point,
    rows_to_resume,
    shift_timestamps,
    text_end,
)
from distilray.inference.shortform import Segment, to_model
from distilray.inference.silence import (
    LOGPROB_THRESHOLD,
    is_digital_silence,
    is_silence,
    window_scores,
)
from distilray.inference.speculative import SpeculativeStats
from distilray.inference.windows import N_SAMPLES, is_long_form
from distilray.levels import speech_end_s

logger = logging.getLogger(__name__)

LongForm = Literal["chunked", "sequential"]
LONG_FORMS = ("chunked", "sequential")
Score = tuple[float, float]  # (avg_logprob, no_speech_prob) of one decoded window


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
    # windows whose decoding reached max_new_tokens without its end of text: a loop, or
    # a transcript cut short (short and chunked forms; None for sequential)
    unfinished_windows: int | None = None
    # windows whose text ended early and were decoded on (short and chunked forms with a
    # ResumeRule; None without one, and for sequential)
    resumed_windows: int | None = None

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
            "unfinished_windows": self.unfinished_windows,
            "resumed_windows": self.resumed_windows,
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
        fallback: Fallback | None = None,
        decoder: Decoder | None = None,
        resume: ResumeRule | None = None,
    ):
        if not 0 < chunk_length_s <= 30 or not 0 <= 2 * stride_s < chunk_length_s:
            raise DistilrayError(
                f"chunk_length_s must be in (0, 30] and stride_s below half of it "
                f"(got {chunk_length_s} and {stride_s})"
            )
        if batch_size < 1:
            raise DistilrayError(f"batch_size must be >= 1, got {batch_size}")
        if decoder is not None and assistant is not None:
            raise DistilrayError("give an assistant or a decoder, not both")
        # A decoder built elsewhere (e.g. CTranslate2's) brings its own token budget,
        # language and task; otherwise the teacher's, speculative with an assistant.
        self.decoder = decoder or make_decoder(
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
        # Whisper's temperature fallback for ≤ 30 s windows and chunks decoded at
        # temperature 0, unless a call's options bring their own; None: plain greedy.
        self.fallback = fallback
        # decode on where a short clip's or chunked window's text ends before its sound
        # (inference.resume); None: Whisper's decoding, final at the end of text
        if resume is not None and not self.decoder.capabilities.word_timestamps:
            raise DistilrayError(
                "decoding on after an early end times the transcript's last word, which "
                "this decoder cannot do (a model without alignment_heads): turn the "
                "resume rule off"
            )
        self.resume = resume

    def _rules(self, options: DecodeOptions | None) -> DecodeOptions:
        """``options`` with this transcriber's fallback where they set none."""
        options = options or DecodeOptions()
        if options.fallback is None and self.fallback is not None:
            options = replace(options, fallback=self.fallback)
        return options

    @property
    def max_new_tokens(self) -> int:
        """Generated tokens per window at most."""
        return self.decoder.max_new_tokens

    @max_new_tokens.setter
    def max_new_tokens(self, value: int) -> None:
        self.decoder.max_new_tokens = value

    @property
    def timestamp_begin(self) -> int:
        """Id of ``<|0.00|>``: ids from it on are timestamps."""
        return self.decoder.timestamp_begin

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
        options: DecodeOptions | None = None,
    ) -> list[TranscriptResult]:
        """Transcripts of 16 kHz mono recordings, in input order.

        ``word_timestamps`` fills every segment's ``words`` (and implies timestamps);
        it needs a model with valid alignment heads, and short-form or chunked audio.
        ``options`` (language, task, text prompt, temperature, window scores) apply to
        every recording of the call; sequential long-form takes language and task only.
        """
        options = self._rules(options)
        if long_form not in LONG_FORMS:
            raise DistilrayError(f"long_form must be one of {LONG_FORMS}, got {long_form!r}")
        if long_form == "sequential" and not self.decoder.capabilities.sequential:
            raise DistilrayError(
                "sequential long-form runs on transformers generate, which this engine "
                "does not use: use long_form='chunked' (--long-form chunked)"
            )
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
            done = self._short([audios[i] for i in short], timestamps, word_timestamps, options)
            for i, r in zip(short, done, strict=True):
                results[i] = r
        if long and long_form == "chunked":
            done = self._chunked([audios[i] for i in long], timestamps, word_timestamps, options)
            for i, r in zip(long, done, strict=True):
                results[i] = r
        elif long:
            done = self._sequential([audios[i] for i in long], timestamps, options)
            for i, r in zip(long, done, strict=True):
                results[i] = r
        return [r for r in results if r is not None]

    def detect_language(self, audio: np.ndarray) -> str:
        """Language code (``en``) a multilingual teacher hears in the first 30 s."""
        config = self.teacher.generation_config
        if not getattr(config, "is_multilingual", False):
            return "en"
        features = torch.from_numpy(log_mel(self.processor.feature_extractor, [audio[:N_SAMPLES]]))
        with torch.inference_mode():
            token = int(self.teacher.detect_language(to_model(self.teacher, features))[0])
        names = {v: k for k, v in config.lang_to_id.items()}
        return names[token].strip("<|>")

    def decode_clips(
        self,
        clips: Sequence[np.ndarray],
        return_timestamps: bool,
        word_timestamps: bool = False,
        options: DecodeOptions | None = None,
        owned_ends: Sequence[float] | None = None,
    ) -> Decoded:
        """Decoded ≤ 30 s clips, in batches (speculative with an assistant). With
        ``owned_ends`` (seconds of each clip its text answers for: a chunked window's
        span minus half of each overlap), the resume rule applies, as in :meth:`transcribe`."""
        decoded, _ = self._decode_scored(
            clips, return_timestamps, word_timestamps, options, owned_ends
        )
        return decoded

    def _decode_scored(
        self,
        clips: Sequence[np.ndarray],
        return_timestamps: bool,
        word_timestamps: bool,
        options: DecodeOptions | None,
        owned_ends: Sequence[float] | None = None,
    ) -> tuple[Decoded, list[Score | None]]:
        """:meth:`decode_clips`, and each window's score when asked for or needed
        for the no-speech rule (None otherwise). With ``owned_ends`` (how far into each
        clip its transcript is this call's to give) and a resume rule, clips whose
        text ends early are decoded on (:meth:`_resume`)."""
        options = self._rules(options)
        resuming = self.resume is not None and owned_ends is not None
        # the rule needs to know where the text ends: timestamps, or else timed words
        asked_words = word_timestamps
        word_timestamps = word_timestamps or (resuming and not return_timestamps)
        scored = options.scores or self.no_speech_threshold is not None
        # the scores are the teacher's: its decoder's encoder output serves both
        shared = self.decoder.capabilities.encoder_states and self.decoder.model is self.teacher
        parts: list[Decoded] = []
        scores: list[Score | None] = []
        for start in range(0, len(clips), self.batch_size):
            batch = list(clips[start : start + self.batch_size])
            features = torch.from_numpy(log_mel(self.processor.feature_extractor, batch))
            # one encoder pass for decoding (fallback included) and the windows' scores
            encoded, encode_s = None, 0.0
            if scored and shared:
                began = time.perf_counter()
                encoded = self.decoder.encode(features)
                encode_s = time.perf_counter() - began
            decoded = self.decoder.decode(
                features,
                return_timestamps=return_timestamps,
                word_timestamps=word_timestamps,
                end_times=[len(c) / SAMPLING_RATE for c in batch],
                encoder_hidden_states=encoded,
                options=options,
            )
            if encode_s:  # the rows' decoding time includes the encoder pass they shared
                share = encode_s / len(batch)
                stats = [replace(s, compute_s=s.compute_s + share) for s in decoded.stats]
                decoded = replace(decoded, stats=stats)
            batch_scores: list[Score | None] = [None] * len(batch)
            if scored:
                batch_scores = list(
                    window_scores(
                        self.teacher,
                        features,
                        decoded.ids,
                        prompts=decoded.prompts,
                        max_new_tokens=self.max_new_tokens,
                        encoded=encoded,
                    )
                )
            if self.no_speech_threshold is not None:
                decoded = self._blank_silence(decoded, batch_scores, batch)
            parts.append(decoded)
            scores.extend(batch_scores)
        merged = Decoded.joined(parts)
        if resuming:
            merged = self._resume(
                clips, merged, owned_ends, return_timestamps, word_timestamps, options
            )
            if not (return_timestamps or asked_words):  # words timed for the rule only
                merged = replace(merged, segments=[[] for _ in merged.ids])
        return merged, scores

    def _resume(
        self,
        clips: Sequence[np.ndarray],
        decoded: Decoded,
        owned_ends: Sequence[float],
        timestamps: bool,
        words: bool,
        options: DecodeOptions,
    ) -> Decoded:
        """``decoded`` with the rest of each clip decoded and appended where its text
        ends ``resume.gap_s`` before its last sound (inference.resume); windows that
        filled their token budget, or have no text, stay as they are."""
        assert self.resume is not None
        ids = [list(row) for row in decoded.ids]
        segments = [list(row) for row in decoded.segments]
        stats = list(decoded.stats)
        ends = [
            None if not self._text_ids(row) or self._unfinished(row) else text_end(segs)
            for row, segs in zip(ids, segments, strict=True)
        ]
        sounds = [speech_end_s(np.asarray(clip)) for clip in clips]
        for _ in range(self.resume.rounds):
            rows = rows_to_resume(ends, sounds, owned_ends, self.resume.gap_s)
            if not rows:
                break
            starts = [resume_point(ends[row]) for row in rows]  # type: ignore[arg-type]
            rests = [
                clips[row][round(start * SAMPLING_RATE) :]
                for row, start in zip(rows, starts, strict=True)
            ]
            # each rest is decoded with what its window said so far as Whisper's previous
            # text (after any prompt of the call's): the rest continues that text
            rest = Decoded.joined(
                [
                    self._decode_scored([audio], timestamps, words, self._after(options, ids[row]))[
                        0
                    ]
                    for row, audio in zip(rows, rests, strict=True)
                ]
            )
            ends = [None] * len(ids)
            for row, start, rest_ids, rest_segments, rest_stats in zip(
                rows, starts, rest.ids, rest.segments, rest.stats, strict=True
            ):
                if not self._text_ids(rest_ids):  # nothing more to say: the rule was wrong
                    continue
                ids[row] += shift_timestamps(rest_ids, start, self.timestamp_begin)
                segments[row] += [segment.shifted(start) for segment in rest_segments]
                filled = self._unfinished(rest_ids)
                stats[row] = _resumed(stats[row], rest_stats, start, filled)
                end = None if filled else text_end(rest_segments)
                ends[row] = None if end is None else start + end
        return Decoded(ids, decoded.prompts, segments, stats)

    def _after(self, options: DecodeOptions, said: Sequence[int]) -> DecodeOptions:
        """``options`` with the text ids ``said`` appended to its prompt: Whisper's
        ``<|startofprev|>`` + previous text, its last tokens within the prompt limit."""
        text = self._text_ids(list(said))
        if not text:
            return options
        start_of_prev = self.processor.tokenizer.convert_tokens_to_ids("<|startofprev|>")
        before = list(options.prompt_ids[1:])  # the call's own prompt, after its marker
        return replace(options, prompt_ids=(start_of_prev, *[*before, *text][-MAX_PROMPT_TOKENS:]))

    def _blank_silence(
        self, decoded: Decoded, scores: list[Score | None], clips: list[np.ndarray]
    ) -> Decoded:
        """``decoded`` with the windows Whisper's no-speech rule calls silence emptied."""
        quiet = [
            self._is_silence(score) or is_digital_silence(clip)
            for score, clip in zip(scores, clips, strict=True)
        ]
        return Decoded(
            ids=[[] if q else row for row, q in zip(decoded.ids, quiet, strict=True)],
            prompts=decoded.prompts,
            segments=[[] if q else row for row, q in zip(decoded.segments, quiet, strict=True)],
            stats=decoded.stats,
        )

    def _is_silence(self, score: Score | None) -> bool:
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
        self,
        audios: list[np.ndarray],
        timestamps: bool,
        word_timestamps: bool,
        options: DecodeOptions,
    ) -> list[TranscriptResult]:
        owned = [len(audio) / SAMPLING_RATE for audio in audios]
        decoded, scores = self._decode_scored(audios, timestamps, word_timestamps, options, owned)
        results = []
        for audio, ids, segments, stats, score in zip(
            audios, decoded.ids, decoded.segments, decoded.stats, scores, strict=True
        ):
            duration = len(audio) / SAMPLING_RATE
            result = self._result(self._text_ids(ids), segments, duration, "short", len(ids), stats)
            result.windows = self._window(0.0, duration, ids, score, options)
            result.unfinished_windows = int(self._unfinished(ids, stats))
            if self.resume is not None:
                result.resumed_windows = int(bool(stats.resumed_at))
            results.append(result)
        return results

    def _chunked(
        self,
        audios: list[np.ndarray],
        timestamps: bool,
        word_timestamps: bool,
        options: DecodeOptions,
    ) -> list[TranscriptResult]:
        windows: tuple[Decoded, list[Score | None]] | None = None
        _, owners = split_windows(audios, self.chunk_length_s, self.stride_s)
        owned = owned_ends(owners)

        def decode(clips: list[np.ndarray]) -> Decoded:
            nonlocal windows
            windows = self._decode_scored(clips, timestamps, word_timestamps, options, owned)
            return windows[0]

        outputs = transcribe_chunked(
            audios,
            decode,
            self.processor,
            self.decoder.timestamp_begin,
            chunk_length_s=self.chunk_length_s,
            stride_s=self.stride_s,
            return_timestamps=timestamps,
        )
        results = [
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
        if windows is None:  # no audio at all
            return results
        decoded, scores = windows
        for result in results:
            result.unfinished_windows = 0
            result.resumed_windows = 0 if self.resume is not None else None
        for row, (index, span) in enumerate(owners):
            results[index].unfinished_windows += self._unfinished(
                decoded.ids[row], decoded.stats[row]
            )
            if self.resume is not None and decoded.stats[row].resumed_at:
                results[index].resumed_windows = (results[index].resumed_windows or 0) + 1
            if options.scores:
                lo, hi = (x / SAMPLING_RATE for x in span.owned)
                results[index].windows += self._window(
                    lo, hi, decoded.ids[row], scores[row], options
                )
        return results

    def _sequential(
        self, audios: list[np.ndarray], timestamps: bool, options: DecodeOptions
    ) -> list[TranscriptResult]:
        results = []
        for start in range(0, len(audios), self.batch_size):
            batch = audios[start : start + self.batch_size]
            began = time.perf_counter()
            outputs = self.decoder.sequential(batch, self.sequential, options)
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

    def _unfinished(self, ids: list[int], stats: RowStats | None = None) -> bool:
        """Whether a window's generated ``ids`` (end of text not included) filled the
        token budget: decoding stopped at ``max_new_tokens``, not at its end of text
        (for a resumed window, ``stats`` say whether its last part did)."""
        if stats is not None and stats.filled_budget is not None:
            return stats.filled_budget
        return len(ids) >= self.max_new_tokens

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


def _resumed(first: RowStats, rest: RowStats, start_s: float, filled: bool) -> RowStats:
    """A window's stats once the part decoded from ``start_s`` on is appended."""
    drafts = first.speculative
    if rest.speculative is not None:
        drafts = rest.speculative if drafts is None else drafts + rest.speculative
    return RowStats(
        first.compute_s + rest.compute_s,
        drafts,
        resumed_at=(*first.resumed_at, start_s),
        filled_budget=filled,
    )
