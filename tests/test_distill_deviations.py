"""Labels with slips (distill.deviations): which tokens change, which predictions the
KL reads, and the term's place in a training step beside the repetition term."""

from __future__ import annotations

import copy

import pytest
import torch

from distilray.distill.collate import pad_labels
from distilray.distill.config import OptimSection
from distilray.distill.deviations import label_deviations
from distilray.distill.losses import DistillationLoss, masked_kl
from distilray.distill.on_policy import OnPolicy
from distilray.distill.optim import build_optimizer
from distilray.distill.step import decode_at, train_step
from distilray.features import log_mel

EOS, NO_TS, SOT = 50256, 50362, 50257
PUNCT = (13, 11, 30, 0)  # ".", ",", "?", "!" in Whisper's GPT-2 vocabulary


def _spec(**kw) -> OnPolicy:
    return OnPolicy(0.0, 128, NO_TS, EOS, punctuation_ids=PUNCT, **kw)


def _padded(texts, timestamped=()):
    seqs = [[SOT, 50363 if i in timestamped else NO_TS, *t, EOS] for i, t in enumerate(texts)]
    return pad_labels(seqs, pad_token_id=EOS, decoder_start_token_id=SOT, max_tokens=448)


def test_slips_change_a_few_tokens_and_score_from_the_first_one_on():
    texts = [[400, 401, 13, 402, 403, 11, 404], [410, 30, 411], [420, 421], [430, 431]]
    padded = _padded(texts, timestamped={2})
    ids, labels = padded["decoder_input_ids"], padded["labels"]
    spec = _spec(deviation_weight=1.0, deviation_rows=2, deviation_rate=0.3)
    words = {t for t in sum(texts, []) if t not in PUNCT}
    kinds = set()
    for seed in range(30):
        slips = label_deviations(ids, labels, spec, seed)
        assert slips.rows.tolist() == [0, 1]  # the first two without timestamps
        for r, text in enumerate(texts[:2]):
            row = slips.input_ids[r]
            length = 2  # <|startoftranscript|> <|notimestamps|>
            assert row[:length].tolist() == [SOT, NO_TS]
            said = row[length : length + len(text)].tolist()
            changed = [i for i, (a, b) in enumerate(zip(said, text, strict=True)) if a != b]
            assert changed, "at least one slip per row"
            for i in changed:
                if text[i] in PUNCT:
                    assert said[i] in PUNCT  # a mark for another mark
                    kinds.add("mark")
                else:
                    assert said[i] in words  # a word of the batch's labels
                    kinds.add("word")
            # the predictions read: after the first slipped token, through the end of text
            scored = slips.positions[r].nonzero().flatten().tolist()
            assert scored == list(range(length + changed[0], length + len(text)))
            assert slips.attention_mask[r].sum() == length + len(text)
        again = label_deviations(ids, labels, spec, seed)
        assert torch.equal(again.input_ids, slips.input_ids)  # a resumed run draws the same
    assert kinds == {"mark", "word"}


def test_no_slips_without_untimestamped_rows_or_another_token_to_slip_to():
    padded = _padded([[400, 401]], timestamped={0})
    spec = _spec(deviation_weight=1.0)
    assert label_deviations(padded["decoder_input_ids"], padded["labels"], spec, 0) is None
    padded = _padded([[400, 400, 400]])  # one word said three times: nothing to slip to
    assert label_deviations(padded["decoder_input_ids"], padded["labels"], spec, 0) is None


def _batch(processor):
    import numpy as np

    rng = np.random.default_rng(0)
    texts = [[400, 401, 13, 402, 403], [410, 411, 30, 412], [420, 421, 422]]
    audios = [rng.normal(0, 0.05, 16000).astype(np.float32) for _ in texts]
    return {
        "input_features": torch.from_numpy(log_mel(processor.feature_extractor, audios)),
        **_padded(texts),
    }


def _step(student, teacher, batch, spec) -> dict[str, float]:
    student = copy.deepcopy(student)
    optimizer, scheduler = build_optimizer(student, OptimSection(warmup_steps=0), 10)
    return train_step(
        student, teacher, DistillationLoss(), optimizer, scheduler, batch, on_policy=spec, seed=5
    )


def test_train_step_adds_the_teachers_kl_on_the_slipped_rows(distill_models):
    student, teacher, processor = distill_models
    batch = _batch(processor)
    spec = _spec(deviation_weight=0.5, deviation_rows=2)
    out = _step(student, teacher, batch, spec)
    assert out["loss"] == pytest.approx(
        0.8 * out["kl"] + out["ce"] + 0.5 * out["deviation_kl"], rel=1e-4
    )
    # the same KL computed by hand: both decoders read the slipped rows
    slips = label_deviations(batch["decoder_input_ids"], batch["labels"], spec, 5)
    with torch.no_grad():
        states = student.model.encoder(batch["input_features"]).last_hidden_state[slips.rows]
        args = (states, slips.input_ids, slips.attention_mask, slips.positions)
        s, t = decode_at(student, *args).logits, decode_at(teacher, *args).logits
        n = s.shape[0]
        kl = masked_kl(s[None], t[None], torch.ones(1, n, dtype=torch.bool), 2.0) * 4
    assert out["deviation_kl"] == pytest.approx(kl.item(), rel=1e-4)


def test_slips_and_made_loops_in_one_step_keep_each_terms_value(distill_models):
    """The slipped rows sit between the batch's rows and the loops: each term must read
    its own rows, so either value is the same with or without the other term."""
    student, teacher, processor = distill_models
    batch = _batch(processor)
    loops = dict(repetition_weight=1.0, synthetic=True)
    alone = _step(student, teacher, batch, _spec(**loops))
    slips = _step(student, teacher, batch, _spec(deviation_weight=1.0))
    both = _step(student, teacher, batch, _spec(deviation_weight=1.0, **loops))
    assert both["repetition"] == pytest.approx(alone["repetition"], rel=1e-4)
    assert both["deviation_kl"] == pytest.approx(slips["deviation_kl"], rel=1e-4)
    assert both["kl"] == pytest.approx(alone["kl"], rel=1e-5)
    assert both["loss"] == pytest.approx(
        0.8 * both["kl"] + both["ce"] + both["repetition"] + both["deviation_kl"], rel=1e-4
    )
