"""The CTranslate2 engine as a :class:`~distilray.inference.decoder.Decoder`.

:class:`CT2Decoder` decodes with a :class:`~distilray.engines.ct2.CT2Whisper` under
the same checks and the same :class:`~distilray.inference.decoder.Decoded` rows as
the transformers decoders: the forced prompt each row started from (a text prompt
in front of it), the generated ids (timestamps kept, no end of text) and
window-relative segments, with words when asked.

Greedy decoding, the work of every window, runs on CTranslate2. The transformers model
it is given supplies the tokenizer and the decoding settings, and what needs the
model's own ``generate`` or a teacher-forced pass over CTranslate2's encoder output
(which :meth:`CT2Decoder.encode` returns as a torch tensor): sampled calls
(temperature > 0) and the rows Whisper's temperature fallback samples again, the
fallback's scores, and word timing by the alignment heads' cross-attention (the same
words at the same times as the transformers engine's, so decoding on after an early
end decides alike; CTranslate2's own alignment renormalises the attention over the
audio and stretches a last word over the silence after it). Whisper's sequential
long-form needs transformers ``generate`` and is refused.
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
    """Short-form decoding (≤ 30 s windows) on CTranslate2."""

    decodes_encoder_states = True  # CTranslate2 decodes its own encoder's output

    def __init__(self, engine: CT2Whisper, model, processor, **kwargs):
        super().__init__(model, processor, **kwargs)
        config = model.generation_config
        if bool(getattr(config, "is_multilingual", False)) != engine.is_multilingual:
            raise DistilrayError(
                "CTranslate2 does not read this model's vocabulary as the model's "
                "configuration does (multilingual or English-only): "
                f"{ENGINE_HINT}"
            )
        self.engine = engine
        self.max_initial_timestamp = getattr(config, "max_initial_timestamp_index", None)
        # the transformers model's alignment heads are the converted copy's
        # (CTranslate2's converter reads them from the same generation config)
        self.capabilities = Capabilities(
            timestamps=True,
            sequential=False,
            word_timestamps=self.capabilities.word_timestamps,
            encoder_states=True,
        )
        self._encoded: tuple[torch.Tensor, object] | None = None  # last batch: tensor, view

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
        :meth:`encode`'s output for ``features`` (CTranslate2's encoder output).
        """
        try:
            return super().decode(
                features,
                return_timestamps=return_timestamps,
                word_timestamps=word_timestamps,
                end_times=end_times,
                encoder_hidden_states=encoder_hidden_states,
                options=options,
            )
        finally:
            self._encoded = None  # the batch's engine output is not kept past its decoding

    def encode(self, features) -> torch.Tensor:
        """CTranslate2's encoder output for ``features`` as a torch tensor on the
        model's device, as :meth:`decode` and the teacher-forced scores take it."""
        view = self.engine.encode(torch.as_tensor(features).cpu().numpy())
        hidden = self.engine.hidden_states(view, device=self.model.device, dtype=self.model.dtype)
        self._encoded = (hidden, view)
        return hidden

    def _view(self, hidden: torch.Tensor):
        """``hidden`` as CTranslate2 takes it: the engine's own output where it is the
        batch :meth:`encode` returned last, else a view of the tensor."""
        if self._encoded is not None and self._encoded[0] is hidden:
            return self._encoded[1]
        return self.engine.as_view(hidden)

    def sequential(self, audios: Sequence[np.ndarray], options, decode=None):
        raise DistilrayError(
            "sequential long-form runs on transformers generate: decode long audio chunked "
            f"with the CTranslate2 engine, or {ENGINE_HINT}"
        )

    def _generate(self, features, return_timestamps, encoder_hidden_states, settings):
        if settings.temperature > 0:  # sampled by the transformers model, as a fallback row is
            return self._greedy(features, return_timestamps, encoder_hidden_states, settings)
        view = self._view(encoder_hidden_states)
        config = self.model.generation_config
        languages: list[str | None] = [settings.language] * len(encoder_hidden_states)
        if settings.language is None and self.engine.is_multilingual:
            languages = list(self.engine.detect_language(view))  # per row, as generate does
        prompts = [
            [
                *settings.prompt_ids,
                *prompt_ids(config, language, settings.task, return_timestamps),
            ]
            for language in languages
        ]
        ids = self.engine.greedy(
            view,
            prompts,
            max_new_tokens=self.max_new_tokens,
            max_initial_timestamp_index=self.max_initial_timestamp,
            max_positions=self.model.config.max_target_positions,
        )
        return prompts, ids, [None] * len(ids)
