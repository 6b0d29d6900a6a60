"""The teacher side of labelling: the decoder prompt, driver-side checks, the actor.

:class:`TeacherLabeller` is a Ray Data callable class: each actor loads the
teacher once in ``__init__`` (from the reference it is given, never from pickled
weights) and greedily decodes batches of log-mel features with
:func:`distilray.inference.shortform.generate_greedy`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pyarrow as pa

from distilray.errors import ConfigError, ModelLoadError
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


def language_token(generation_config, language: str) -> int:
    """Id of ``<|xx|>`` for a language given as a code (``en``) or name (``english``)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    code = language.strip().strip("<|>").lower()
    code = TO_LANGUAGE_CODE.get(code, code)
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    if f"<|{code}|>" not in lang_to_id:
        raise ConfigError(f"language {language!r} is not one of the teacher's languages")
    return lang_to_id[f"<|{code}|>"]


def check_options(generation_config, language: str | None, task: str | None) -> None:
    """Reject language/task settings the teacher cannot take, before any work starts."""
    multilingual = bool(getattr(generation_config, "is_multilingual", False))
    if not multilingual and (language or task):
        raise ConfigError("the teacher is English-only: leave language and task unset")
    if multilingual and not language:
        raise ConfigError("the teacher is multilingual: set language (e.g. language=en)")
    if multilingual:
        language_token(generation_config, language)


def prompt_ids(
    generation_config, language: str | None, task: str | None, return_timestamps: bool
) -> list[int]:
    """The forced decoder prompt ``generate`` starts from (and the labels start with)."""
    ids = [generation_config.decoder_start_token_id]
    if getattr(generation_config, "is_multilingual", False):
        ids.append(language_token(generation_config, language or "en"))
        ids.append(generation_config.task_to_id[task or "transcribe"])
    if not return_timestamps:
        ids.append(generation_config.no_timestamps_token_id)
    return ids


def full_sequence(prompt: list[int], generated: list[int], eos: int, max_new: int) -> list[int]:
    """Prompt + generated + end of text (left off when generation was cut at ``max_new``)."""
    tail = [] if len(generated) >= max_new else [eos]
    return [*prompt, *generated, *tail]


class TeacherLabeller:
    """Ray Data actor: ``input_features`` → ``pseudo_label`` and ``pseudo_label_ids``."""

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
    ) -> None:
        import torch

        from distilray.models import load_whisper

        if device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.model, self.processor = load_whisper(
            teacher, device=device, dtype=dtype, attn_implementation=attn_implementation
        )
        config = self.model.generation_config
        eos = config.eos_token_id
        self.eos = eos[0] if isinstance(eos, list) else eos
        self.prompt = prompt_ids(config, language, task, return_timestamps)
        self.progress = progress  # a ProgressCounter actor handle, told about every batch
        self.options = {
            "max_new_tokens": max_new_tokens,
            "return_timestamps": return_timestamps,
            "language": language,
            "task": task,
        }

    def __call__(self, batch: pa.Table) -> pa.Table:
        features = _tensor_column(batch[FEATURES])
        errors = batch["error"].to_pylist()
        todo = [i for i, e in enumerate(errors) if e is None]
        ids: list[list[int] | None] = [None] * batch.num_rows
        for i, (row_ids, error) in zip(todo, self._generate(features[todo]), strict=True):
            ids[i], errors[i] = row_ids, error or errors[i]
        texts = [
            None if row is None else self.processor.decode(row, skip_special_tokens=True).strip()
            for row in ids
        ]
        max_new = self.options["max_new_tokens"]
        labels = [
            None if row is None else full_sequence(self.prompt, row, self.eos, max_new)
            for row in ids
        ]
        out = (
            batch.drop_columns([FEATURES, "error"])
            .append_column("pseudo_label", pa.array(texts, pa.string()))
            .append_column("pseudo_label_ids", pa.array(labels, pa.list_(pa.int32())))
            .append_column("error", pa.array(errors, pa.string()))
        )
        if self.progress is not None:
            from distilray.labelling.progress import batch_counts

            self.progress.add.remote(**batch_counts(out))
        return out

    def _generate(self, features: np.ndarray) -> list[tuple[list[int] | None, str | None]]:
        """Generated ids per row; a failing batch is retried row by row."""
        if not len(features):
            return []
        try:
            return [(row, None) for row in self._run(features)]
        except Exception as exc:  # noqa: BLE001 - e.g. out of memory: fall back to rows
            logger.warning(
                "teacher failed on a batch of %d (%s); retrying rows", len(features), exc
            )
        out: list[tuple[list[int] | None, str | None]] = []
        for row in features:
            try:
                out.append((self._run(row[None])[0], None))
            except Exception as exc:  # noqa: BLE001 - the row is recorded with its error
                out.append((None, f"teacher failed: {type(exc).__name__}: {exc}"))
        return out

    def _run(self, features: np.ndarray) -> list[list[int]]:
        import torch

        from distilray.inference.shortform import generate_greedy

        return generate_greedy(
            self.model,
            self.processor,
            torch.from_numpy(np.ascontiguousarray(features)),
            **self.options,
        )


def _tensor_column(column: pa.ChunkedArray) -> np.ndarray:
    """A Ray tensor column as one ``(rows, ...)`` numpy array."""
    if column.num_chunks == 1:
        return column.chunk(0).to_numpy()
    return np.concatenate([chunk.to_numpy() for chunk in column.chunks])
