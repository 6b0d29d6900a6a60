"""The two per-batch steps of the evaluation pipeline, run by Ray Data.

:func:`decode_rows` (CPU tasks) decodes each row's audio and mixes in noise, one
output row per (clip, SNR); :class:`EvalWorker` (a pool of model actors)
transcribes them in every requested mode and form. Both return Arrow tables and
never raise for one bad row: the row carries its error instead.
"""

from __future__ import annotations

import logging
import math
import zlib

import numpy as np
import pyarrow as pa

from distilray.errors import DistilrayError
from distilray.evaluation.config import EvalConfig
from distilray.inference.windows import is_long_form

logger = logging.getLogger(__name__)

DECODED_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("id", pa.string()),
        ("text", pa.string()),
        ("snr_db", pa.float64()),  # NaN: clean audio
        ("audio", pa.binary()),  # float32 samples at 16 kHz
        ("duration_s", pa.float64()),
        ("error", pa.string()),
    ]
)

WORD_TYPE = pa.struct(
    [
        ("start", pa.float64()),  # seconds from the start of the recording
        ("end", pa.float64()),
        ("word", pa.string()),  # as decoded, leading space included
        ("probability", pa.float64()),
    ]
)

RESULT_SCHEMA = pa.schema(
    [
        ("dataset", pa.string()),
        ("id", pa.string()),
        ("snr_db", pa.float64()),
        ("mode", pa.string()),
        ("form", pa.string()),
        ("reference", pa.string()),
        ("hypothesis", pa.string()),
        ("duration_s", pa.float64()),
        ("compute_s", pa.float64()),
        ("generated_tokens", pa.int64()),
        ("drafted", pa.int64()),
        ("accepted", pa.int64()),
        ("teacher_passes", pa.int64()),
        ("unfinished_windows", pa.int64()),  # null for sequential (not tracked)
        ("resumed_windows", pa.int64()),  # decoded on after an early end (runtime.resume_gap_s)
        ("words", pa.list_(WORD_TYPE)),  # null unless word_timestamps (and not sequential)
        ("error", pa.string()),
    ]
)


def noise_rng(seed: int, clip_id: str, snr_db: float) -> np.random.Generator:
    """A noise stream of its own for each (seed, clip, SNR): reruns mix identical noise."""
    snr_key = int(round((snr_db + 1000.0) * 100))  # non-negative, 0.01 dB resolution
    return np.random.default_rng([seed, zlib.crc32(clip_id.encode()), snr_key])


def decode_rows(
    batch: pa.Table, snr_db: list[float | None] | dict[str, list[float | None]], seed: int
) -> pa.Table:
    """Decode every row's audio and emit one row per SNR (``None`` = clean); ``snr_db``
    is one list for every row or a list per dataset name."""
    from distilray.audio import SAMPLING_RATE, add_noise, decode_audio

    out: dict[str, list] = {name: [] for name in DECODED_SCHEMA.names}
    for row in batch.to_pylist():
        audio, error = None, None
        try:
            audio = decode_audio(row["audio_bytes"] or row["audio_path"])
        except Exception as exc:  # noqa: BLE001 - one bad file must not fail the block
            error = f"{type(exc).__name__}: {exc}"
        levels = snr_db[row["dataset"]] if isinstance(snr_db, dict) else snr_db
        for snr in levels:
            samples = b""
            if audio is not None:
                noisy = (
                    audio if snr is None else add_noise(audio, snr, noise_rng(seed, row["id"], snr))
                )
                samples = np.asarray(noisy, dtype=np.float32).tobytes()
            out["dataset"].append(row["dataset"])
            out["id"].append(row["id"])
            out["text"].append(row["text"])
            out["snr_db"].append(math.nan if snr is None else float(snr))
            out["audio"].append(samples)
            out["duration_s"].append(0.0 if audio is None else len(audio) / SAMPLING_RATE)
            out["error"].append(error)
    return pa.table(out, schema=DECODED_SCHEMA)


class EvalWorker:
    """A Ray Data actor holding the models: transcribes batches in every mode and form."""

    def __init__(self, cfg: EvalConfig):
        import torch

        from distilray.models import load_whisper

        rt = cfg.runtime
        torch.set_num_threads(max(1, int(rt.cpus_per_actor)))
        dtype = _dtype(rt.dtype, rt.device)
        teacher, processor = load_whisper(cfg.models.teacher, device=rt.device, dtype=dtype)
        student = None
        if cfg.models.student:
            student = load_whisper(cfg.models.student, device=rt.device, dtype=dtype)[0]
        # (model, its reference, assistant) of each mode; speculative output is the teacher's
        pairs = {
            "teacher": (teacher, cfg.models.teacher, None),
            "student": (student, cfg.models.student, None),
            "speculative": (teacher, cfg.models.teacher, student),
        }
        self.transcribers = {
            mode: _transcriber(rt, mode, *pairs[mode], processor) for mode in cfg.modes
        }
        self.forms = list(cfg.forms)
        self.noisy_modes = set(cfg.noisy_modes())
        self.word_timestamps = cfg.word_timestamps
        if self.word_timestamps:
            _check_word_timestamps(self.transcribers, cfg)
        self._warm_up()

    def _warm_up(self) -> None:
        """One short decode per mode, so the first timed batch pays no start-up cost."""
        import torch

        with torch.no_grad():
            self._decode_silence()

    def _decode_silence(self) -> None:
        silence = [np.zeros(16000, dtype=np.float32)]
        for transcriber in self.transcribers.values():
            transcriber.max_new_tokens, saved = 4, transcriber.max_new_tokens
            transcriber.transcribe(silence)
            transcriber.max_new_tokens = saved

    def __call__(self, batch: pa.Table) -> pa.Table:
        import torch

        # scoped, not process-wide: the worker may share a process that trains afterwards
        with torch.no_grad():
            return self._transcribe_batch(batch)

    def _transcribe_batch(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        out: list[dict] = [_error_row(r) for r in rows if r["error"]]
        good = [r for r in rows if not r["error"]]
        audios = [np.frombuffer(r["audio"], dtype=np.float32) for r in good]
        short = [i for i, a in enumerate(audios) if not is_long_form(len(a))]
        long = [i for i, a in enumerate(audios) if is_long_form(len(a))]
        clean = {i for i, r in enumerate(good) if math.isnan(r["snr_db"])}
        for mode, transcriber in self.transcribers.items():
            for form in self.forms:
                chosen = short if form == "short" else long
                if mode not in self.noisy_modes:
                    chosen = [i for i in chosen if i in clean]
                if not chosen:
                    continue
                long_form = "chunked" if form == "short" else form
                words = self.word_timestamps and form != "sequential"
                results = transcriber.transcribe(
                    [audios[i] for i in chosen], long_form=long_form, word_timestamps=words
                )
                out.extend(
                    _result_row(good[i], mode, form, r, words)
                    for i, r in zip(chosen, results, strict=True)
                )
        return pa.Table.from_pylist(out, schema=RESULT_SCHEMA)


def _transcriber(rt, mode: str, model, ref: str, assistant, processor):
    """The :class:`Transcriber` of one mode under ``runtime`` (``rt``): transformers, or
    CTranslate2 decoding a copy of ``ref`` (the config refuses speculative decoding and
    sequential long-form there)."""
    options = {
        "batch_size": rt.batch_size,
        "max_new_tokens": rt.max_new_tokens,
        "chunk_length_s": rt.chunk_length_for(mode),
        "stride_s": rt.stride_s,
        "language": rt.language,
        "fallback": rt.fallback.rule() if rt.fallback else None,
        "resume": rt.resume_rule(),
    }
    if rt.engine == "ctranslate2":
        from distilray.engines.ct2 import CT2Whisper
        from distilray.engines.ct2_transcriber import CT2Transcriber

        engine = CT2Whisper.load(
            ref,
            device=rt.device,
            compute_type=rt.compute_type,
            threads=max(1, int(rt.cpus_per_actor)),
        )
        return CT2Transcriber(engine, model, processor, **options)
    from distilray.inference.engine import Transcriber

    return Transcriber(
        model,
        processor,
        assistant,
        num_draft_tokens=rt.num_draft_tokens,
        draft_schedule=rt.draft_schedule,
        **options,
    )


def _check_word_timestamps(transcribers: dict, cfg: EvalConfig) -> None:
    """Fail before the first batch when a mode's model cannot time words."""
    for mode, transcriber in transcribers.items():
        if not transcriber.decoder.capabilities.word_timestamps:
            model = cfg.models.student if mode == "student" else cfg.models.teacher
            raise DistilrayError(
                f"word_timestamps: {model} ({mode} mode) has no alignment heads in its "
                "decoder; re-export or re-initialise it, or set word_timestamps=false"
            )


def _dtype(name: str | None, device: str):
    import torch

    if name is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    return getattr(torch, name)


def _result_row(row: dict, mode: str, form: str, result, words: bool = False) -> dict:
    spec = result.speculative
    return {
        "dataset": row["dataset"],
        "id": row["id"],
        "snr_db": row["snr_db"],
        "mode": mode,
        "form": form,
        "reference": row["text"],
        "hypothesis": result.text,
        "duration_s": result.duration_s,
        "compute_s": result.compute_s,
        "generated_tokens": result.generated_tokens,
        "drafted": spec.drafted if spec else 0,
        "accepted": spec.accepted if spec else 0,
        "teacher_passes": spec.teacher_passes if spec else 0,
        "unfinished_windows": result.unfinished_windows,
        "resumed_windows": result.resumed_windows,
        "words": [vars(w) for w in result.words] if words else None,
        "error": None,
    }


def _error_row(row: dict) -> dict:
    return {
        "dataset": row["dataset"],
        "id": row["id"],
        "snr_db": row["snr_db"],
        "mode": None,
        "form": None,
        "reference": row["text"],
        "hypothesis": None,
        "duration_s": 0.0,
        "compute_s": 0.0,
        "generated_tokens": 0,
        "drafted": 0,
        "accepted": 0,
        "teacher_passes": 0,
        "unfinished_windows": None,
        "resumed_windows": None,
        "words": None,
        "error": row["error"],
    }
