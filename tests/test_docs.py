"""README.md's configuration reference is generated from the config models and must match."""

from __future__ import annotations

from pathlib import Path

from distilray.docs import reference, stage_configs

README = Path(__file__).resolve().parents[1] / "README.md"


def test_readme_config_reference_is_current():
    assert reference() in README.read_text(), (
        "README.md's configuration reference is stale: run `python -m distilray.docs`"
    )


def test_every_config_key_is_described():
    text = reference()
    for _, model in stage_configs():
        assert f"({model.__name__})" in text
    undocumented = [line for line in text.splitlines() if line.endswith("|  |")]
    assert not undocumented, undocumented
