"""Tiny random Whispers for tests: real tiny.en tokenizer and settings, random weights."""

from __future__ import annotations

import itertools
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
) -> Path:
    """Save a randomly initialised Whisper with the tiny.en vocabulary to ``out_dir``.

    Tokenizer, feature extractor (80 mels) and generation config are copied from the
    converted tiny.en teacher; positions stay at 1500 (encoder) and 448 (decoder), so
    standard 30 s features work. Same ``seed``, same weights.
    """
    import torch
    from transformers import GenerationConfig, WhisperForConditionalGeneration, WhisperProcessor

    teacher = ensure_teacher()
    config = _tiny_config(teacher, encoder_layers, decoder_layers, d_model, heads, ffn)
    torch.manual_seed(seed)
    model = WhisperForConditionalGeneration(config).eval()
    generation_config = GenerationConfig.from_pretrained(teacher)
    # Cross-attention heads used for word timestamps: the teacher's do not exist here.
    generation_config.alignment_heads = [
        list(pair)
        for pair in itertools.product(range(decoder_layers // 2, decoder_layers), range(heads))
    ]
    model.generation_config = generation_config
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir, safe_serialization=True)
    WhisperProcessor.from_pretrained(teacher).save_pretrained(out_dir)
    shutil.copyfile(teacher / "normalizer.json", out_dir / "normalizer.json")
    return out_dir


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
