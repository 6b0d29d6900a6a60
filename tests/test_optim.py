"""The student's optimizer: decay toward the initial weights (``optim.anchor_decay``)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from distilray.distill.config import OptimSection
from distilray.distill.optim import AnchoredAdamW, build_optimizer


def _model(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    model[0].bias.requires_grad_(False)  # frozen: neither updated nor anchored
    return model


def _zero_grads(model: nn.Module) -> None:
    for p in model.parameters():
        if p.requires_grad:
            p.grad = torch.zeros_like(p)


def test_anchor_decay_pulls_weights_back_toward_where_they_started():
    model = _model()
    start = {k: v.clone() for k, v in model.state_dict().items()}
    cfg = OptimSection(learning_rate=0.1, warmup_steps=0, schedule="constant", anchor_decay=2.0)
    optimizer, scheduler = build_optimizer(model, cfg, total_steps=10)
    assert isinstance(optimizer, AnchoredAdamW)
    with torch.no_grad():  # where training has moved them
        for p in model.parameters():
            p.add_(1.0)
    _zero_grads(model)  # no gradient: Adam's own update is zero, only the decay acts
    optimizer.step()
    scheduler.step()
    for key, value in model.state_dict().items():
        if key == "0.bias":  # frozen
            torch.testing.assert_close(value, start[key] + 1.0)
        else:  # w - lr * decay * (w - w0) = w0 + 1 - 0.2
            torch.testing.assert_close(value, start[key] + 0.8)


def test_without_anchor_decay_the_optimizer_is_plain_adamw():
    model = _model()
    optimizer, _ = build_optimizer(model, OptimSection(), total_steps=10)
    assert type(optimizer) is torch.optim.AdamW


def test_a_resumed_run_decays_toward_the_weights_the_run_began_with():
    cfg = OptimSection(learning_rate=0.1, warmup_steps=0, schedule="constant", anchor_decay=1.0)
    model = _model()
    start = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    optimizer, _ = build_optimizer(model, cfg, total_steps=10)
    loss = model(torch.randn(5, 4)).pow(2).sum()
    loss.backward()
    optimizer.step()
    saved = optimizer.state_dict()

    resumed = _model(seed=1)  # a fresh process: other weights, from the checkpoint in practice
    resumed.load_state_dict(model.state_dict())
    optimizer2, _ = build_optimizer(resumed, cfg, total_steps=10)
    optimizer2.load_state_dict(saved)
    with torch.no_grad():
        for p in resumed.parameters():
            if p.requires_grad:
                p.copy_(torch.full_like(p, 5.0))
    before = [p.detach().clone() for p in resumed.parameters() if p.requires_grad]
    _zero_grads(resumed)
    for group in optimizer2.param_groups:
        group["lr"] = 0.1
    state = [optimizer2.state[p] for p in resumed.parameters() if p.requires_grad]
    for entry in state:  # Adam's moments off: isolate the decay
        entry["exp_avg"].zero_()
    optimizer2.step()
    after = [p.detach() for p in resumed.parameters() if p.requires_grad]
    for b, a, s in zip(before, after, start, strict=True):
        torch.testing.assert_close(a, b - 0.1 * (b - s))


def test_anchor_decay_must_not_be_negative():
    with pytest.raises(ValueError, match="anchor_decay"):
        OptimSection(anchor_decay=-1)
