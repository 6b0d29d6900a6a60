"""Convert a CTranslate2 English-only Whisper model into a transformers model folder.

Input: a CTranslate2 model directory (``model.bin``, ``config.json``, ``tokenizer.json``,
``vocabulary.txt``). Output: ``WhisperForConditionalGeneration`` weights (float32
safetensors), ``WhisperProcessor`` (feature extractor + tokenizer with the English
spelling normaliser) and the ``GenerationConfig`` Whisper decodes with.

What CTranslate2 stores differently from transformers:

* weights are float16; we widen them to float32;
* self-attention projections are fused (``linear_0`` = ``[q; k; v]``), cross-attention
  ``linear_0`` = q and ``linear_1`` = ``[k; v]``; the output projection is the last
  ``linear_*``. The key bias slot holds zeros (Whisper's ``k_proj`` has no bias; a key
  bias would only add a per-query constant to the scores, which softmax removes);
* the output projection is tied to the token embedding (stored as an alias);
* ``tokenizer.json`` lacks the 1,501 timestamp tokens ``<|0.00|>`` ... ``<|30.00|>``
  (ids right after ``<|notimestamps|>``), which ``vocabulary.txt`` lists: we add them
  as (non-special) added tokens, so the tokenizer's ids equal the model's.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from distilray.errors import ModelLoadError
from distilray.models.ct2_reader import CT2Model, read_ct2_model

logger = logging.getLogger(__name__)

WHISPER_SPEC = "WhisperSpec"
MULTILINGUAL_VOCAB_SIZE = 51865  # openai/whisper: is_multilingual = n_vocab >= 51865
MAX_DECODER_LENGTH = 448  # Whisper's text context
MAX_INITIAL_TIMESTAMP_INDEX = 50  # openai/whisper max_initial_timestamp=1.0 s / 0.02 s
TIMESTAMP_STEP_S = 0.02  # one timestamp token per 20 ms
NUM_TIMESTAMPS = 1501  # <|0.00|> ... <|30.00|>
CT2_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")


def convert_ct2_whisper(src_dir: str | Path, out_dir: str | Path) -> Path:
    """Convert the CTranslate2 Whisper in ``src_dir`` into a transformers folder ``out_dir``."""
    src_dir, out_dir = Path(src_dir), Path(out_dir)
    missing = [name for name in CT2_FILES if not (src_dir / name).is_file()]
    if missing:
        raise ModelLoadError(f"{src_dir} is not a CTranslate2 Whisper model: missing {missing}")
    ct2 = read_ct2_model(src_dir / "model.bin")
    if ct2.spec_name != WHISPER_SPEC:
        raise ModelLoadError(f"{src_dir} holds a {ct2.spec_name}, not a {WHISPER_SPEC}")
    ct2_config = json.loads((src_dir / "config.json").read_text(encoding="utf-8"))
    vocabulary = (src_dir / "vocabulary.txt").read_text(encoding="utf-8").rstrip("\n").split("\n")

    config = whisper_config_from_ct2(ct2)
    if config.vocab_size >= MULTILINGUAL_VOCAB_SIZE:
        raise ModelLoadError("only English-only Whisper models (vocabulary 51864) are supported")
    processor = build_processor(src_dir, vocabulary, config.num_mel_bins)
    model = build_model(ct2, config)
    model.generation_config = generation_config_from_ct2(ct2_config, processor.tokenizer)

    out_dir.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    processor.save_pretrained(out_dir)
    # The tokenizer's save does not write its spelling table; from_pretrained reads it.
    shutil.copyfile(_normalizer_asset(), out_dir / "normalizer.json")
    logger.info("converted %s -> %s", src_dir, out_dir)
    return out_dir


def whisper_config_from_ct2(ct2: CT2Model):
    """A ``WhisperConfig`` whose sizes are read off the CTranslate2 variable shapes."""
    from transformers import WhisperConfig

    vocab_size, d_model = ct2.get("decoder/embeddings/weight").shape
    return WhisperConfig(
        vocab_size=int(vocab_size),
        d_model=int(d_model),
        num_mel_bins=int(ct2.get("encoder/conv1/weight").shape[1]),
        encoder_layers=_num_layers(ct2, "encoder"),
        decoder_layers=_num_layers(ct2, "decoder"),
        encoder_attention_heads=int(ct2.get("encoder/num_heads")),
        decoder_attention_heads=int(ct2.get("decoder/num_heads")),
        encoder_ffn_dim=int(ct2.get("encoder/layer_0/ffn/linear_0/weight").shape[0]),
        decoder_ffn_dim=int(ct2.get("decoder/layer_0/ffn/linear_0/weight").shape[0]),
        max_source_positions=int(ct2.get("encoder/position_encodings/encodings").shape[0]),
        max_target_positions=int(ct2.get("decoder/position_encodings/encodings").shape[0]),
        scale_embedding=bool(ct2.get("decoder/scale_embeddings")),
        activation_function="gelu",
        bos_token_id=50257,  # as openai/whisper-tiny.en's config.json
        decoder_start_token_id=50257,
        eos_token_id=50256,
        pad_token_id=50256,
        tie_word_embeddings=True,
        dtype="float32",
        architectures=["WhisperForConditionalGeneration"],
    )


def _num_layers(ct2: CT2Model, stack: str) -> int:
    prefix = f"{stack}/layer_"
    indices = {
        name[len(prefix) :].split("/")[0] for name in ct2.variables if name.startswith(prefix)
    }
    return sum(index.isdigit() for index in indices)  # not "layer_norm"


def _f32(array: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.array(array, dtype=np.float32))


def state_dict_from_ct2(ct2: CT2Model, config) -> dict[str, torch.Tensor]:
    """transformers state dict (float32) from CTranslate2 variables."""
    sd: dict[str, torch.Tensor] = {}
    for stack in ("encoder", "decoder"):
        hf = f"model.{stack}"
        sd[f"{hf}.embed_positions.weight"] = _f32(ct2.get(f"{stack}/position_encodings/encodings"))
        sd.update(_layer_norm(ct2, f"{stack}/layer_norm", f"{hf}.layer_norm"))
        for i in range(getattr(config, f"{stack}_layers")):
            sd.update(_layer(ct2, f"{stack}/layer_{i}", f"{hf}.layers.{i}", stack == "decoder"))
    for conv in ("conv1", "conv2"):
        sd.update(_linear(ct2, f"encoder/{conv}", f"model.encoder.{conv}"))
    sd["model.decoder.embed_tokens.weight"] = _f32(ct2.get("decoder/embeddings/weight"))
    sd["proj_out.weight"] = _f32(ct2.get("decoder/projection/weight"))
    return sd


def _layer(ct2: CT2Model, src: str, dst: str, is_decoder: bool) -> dict[str, torch.Tensor]:
    sd = _fused_attention(ct2, f"{src}/self_attention", f"{dst}.self_attn", cross=False)
    sd.update(_layer_norm(ct2, f"{src}/self_attention/layer_norm", f"{dst}.self_attn_layer_norm"))
    if is_decoder:
        sd.update(_fused_attention(ct2, f"{src}/attention", f"{dst}.encoder_attn", cross=True))
        sd.update(_layer_norm(ct2, f"{src}/attention/layer_norm", f"{dst}.encoder_attn_layer_norm"))
    sd.update(_linear(ct2, f"{src}/ffn/linear_0", f"{dst}.fc1"))
    sd.update(_linear(ct2, f"{src}/ffn/linear_1", f"{dst}.fc2"))
    sd.update(_layer_norm(ct2, f"{src}/ffn/layer_norm", f"{dst}.final_layer_norm"))
    return sd


def _fused_attention(ct2: CT2Model, src: str, dst: str, *, cross: bool) -> dict[str, torch.Tensor]:
    """Split fused projections: self ``linear_0=[q;k;v]``; cross ``linear_0=q, linear_1=[k;v]``."""
    if cross:
        q_w, q_b = _f32(ct2.get(f"{src}/linear_0/weight")), _f32(ct2.get(f"{src}/linear_0/bias"))
        kv_w, kv_b = _f32(ct2.get(f"{src}/linear_1/weight")), _f32(ct2.get(f"{src}/linear_1/bias"))
        (k_w, v_w), (_, v_b) = kv_w.chunk(2), kv_b.chunk(2)
        out = f"{src}/linear_2"
    else:
        qkv_w, qkv_b = (
            _f32(ct2.get(f"{src}/linear_0/weight")),
            _f32(ct2.get(f"{src}/linear_0/bias")),
        )
        (q_w, k_w, v_w), (q_b, _, v_b) = qkv_w.chunk(3), qkv_b.chunk(3)
        out = f"{src}/linear_1"
    sd = {f"{dst}.q_proj.weight": q_w, f"{dst}.q_proj.bias": q_b, f"{dst}.k_proj.weight": k_w}
    sd.update({f"{dst}.v_proj.weight": v_w, f"{dst}.v_proj.bias": v_b})
    sd.update(_linear(ct2, out, f"{dst}.out_proj"))
    return {name: tensor.contiguous() for name, tensor in sd.items()}


def _linear(ct2: CT2Model, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {
        f"{dst}.weight": _f32(ct2.get(f"{src}/weight")),
        f"{dst}.bias": _f32(ct2.get(f"{src}/bias")),
    }


def _layer_norm(ct2: CT2Model, src: str, dst: str) -> dict[str, torch.Tensor]:
    return {
        f"{dst}.weight": _f32(ct2.get(f"{src}/gamma")),
        f"{dst}.bias": _f32(ct2.get(f"{src}/beta")),
    }


def build_model(ct2: CT2Model, config):
    """A ``WhisperForConditionalGeneration`` holding the CTranslate2 weights (eval mode)."""
    from transformers import WhisperForConditionalGeneration

    model = WhisperForConditionalGeneration(config)
    model.load_state_dict(state_dict_from_ct2(ct2, config), strict=True)
    model.tie_weights()
    return model.eval()


def build_processor(src_dir: Path, vocabulary: list[str], num_mel_bins: int):
    """``WhisperProcessor``: 16 kHz log-mel extractor + tokenizer with timestamp tokens."""
    from transformers import WhisperFeatureExtractor, WhisperProcessor

    tokenizer = build_tokenizer(src_dir, vocabulary)
    feature_extractor = WhisperFeatureExtractor(feature_size=num_mel_bins)
    return WhisperProcessor(feature_extractor=feature_extractor, tokenizer=tokenizer)


def build_tokenizer(src_dir: Path, vocabulary: list[str]):
    """The CTranslate2 ``tokenizer.json`` plus timestamp tokens, checked against the vocabulary."""
    from transformers import WhisperTokenizer

    spec = json.loads((src_dir / "tokenizer.json").read_text(encoding="utf-8"))
    specials = [token["content"] for token in spec["added_tokens"]]
    first_timestamp = len(spec["model"]["vocab"]) + len(spec["added_tokens"])
    spec["added_tokens"] += [
        _timestamp_token(first_timestamp + i, i) for i in range(NUM_TIMESTAMPS)
    ]
    tokenizer_config = {
        "tokenizer_class": "WhisperTokenizer",
        "bos_token": "<|endoftext|>",
        "eos_token": "<|endoftext|>",
        "unk_token": "<|endoftext|>",
        "pad_token": "<|endoftext|>",
        "extra_special_tokens": specials,  # <|endoftext|> ... <|notimestamps|>, in id order
        "model_max_length": MAX_DECODER_LENGTH,
        "add_prefix_space": False,
        "errors": "replace",
    }
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "tokenizer.json").write_text(json.dumps(spec), encoding="utf-8")
        (Path(tmp) / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
        shutil.copyfile(_normalizer_asset(), Path(tmp) / "normalizer.json")
        tokenizer = WhisperTokenizer.from_pretrained(tmp)
    _check_vocabulary(tokenizer, vocabulary)
    return tokenizer


def _timestamp_token(token_id: int, index: int) -> dict:
    content = f"<|{index * TIMESTAMP_STEP_S:.2f}|>"
    return {"id": token_id, "content": content, "single_word": False, "lstrip": False,
            "rstrip": False, "normalized": False, "special": False}  # fmt: skip


def _check_vocabulary(tokenizer, vocabulary: list[str]) -> None:
    """Every token id must name the same token as CTranslate2's ``vocabulary.txt``."""
    wrong: list[int] = []
    if len(tokenizer) == len(vocabulary):
        tokens = tokenizer.convert_ids_to_tokens(list(range(len(vocabulary))))
        wrong = [i for i, (a, b) in enumerate(zip(tokens, vocabulary, strict=True)) if a != b]
    if wrong or len(tokenizer) != len(vocabulary):
        raise ModelLoadError(
            f"tokenizer and vocabulary.txt disagree ({len(tokenizer)} vs {len(vocabulary)} "
            f"tokens, first mismatching ids {wrong[:5]})"
        )


def generation_config_from_ct2(ct2_config: dict, tokenizer):
    """Generation settings of an English-only Whisper.

    No language or task tokens and no ``forced_decoder_ids`` (deprecated; transformers
    builds the prompt ``<|startoftranscript|><|notimestamps|>`` from
    ``decoder_start_token_id`` and ``no_timestamps_token_id``); no ``lang_to_id``, which
    would make transformers run language detection.
    """
    from transformers import GenerationConfig

    ids = tokenizer.convert_tokens_to_ids
    return GenerationConfig(
        decoder_start_token_id=ids("<|startoftranscript|>"),
        bos_token_id=ids("<|startoftranscript|>"),
        eos_token_id=ids("<|endoftext|>"),
        pad_token_id=ids("<|endoftext|>"),
        no_timestamps_token_id=ids("<|notimestamps|>"),
        prev_sot_token_id=ids("<|startofprev|>"),
        suppress_tokens=list(ct2_config["suppress_ids"]),
        begin_suppress_tokens=list(ct2_config["suppress_ids_begin"]),
        alignment_heads=[list(pair) for pair in ct2_config["alignment_heads"]],
        max_length=MAX_DECODER_LENGTH,
        max_initial_timestamp_index=MAX_INITIAL_TIMESTAMP_INDEX,
        return_timestamps=False,
        is_multilingual=False,
    )


def _normalizer_asset() -> Path:
    """Whisper's English spelling table, shipped with distilray."""
    return Path(str(resources.files("distilray") / "assets" / "english_normalizer.json"))
