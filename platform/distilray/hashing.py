"""Stable hashes: per-row coin flips and ids that are the same on every machine and run."""

from __future__ import annotations

import hashlib


def unit_hash(key: str) -> float:
    """``key`` hashed to a float in ``[0, 1)``, uniformly even for near-identical keys.

    (CRC32 is not: ids like ``clip-1``, ``clip-2`` … land in visibly uneven shares.)

    >>> unit_hash("clip-1") == unit_hash("clip-1")
    True
    >>> 0.0 <= unit_hash("clip-1") < 1.0
    True
    """
    digest = hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def stable_id(key: str | bytes) -> str:
    """A short, stable id for a row that has none: 16 hex digits of ``key``'s BLAKE2b hash.

    >>> stable_id("clips/common_voice_en_1.mp3") == stable_id(b"clips/common_voice_en_1.mp3")
    True
    >>> len(stable_id(b"RIFF...."))
    16
    """
    data = key.encode("utf-8") if isinstance(key, str) else key
    return hashlib.blake2b(data, digest_size=8).hexdigest()
