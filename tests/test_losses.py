"""The distillation objective: KL, masked CE and their weighting, against hand computations."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from distilray.distill.losses import IGNORE_INDEX, DistillationLoss, masked_cross_entropy, masked_kl


def _logits(seed: int, shape=(2, 5, 7)) -> torch.Tensor:
    return torch.randn(shape, generator=torch.Generator().manual_seed(seed))


def test_kl_is_zero_when_student_equals_teacher():
    logits = _logits(0)
    mask = torch.ones(2, 5, dtype=torch.bool)
    assert masked_kl(logits, logits.clone(), mask, temperature=2.0).item() == pytest.approx(
        0, abs=1e-6
    )
    labels = torch.zeros(2, 5, dtype=torch.long)
    out = DistillationLoss()(logits, logits.clone(), labels)
    assert out.kl.item() == pytest.approx(0, abs=1e-6)
    assert out.loss.item() == pytest.approx(out.ce.item(), rel=1e-6)


def test_kl_matches_hand_computation_with_temperature():
    student = torch.tensor([[[1.0, 2.0, 3.0]]])
    teacher = torch.tensor([[[3.0, 1.0, 0.0]]])
    t = 2.0
    p = [math.exp(x / t) for x in (3.0, 1.0, 0.0)]
    p = [x / sum(p) for x in p]
    q = [math.exp(x / t) for x in (1.0, 2.0, 3.0)]
    q = [x / sum(q) for x in q]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True))
    mask = torch.ones(1, 1, dtype=torch.bool)
    assert masked_kl(student, teacher, mask, temperature=t).item() == pytest.approx(
        expected, rel=1e-5
    )
    out = DistillationLoss(kl_weight=0.8, pl_weight=1.0, temperature=t)(
        student, teacher, torch.tensor([[2]])
    )
    ce = -math.log(math.exp(3.0) / sum(math.exp(x) for x in (1.0, 2.0, 3.0)))
    assert out.kl.item() == pytest.approx(expected * t * t, rel=1e-5)
    assert out.ce.item() == pytest.approx(ce, rel=1e-5)
    assert out.loss.item() == pytest.approx(0.8 * expected * t * t + ce, rel=1e-5)


def test_kl_agrees_with_torch_kl_div():
    student, teacher = _logits(1), _logits(2)
    mask = torch.ones(2, 5, dtype=torch.bool)
    ref = (
        F.kl_div(
            F.log_softmax(student / 3.0, -1),
            F.log_softmax(teacher / 3.0, -1),
            log_target=True,
            reduction="sum",
        )
        / 10
    )
    assert masked_kl(student, teacher, mask, 3.0).item() == pytest.approx(ref.item(), rel=1e-5)


def test_padded_positions_are_ignored():
    student, teacher = _logits(3), _logits(4)
    labels = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(5))
    labels[0, 3:] = IGNORE_INDEX
    labels[1, 4:] = IGNORE_INDEX
    loss_fn = DistillationLoss()
    base = loss_fn(student, teacher, labels)
    # Anything at padded positions must not change the loss.
    noisy_s, noisy_t = student.clone(), teacher.clone()
    noisy_s[0, 3:] += 100 * _logits(6, (2, 7))
    noisy_t[1, 4:] -= 50
    other = loss_fn(noisy_s, noisy_t, labels)
    assert other.loss.item() == pytest.approx(base.loss.item(), rel=1e-6)
    # And the mean is over the 7 real positions only.
    keep = labels != IGNORE_INDEX
    ce = F.cross_entropy(student[keep], labels[keep])
    assert masked_cross_entropy(student, labels).item() == pytest.approx(ce.item(), rel=1e-6)


def test_weights_and_gradient_flow_to_student_only():
    student = _logits(7).requires_grad_(True)
    teacher = _logits(8)
    labels = torch.randint(0, 7, (2, 5), generator=torch.Generator().manual_seed(9))
    only_kl = DistillationLoss(kl_weight=1.0, pl_weight=0.0, temperature=1.5)(
        student, teacher, labels
    )
    assert only_kl.loss.item() == pytest.approx(only_kl.kl.item())
    only_kl.loss.backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    with pytest.raises(ValueError):
        DistillationLoss(temperature=0)


def test_hidden_state_loss_is_zero_for_the_teacher_and_ignores_padding():
    from distilray.distill.losses import hidden_state_loss

    torch.manual_seed(0)
    teacher = tuple(torch.randn(2, 5, 8) for _ in range(4))
    mask = torch.tensor([[1, 1, 1, 0, 0], [1, 1, 1, 1, 1]], dtype=torch.bool)
    student = (teacher[0], teacher[2].clone())
    assert hidden_state_loss(student, teacher, [(1, 2)], mask).item() == 0.0
    padded = student[1].clone()
    padded[0, 3:] += 100.0  # only padded positions differ
    assert hidden_state_loss((teacher[0], padded), teacher, [(1, 2)], mask).item() == 0.0
    off = hidden_state_loss((teacher[0], torch.zeros(2, 5, 8)), teacher, [(1, 2)], mask)
    assert off.item() == pytest.approx(1.0)  # relative: all of the teacher's energy missing
    assert hidden_state_loss(student, teacher, [], mask).item() == 0.0
