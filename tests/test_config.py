"""The typed-config layer every stage uses: YAML + dotted overrides + clear errors."""

from __future__ import annotations

import pytest
from pydantic import Field

from distilray.config import StageConfig, apply_override, load_config
from distilray.errors import ConfigError


class Inner(StageConfig):
    lr: float = Field(1e-4, description="learning rate")
    layers: list[int] = Field(default_factory=list, description="layer ids")


class Outer(StageConfig):
    name: str = Field("run", description="run name")
    train: Inner = Field(default_factory=Inner, description="training section")


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("name=abc", {"name": "abc"}),
        ("train.lr=0.5", {"train": {"lr": 0.5}}),
        ("train.layers=[0, 3]", {"train": {"layers": [0, 3]}}),
        ("name=", {"name": None}),
    ],
)
def test_apply_override_parses_yaml_values(override, expected):
    data: dict = {}
    apply_override(data, override)
    assert data == expected


def test_load_config_merges_file_and_overrides(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("name: from-file\ntrain:\n  lr: 0.1\n")
    cfg = load_config(Outer, path, ["train.lr=0.2"])
    assert cfg.name == "from-file"
    assert cfg.train.lr == 0.2


@pytest.mark.parametrize(
    ("text", "overrides", "message"),
    [
        ("nmae: x\n", [], "nmae: unknown key"),
        ("train:\n  lr: fast\n", [], "train.lr"),
        ("- a\n- b\n", [], "top level must be a mapping"),
        ("name: [unclosed\n", [], "invalid YAML"),
        ("", ["no-equals-sign"], "key.sub=value"),
        ("name: x\n", ["name.sub=1"], "is not a section"),
    ],
)
def test_bad_config_gives_clear_error(tmp_path, text, overrides, message):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load_config(Outer, path, overrides)


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(Outer, tmp_path / "nope.yaml")
