"""Stable per-row coin flips: the same id gives the same choice on every machine and run."""

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
