"""Consistent augmentation of the training features ("function matching").

On a few hours of speech read for many epochs the student memorises its rows: the
teacher's distribution on the *same* clean features is a fixed target it soon fits.
Distillation lets the targets follow the input instead (Beyer et al. 2022, "Knowledge
distillation: a good teacher is patient and consistent"): a share of the rows is
perturbed each step, the frozen encoder runs on the perturbed log-mel, and teacher and
student decode that same encoder output, so the KL term asks the student to match
what the teacher does on audio it has never heard in exactly that form.

The perturbations work on Whisper's log-mel features (no audio is decoded again):

- a frequency warp (vocal tract length perturbation): the mel axis is stretched or
  compressed by up to ``warp`` around its start, as a longer or shorter vocal tract
  would shift formants, so the decoder hears more "speakers" than the training set has;
- SpecAugment masks: a few bands of mel bins and a few spans of frames set to the
  clip's silence level (its feature minimum).

Rows trained with timestamps keep them: neither perturbation moves speech in time.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class FeatureAugment:
    """Which rows to perturb and how much (:class:`~distilray.distill.config.AugmentSection`)."""

    probability: float  # share of rows perturbed at each step
    warp: float = 0.1  # largest relative stretch of the mel axis (0: none)
    freq_masks: int = 2
    freq_mask_bins: int = 8
    time_masks: int = 2
    time_mask_frames: int = 40

    def choose(self, rows: int, generator: torch.Generator) -> torch.Tensor:
        """A ``(rows,)`` bool mask of the rows to perturb."""
        return torch.rand(rows, generator=generator) < self.probability

    def apply(self, features: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Perturbed copies of ``features`` ``(rows, n_mels, frames)``, each row its own draw."""
        out = features.clone()
        for i in range(out.shape[0]):
            out[i] = self._one(out[i], generator)
        return out

    def _one(self, feats: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        n_mels, frames = feats.shape
        floor = feats.min()
        if self.warp > 0:
            feats = warp_frequency(feats, 1 + self.warp * (2 * _uniform(generator) - 1))
        for _ in range(self.freq_masks):
            width = int(_uniform(generator) * (self.freq_mask_bins + 1))
            start = int(_uniform(generator) * max(n_mels - width, 1))
            feats[start : start + width] = floor
        speech = _speech_frames(feats, floor)  # masks fall where the clip is, not its padding
        for _ in range(self.time_masks):
            width = min(int(_uniform(generator) * (self.time_mask_frames + 1)), speech // 5)
            start = int(_uniform(generator) * max(speech - width, 1))
            feats[:, start : start + width] = floor
        return feats


def warp_frequency(feats: torch.Tensor, factor: float) -> torch.Tensor:
    """``feats`` ``(n_mels, frames)`` with its mel axis scaled by ``factor``.

    Bin ``k`` of the result reads bin ``k / factor`` of the input (linear
    interpolation): ``factor > 1`` moves energy up, as a shorter vocal tract does;
    bins read from beyond the top take the top bin's value.
    """
    n_mels = feats.shape[0]
    source = torch.arange(n_mels, dtype=feats.dtype, device=feats.device) / factor
    source = source.clamp(0, n_mels - 1)
    low = source.floor().long()
    high = (low + 1).clamp(max=n_mels - 1)
    frac = (source - low.to(feats.dtype))[:, None]
    return feats[low] * (1 - frac) + feats[high] * frac


def _speech_frames(feats: torch.Tensor, floor: torch.Tensor) -> int:
    """Frames up to the last one above the silence floor (Whisper pads clips to 30 s)."""
    loud = (feats > floor + 1e-6).any(dim=0).nonzero()
    return int(loud[-1]) + 1 if len(loud) else feats.shape[1]


def _uniform(generator: torch.Generator) -> float:
    return float(torch.rand((), generator=generator))


def augment_batch(batch: dict, augment: FeatureAugment, seed: int) -> dict:
    """``batch`` with a share of its rows' ``input_features`` perturbed.

    Adds ``augmented``, a ``(rows,)`` bool mask: those rows' encoder output must be
    computed from the new features, not read from an encoder cache. ``seed`` (the
    run's seed and the step) makes a resumed run perturb exactly as the first did.
    """
    generator = torch.Generator().manual_seed(seed)
    features = batch["input_features"]
    chosen = augment.choose(features.shape[0], generator)
    if not chosen.any():
        return {**batch, "augmented": chosen}
    perturbed = features.clone()
    rows = chosen.nonzero().flatten()
    perturbed[rows] = augment.apply(features[rows].cpu(), generator).to(features.device)
    return {**batch, "input_features": perturbed, "augmented": chosen}
