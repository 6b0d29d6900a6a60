"""Keep transformers' console output to what a user of this platform can act on.

Loading and saving a model draw tqdm bars ("Loading weights", "Writing model
shards") in every process that touches a model, Ray workers included: a demo run
printed dozens of them between its own progress lines. :func:`quiet_model_io` turns
transformers' bars off; this platform logs its own progress.

The rest of this module drops the one transformers warning that no caller of
Whisper's ``generate`` can avoid.

transformers 5.x's ``WhisperForConditionalGeneration.generate`` calls the generic
``generate`` with both its ``generation_config`` and ``suppress_tokens`` /
``begin_suppress_tokens`` (huggingface/transformers#48108), and the generic
``generate`` then warns that passing both is deprecated, on the first call of every
process, whatever the caller passed. Only that exact record is dropped: every other
transformers warning still reaches the console.
"""

from __future__ import annotations

import logging
import re

GENERATE_LOGGER = "transformers.generation.utils"
# Whisper's own call passes exactly these two arguments next to its generation config.
_WHISPER_OWN_ARGUMENTS = frozenset({"suppress_tokens", "begin_suppress_tokens"})
_DEPRECATION = "Passing `generation_config` together with generation-related arguments"


class WhisperInternalDeprecation(logging.Filter):
    """Rejects the deprecation record raised by Whisper's own inner ``generate`` call."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if not message.startswith(_DEPRECATION):
            return True
        return set(re.findall(r"'(\w+)'", message)) != _WHISPER_OWN_ARGUMENTS


def quiet_whisper_generate() -> None:
    """Install :class:`WhisperInternalDeprecation` on transformers' generate logger, once."""
    logger = logging.getLogger(GENERATE_LOGGER)
    if not any(isinstance(f, WhisperInternalDeprecation) for f in logger.filters):
        logger.addFilter(WhisperInternalDeprecation())


def quiet_model_io() -> None:
    """Turn off transformers' progress bars for loading and saving weights."""
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
