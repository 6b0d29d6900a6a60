"""The README's configuration reference, rendered from the pydantic config models.

``python -m distilray.docs`` rewrites the block between the reference markers in
README.md; ``tests/test_docs.py`` fails when the README and the models disagree.
"""

from __future__ import annotations

import sys
from pathlib import Path

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

START = "<!-- config-reference:start (python -m distilray.docs) -->"
END = "<!-- config-reference:end -->"


def stage_configs() -> list[tuple[str, type[BaseModel]]]:
    """(command, config model) of every YAML-configured command, in pipeline order."""
    from distilray.demo import DemoConfig
    from distilray.distill.config import DistillConfig
    from distilray.evaluation.config import EvalConfig
    from distilray.labelling.config import LabelConfig
    from distilray.serving.config import ServeArgs
    from distilray.student.config import StudentInitConfig

    return [
        ("distilray label", LabelConfig),
        ("distilray init-student", StudentInitConfig),
        ("distilray distill", DistillConfig),
        ("distilray eval", EvalConfig),
        ("distilray serve / serve_config.yaml args", ServeArgs),
        ("distilray demo", DemoConfig),
    ]


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        nested = field.annotation
        if isinstance(nested, type) and issubclass(nested, BaseModel):
            rows.extend(_rows(nested, f"{key}."))
            continue
        if field.default is not PydanticUndefined:
            default = repr(field.default)
        elif field.default_factory is not None:
            default = repr(field.default_factory())
        else:
            default = "'required'"
        meaning = (field.description or "").replace("|", "\\|")
        rows.append((key, default, meaning))
    return rows


def table(command: str, model: type[BaseModel]) -> str:
    lines = [
        f"#### `{command}` ({model.__name__})",
        "",
        "| key | default | meaning |",
        "|---|---|---|",
    ]
    lines += [f"| `{key}` | `{default}` | {meaning} |" for key, default, meaning in _rows(model)]
    return "\n".join(lines)


def reference() -> str:
    """The whole generated block, markers included."""
    body = "\n\n".join(table(command, model) for command, model in stage_configs())
    return f"{START}\n\n{body}\n\n{END}"


def update_readme(path: Path) -> bool:
    """Rewrite the reference block in ``path``; True when the file changed."""
    text = path.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{path}: reference markers not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    new = head + reference() + tail
    if new == text:
        return False
    path.write_text(new)
    return True


if __name__ == "__main__":
    readme = Path(sys.argv[1] if len(sys.argv) > 1 else "README.md")
    print(f"{readme}: {'updated' if update_readme(readme) else 'already up to date'}")
