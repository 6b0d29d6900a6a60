"""Consistent feature augmentation (``train.augment``): what it perturbs, what it leaves
alone, and that perturbed rows never come from, or go into, the encoder cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from distilray.distill.augment import FeatureAugment, augment_batch, warp_frequency
from distilray.distill.collate import pad_labels
from distilray.distill.config import AugmentSection, DistillConfig
from distilray.distill.encoder_cache import EncoderCache
from distilray.distill.step import shared_logits
from distilray.errors import ConfigError
from distilray.features import log_mel
from distilray.student import build_student


@pytest.fixture(scope="module")
def models(tiny_random):
    from distilray.models import load_whisper

    teacher, processor = load_whisper(str(tiny_random), dtype=torch.float32)
    student = build_student(teacher, [0, 3]).eval()
    return student, teacher.requires_grad_(False), processor


def _features(processor, seconds=(1.0, 2.0, 3.0)) -> torch.Tensor:
    rng = np.random.default_rng(0)
    audios = [rng.normal(0, 0.05, int(16000 * s)).astype(np.float32) for s in seconds]
    return torch.from_numpy(log_mel(processor.feature_extractor, audios))


def test_frequency_warp_moves_energy_up_or_down_the_mel_axis():
    feats = torch.zeros(80, 10)
    feats[40] = 1.0
    torch.testing.assert_close(warp_frequency(feats, 1.0), feats)
    peak = lambda x: int(x[:, 0].argmax())  # noqa: E731
    assert peak(warp_frequency(feats, 1.1)) == 44  # a shorter vocal tract: formants rise
    assert peak(warp_frequency(feats, 0.9)) == 36


def test_masks_fall_within_the_clip_and_leave_its_padding_as_silence(tiny_random):
    from distilray.models import load_whisper

    _, processor = load_whisper(str(tiny_random), dtype=torch.float32)
    feats = _features(processor, seconds=(2.0,))[0]
    floor = feats.min()
    speech = int((feats > floor + 1e-6).any(dim=0).nonzero()[-1]) + 1
    assert 190 <= speech <= 210  # 2 s of 10 ms frames, then Whisper's padding to 30 s
    aug = FeatureAugment(1.0, warp=0.0, freq_masks=0, time_masks=3, time_mask_frames=40)
    out = aug.apply(feats[None], torch.Generator().manual_seed(1))[0]
    masked = (out[:, :speech] == floor).all(dim=0)
    assert 0 < int(masked.sum()) <= 3 * 40
    torch.testing.assert_close(out[:, speech:], feats[:, speech:])  # padding untouched
    changed = (out != feats).any(dim=0).nonzero().flatten()
    assert int(changed.max()) < speech

    bands = FeatureAugment(1.0, warp=0.0, freq_masks=2, freq_mask_bins=8, time_masks=0)
    out = bands.apply(feats[None], torch.Generator().manual_seed(2))[0]
    rows = (out != feats).any(dim=1).nonzero().flatten()
    assert 0 < len(rows) <= 16
    assert (out[rows] == floor).all()


def test_augment_batch_perturbs_a_seeded_share_of_rows_and_marks_them(tiny_random):
    from distilray.models import load_whisper

    _, processor = load_whisper(str(tiny_random), dtype=torch.float32)
    batch = {"input_features": _features(processor, seconds=(1.0,) * 8)}
    aug = FeatureAugment(0.5)
    first = augment_batch(batch, aug, seed=7)
    again = augment_batch(batch, aug, seed=7)
    chosen = first["augmented"]
    assert chosen.dtype == torch.bool and 0 < int(chosen.sum()) < 8
    torch.testing.assert_close(first["input_features"], again["input_features"])  # resumable
    changed = (first["input_features"] != batch["input_features"]).flatten(1).any(dim=1)
    assert torch.equal(changed, chosen)
    other = augment_batch(batch, aug, seed=8)
    assert not torch.equal(other["input_features"], first["input_features"])
    off = augment_batch(batch, FeatureAugment(0.0), seed=7)
    assert not off["augmented"].any()
    assert off["input_features"] is batch["input_features"]


def test_perturbed_rows_are_encoded_afresh_and_never_cached(models):
    student, teacher, processor = models
    clean = _features(processor)
    seqs = [[50257, 50362, 400, 500, 50256]] * 3
    labels = pad_labels(seqs, pad_token_id=50256, decoder_start_token_id=50257, max_tokens=448)
    ids = ["a", "b", "c"]
    cache = EncoderCache(max_bytes=2**30)
    with torch.no_grad():
        shared_logits(student, teacher, {"input_features": clean, **labels, "ids": ids}, cache)
        assert (cache.misses, len(cache)) == (3, 3)
        batch = augment_batch(
            {"input_features": clean, **labels, "ids": ids}, FeatureAugment(1.0), seed=0
        )
        batch["augmented"] = torch.tensor([True, False, True])
        batch["input_features"][1] = clean[1]  # the row left clean
        got = shared_logits(student, teacher, batch, cache)
        want = shared_logits(student, teacher, {k: v for k, v in batch.items() if k != "ids"})
    for a, b in zip(got, want, strict=True):  # perturbed rows: their own encoder output
        torch.testing.assert_close(a, b)
    assert (cache.hits, cache.misses, len(cache)) == (1, 3, 3)  # only row b read the cache
    clean_b = cache.encode(student.model.encoder, clean[1:2], ["b"])
    perturbed = cache.encode(student.model.encoder, clean[0:1], ["a"])
    torch.testing.assert_close(
        perturbed, student.model.encoder(clean[0:1]).last_hidden_state
    )  # the cache still holds row a's clean output
    assert clean_b.shape == perturbed.shape


def test_augmentation_is_off_by_default_and_checked():
    assert AugmentSection().probability == 0
    base = {
        "data": {"train": "x", "eval": "y"},
        "model": {"teacher": "tiny.en", "student": "s"},
        "train": {"max_steps": 1},
    }
    cfg = DistillConfig.model_validate(
        {**base, "train": {"max_steps": 1, "augment": {"probability": 0.5}}}
    )
    assert cfg.train.augment.probability == 0.5 and cfg.train.augment.warp == 0.1
    with pytest.raises((ConfigError, ValueError), match="probability"):
        DistillConfig.model_validate(
            {**base, "train": {"max_steps": 1, "augment": {"probability": 1.5}}}
        )
