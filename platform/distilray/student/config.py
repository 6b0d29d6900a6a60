"""The ``init-student`` stage's configuration (``distilray init-student --config ...``)."""

from __future__ import annotations

from pydantic import Field

from distilray.config import StageConfig


class StudentInitConfig(StageConfig):
    """``distilray init-student``: which teacher, which decoder layers, where to save."""

    teacher: str = Field(
        "tiny.en",
        description="teacher model: hub id (pinned: org/name@revision), local folder, s3:// URI or tiny.en",
    )
    decoder_layers: int = Field(
        2, ge=1, description="number of student decoder layers, taken maximally spaced"
    )
    decoder_layer_ids: list[int] | None = Field(
        None,
        description="explicit teacher decoder layers to copy, in order (negative counts from "
        "the end); when set it replaces decoder_layers and the spacing rule",
    )
    out: str = Field(..., description="output model folder: local path or s3:// URI")
