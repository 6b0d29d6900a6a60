"""Whisper folders in CTranslate2's format, made with CTranslate2's own converter.

Two users: ``distilray export --format ct2`` turns a student (or any transformers
Whisper) into a folder that ``faster_whisper.WhisperModel(DIR)`` loads, and the
``ctranslate2`` labelling/transcription engine converts its teacher once into the
model cache (:func:`cached_ct2_model`), as the embedded tiny.en is converted once.

A CTranslate2 Whisper folder holds ``model.bin`` (weights at ``quantization``),
``config.json`` (suppressed tokens, alignment heads), ``vocabulary.json``, and the
two files faster-whisper reads besides: ``tokenizer.json`` (without it faster-whisper
fetches the tokenizer from the Hub) and ``preprocessor_config.json`` (mel bins, hop).
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

from distilray.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)

# What the weights are stored as; CTranslate2 can still compute in another type at load.
QUANTIZATIONS = ("float32", "int8", "int8_float16", "float16", "bfloat16", "int8_float32")
CT2_WEIGHTS = "model.bin"
FEATURE_CONFIG = "preprocessor_config.json"  # faster-whisper's FeatureExtractor settings
TOKENIZER = "tokenizer.json"
CT2_SUBFOLDER = "ct2"  # distill's run.export_ct2 writes <student>/ct2
CACHE_FOLDER = "ct2"  # under the model cache: <cache>/models/ct2/<content digest>
HASH_BLOCK = 2**22  # bytes read at a time while hashing weights


def require_ctranslate2():
    """The ``ctranslate2`` module, or a clear error naming the extra that installs it."""
    try:
        import ctranslate2
    except ImportError:
        raise ModelLoadError(
            "the CTranslate2 engine needs the 'ctranslate2' package: pip install 'distilray[ct2]'"
        ) from None
    return ctranslate2


def is_ct2_folder(path: str | Path) -> bool:
    """Whether ``path`` already holds a converted CTranslate2 model."""
    return (Path(path) / CT2_WEIGHTS).is_file()


def export_ct2(
    model: str | Path, out_dir: str | Path, quantization: str = "float32", *, force: bool = False
) -> Path:
    """Convert the transformers Whisper named by ``model`` into a CTranslate2 folder.

    ``model`` is any reference :func:`~distilray.models.resolve.resolve_model` takes
    (a student folder, ``s3://``, a hub id, ``tiny.en``). ``out_dir`` must not hold
    files unless ``force``; it is written through a temporary sibling, so an
    interrupted export never leaves a half-written folder behind.
    """
    if quantization not in QUANTIZATIONS:
        raise ConfigError(
            f"unknown quantization {quantization!r}: use one of {', '.join(QUANTIZATIONS)}"
        )
    from distilray.models.resolve import resolve_model
    from distilray.storage import build_folder, check_new_folder

    out = check_new_folder(out_dir, force)
    source = resolve_model(model)
    build_folder(out, lambda folder: convert_folder(source, folder, quantization))
    logger.info("exported %s as CTranslate2 (%s) to %s", model, quantization, out)
    return out


def export_ct2_inside(model_uri: str, quantization: str) -> str:
    """Export the model folder at ``model_uri`` (local or ``s3://``) into ``<model_uri>/ct2``.

    What ``distill`` does with ``run.export_ct2``: the student folder then holds its
    faster-whisper copy, ``faster_whisper.WhisperModel("<student>/ct2")``.
    """
    from distilray import storage

    target = f"{model_uri.rstrip('/')}/{CT2_SUBFOLDER}"
    if not storage.is_s3(model_uri):
        return str(export_ct2(model_uri, target, quantization, force=True))
    with tempfile.TemporaryDirectory() as tmp:
        # this run's folder, not a cached download of an earlier model at the same URI
        storage.copy_tree(model_uri, Path(tmp) / "model")
        storage.copy_tree(export_ct2(Path(tmp) / "model", Path(tmp) / "ct2", quantization), target)
    return target


def convert_folder(source: Path, out: Path, quantization: str) -> Path:
    """CTranslate2's ``TransformersConverter`` on a local transformers folder, plus the
    tokenizer and feature-extractor files faster-whisper reads."""
    require_ctranslate2()
    from ctranslate2.converters import TransformersConverter
    from transformers import WhisperFeatureExtractor

    from distilray.models.upstream_logs import quiet_model_io

    quiet_model_io()  # the converter loads the model with transformers: no bar per process
    if not (source / TOKENIZER).is_file():
        raise ModelLoadError(f"{source} holds no {TOKENIZER}: save the model with its processor")
    converter = TransformersConverter(str(source), copy_files=[TOKENIZER])
    try:
        converter.convert(str(out), quantization=quantization, force=True)
    except (ValueError, OSError, KeyError) as exc:
        raise ModelLoadError(f"CTranslate2 cannot convert {source}: {exc}") from None
    WhisperFeatureExtractor.from_pretrained(source).to_json_file(str(out / FEATURE_CONFIG))
    return out


def cached_ct2_model(model: str | Path) -> Path:
    """The CTranslate2 copy of ``model`` (float32 weights), converted once per machine.

    A folder that is already a CTranslate2 model is used as it is. Otherwise the cache
    key is a hash of the transformers folder's weights and configuration files, so a
    retrained student in the same folder is converted again, and the same model in
    two folders is converted once. CTranslate2 quantizes float32 weights to any
    compute type when it loads them, so one copy serves every ``compute_type``.
    """
    from distilray.models.cache import build_once, models_cache
    from distilray.models.resolve import reference_kind, resolve_model

    kind, text = reference_kind(model)
    if kind == "folder" and is_ct2_folder(Path(text).expanduser()):
        return Path(text).expanduser().resolve()
    source = resolve_model(model)
    target = models_cache() / CACHE_FOLDER / content_digest(source)
    return build_once(target, lambda tmp: convert_folder(source, tmp, "float32"))


def content_digest(folder: Path) -> str:
    """A short hash of the folder's weights and JSON files (names and bytes)."""
    digest = hashlib.sha256()
    for path in sorted([*folder.glob("*.safetensors"), *folder.glob("*.json")]):
        digest.update(path.name.encode() + b"\0")
        with open(path, "rb") as handle:
            while block := handle.read(HASH_BLOCK):
                digest.update(block)
    return digest.hexdigest()[:16]
