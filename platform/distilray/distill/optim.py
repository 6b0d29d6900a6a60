"""AdamW over the trainable student weights, with warm-up then a constant or linear rate."""

from __future__ import annotations

from functools import partial

import torch
from torch import nn

from distilray.distill.config import OptimSection


def lr_factor(step: int, *, warmup_steps: int, total_steps: int, schedule: str) -> float:
    """Multiplier of the peak rate before optimizer step ``step`` (0-based).

    Linear warm-up over ``warmup_steps`` (the first step trains at 1/warmup of the
    peak, not 0), then 1.0 (``constant``) or a linear decay reaching 0 at
    ``total_steps`` (``linear``).
    """
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule == "constant":
        return 1.0
    if schedule == "linear":
        remaining = total_steps - step
        return max(0.0, remaining / max(1, total_steps - warmup_steps))
    raise ValueError(f"unknown schedule {schedule!r}: use constant or linear")


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(
    model: nn.Module, cfg: OptimSection, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on the parameters that require gradients, and its step-wise schedule."""
    optimizer = torch.optim.AdamW(
        trainable_parameters(model),
        lr=cfg.learning_rate,
        betas=cfg.betas,
        weight_decay=cfg.weight_decay,
    )
    factor = partial(
        lr_factor, warmup_steps=cfg.warmup_steps, total_steps=total_steps, schedule=cfg.schedule
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
