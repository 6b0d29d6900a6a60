"""The Distil-Whisper objective: KL to the teacher's distribution plus CE on pseudo-labels.

    loss = α_KL · T² · KL(p_teacher^T ‖ p_student^T) + α_PL · CE(student, pseudo-labels)

Both terms are means over the label positions that are not padding (label -100).
The T² factor keeps the KL gradients on the same scale whatever the temperature
(Hinton et al., 2015).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

IGNORE_INDEX = -100  # label value of padded positions


class DistillLoss(NamedTuple):
    """The weighted total and its two unweighted terms (scalars)."""

    loss: torch.Tensor
    kl: torch.Tensor  # T²-scaled KL per label token, before α_KL
    ce: torch.Tensor  # cross-entropy per label token, before α_PL


def masked_kl(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    mask: torch.Tensor,
    temperature: float = 1.0,
) -> torch.Tensor:
    """Mean over unmasked positions of KL(softmax(teacher/T) ‖ softmax(student/T)).

    Args:
        student_logits: ``(batch, seq, vocab)``.
        teacher_logits: ``(batch, seq, vocab)``, no gradient needed.
        mask: ``(batch, seq)`` bool, True where the position counts.
        temperature: T > 0.

    Returns:
        A scalar; 0 when no position counts.
    """
    log_p_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    log_p_teacher = F.log_softmax(teacher_logits.float() / temperature, dim=-1)
    # Σ_v p_t (log p_t − log p_s) per position: (batch, seq)
    per_token = (log_p_teacher.exp() * (log_p_teacher - log_p_student)).sum(dim=-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1.0)


def masked_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean CE over positions whose label is not -100.

    Args:
        logits: ``(batch, seq, vocab)``.
        labels: ``(batch, seq)`` token ids, -100 on padding.
    """
    return F.cross_entropy(
        logits.float().flatten(0, 1), labels.flatten(), ignore_index=IGNORE_INDEX
    )


def hidden_state_loss(
    student_hidden: tuple[torch.Tensor, ...],
    teacher_hidden: tuple[torch.Tensor, ...],
    pairs: list[tuple[int, int]],
    mask: torch.Tensor,
) -> torch.Tensor:
    """Mean squared error between paired decoder hidden states, relative to the
    teacher's mean square, over the unpadded positions; averaged over pairs.

    ``student_hidden[i]`` / ``teacher_hidden[j]``: ``(batch, seq, d_model)``;
    ``mask``: ``(batch, seq)``. Zero when the student reproduces the teacher's states.
    On small data this gives every token ``d_model`` targets instead of one
    distribution: the copied upper layers keep receiving the input they were trained on.
    """
    if not pairs:
        return student_hidden[0].new_zeros(())
    weights = mask.unsqueeze(-1).float()
    total = student_hidden[0].new_zeros((), dtype=torch.float32)
    for s, t in pairs:
        target = teacher_hidden[t].float()
        err = ((student_hidden[s].float() - target) ** 2 * weights).sum()
        scale = (target**2 * weights).sum().clamp(min=1e-6)
        total = total + err / scale
    return total / len(pairs)


def attention_loss(
    student_attn: tuple[torch.Tensor, ...],
    teacher_attn: tuple[torch.Tensor, ...],
    pairs: list[tuple[int, int]],
    mask: torch.Tensor,
) -> torch.Tensor:
    """KL(teacher ‖ student) between paired layers' cross-attention over the encoder
    frames, head by head, averaged over heads, the unpadded positions and the pairs.

    ``*_attn[l]``: ``(batch, heads, seq, frames)``, each row a distribution over frames;
    ``mask``: ``(batch, seq)``. A student layer copied from a teacher layer has its
    heads, so head ``h`` is matched with head ``h``: where in the audio each head
    looks for each token. (On the tiny recipes it made the student loop more: README,
    ablation row 20.)
    """
    if not pairs:
        return student_attn[0].new_zeros((), dtype=torch.float32)
    total = student_attn[0].new_zeros((), dtype=torch.float32)
    for s, t in pairs:
        p = teacher_attn[t].float().transpose(1, 2)[mask]  # (n, heads, frames)
        q = student_attn[s].float().transpose(1, 2)[mask]
        kl = (p * (p.clamp(min=1e-9).log() - q.clamp(min=1e-9).log())).sum(-1)
        total = total + kl.mean()
    return total / len(pairs)


class DistillationLoss(nn.Module):
    """α_KL · T² · KL + α_PL · CE over the non-padded label positions."""

    def __init__(self, kl_weight: float = 0.8, pl_weight: float = 1.0, temperature: float = 2.0):
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.kl_weight = kl_weight
        self.pl_weight = pl_weight
        self.temperature = temperature

    def forward(
        self,
        student_logits: torch.Tensor,
        teacher_logits: torch.Tensor,
        labels: torch.Tensor,
    ) -> DistillLoss:
        """Args:
        student_logits: ``(batch, seq, vocab)``.
        teacher_logits: ``(batch, seq, vocab)`` for the same decoder inputs.
        labels: ``(batch, seq)`` next-token ids, -100 where padded.
        """
        mask = labels != IGNORE_INDEX
        t = self.temperature
        kl = masked_kl(student_logits, teacher_logits, mask, t) * t * t
        ce = masked_cross_entropy(student_logits, labels)
        return DistillLoss(self.kl_weight * kl + self.pl_weight * ce, kl, ce)
