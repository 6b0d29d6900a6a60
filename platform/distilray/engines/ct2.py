"""Whisper on CTranslate2: greedy short-form decoding under the transformers path's rules.

The transformers teacher decodes with ``generate`` (:mod:`distilray.inference.shortform`);
this engine runs the same model, converted once by CTranslate2's converter
(:func:`distilray.models.ct2_export.cached_ct2_model`), with the same decoding
rules: the forced prompt, the generation config's suppressed tokens (CTranslate2 reads
them from the converted ``config.json``), suppression of blank and end of text at the
first step, Whisper's timestamp rules with the same ``max_initial_timestamp_index``,
and the same token budget. At ``float32`` on CPU the token ids equal transformers'
greedy ids (``tests/test_ct2_engine.py``); the reduced compute types (int8, float16,
int8_float16, bfloat16) are faster and may differ in a share of labels.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal, get_args

import numpy as np

from distilray.errors import ConfigError
from distilray.models.ct2_export import cached_ct2_model, require_ctranslate2

# what the configs take (auto: float32 on CPU, float16 on a GPU), and CTranslate2's own
ComputeType = Literal["auto", "float32", "int8", "float16", "int8_float16", "bfloat16"]
COMPUTE_TYPES: tuple[str, ...] = get_args(ComputeType)[1:]


def default_compute_type(device: str) -> str:
    """float32 on CPU (exact labels), float16 on a GPU."""
    return "float32" if device == "cpu" else "float16"


def resolve_compute_type(compute_type: str, device: str) -> str:
    """``compute_type`` with ``auto`` resolved for a device type (``cpu``, ``cuda``).

    >>> resolve_compute_type("auto", "cpu"), resolve_compute_type("int8", "cuda")
    ('float32', 'int8')
    """
    return default_compute_type(device) if compute_type == "auto" else compute_type


def check_compute_type(engine: str, compute_type: str, *, field: str = "compute_type") -> None:
    """Refuse a CTranslate2 ``compute_type`` given to the transformers engine, where it
    would be ignored silently (``field``: the setting's name as the user writes it).

    >>> check_compute_type("ctranslate2", "int8")
    >>> check_compute_type("transformers", "int8", field="runtime.compute_type")
    Traceback (most recent call last):
    ...
    ValueError: runtime.compute_type is CTranslate2's: set runtime.engine=ctranslate2 (the transformers engine takes dtype)
    """
    if engine == "transformers" and compute_type != "auto":
        prefix = field.rpartition(".")[0]
        engine_field = f"{prefix}.engine" if prefix else "engine"
        raise ValueError(
            f"{field} is CTranslate2's: set {engine_field}=ctranslate2 "
            "(the transformers engine takes dtype)"
        )


class CT2Whisper:
    """A CTranslate2 Whisper: encode log-mel features, greedily decode encoder outputs."""

    def __init__(
        self,
        model_dir: str | Path,
        *,
        device: str = "cpu",
        device_index: int = 0,
        compute_type: str = "float32",
        threads: int = 1,
    ) -> None:
        if compute_type not in COMPUTE_TYPES:
            raise ConfigError(
                f"unknown compute_type {compute_type!r}: use one of {', '.join(COMPUTE_TYPES)}"
            )
        ct2 = require_ctranslate2()
        self.device, self.compute_type = device, compute_type
        try:
            self.model = ct2.models.Whisper(
                str(model_dir),
                device=device,
                device_index=device_index,
                compute_type=compute_type,
                inter_threads=1,
                intra_threads=max(1, threads),
            )
        except (RuntimeError, ValueError) as exc:  # e.g. float16 on a CPU without support
            raise ConfigError(
                f"CTranslate2 cannot run {model_dir} on {device} at {compute_type}: {exc}"
            ) from None

    @classmethod
    def load(
        cls,
        model: str | Path,
        *,
        device: str = "cpu",
        compute_type: str = "float32",
        threads: int = 1,
    ) -> CT2Whisper:
        """The engine for a model reference (converted into the model cache once) on a
        torch-style ``device`` (``cpu``, ``cuda``, ``cuda:1``), ``compute_type`` ``auto``
        resolved for it (:func:`resolve_compute_type`)."""
        kind, _, index = str(device).partition(":")
        return cls(
            cached_ct2_model(model),
            device=kind,
            device_index=int(index or 0),
            compute_type=resolve_compute_type(compute_type, kind),
            threads=threads,
        )

    def encode(self, features: np.ndarray):
        """The encoder output (a CTranslate2 ``StorageView``) of ``(batch, mels, frames)``."""
        import ctranslate2

        view = ctranslate2.StorageView.from_array(np.ascontiguousarray(features, dtype=np.float32))
        return self.model.encode(view)

    def hidden_states(self, encoded, *, device, dtype):
        """``encoded`` as a torch ``(batch, positions, d_model)`` tensor on ``device``."""
        import torch

        if self.device == "cpu":
            tensor = torch.from_numpy(np.array(encoded))
        else:  # CUDA memory, shared through __cuda_array_interface__
            tensor = torch.as_tensor(encoded, device=device)
        return tensor.to(device=device, dtype=dtype)

    def as_view(self, hidden):
        """A torch tensor of encoder output (:meth:`hidden_states`) as CTranslate2 takes
        it, viewed in place where its memory allows it. The caller keeps ``hidden`` alive
        while the view is used."""
        import ctranslate2

        hidden = hidden.detach()
        if hidden.device.type == "cpu":
            return ctranslate2.StorageView.from_array(np.ascontiguousarray(hidden.float().numpy()))
        return ctranslate2.StorageView.from_array(hidden.contiguous())

    @property
    def is_multilingual(self) -> bool:
        """Whether CTranslate2 takes the model for a multilingual one (its vocabulary)."""
        return bool(self.model.is_multilingual)

    def detect_language(self, encoded) -> list[str]:
        """Each row's most likely language token (``<|de|>``): CTranslate2's first
        decoding step over the language tokens, as Whisper and transformers detect it."""
        if not self.is_multilingual:
            raise ConfigError("an English-only model has no language to detect")
        return [row[0][0] for row in self.model.detect_language(encoded)]

    def greedy(
        self,
        encoded,
        prompts: Sequence[Sequence[int]],
        *,
        max_new_tokens: int,
        max_initial_timestamp_index: int | None = None,
        max_positions: int = 448,
    ) -> list[list[int]]:
        """Generated ids per row (timestamps as generated; prompt and end of text left out).

        ``encoded`` is :meth:`encode`'s output (log-mel features work too); each row
        starts from its ``prompts`` entry (a text prompt, then the forced tokens; every
        row's of one length, languages may differ). As many tokens are decoded per row,
        end of text included, as transformers' ``generate`` decodes with
        ``max_length=max_new_tokens`` (:func:`generate_steps`) for a decoder of
        ``max_positions`` positions.
        """
        if len(prompts) != encoded.shape[0] or len({len(p) for p in prompts}) > 1:
            raise ValueError("one prompt per row, all of one length")
        options = {}
        if max_initial_timestamp_index is not None:
            options["max_initial_timestamp_index"] = max_initial_timestamp_index
        length = len(prompts[0])
        steps = generate_steps(max_new_tokens, length, max_positions)
        results = self.model.generate(
            encoded,
            [list(prompt) for prompt in prompts],
            beam_size=1,
            max_length=ct2_max_length(steps, length),
            suppress_blank=True,
            suppress_tokens=[-1],  # the generation config's list, from the model's config.json
            **options,
        )
        return [list(result.sequences_ids[0]) for result in results]


def generate_steps(budget: int, prompt_length: int, max_positions: int = 448) -> int:
    """Tokens transformers' Whisper ``generate`` decodes with ``max_length=budget`` after a
    decoder prompt of ``prompt_length`` tokens (text prompt + forced tokens), end of text
    included: it counts ``max_length`` from the prompt's end but adds at most
    ``max_positions // 2 - 1`` of the prompt's length, and never passes the decoder's
    last position.

    >>> generate_steps(100, 3), generate_steps(100, 226), generate_steps(300, 226)
    (100, 97, 222)
    """
    beyond = max(0, prompt_length - (max_positions // 2 - 1))
    return max(0, min(budget - beyond, max_positions - prompt_length))


def ct2_max_length(steps: int, prompt_length: int) -> int:
    """CTranslate2's ``max_length`` for exactly ``steps`` tokens after a prompt of
    ``prompt_length`` tokens: its Whisper decodes ``min(max_length // 2, max_length -
    prompt_length + 1)`` of them (OpenAI's ``sample_len = n_text_ctx // 2``, and the
    whole sequence within ``max_length + 1`` positions).

    >>> ct2_max_length(25, 2), ct2_max_length(97, 226)
    (50, 322)
    """
    return max(1, 2 * steps, steps + prompt_length - 1)
