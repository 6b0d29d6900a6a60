"""Tiny random Whispers for tests: real tiny.en tokenizer and settings, random weights."""

from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

from distilray.models.teacher import ensure_teacher


def make_tiny_random_whisper(
    out_dir: str | Path,
    *,
    encoder_layers: int = 2,
    decoder_layers: int = 4,
    d_model: int = 64,
    heads: int = 4,
    ffn: int = 128,
    seed: int = 0,
    multilingual: bool = False,
) -> Path:
    """Save a randomly initialised Whisper with the tiny.en vocabulary to ``out_dir``.

    Tokenizer, feature extractor (80 mels) and generation config are copied from the
    converted tiny.en teacher; positions stay at 1500 (encoder) and 448 (decoder), so
    standard 30 s features work. Same ``seed``, same weights. ``multilingual`` lays the
    vocabulary out as OpenAI's multilingual models do (:func:`_multilingual_layout`), so
    that transformers and CTranslate2 both take it for one.
    """
    import torch
    from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

    teacher = ensure_teacher()
    config = _tiny_config(teacher, encoder_layers, decoder_layers, d_model, heads, ffn)
    if multilingual:
        config.vocab_size = MULTILINGUAL_VOCAB
        for key in ("bos_token_id", "decoder_start_token_id", "eos_token_id", "pad_token_id"):
            setattr(config, key, getattr(config, key) + 1)
        config.begin_suppress_tokens = [220, ENGLISH_EOT + 1]
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    generation_config = GenerationConfig.from_pretrained(teacher)
    # Cross-attention heads used for word timestamps: the teacher's do not exist here.
    generation_config.alignment_heads = [
        list(pair)
        for pair in itertools.product(range(decoder_layers // 2, decoder_layers), range(heads))
    ]
    if multilingual:
        _multilingual_generation(generation_config)
    model.generation_config = generation_config
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    WhisperProcessor.from_pretrained(teacher).save_pretrained(out_dir)
    shutil.copyfile(teacher / "normalizer.json", out_dir / "normalizer.json")
    if multilingual:
        _multilingual_layout(out_dir)
    return out_dir


ENGLISH_EOT = 50256  # <|endoftext|> of the English-only vocabulary (51,864 ids)
MULTILINGUAL_VOCAB = 51865  # OpenAI's multilingual models before large-v3


def _multilingual_layout(out_dir: Path) -> None:
    """Rewrite the saved tiny.en tokenizer into the multilingual models' layout.

    The English-only vocabulary puts ``<|endoftext|>`` at 50256 and the special tokens
    after it; the multilingual one has one more text token there (an empty string,
    which is how CTranslate2 tells the two apart) and every special token one id
    later, 51,865 ids in all. Text tokens and merges are unchanged.
    """
    path = out_dir / "tokenizer.json"
    tokenizer = json.loads(path.read_text())
    vocab = tokenizer["model"]["vocab"]
    if vocab.pop("<|endoftext|>") != ENGLISH_EOT:
        raise ValueError("not the English-only Whisper vocabulary")
    vocab[""] = ENGLISH_EOT
    for added in tokenizer["added_tokens"]:
        added["id"] += 1
    tokenizer["post_processor"] = _shift_ids(tokenizer["post_processor"])
    path.write_text(json.dumps(tokenizer))
    path = out_dir / "tokenizer_config.json"
    settings = json.loads(path.read_text())
    if "added_tokens_decoder" in settings:
        settings["added_tokens_decoder"] = {
            str(int(k) + 1): v for k, v in settings["added_tokens_decoder"].items()
        }
    path.write_text(json.dumps(settings))


def _shift_ids(node):
    """A tokenizer post-processor with its special tokens' ids one later."""
    if isinstance(node, dict):
        return {
            k: [i + 1 if i >= ENGLISH_EOT else i for i in v] if k == "ids" else _shift_ids(v)
            for k, v in node.items()
        }
    if isinstance(node, list):
        return [_shift_ids(v) for v in node]
    return node


def _multilingual_generation(config) -> None:
    """tiny.en's generation config, moved to the multilingual layout: every special
    id one later, 99 languages, transcribe and translate."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    for key in (
        "bos_token_id",
        "decoder_start_token_id",
        "eos_token_id",
        "pad_token_id",
        "no_timestamps_token_id",
        "prev_sot_token_id",
    ):
        setattr(config, key, getattr(config, key) + 1)
    start = config.decoder_start_token_id  # <|startoftranscript|>, then the languages
    codes = list(LANGUAGES)[:99]  # the 99 before large-v3 added Cantonese
    config.lang_to_id = {f"<|{code}|>": start + 1 + i for i, code in enumerate(codes)}
    config.task_to_id = {"translate": start + 100, "transcribe": start + 101}
    config.is_multilingual = True
    config.begin_suppress_tokens = [220, ENGLISH_EOT + 1]
    # text tokens as tiny.en suppresses them, and the prompt-only special tokens
    text = [t for t in config.suppress_tokens if t < ENGLISH_EOT]
    config.suppress_tokens = [*text, *range(start + 100, config.no_timestamps_token_id)]


def _tiny_config(teacher: Path, encoder_layers, decoder_layers, d_model, heads, ffn):
    from transformers import WhisperConfig

    config = WhisperConfig.from_pretrained(teacher)
    sizes = {
        "encoder_layers": encoder_layers,
        "decoder_layers": decoder_layers,
        "d_model": d_model,
        "encoder_attention_heads": heads,
        "decoder_attention_heads": heads,
        "encoder_ffn_dim": ffn,
        "decoder_ffn_dim": ffn,
    }
    for key, value in sizes.items():
        setattr(config, key, value)
    return config
