"""Speculative decoding returns exactly the teacher's greedy tokens, batched or not."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distilray.audio import decode_audio
from distilray.features import log_mel
from distilray.inference.ragged import RaggedDecoder
from distilray.inference.shortform import generate_greedy
from distilray.inference.speculative import speculative_generate

MAX_NEW = 16


def _clips(manifest) -> list[np.ndarray]:
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [decode_audio(manifest.parent / row["audio"]) for row in rows]


@pytest.fixture(scope="module")
def features(synth_clips, tiny_en):
    """8 speech clips, one of silence and one of noise, as 30 s log-mel features."""
    from transformers import WhisperFeatureExtractor

    clips = _clips(synth_clips)
    rng = np.random.default_rng(0)
    clips += [np.zeros(8000, np.float32), 0.1 * rng.standard_normal(32000).astype(np.float32)]
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_en)
    return torch.from_numpy(log_mel(extractor, clips))


@pytest.fixture(scope="module")
def random_pair(tiny_random, tmp_path_factory):
    """Tiny random teacher (4 decoder layers) with two students: unrelated, and layers 0 + 3."""
    from distilray.models import load_whisper
    from distilray.models.testing import make_tiny_random_whisper
    from distilray.student import build_student

    teacher, processor = load_whisper(tiny_random)
    other = make_tiny_random_whisper(tmp_path_factory.mktemp("other"), decoder_layers=2, seed=1)
    return (
        teacher,
        processor,
        {"unrelated": load_whisper(other)[0], "layers": build_student(teacher, [0, 3])},
    )


@pytest.fixture(scope="module")
def real_pair(tiny_en):
    from distilray.models import load_whisper
    from distilray.student import build_student

    teacher, processor = load_whisper(tiny_en)
    return teacher, processor, build_student(teacher, [0, 3])


def _encode(teacher, features):
    """Encoder output to share between calls (greedy's own pass on the same input is identical)."""
    with torch.inference_mode():
        return teacher.model.encoder(features).last_hidden_state


@pytest.mark.parametrize(
    ("student", "timestamps", "k"),
    [("unrelated", False, 1), ("unrelated", True, 4), ("layers", False, 4), ("layers", True, 2)],
)
def test_random_models_equal_greedy(random_pair, features, student, timestamps, k):
    teacher, processor, students = random_pair
    greedy = generate_greedy(
        teacher, processor, features, max_new_tokens=MAX_NEW, return_timestamps=timestamps
    )
    out = speculative_generate(
        teacher,
        students[student],
        features,
        num_draft_tokens=k,
        max_new_tokens=MAX_NEW,
        return_timestamps=timestamps,
    )
    assert out.sequences == greedy
    assert out.stats.drafted > 0
    assert out.stats.generated >= sum(len(s) for s in greedy)
    if student == "layers" and not timestamps:  # teacher layers 0 and 3 agree often
        assert out.stats.acceptance_rate > 0.3


def test_real_teacher_equals_greedy_and_saves_passes(real_pair, features):
    teacher, processor, student = real_pair
    features = features[[0, 1, 2, 8, 9]]  # three speech clips, silence, noise
    encoded = _encode(teacher, features)
    for timestamps in (False, True):
        greedy = generate_greedy(
            teacher, processor, features, max_new_tokens=32, return_timestamps=timestamps
        )
        out = speculative_generate(
            teacher,
            student,
            features,
            num_draft_tokens=5,
            max_new_tokens=32,
            return_timestamps=timestamps,
            encoder_hidden_states=encoded,
        )
        assert out.sequences == greedy
        assert len({len(s) for s in greedy}) > 2  # rows really finish at different steps
        # each row: fewer teacher passes than tokens, which greedy needs one pass each for
        for row, stats in zip(greedy, out.row_stats, strict=True):
            assert stats.teacher_passes <= len(row) + 1
        # an undistilled 2-layer cut of the teacher agrees on a few tokens (~5-15 %)
        assert out.stats.accepted > 0
        assert sum(s.teacher_passes for s in out.row_stats) < sum(len(s) + 1 for s in greedy)
    text = processor.batch_decode(out.sequences[:3], skip_special_tokens=True)
    assert all(t.strip() for t in text)  # real speech gives real text


def test_batch_equals_single_rows(real_pair, features):
    teacher, _, student = real_pair
    encoded = _encode(teacher, features[:3])
    batch = speculative_generate(
        teacher, student, features[:3], max_new_tokens=24, encoder_hidden_states=encoded
    )
    for i in range(3):
        single = speculative_generate(
            teacher,
            student,
            features[i : i + 1],
            max_new_tokens=24,
            encoder_hidden_states=encoded[i : i + 1],
        )
        assert single.sequences[0] == batch.sequences[i]
        assert single.row_stats[0].accepted == batch.row_stats[i].accepted


def test_budget_no_drafts_and_adaptive_drafts(real_pair, features):
    teacher, processor, student = real_pair
    features = features[:2]
    encoded = _encode(teacher, features)
    greedy = generate_greedy(teacher, processor, features, max_new_tokens=7)
    for k, schedule in ((0, "constant"), (10, "constant"), (2, "heuristic")):
        out = speculative_generate(
            teacher,
            student,
            features,
            num_draft_tokens=k,
            schedule=schedule,
            max_new_tokens=7,
            encoder_hidden_states=encoded,
        )
        assert out.sequences == greedy, (k, schedule)
        assert all(len(s) <= 7 for s in out.sequences)
        assert (out.stats.drafted > 0) == (k > 0)


def test_ragged_cache_with_holes_matches_a_clean_cache(real_pair, features):
    """Logits after masked-out (rejected) tokens and compaction equal those without them."""
    teacher, _, _ = real_pair
    with torch.inference_mode():
        encoded = teacher.model.encoder(features[:2]).last_hidden_state
        clean = RaggedDecoder(teacher, encoded, pad_token_id=50256)
        clean.forward([[50257, 50362, 383], [50257, 50362, 314]])
        want = clean.forward([[1110], [1110]])[:, -1]

        holey = RaggedDecoder(teacher, encoded, pad_token_id=50256)
        holey.forward([[50257, 50362, 383, 11, 12, 13], [50257, 50362, 314, 14]])
        holey.invalidate_last([3, 1])  # reject different numbers of drafts per row
        assert holey.lengths.tolist() == [3, 3]
        got_masked = holey.forward([[1110], [1110]])[:, -1]
        holey.invalidate_last([1, 1])
        holey.compact()
        assert holey.valid.shape[1] == 3
        got_compact = holey.forward([[1110], [1110]])[:, -1]
    torch.testing.assert_close(got_masked, want, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(got_compact, want, rtol=1e-4, atol=1e-4)
