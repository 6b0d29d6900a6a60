"""The examples in the library's docstrings run, so that what they show stays true."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
from pathlib import Path

import pytest

import distilray


def _modules_with_examples() -> list[str]:
    names = []
    for info in pkgutil.walk_packages(distilray.__path__, "distilray."):
        origin = importlib.util.find_spec(info.name).origin
        if origin and origin.endswith(".py") and ">>>" in Path(origin).read_text():
            names.append(info.name)
    return sorted(names)


MODULES = _modules_with_examples()


def test_the_library_has_examples_to_run():
    assert len(MODULES) >= 30, MODULES  # a broken walk would pass every test below


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name):
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed, f"{result.failed} examples failed in {name}"
