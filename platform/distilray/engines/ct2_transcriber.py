"""``transcribe --engine ctranslate2``: the transcription engine with CTranslate2 decoding.

:class:`CT2Transcriber` is :class:`~distilray.inference.engine.Transcriber` with a
:class:`~distilray.engines.ct2_decoder.CT2Decoder`: short-form decoding (clips of up
to 30 s, and the windows of chunked long-form) runs on CTranslate2; batching, chunk
merging, timestamps, the no-speech rule, Whisper's temperature fallback and decoding on
after an early end are the transformers engine's. The teacher's scores, the fallback's
samples and word timing read CTranslate2's encoder output with the transformers model
(one encoder pass per batch; :mod:`distilray.engines.ct2_decoder`). Speculative
decoding and sequential long-form need transformers ``generate`` and are refused with a
clear error.
"""

from __future__ import annotations

import numpy as np
import torch

from distilray.engines.ct2 import CT2Whisper
from distilray.engines.ct2_decoder import CT2Decoder
from distilray.errors import DistilrayError
from distilray.features import log_mel
from distilray.inference.engine import Transcriber
from distilray.inference.windows import N_SAMPLES


class CT2Transcriber(Transcriber):
    """A :class:`Transcriber` decoding with a CTranslate2 copy of its teacher."""

    def __init__(
        self,
        engine: CT2Whisper,
        teacher,
        processor,
        *,
        max_new_tokens: int | None = None,
        language: str | None = None,
        task: str | None = None,
        **kwargs,
    ):
        decoder = CT2Decoder(
            engine, teacher, processor, max_new_tokens=max_new_tokens, language=language, task=task
        )
        super().__init__(teacher, processor, decoder=decoder, **kwargs)
        self.engine = engine

    def detect_language(self, audio: np.ndarray) -> str:
        """Language code (``en``) CTranslate2 hears in the first 30 s of ``audio``."""
        if not self.engine.is_multilingual:
            return "en"
        features = log_mel(self.processor.feature_extractor, [audio[:N_SAMPLES]])
        return self.engine.detect_language(self.engine.encode(features))[0].strip("<|>")

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
        """The teacher (transformers: tokenizer, settings, scores) and its CTranslate2 copy."""
        from distilray.models import load_whisper

        if assistant:
            raise DistilrayError(
                "speculative decoding (--assistant) runs on transformers: use --engine transformers"
            )
        teacher, processor = load_whisper(model, device=device)
        engine = CT2Whisper.load(
            model, device=device, compute_type=compute_type, threads=torch.get_num_threads()
        )
        return cls(engine, teacher, processor, **kwargs)
