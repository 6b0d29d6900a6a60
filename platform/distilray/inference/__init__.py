"""Inference shared by labelling, evaluation and serving: short-form, long-form and
speculative decoding of Whisper models.

Names are loaded lazily so that ``distilray.inference.cli`` (imported by the
command-line parser) does not pull in torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Segment": "distilray.inference.shortform",
    "generate_greedy": "distilray.inference.shortform",
    "segments_from_ids": "distilray.inference.shortform",
    "split_timestamped": "distilray.inference.shortform",
    "timestamp_begin_id": "distilray.inference.shortform",
    "transcribe_batch": "distilray.inference.shortform",
    "SpeculativeStats": "distilray.inference.speculative",
    "speculative_generate": "distilray.inference.speculative",
    "SequentialOptions": "distilray.inference.longform",
    "DecodeOptions": "distilray.inference.decoder",
    "Fallback": "distilray.inference.decoder",
    "WindowScore": "distilray.inference.engine",
    "Transcriber": "distilray.inference.engine",
    "TranscriptResult": "distilray.inference.engine",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
