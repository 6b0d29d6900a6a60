"""Weighted averages of Whisper models that share one architecture and one starting point.

Two uses, one operation (every floating-point weight replaced by the weighted mean of
the same weight across the models):

- **Back toward the initial student** (WiSE-FT, Wortsman et al. 2022, "Robust
  fine-tuning of zero-shot models"): ``(1 - s) · trained + s · initial``. The student
  starts as copied teacher layers, which already do what the teacher does on real
  audio; fine-tuning on a few hours of narrow speech moves them toward that data.
  Stepping part of the way back keeps the gain on the training distribution while
  giving back some of what was lost off it. ``distill`` does this at export with
  ``run.export_init_share``.
- **A soup of students** (Wortsman et al. 2022, "Model soups"): students distilled from
  the same initial student with different seeds sit in one basin, and their mean is
  usually at least as good as each of them.

Averaging only makes sense between models fine-tuned from the same weights: models
whose parameter names or shapes differ, or whose decoder layers were copied from
different teacher layers, are refused.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence

from distilray import storage
from distilray.errors import ConfigError

logger = logging.getLogger(__name__)

BLEND_INFO_FILE = "blend.json"


def normalized_weights(weights: Sequence[float], count: int) -> list[float]:
    """``weights`` scaled to sum to 1 (each must be finite and ≥ 0, one at least > 0).

    >>> normalized_weights([3, 1], 2)
    [0.75, 0.25]
    """
    if len(weights) != count:
        raise ConfigError(f"{len(weights)} weights for {count} models: give one per model")
    if any(not math.isfinite(w) or w < 0 for w in weights):
        raise ConfigError(f"blend weights must be finite and >= 0, got {list(weights)}")
    total = float(sum(weights))
    if total <= 0:
        raise ConfigError("blend weights sum to 0: at least one must be positive")
    return [w / total for w in weights]


def check_compatible(models: Sequence, names: Sequence[str]) -> None:
    """Refuse models that cannot be averaged weight by weight (``ConfigError`` saying why)."""
    first, first_name = models[0], names[0]
    shapes = {k: tuple(v.shape) for k, v in first.state_dict().items()}
    layers = getattr(first.config, "teacher_layer_ids", None)
    for model, name in zip(models[1:], names[1:], strict=True):
        other = {k: tuple(v.shape) for k, v in model.state_dict().items()}
        if other.keys() != shapes.keys():
            missing = sorted(shapes.keys() ^ other.keys())[:3]
            raise ConfigError(
                f"{name} and {first_name} have different layers ({', '.join(missing)}, ...): "
                "only models fine-tuned from the same initial model can be blended"
            )
        for key, shape in shapes.items():
            if other[key] != shape:
                raise ConfigError(
                    f"{name} and {first_name} differ in shape at {key} "
                    f"({other[key]} against {shape}): they cannot be blended"
                )
        theirs = getattr(model.config, "teacher_layer_ids", None)
        if layers is not None and theirs is not None and list(theirs) != list(layers):
            raise ConfigError(
                f"{name} copies teacher decoder layers {list(theirs)}, {first_name} layers "
                f"{list(layers)}: averaging them would mix unrelated layers"
            )


def blend_weights(models: Sequence, weights: Sequence[float], names: Sequence[str] | None = None):
    """``models[0]``, its floating-point weights replaced in place by the weighted mean over
    ``models`` (weights normalised to sum to 1); returns it.

    Integer buffers and tied weights are handled as the model holds them: a weight shared
    by two modules is one tensor and is averaged once.
    """
    import torch

    if len(models) < 2:
        raise ConfigError("blending needs at least two models")
    names = list(names or (f"model {i}" for i in range(len(models))))
    shares = normalized_weights(weights, len(models))
    check_compatible(models, names)
    target = models[0]
    sources = [dict(m.named_parameters()) | dict(m.named_buffers()) for m in models]
    seen: set[int] = set()
    with torch.no_grad():
        for key, tensor in sources[0].items():
            if not tensor.is_floating_point() or id(tensor) in seen:
                continue
            seen.add(id(tensor))
            mean = sum(
                share * source[key].detach().to(tensor.device, torch.float32)
                for share, source in zip(shares, sources, strict=True)
            )
            tensor.copy_(mean.to(tensor.dtype))
    return target


def blend_models(
    refs: Sequence[str], weights: Sequence[float] | None, out: str, *, force: bool = False
) -> str:
    """Load the models named by ``refs`` (folders, ``s3://``, hub ids), save their
    weighted mean (equal weights by default) with the first model's config and
    processor to ``out`` (local or ``s3://``); return ``out``.

    A local ``out`` must be new or empty unless ``force``; it is written through a
    temporary sibling, so an interrupted blend leaves no half-written folder.
    """
    from distilray.models import load_whisper
    from distilray.student.build import save_model_folder

    if len(refs) < 2:
        raise ConfigError("blending needs at least two models")
    shares = normalized_weights(weights or [1.0] * len(refs), len(refs))
    target = None if storage.is_s3(out) else storage.check_new_folder(out, force)
    loaded = [load_whisper(ref, dtype="float32") for ref in refs]
    model, processor = loaded[0]
    blend_weights([m for m, _ in loaded], shares, names=list(refs))
    info = {"models": list(refs), "weights": shares}
    extra = {BLEND_INFO_FILE: info}
    if target is None:
        save_model_folder(model, processor, out, extra=extra)
    else:
        storage.build_folder(target, lambda f: save_model_folder(model, processor, str(f), extra))
    logger.info(
        "blended %s -> %s",
        ", ".join(f"{w:.3g} x {r}" for r, w in zip(refs, shares, strict=True)),
        out,
    )
    return out
