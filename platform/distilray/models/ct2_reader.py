"""Read a CTranslate2 ``model.bin`` (binary spec format, version 6) with numpy alone.

Layout, as CTranslate2's ``ModelSpec._serialize`` writes it (all little-endian)::

    u32 binary_version (6)
    str spec_name ("WhisperSpec")            str = u16 length incl. NUL, bytes, NUL
    u32 spec_revision
    u32 num_variables
    num_variables x: str name, u8 ndim, ndim x u32 dim, u8 dtype_id, u32 num_bytes, bytes
    u32 num_aliases
    num_aliases x: str alias, str target_name

``dtype_id`` indexes ``(float32, int8, int16, int32, float16, bfloat16)``. Variables are
sorted by name; a variable equal to an earlier one is stored once and aliased
(Whisper's tied output projection is ``decoder/projection/weight`` ->
``decoder/embeddings/weight``).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilray.errors import ModelLoadError

SUPPORTED_BINARY_VERSION = 6
# Order of CTranslate2's DataType enum (include/ctranslate2/types.h).
_DTYPES = ("float32", "int8", "int16", "int32", "float16", "bfloat16")


@dataclass(frozen=True)
class CT2Model:
    """The variables of one CTranslate2 model file."""

    spec_name: str  # e.g. "WhisperSpec"
    revision: int  # spec revision (Whisper: 3)
    variables: dict[str, np.ndarray]  # name -> array, aliases resolved to the same array

    def get(self, name: str) -> np.ndarray:
        """A variable by name; a clear error if the spec lacks it."""
        try:
            return self.variables[name]
        except KeyError:
            raise ModelLoadError(f"CTranslate2 model has no variable {name!r}") from None


class _Cursor:
    """Sequential little-endian reads over an in-memory buffer."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.offset = 0

    def unpack(self, fmt: str) -> int:
        (value,) = struct.unpack_from("<" + fmt, self.data, self.offset)
        self.offset += struct.calcsize("<" + fmt)
        return value

    def string(self) -> str:
        length = self.unpack("H")  # includes the trailing NUL
        raw = self.data[self.offset : self.offset + length - 1]
        self.offset += length
        return raw.decode("utf-8")

    def array(self, shape: tuple[int, ...], dtype_id: int, num_bytes: int) -> np.ndarray:
        name = _DTYPES[dtype_id]
        raw = self.data[self.offset : self.offset + num_bytes]
        self.offset += num_bytes
        if name == "bfloat16":  # numpy has no bfloat16: widen the 16 bits into float32
            bits = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            return bits.view(np.float32).reshape(shape)
        return np.frombuffer(raw, dtype=np.dtype(name).newbyteorder("<")).reshape(shape)


def read_ct2_model(path: str | Path) -> CT2Model:
    """Parse ``model.bin`` into named numpy arrays (read-only views of the file bytes)."""
    path = Path(path)
    try:
        cursor = _Cursor(path.read_bytes())
    except OSError as exc:
        raise ModelLoadError(f"cannot read CTranslate2 model {path}: {exc}") from None
    try:
        return _parse(cursor)
    except (struct.error, ValueError, IndexError) as exc:
        raise ModelLoadError(f"{path} is not a valid CTranslate2 model file: {exc}") from None


def _parse(cursor: _Cursor) -> CT2Model:
    version = cursor.unpack("I")
    if version != SUPPORTED_BINARY_VERSION:
        raise ValueError(f"binary version {version}, expected {SUPPORTED_BINARY_VERSION}")
    spec_name = cursor.string()
    revision = cursor.unpack("I")
    variables: dict[str, np.ndarray] = {}
    for _ in range(cursor.unpack("I")):
        name = cursor.string()
        shape = tuple(cursor.unpack("I") for _ in range(cursor.unpack("B")))
        dtype_id = cursor.unpack("B")
        variables[name] = cursor.array(shape, dtype_id, cursor.unpack("I"))
    for _ in range(cursor.unpack("I")):
        alias, target = cursor.string(), cursor.string()
        variables[alias] = variables[target]
    if cursor.offset != len(cursor.data):
        raise ValueError(f"{len(cursor.data) - cursor.offset} trailing bytes")
    return CT2Model(spec_name=spec_name, revision=revision, variables=variables)
