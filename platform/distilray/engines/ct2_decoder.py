"""The CTranslate2 engine as a :class:`~distilray.inference.decoder.Decoder`.

:class:`CT2Decoder` decodes with a :class:`~distilray.engines.ct2.CT2Whisper` under
the same checks and the same :class:`~distilray.inference.decoder.Decoded` rows as
the transformers decoders: the forced prompt each row started from, the generated
ids (timestamps kept, no end of text) and window-relative segments. The transformers
model it is given supplies the tokenizer and the decoding settings only.

What it cannot do it refuses with a clear error, and says so in its capabilities:
Whisper's sequential long-form and word timestamps (both need transformers
``generate`` and the decoder's cross-attentions), sampling (temperature > 0) and
text prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from distilray.engines.ct2 import CT2Whisper
from distilray.errors import DistilrayError
from distilray.inference.decoder import BaseDecoder, Capabilities, Decoded, DecodeOptions
from distilray.inference.prompt import prompt_ids

ENGINE_HINT = "use --engine transformers"


class CT2Decoder(BaseDecoder):
    """Greedy short-form decoding (≤ 30 s windows) on CTranslate2."""

    def __init__(self, engine: CT2Whisper, model, processor, **kwargs):
        super().__init__(model, processor, **kwargs)
        config = model.generation_config
        if getattr(config, "is_multilingual", False) and not self.language:
            raise DistilrayError(
                "the CTranslate2 engine does not detect the language: give the language "
                "(--language)"
            )
        self.engine = engine
        self.max_initial_timestamp = getattr(config, "max_initial_timestamp_index", None)
        self.capabilities = Capabilities(timestamps=True, sequential=False, word_timestamps=False)

    def decode(
        self,
        features,
        *,
        return_timestamps: bool = False,
        word_timestamps: bool = False,
        end_times: Sequence[float] | None = None,
        encoder_hidden_states=None,
        options: DecodeOptions | None = None,
    ) -> Decoded:
        """:class:`Decoded` rows of ≤ 30 s log-mel ``features``.

        ``encoder_hidden_states``, when the caller already encoded the batch, is
        :meth:`CT2Whisper.encode`'s output for ``features`` (CTranslate2's own).
        """
        if word_timestamps:
            raise DistilrayError(
                f"word timestamps need the transformers engine's cross-attentions: {ENGINE_HINT}"
            )
        return super().decode(
            features,
            return_timestamps=return_timestamps,
            end_times=end_times,
            encoder_hidden_states=encoder_hidden_states,
            options=options,
        )

    def encode(self, features):
        """CTranslate2's encoder output for ``features``, as :meth:`decode` takes it
        (not the transformers model's: ``capabilities.encoder_states`` is off)."""
        return self.engine.encode(torch.as_tensor(features).cpu().numpy())

    def settings(self, options: DecodeOptions | None) -> DecodeOptions:
        settings = super().settings(options)
        if settings.temperature > 0:
            raise DistilrayError(
                f"the CTranslate2 engine decodes greedily (temperature 0): {ENGINE_HINT} to sample"
            )
        if settings.prompt_ids:
            raise DistilrayError(f"the CTranslate2 engine takes no text prompt: {ENGINE_HINT}")
        if settings.fallback is not None:
            raise DistilrayError(
                f"the CTranslate2 engine has no temperature fallback: {ENGINE_HINT} for it"
            )
        return settings

    def _generate(self, features, return_timestamps, encoder_hidden_states, settings):
        encoded = encoder_hidden_states
        if encoded is None:
            encoded = self.encode(features)
        prompt = prompt_ids(
            self.model.generation_config, settings.language, settings.task, return_timestamps
        )
        ids = self.engine.greedy(
            encoded,
            prompt,
            max_new_tokens=self.max_new_tokens,
            max_initial_timestamp_index=self.max_initial_timestamp,
        )
        return [list(prompt) for _ in ids], ids, [None] * len(ids)

    def sequential(self, audios: Sequence[np.ndarray], options, decode=None):
        raise DistilrayError(
            "sequential long-form runs on transformers generate: decode long audio chunked "
            f"with the CTranslate2 engine, or {ENGINE_HINT}"
        )
