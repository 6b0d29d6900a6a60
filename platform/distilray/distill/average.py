"""A running average of the student's trainable weights (Polyak / EMA averaging).

On a small training set the student's weights wander around the minimum from step
to step and from one epoch's order to the next; their average sits nearer its centre
and generalises better than any single point (Polyak & Juditsky 1992; Izmailov et al.
2018, "stochastic weight averaging"). :class:`WeightAverage` keeps that average from
``start_step`` on: a plain mean of every step's weights until ``1 / (1 - decay)``
steps are in it, an exponential moving average with ``decay`` after that. So the
weights of the first steps, still close to the untrained student, never enter it,
and an evaluation soon after ``start_step`` sees a true mean rather than an average
pulled towards zero or towards the initial weights.

Evaluation and checkpoints use the average (:meth:`WeightAverage.applied` swaps it
in and back): the checkpoint's ``model.safetensors`` *is* the averaged student, so
model selection and export need nothing else, and the raw weights training goes on
from travel in the checkpoint's state file (:meth:`WeightAverage.state_dict`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch


class WeightAverage:
    """The average of ``model``'s trainable parameters from ``start_step`` on."""

    def __init__(self, model: torch.nn.Module, decay: float, start_step: int = 0):
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.start_step = start_step
        self.count = 0  # steps averaged so far
        self.names = [n for n, p in model.named_parameters() if p.requires_grad]
        self.average: dict[str, torch.Tensor] = {}

    def update(self, model: torch.nn.Module, step: int) -> None:
        """Fold in the weights after optimizer step ``step`` (1-based)."""
        if step < self.start_step:
            return
        params = dict(model.named_parameters())
        self.count += 1
        # 1 / count: the plain mean of the steps so far, until the EMA's horizon is reached
        weight = max(1.0 / self.count, 1.0 - self.decay)
        with torch.no_grad():
            for name in self.names:
                value = params[name].detach()
                if name not in self.average:
                    self.average[name] = value.clone()
                else:
                    self.average[name].lerp_(value, weight)

    @contextmanager
    def applied(self, model: torch.nn.Module) -> Iterator[dict[str, torch.Tensor]]:
        """Inside: ``model`` holds the averaged weights; yields the raw ones (CPU copies).

        Before ``start_step`` there is no average yet and the model is left as it is.
        """
        params = dict(model.named_parameters())
        raw = {n: params[n].detach().to("cpu", copy=True) for n in self.names}
        if not self.average:
            yield raw
            return
        _copy_into(model, self.average)
        try:
            yield raw
        finally:
            _copy_into(model, raw)

    def state_dict(self, raw: dict[str, torch.Tensor]) -> dict:
        """What a checkpoint keeps besides the averaged model: the raw weights and the count."""
        return {"raw": raw, "count": self.count}

    def resume(self, model: torch.nn.Module, state: dict) -> None:
        """Go on from a checkpoint: ``model`` was loaded from it, so it holds the average;
        keep that as the average and put the raw weights back into the model."""
        self.count = int(state["count"])
        if self.count:
            params = dict(model.named_parameters())
            self.average = {n: params[n].detach().clone() for n in self.names}
        restore_raw(model, state)


def restore_raw(model: torch.nn.Module, state: dict) -> None:
    """Put the raw weights of a checkpoint's :meth:`WeightAverage.state_dict` into ``model``
    (also when averaging is off now: training goes on from where it was, not from the average)."""
    _copy_into(model, state["raw"])


def _copy_into(model: torch.nn.Module, weights: dict[str, torch.Tensor]) -> None:
    """Overwrite ``model``'s parameters named in ``weights`` with their values, in place."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, value in weights.items():
            params[name].copy_(value)
