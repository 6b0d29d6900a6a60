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


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("datasets.1.limit=5", [{"name": "a"}, {"name": "b", "limit": 5}]),
        ("datasets.0=null", [None, {"name": "b"}]),
        ("datasets.0.extra.depth=1", [{"name": "a", "extra": {"depth": 1}}, {"name": "b"}]),
    ],
)
def test_overrides_address_list_items(override, expected):
    data = {"datasets": [{"name": "a"}, {"name": "b"}]}
    apply_override(data, override)
    assert data["datasets"] == expected


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("datasets.2.limit=5", "datasets.2 is past the end of the list"),
        ("datasets.name=x", "'datasets' is a list: address its items by number"),
        ("datasets.0.name.sub=1", "'name' is not a section"),
    ],
)
def test_bad_list_overrides_say_why(override, message):
    data = {"datasets": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(ConfigError, match=message):
        apply_override(data, override)


class Listed(StageConfig):
    items: list[Inner] = Field(default_factory=list, description="sections in a list")


def test_list_item_override_is_validated(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("items:\n  - {lr: 0.1}\n  - {lr: 0.2}\n")
    assert load_config(Listed, path, ["items.1.lr=0.5"]).items[1].lr == 0.5
    with pytest.raises(ConfigError, match="items.1.lr"):
        load_config(Listed, path, ["items.1.lr=fast"])


def test_stop_at_config_hands_back_the_resolved_config(tmp_path):
    from distilray.config import ConfigResolved, config_yaml, stop_at_config

    path = tmp_path / "c.yaml"
    path.write_text("name: x\n")
    with stop_at_config(), pytest.raises(ConfigResolved) as resolved:
        load_config(Outer, path, ["train.lr=0.5"])
    assert config_yaml(resolved.value.config).startswith("name: x\ntrain:\n  lr: 0.5\n")
    assert load_config(Outer, path).name == "x"  # outside the block: loads normally
