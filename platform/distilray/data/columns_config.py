"""The config fields that map a manifest's own column names (shared by every stage
that reads manifests: ``label``'s input, ``eval``'s datasets)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from distilray.data.manifest import ManifestColumns


def audio_column_field() -> Any:
    return Field(
        "audio",
        description="manifest column holding each row's audio: a path/URI string or a "
        "{bytes, path} struct (Hugging Face datasets' Audio); Common Voice exports: path "
        "or audio",
    )


def text_column_field() -> Any:
    return Field(
        None,
        description="manifest column holding the reference transcript (Common Voice: "
        "sentence); null: text when the manifest has one, else no references",
    )


def id_column_field() -> Any:
    return Field(
        None,
        description="manifest column holding each row's unique id; null: id when the "
        "manifest has one, else a stable hash of the row's audio path (or of its bytes "
        "when it has no path)",
    )


class ManifestColumnFields:
    """Mixed into a config model declaring ``audio_column``, ``text_column`` and
    ``id_column`` with the fields above."""

    def manifest_columns(self) -> ManifestColumns:
        return ManifestColumns(self.audio_column, self.text_column, self.id_column)  # type: ignore[attr-defined]
