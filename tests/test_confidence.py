"""The teacher's confidence recorded by labelling: Whisper's three decoding signals."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from distilray.audio import decode_audio
from distilray.inference.confidence import compression_ratio, no_speech_token_id


def test_compression_ratio_flags_loops():
    sentence = "The museum guide opened a small bakery near the river."
    assert compression_ratio(sentence) < 1.5
    assert compression_ratio("a woman, " * 20) > 2.4  # Whisper's threshold
    assert compression_ratio("") == 0.0


def test_no_speech_token_is_nocaptions(tiny_en):
    from transformers import GenerationConfig, WhisperTokenizer

    config = GenerationConfig.from_pretrained(tiny_en)
    token = WhisperTokenizer.from_pretrained(tiny_en).convert_ids_to_tokens(
        no_speech_token_id(config)
    )
    assert token == "<|nocaptions|>"


@pytest.fixture(scope="module")
def labeller(tiny_en):
    from distilray.labelling.teacher import TeacherLabeller

    return TeacherLabeller(str(tiny_en), "cpu", "float32", "sdpa", 96, True, None, None)


def test_labeller_scores_speech_silence_and_noise(labeller, synth_clips):
    from ray.data.extensions import ArrowTensorArray

    from distilray.features import log_mel

    row = json.loads(synth_clips.read_text().splitlines()[0])
    speech = decode_audio(synth_clips.parent / row["audio"])
    silence = np.zeros(5 * 16000, np.float32)
    noise = (np.random.default_rng(0).standard_normal(5 * 16000) * 0.05).astype(np.float32)
    features = log_mel(labeller.processor.feature_extractor, [speech, silence, noise])
    batch = pa.table(
        {
            "id": ["speech", "silence", "noise"],
            "error": pa.array([None] * 3, pa.string()),
            "input_features": ArrowTensorArray.from_numpy(features),
        }
    )
    rows = {r["id"]: r for r in labeller(batch).to_pylist()}
    said = rows["speech"]
    assert said["avg_logprob"] > -1.0 and said["no_speech_prob"] < 0.2
    assert said["compression_ratio"] == pytest.approx(compression_ratio(said["pseudo_label"]))
    # timestamps are recorded: <|startoftranscript|> then <|0.00|> (no <|notimestamps|>)
    assert said["pseudo_label_ids"][:2] == [50257, 50363]
    # what Whisper's rules would skip: silence and noise score below the thresholds
    for name in ("silence", "noise"):
        assert rows[name]["no_speech_prob"] > 0.6 or rows[name]["avg_logprob"] < -1.0


def test_labelling_leaves_encoder_outputs_that_distillation_reads(tiny_en, synth_clips, tmp_path):
    """The teacher labels what the student hears (features of the stored WAV), and the
    encoder outputs it leaves are found again from the labelled rows' audio."""
    import torch
    from transformers import WhisperFeatureExtractor

    from distilray.distill.data import add_features
    from distilray.labelling.prepare import prepare_batch
    from distilray.labelling.teacher import TeacherLabeller
    from distilray.models.encoder_store import EncoderStore, encoder_namespace

    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()[:3]]
    manifest = pa.table(
        {
            "id": [r["id"] for r in rows],
            "audio_bytes": pa.array([None] * 3, pa.binary()),
            "audio_path": [str(synth_clips.parent / r["audio"]) for r in rows],
            "text": [r["text"] for r in rows],
        }
    )
    extractor = WhisperFeatureExtractor.from_pretrained(tiny_en)
    prepared = prepare_batch(manifest, feature_extractor=extractor, max_duration_s=30)
    store_dir = tmp_path / "encoder"
    labeller = TeacherLabeller(
        str(tiny_en), "cpu", "float32", "sdpa", 48, True, None, None, encoder_cache_dir=store_dir
    )
    labelled = labeller(prepared).to_pydict()
    assert len(list(store_dir.glob("*.npy"))) == 3

    audio = np.empty(3, dtype=object)
    audio[:] = labelled["audio"]
    batch = {"id": np.array(labelled["id"]), "audio": audio}
    features = torch.from_numpy(add_features(batch, feature_size=80)["input_features"])
    store = EncoderStore(store_dir, encoder_namespace(str(tiny_en), torch.float32))
    with torch.inference_mode():
        want = labeller.model.model.encoder(features).last_hidden_state
    for row, expected in zip(features, want, strict=True):
        stored = store.load(row)
        assert stored is not None  # same features, same encoder: found
        torch.testing.assert_close(stored, expected)
    other = EncoderStore(store_dir, encoder_namespace(str(tiny_en), torch.bfloat16))
    assert other.load(features[0]) is None  # another dtype is another encoder
