"""Exceptions for mistakes a user can fix.

Anything derived from :class:`DistilrayError` is reported by the CLI as a one-line
message with a non-zero exit code instead of a traceback.
"""

from __future__ import annotations


class DistilrayError(Exception):
    """A user-facing error: bad input, bad configuration, missing resource."""


class ConfigError(DistilrayError):
    """A configuration file or override is invalid."""


class AudioDecodeError(DistilrayError):
    """Audio could not be decoded (corrupt, empty, not audio, or too long)."""


class AudioTooLongError(AudioDecodeError):
    """Audio decoded fine but is longer than the allowed duration."""


class ModelLoadError(DistilrayError):
    """A model reference could not be resolved or loaded."""


class DataError(DistilrayError):
    """An input dataset or manifest is missing or malformed."""


class StorageError(DataError):
    """A storage location is unreachable, missing, or refuses access."""
