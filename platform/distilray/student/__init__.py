"""Initialise a student Whisper from its teacher (Distil-Whisper, section 4.1).

The student keeps the teacher's whole encoder and a few of its decoder layers,
chosen maximally spaced (the first and the last for two layers), plus the token
and position embeddings and the final layer norm. Every student weight is a copy
of one teacher weight: :func:`~distilray.student.layers.weight_sources` says which.

``config`` (the stage's config model), ``layers`` (pure layer choice and mapping),
``build`` (build, save, ``init_student``) and ``cli`` (``distilray init-student``).
Names are loaded lazily so that ``distilray.student.cli`` (imported by the
command-line parser) pulls in none of them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from distilray.student.build import (
        INIT_INFO_FILE,
        StudentInfo,
        build_student,
        init_student,
        same_encoder,
        save_model_folder,
    )
    from distilray.student.config import StudentInitConfig
    from distilray.student.layers import (
        hidden_pairs,
        keep_alignment_heads,
        resolve_layer_ids,
        select_layers,
        set_alignment_heads,
        student_alignment_heads,
        weight_sources,
    )

_EXPORTS = {
    "StudentInitConfig": "distilray.student.config",
    "INIT_INFO_FILE": "distilray.student.build",
    "StudentInfo": "distilray.student.build",
    "build_student": "distilray.student.build",
    "init_student": "distilray.student.build",
    "same_encoder": "distilray.student.build",
    "save_model_folder": "distilray.student.build",
    "hidden_pairs": "distilray.student.layers",
    "keep_alignment_heads": "distilray.student.layers",
    "resolve_layer_ids": "distilray.student.layers",
    "select_layers": "distilray.student.layers",
    "set_alignment_heads": "distilray.student.layers",
    "student_alignment_heads": "distilray.student.layers",
    "weight_sources": "distilray.student.layers",
}
__all__ = [
    "INIT_INFO_FILE",
    "StudentInfo",
    "StudentInitConfig",
    "build_student",
    "hidden_pairs",
    "init_student",
    "keep_alignment_heads",
    "resolve_layer_ids",
    "same_encoder",
    "save_model_folder",
    "select_layers",
    "set_alignment_heads",
    "student_alignment_heads",
    "weight_sources",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
