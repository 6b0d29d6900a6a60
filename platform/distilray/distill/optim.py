"""AdamW over the trainable student weights, with warm-up then a constant or linear rate.

Optionally decayed toward the weights it started from rather than toward zero
(:class:`AnchoredAdamW`, ``optim.anchor_decay``).
"""

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


class AnchoredAdamW(torch.optim.AdamW):
    """AdamW whose parameters also decay toward their initial values (L2-SP, Li et al.
    2018, in AdamW's decoupled form): before each update ``w -= lr * anchor_decay *
    (w - w_init)``.

    A student initialised from its teacher's layers is pulled back toward them, so that
    where the distillation data is narrow the decoder does not drift from what the
    teacher does on speech the data lacks. The initial weights are kept in the optimizer
    state (``anchor``), so a run resumed from a checkpoint keeps decaying toward the
    weights the run began with, not toward the checkpoint's.
    """

    def __init__(self, params, *, anchor_decay: float, **kwargs):
        params = list(params)
        super().__init__(params, **kwargs)
        self.anchor_decay = anchor_decay
        self._initial = {p: p.detach().clone() for p in params}

    @torch.no_grad()
    def step(self, closure=None):
        anchored = []
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                anchor = self.state[p].get("anchor", self._initial[p])
                p.sub_(p - anchor, alpha=group["lr"] * self.anchor_decay)
                anchored.append((p, anchor))
        loss = super().step(closure)
        for p, anchor in anchored:  # after AdamW's own state exists (it starts from empty)
            self.state[p]["anchor"] = anchor
        return loss


def trainable_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for p in model.parameters() if p.requires_grad]


def build_optimizer(
    model: nn.Module, cfg: OptimSection, total_steps: int
) -> tuple[torch.optim.Optimizer, torch.optim.lr_scheduler.LambdaLR]:
    """AdamW on the parameters that require gradients, and its step-wise schedule
    (:class:`AnchoredAdamW` when ``cfg.anchor_decay`` is set)."""
    kwargs = {"lr": cfg.learning_rate, "betas": cfg.betas, "weight_decay": cfg.weight_decay}
    params = trainable_parameters(model)
    optimizer = (
        AnchoredAdamW(params, anchor_decay=cfg.anchor_decay, **kwargs)
        if cfg.anchor_decay
        else torch.optim.AdamW(params, **kwargs)
    )
    factor = partial(
        lr_factor, warmup_steps=cfg.warmup_steps, total_steps=total_steps, schedule=cfg.schedule
    )
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
