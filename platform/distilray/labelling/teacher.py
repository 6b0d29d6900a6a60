"""The teacher side of labelling: the decoder prompt, driver-side checks, the actor.

:class:`TeacherLabeller` is a Ray Data callable class: each actor loads the
teacher once in ``__init__`` (from the reference it is given, never from pickled
weights) and greedily decodes batches of log-mel features with a
:class:`distilray.inference.decoder.GreedyDecoder`. The stored label starts with the
prompt generation actually used (``Decoded.prompts``), never a re-derived one.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from distilray.errors import ConfigError, ModelLoadError
from distilray.inference.confidence import compression_ratio, no_speech_token_id
from distilray.inference.prompt import end_of_text, full_sequence, language_token
from distilray.labelling.schema import FEATURES

logger = logging.getLogger(__name__)


def teacher_assets(ref: str):
    """``(feature_extractor, generation_config)`` of the teacher, for the driver.

    A hub id fetches only its two small JSON files here; the weights are loaded by
    the actors. Other references (tiny.en, folders, s3://) resolve as usual.
    """
    from transformers import GenerationConfig, WhisperFeatureExtractor

    from distilray.models.resolve import reference_kind, resolve_model

    source: str | Path = ref
    if reference_kind(ref)[0] != "hub":
        source = resolve_model(ref)
    try:
        return (
            WhisperFeatureExtractor.from_pretrained(source),
            GenerationConfig.from_pretrained(source),
        )
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read the teacher's configuration from {ref}: {exc}") from None


def check_options(generation_config, language: str | None, task: str | None) -> None:
    """Reject language/task settings the teacher cannot take, before any work starts."""
    multilingual = bool(getattr(generation_config, "is_multilingual", False))
    if not multilingual and (language or task):
        raise ConfigError("the teacher is English-only: leave language and task unset")
    if multilingual and not language:
        raise ConfigError("the teacher is multilingual: set language (e.g. language=en)")
    if multilingual:
        language_token(generation_config, language)


class TeacherLabeller:
    """Ray Data actor: ``input_features`` → ``pseudo_label``, ``pseudo_label_ids`` and the
    teacher's confidence (``avg_logprob``, ``compression_ratio``, ``no_speech_prob``)."""

    def __init__(
        self,
        teacher: str,
        device: str,
        dtype: str,
        attn_implementation: str,
        max_new_tokens: int,
        return_timestamps: bool,
        language: str | None,
        task: str | None,
        threads: int = 1,
        progress=None,
        encoder_cache_dir: str | None = None,
    ) -> None:
        import torch

        from distilray.models import load_whisper

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.model, self.processor = load_whisper(
            teacher, device=device, dtype=dtype, attn_implementation=attn_implementation
        )
        from distilray.inference.decoder import GreedyDecoder

        config = self.model.generation_config
        self.eos = end_of_text(config)
        self.decoder = GreedyDecoder(
            self.model, self.processor, max_new_tokens=max_new_tokens, language=language, task=task
        )
        self.return_timestamps = return_timestamps
        self.store = None  # where encoder outputs are left for distillation
        if encoder_cache_dir:
            from distilray.models.encoder_store import EncoderStore, encoder_namespace

            self.store = EncoderStore(
                encoder_cache_dir, encoder_namespace(teacher, self.model.dtype)
            )
        self.suppress = list(config.suppress_tokens or [])
        self.no_speech_id = no_speech_token_id(config)
        self.progress = progress  # a ProgressCounter actor handle, told about every batch

    def __call__(self, batch: pa.Table) -> pa.Table:
        features = _tensor_column(batch[FEATURES])
        errors = batch["error"].to_pylist()
        todo = [i for i, e in enumerate(errors) if e is None]
        labels: list[list[int] | None] = [None] * batch.num_rows
        scores: list[tuple[float, float] | None] = [None] * batch.num_rows
        for i, (labelled, error) in zip(todo, self._generate(features[todo]), strict=True):
            errors[i] = error or errors[i]
            if labelled is not None:
                labels[i], scores[i] = labelled
        # prompt and end of text are special tokens: the text is the generated part's
        texts = [
            None if row is None else self.processor.decode(row, skip_special_tokens=True).strip()
            for row in labels
        ]
        out = (
            batch.drop_columns([FEATURES, "error"])
            .append_column("pseudo_label", pa.array(texts, pa.string()))
            .append_column("pseudo_label_ids", pa.array(labels, pa.list_(pa.int32())))
            .append_column("avg_logprob", _floats([s and s[0] for s in scores]))
            .append_column(
                "compression_ratio",
                _floats([None if t is None else compression_ratio(t) for t in texts]),
            )
            .append_column("no_speech_prob", _floats([s and s[1] for s in scores]))
            .append_column("error", pa.array(errors, pa.string()))
        )
        if self.progress is not None:
            from distilray.labelling.progress import batch_counts

            self.progress.add.remote(**batch_counts(out))
        return out

    def _generate(self, features: np.ndarray) -> list[tuple[_Labelled | None, str | None]]:
        """Generated ids and scores per row; a failing batch is retried row by row."""
        if not len(features):
            return []
        try:
            return [(row, None) for row in self._run(features)]
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: fall back to rows
            logger.warning(
                "teacher failed on a batch of %d (%s); retrying rows", len(features), exc
            )
        out: list[tuple[_Labelled | None, str | None]] = []
        for row in features:
            try:
                out.append((self._run(row[None])[0], None))
            except Exception as exc:  # noqa: BLE001 - the row is recorded with its error
                out.append((None, f"teacher failed: {type(exc).__name__}: {exc}"))
        return out

    def _encode(self, features: np.ndarray):
        """The teacher's encoder output for ``features`` as its decoder takes it, a torch
        tensor the scores and the encoder store read too (CTranslate2's output on that
        engine: :meth:`CT2Decoder.encode`)."""
        return self.decoder.encode(np.ascontiguousarray(features))

    def _run(self, features: np.ndarray) -> list[_Labelled]:
        """Label sequences, then one teacher-forced pass for ``(avg_logprob, no_speech_prob)``."""
        from distilray.inference.confidence import sequence_scores

        hidden = self._encode(features)
        if self.store is not None:
            for row, states in zip(features, hidden, strict=True):
                self.store.save(row, states)
        decoded = self.decoder.decode(
            features, return_timestamps=self.return_timestamps, encoder_hidden_states=hidden
        )
        sequences = [
            full_sequence(prompt, row, self.eos, self.decoder.max_new_tokens)
            for prompt, row in zip(decoded.prompts, decoded.ids, strict=True)
        ]
        scores = sequence_scores(
            self.model,
            hidden,
            sequences,
            [len(prompt) for prompt in decoded.prompts],
            suppress_tokens=self.suppress,
            no_speech_id=self.no_speech_id,
        )
        return list(zip(sequences, scores, strict=True))


# the full label sequence (prompt + generated + end of text), (avg_logprob, no_speech_prob)
_Labelled = tuple[list[int], tuple[float, float]]


def _floats(values: list[float | None]) -> pa.Array:
    return pa.array(values, pa.float64())


def _tensor_column(column: pa.ChunkedArray) -> np.ndarray:
    """A Ray tensor column as one ``(rows, ...)`` numpy array."""
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy()
    return np.concatenate([chunk.to_numpy() for chunk in column.chunks])
