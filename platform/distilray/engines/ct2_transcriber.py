"""``transcribe --engine ctranslate2``: the transcription engine with CTranslate2 decoding.

:class:`CT2Transcriber` is :class:`~distilray.inference.engine.Transcriber` whose
short-form decoding (clips of up to 30 s, and the windows of chunked long-form) runs
on CTranslate2; batching, chunk merging, timestamps and the no-speech rule are the
transformers engine's. Speculative decoding and sequential long-form need
transformers ``generate`` and are refused.
"""

from __future__ import annotations

import torch

from distilray.engines.ct2 import CT2Whisper, default_compute_type
from distilray.errors import DistilrayError
from distilray.inference.engine import Transcriber
from distilray.inference.prompt import prompt_ids


class CT2Transcriber(Transcriber):
    """A :class:`Transcriber` decoding with a CTranslate2 copy of its teacher."""

    def __init__(self, engine: CT2Whisper, teacher, processor, **kwargs):
        super().__init__(teacher, processor, None, **kwargs)
        config = teacher.generation_config
        if getattr(config, "is_multilingual", False) and not self.language:
            raise DistilrayError(
                "the CTranslate2 engine does not detect the language: give --language"
            )
        self.engine = engine
        self.max_initial_timestamp = getattr(config, "max_initial_timestamp_index", None)

    @classmethod
    def load(
        cls,
        model: str,
        assistant: str | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "auto",
        **kwargs,
    ) -> CT2Transcriber:
        """The teacher (transformers: tokenizer, settings) and its CTranslate2 copy."""
        from distilray.models import load_whisper

        if assistant:
            raise DistilrayError(
                "speculative decoding (--assistant) runs on transformers: use --engine transformers"
            )
        teacher, processor = load_whisper(model, device=device)
        kind = torch.device(device).type
        engine = CT2Whisper.load(
            model,
            device=kind,
            device_index=torch.device(device).index or 0,
            compute_type=default_compute_type(kind) if compute_type == "auto" else compute_type,
            threads=torch.get_num_threads(),
        )
        return cls(engine, teacher, processor, **kwargs)

    def transcribe(self, audios, *, long_form="chunked", return_timestamps=False):
        if long_form == "sequential":
            raise DistilrayError(
                "sequential long-form runs on transformers generate: use --long-form chunked "
                "with --engine ctranslate2"
            )
        return super().transcribe(audios, long_form=long_form, return_timestamps=return_timestamps)

    def _decode_features(self, features: torch.Tensor, return_timestamps: bool):
        prompt = prompt_ids(
            self.teacher.generation_config, self.language, self.task, return_timestamps
        )
        ids = self.engine.greedy(
            self.engine.encode(features.numpy()),
            prompt,
            max_new_tokens=self.max_new_tokens,
            max_initial_timestamp_index=self.max_initial_timestamp,
        )
        return ids, [None] * len(ids)
