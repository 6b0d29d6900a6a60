"""Typed stage configuration: pydantic models loaded from YAML with dotted overrides.

Every stage has one config model deriving from :class:`StageConfig`. A config file is
YAML; the command line may override any field with ``key.sub=value`` (the value is
parsed as YAML, so ``true``, ``3`` and ``[1, 2]`` keep their types). Unknown keys and
wrong types are rejected with a message naming the field and the fix.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from distilray.errors import ConfigError

T = TypeVar("T", bound="StageConfig")

# Set by `--print-config`: the next load_config stops the command with its result.
_STOP_AT_CONFIG: ContextVar[bool] = ContextVar("stop_at_config", default=False)


class StageConfig(BaseModel):
    """Base for every config model: unknown keys are errors, values are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, protected_namespaces=())


def apply_override(data: dict[str, Any], override: str) -> None:
    """Apply one ``dotted.key=value`` override to nested YAML data, in place.

    A numeric part addresses an item of a list, e.g. ``datasets.0.limit=5``; a missing
    mapping on the way is created, a missing list item is an error.
    """
    key, sep, raw = override.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {override!r} is not of the form key.sub=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {override!r}: value is not valid YAML ({exc})") from None
    parts = key.strip().split(".")
    node: dict | list = data
    for depth, part in enumerate(parts[:-1]):
        node = _descend(node, part, override, ".".join(parts[: depth + 1]))
    _assign(node, parts[-1], value, override, key.strip())


def _list_index(items: list, part: str, override: str, path: str) -> int:
    """``part`` as an index into ``items``, or a :class:`ConfigError` saying why not."""
    if not part.isdigit():
        parent = path.rpartition(".")[0]
        raise ConfigError(
            f"override {override!r}: {parent!r} is a list: address its items by number, "
            f"e.g. {parent}.0"
        )
    index = int(part)
    if index >= len(items):
        raise ConfigError(
            f"override {override!r}: {path} is past the end of the list ({len(items)} items; "
            f"the first is 0); to change the list's length set the whole list"
        )
    return index


def _descend(node: dict | list, part: str, override: str, path: str) -> dict | list:
    """The section or list under ``part`` of ``node`` (a missing mapping is created)."""
    if isinstance(node, list):
        child = node[_list_index(node, part, override, path)]
    else:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
    if not isinstance(child, dict | list):
        raise ConfigError(f"override {override!r}: {part!r} is not a section")
    return child


def _assign(node: dict | list, part: str, value: Any, override: str, path: str) -> None:
    if isinstance(node, list):
        node[_list_index(node, part, override, path)] = value
    else:
        node[part] = value


def read_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, with clear errors for a missing file or bad syntax."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file not found: {p}")
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p}: invalid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{p}: the top level must be a mapping of keys to values")
    return data


def format_validation_error(exc: ValidationError, source: str) -> str:
    """One line per problem: ``source: field.path: message``."""
    lines = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "<root>"
        msg = err["msg"]
        if err["type"] == "extra_forbidden":
            msg = "unknown key (check the spelling; see the config reference in README.md)"
        elif err["type"] == "missing":
            msg = "required key is missing"
        lines.append(f"{source}: {loc}: {msg}")
    return "\n".join(lines)


def load_config(
    cls: type[T], path: str | Path | None = None, overrides: list[str] | None = None
) -> T:
    """Build ``cls`` from an optional YAML file plus dotted overrides."""
    data: dict[str, Any] = read_yaml(path) if path else {}
    for override in overrides or []:
        apply_override(data, override)
    try:
        config = cls.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc, str(path or "config"))) from None
    if _STOP_AT_CONFIG.get():
        raise ConfigResolved(config)
    return config


class ConfigResolved(Exception):
    """Raised by :func:`load_config` inside :func:`stop_at_config`: the command's
    configuration is resolved (file, overrides and flags validated) and nothing ran."""

    def __init__(self, config: StageConfig):
        super().__init__(type(config).__name__)
        self.config = config


@contextmanager
def stop_at_config() -> Iterator[None]:
    """Make the next :func:`load_config` raise :class:`ConfigResolved` instead of returning.

    ``--print-config`` runs a command inside this: the command builds its config exactly
    as it would (flags turned into overrides included) and stops before doing any work.
    """
    token = _STOP_AT_CONFIG.set(True)
    try:
        yield
    finally:
        _STOP_AT_CONFIG.reset(token)


def config_yaml(config: StageConfig) -> str:
    """``config`` as YAML, every field included, in declaration order."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
