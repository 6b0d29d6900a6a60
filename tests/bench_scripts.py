"""The scripts under ``bench/`` loaded as modules, for tests of their pure parts
(``bench/`` is a folder of scripts, not a package)."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench"


@contextmanager
def bench_module(filename: str) -> Iterator:
    """``bench/<filename>`` as a module, registered in ``sys.modules`` while in use."""
    spec = importlib.util.spec_from_file_location(f"{Path(filename).stem}_bench", BENCH / filename)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[spec.name]
