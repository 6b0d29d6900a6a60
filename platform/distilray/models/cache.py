"""The local model cache, and building a folder in it exactly once.

Folders are built in a temporary sibling and renamed into place, so another process
(a Ray worker, a second test run) either sees no folder or a complete one, never a
half-written one. Builders on one machine take turns through a lock file, so the
second finds the first's folder instead of building again; should two builds still
overlap (another machine sharing the folder), the first rename wins and the other
copy is discarded.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

logger = logging.getLogger(__name__)

CACHE_ENV = "DISTILRAY_CACHE"  # overrides the cache root
DEFAULT_CACHE = Path("~/.cache/distilray")


def cache_root() -> Path:
    """The cache root: ``$DISTILRAY_CACHE`` or ``~/.cache/distilray``."""
    return Path(os.environ.get(CACHE_ENV) or DEFAULT_CACHE).expanduser()


def models_cache() -> Path:
    """Where converted and downloaded models live: ``<cache root>/models``."""
    return cache_root() / "models"


def build_once(target: Path, build: Callable[[Path], None], *, force: bool = False) -> Path:
    """Return ``target``, first running ``build(tmp_dir)`` and renaming it there if missing.

    ``build`` fills an empty temporary folder on the same filesystem. With ``force`` an
    existing ``target`` is replaced (the old copy is moved aside first, then deleted).
    """
    target = Path(target)
    if target.is_dir() and not force:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with _lock(target):
        if target.is_dir() and not force:  # built while we waited for the lock
            return target
        _build_and_rename(target, build, force)
    return target


@contextmanager
def _lock(target: Path) -> Iterator[None]:
    """An exclusive advisory lock next to ``target`` (released when the file closes)."""
    with open(target.parent / f".{target.name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def _build_and_rename(target: Path, build: Callable[[Path], None], force: bool) -> None:
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        build(tmp)
        tmp.chmod(0o777 & ~_umask())  # mkdtemp makes it private; the cache is not
        if force and target.exists():
            _discard(target)
        try:
            os.rename(tmp, target)
        except OSError:
            if not target.is_dir():
                raise
            logger.info("another process built %s first; using its copy", target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _discard(path: Path) -> None:
    """Move ``path`` aside atomically, then delete it."""
    trash = Path(tempfile.mkdtemp(prefix=f".{path.name}.old-", dir=path.parent))
    os.rename(path, trash / path.name)
    shutil.rmtree(trash, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
