"""Model references: the embedded tiny.en teacher, local folders, ``s3://`` and the Hub.

``resolve_model`` and ``load_whisper`` are imported on first use, so that the light
``distilray.models.cli`` module does not pull in pyarrow and transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from distilray.models.resolve import load_whisper, resolve_model

__all__ = ["load_whisper", "resolve_model"]


def __getattr__(name: str):
    if name in __all__:
        from distilray.models import resolve

        return getattr(resolve, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
