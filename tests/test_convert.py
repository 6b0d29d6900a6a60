"""The CTranslate2 -> transformers conversion of the embedded tiny.en teacher.

The converted model must compute what CTranslate2 computes on the same log-mel
features: same encoder output, same decoder logits, same greedy tokens.
"""

from __future__ import annotations

import json
import subprocess

import numpy as np
import pytest
import torch

from distilray.audio import decode_audio
from distilray.cli import main
from distilray.errors import ModelLoadError
from distilray.models import load_whisper
from distilray.models.ct2_reader import read_ct2_model
from distilray.models.teacher import embedded_ct2_dir
from distilray.text import normalize, wer

SOT, NO_TIMESTAMPS, EOT = 50257, 50362, 50256
PROMPT = [SOT, NO_TIMESTAMPS]  # what tiny.en decodes from: <|startoftranscript|><|notimestamps|>
CLIPS = {  # spoken text -> a word the transcript must contain
    "The quick brown fox jumps over the lazy dog.": "fox",
    "Please call Stella and ask her to bring these things with her from the store.": "stella",
    "Distillation makes the student model smaller and faster than the teacher.": "teacher",
}
TOLERANCE = 1e-3


def speak(text: str, path) -> np.ndarray:
    """Synthesise ``text`` with espeak-ng and decode it to 16 kHz mono float32."""
    subprocess.run(["espeak-ng", "-w", str(path), text], check=True, capture_output=True)
    return decode_audio(path)


@pytest.fixture(scope="module")
def teacher(tiny_en):
    return load_whisper(tiny_en)


@pytest.fixture(scope="module")
def features(teacher, tmp_path_factory) -> np.ndarray:
    """Log-mel features ``(3, 80, 3000)`` of the spoken clips, shared by both runtimes."""
    _, processor = teacher
    out = tmp_path_factory.mktemp("speech")
    audios = [speak(text, out / f"clip{i}.wav") for i, text in enumerate(CLIPS)]
    batch = processor.feature_extractor(audios, sampling_rate=16000, return_tensors="np")
    return batch["input_features"].astype(np.float32)


@pytest.fixture(scope="module")
def ct2_model():
    import ctranslate2

    return ctranslate2.models.Whisper(str(embedded_ct2_dir()), device="cpu", compute_type="float32")


@pytest.fixture(scope="module")
def ct2_results(ct2_model, features):
    import ctranslate2

    return ct2_model.generate(
        ctranslate2.StorageView.from_array(features),
        [PROMPT] * len(features),
        beam_size=1,
        return_logits_vocab=True,
    )


def test_reader_parses_spec_and_resolves_tied_projection():
    ct2 = read_ct2_model(embedded_ct2_dir() / "model.bin")
    assert (ct2.spec_name, ct2.revision) == ("WhisperSpec", 3)
    assert ct2.get("decoder/projection/weight") is ct2.get("decoder/embeddings/weight")
    assert ct2.get("decoder/embeddings/weight").shape == (51864, 384)
    assert ct2.get("encoder/layer_0/self_attention/linear_0/weight").dtype == np.float16
    # fused self-attention q;k;v: the key third of the bias is zero (Whisper k_proj has no bias)
    bias = ct2.get("decoder/layer_0/self_attention/linear_0/bias")
    assert bias.shape == (3 * 384,) and not bias[384:768].any() and bias[:384].any()


def test_reader_rejects_a_broken_file(tmp_path):
    good = (embedded_ct2_dir() / "model.bin").read_bytes()
    (tmp_path / "cut.bin").write_bytes(good[:100_000])
    with pytest.raises(ModelLoadError, match="not a valid CTranslate2 model"):
        read_ct2_model(tmp_path / "cut.bin")


def test_converted_folder_config_and_generation_config(tiny_en):
    config = json.loads((tiny_en / "config.json").read_text())
    assert (config["vocab_size"], config["d_model"], config["num_mel_bins"]) == (51864, 384, 80)
    assert (config["encoder_layers"], config["decoder_layers"]) == (4, 4)
    assert config["max_source_positions"] == 1500 and config["max_target_positions"] == 448
    gen = json.loads((tiny_en / "generation_config.json").read_text())
    ct2_config = json.loads((embedded_ct2_dir() / "config.json").read_text())
    assert gen["decoder_start_token_id"] == SOT and gen["no_timestamps_token_id"] == NO_TIMESTAMPS
    assert gen["suppress_tokens"] == ct2_config["suppress_ids"]
    assert gen["begin_suppress_tokens"] == ct2_config["suppress_ids_begin"] == [220, EOT]
    assert gen["alignment_heads"] == ct2_config["alignment_heads"]
    assert gen["is_multilingual"] is False and gen["max_length"] == 448
    assert "forced_decoder_ids" not in gen and "lang_to_id" not in gen
    assert sorted(p.name for p in tiny_en.glob("*.safetensors")) == ["model.safetensors"]


def test_tokenizer_has_timestamps_prefix_and_normaliser(teacher):
    tokenizer = teacher[1].tokenizer
    assert len(tokenizer) == 51864
    assert tokenizer.convert_ids_to_tokens([50363, 51863]) == ["<|0.00|>", "<|30.00|>"]
    assert tokenizer.all_special_ids[-1] == NO_TIMESTAMPS  # timestamps start right after
    assert tokenizer.prefix_tokens == PROMPT
    ids = tokenizer(" Hello world.").input_ids
    assert ids[:2] == PROMPT and ids[-1] == EOT
    assert tokenizer.decode(ids, skip_special_tokens=True) == " Hello world."
    with_timestamps = [*PROMPT, 50363, 15496, 50400, EOT]  # <|0.00|> Hello <|0.74|>
    assert tokenizer.decode(with_timestamps, skip_special_tokens=True) == "Hello"
    # the English spelling table (colour -> color) is loaded from normalizer.json
    assert tokenizer.normalize("The colour of Mr. Smith") == "the color of mister smith"


def test_encoder_output_matches_ctranslate2(teacher, features, ct2_model):
    import ctranslate2

    model, _ = teacher
    ct2_out = np.array(ct2_model.encode(ctranslate2.StorageView.from_array(features), to_cpu=True))
    with torch.no_grad():
        ours = model.model.encoder(torch.from_numpy(features)).last_hidden_state.numpy()
    assert ours.shape == ct2_out.shape == (len(CLIPS), 1500, 384)
    # float32 sums in another order: ~2e-5 typical, the odd element 1e-3 off at |x| ~ 2
    np.testing.assert_allclose(ours, ct2_out, atol=TOLERANCE, rtol=TOLERANCE)
    assert np.abs(ours - ct2_out).mean() < 1e-4


def test_decoder_logits_match_ctranslate2(teacher, features, ct2_results):
    """Teacher-forced logits on CTranslate2's greedy path, over every unsuppressed token."""
    model, _ = teacher
    for clip, result in zip(features, ct2_results, strict=True):
        tokens = result.sequences_ids[0]
        ct2_logits = np.stack([np.array(step) for step in result.logits[0]])
        with torch.no_grad():
            logits = (
                model(
                    input_features=torch.from_numpy(clip[None]),
                    decoder_input_ids=torch.tensor([PROMPT + tokens]),
                )
                .logits[0, 1:]
                .numpy()
            )
        logits = logits[: len(ct2_logits)]  # step i predicts token i (then EOT)
        kept = ct2_logits > -1e30  # CTranslate2 writes suppressed tokens as -FLT_MAX
        assert kept.sum() > 51_000
        np.testing.assert_allclose(logits[kept], ct2_logits[kept], atol=TOLERANCE, rtol=0)


def test_greedy_tokens_and_transcripts_match_ctranslate2(teacher, features, ct2_results):
    model, processor = teacher
    with torch.no_grad():
        generated = model.generate(torch.from_numpy(features), num_beams=1, do_sample=False)
    for row, result in zip(generated.tolist(), ct2_results, strict=True):
        ours = [token for token in row if token not in (*PROMPT, EOT)]
        assert ours == result.sequences_ids[0]
    transcripts = processor.batch_decode(generated, skip_special_tokens=True)
    for (spoken, word), text in zip(CLIPS.items(), transcripts, strict=True):
        assert word in normalize(text).split(), text
        assert wer(spoken, text) <= 0.25, (spoken, text)


def test_convert_teacher_cli_reuses_the_cache_and_rejects_non_model_out(tiny_en, tmp_path, capsys):
    marker = (tiny_en / "model.safetensors").stat().st_mtime_ns
    assert main(["convert-teacher"]) == 0
    assert capsys.readouterr().out.strip() == str(tiny_en)
    assert (tiny_en / "model.safetensors").stat().st_mtime_ns == marker  # not converted again
    (tmp_path / "notes.txt").write_text("not a model")
    assert main(["convert-teacher", "--out", str(tmp_path)]) == 2
    assert "holds no converted model" in capsys.readouterr().err
