"""Turn a model reference into a local folder, and load a Whisper from it.

A reference is one of:

* ``tiny.en``: the embedded teacher (converted once from the bundled CTranslate2 model);
* an existing local folder holding ``config.json`` (a ``save_pretrained`` output);
* ``s3://bucket/prefix``: downloaded once into the model cache, keyed by the URI;
* anything else: a Hugging Face Hub id (``org/name``), fetched with ``snapshot_download``
  into the Hub's own cache (honours ``HF_HUB_OFFLINE``); ``org/name@revision`` pins a
  branch, tag or commit (the ``revision`` of ``from_pretrained``).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
from pathlib import Path
from typing import Literal

from distilray import storage
from distilray.errors import DataError, ModelLoadError
from distilray.models.cache import build_once, models_cache
from distilray.models.teacher import EMBEDDED_TEACHER, ensure_teacher

logger = logging.getLogger(__name__)

# Files a model folder needs; weights are only ever read from safetensors.
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt"]
HUB_ETAG_TIMEOUT_S = 10.0  # fail fast when the Hub is unreachable


RefKind = Literal["embedded", "s3", "folder", "hub"]


def reference_kind(ref: str | os.PathLike) -> tuple[RefKind, str]:
    """What ``ref`` names (see the module docstring), and its text stripped of blanks."""
    text = str(ref).strip()
    if not text:
        raise ModelLoadError("empty model reference: give tiny.en, a folder, s3://... or a hub id")
    if text == EMBEDDED_TEACHER:
        return "embedded", text
    if storage.is_s3(text):
        return "s3", text
    if Path(text).expanduser().exists() or _looks_like_path(split_revision(text)[0]):
        return "folder", text
    return "hub", text


def split_revision(repo: str) -> tuple[str, str | None]:
    """A hub reference as ``(repo id, revision)``; the revision is None when not pinned.

    >>> split_revision("openai/whisper-large-v3@refs/pr/1"), split_revision("openai/whisper-tiny")
    (('openai/whisper-large-v3', 'refs/pr/1'), ('openai/whisper-tiny', None))
    """
    repo_id, sep, revision = repo.partition("@")
    if sep and not (repo_id and revision):
        raise ModelLoadError(
            f"model reference {repo!r}: write a pinned hub model as org/name@revision "
            "(a branch, tag or commit)"
        )
    return repo_id, revision or None


def resolve_model(ref: str | os.PathLike) -> Path:
    """A local folder holding the model named by ``ref`` (see the module docstring)."""
    kind, text = reference_kind(ref)
    if kind == "embedded":
        return ensure_teacher()
    if kind == "s3":
        return _from_s3(text)
    if kind == "folder":
        return _check_folder(Path(text).expanduser(), text)
    return _from_hub(text)


def check_model_ref(ref: str | os.PathLike) -> None:
    """Fail fast, on the driver, when ``ref`` cannot name a model; download no weights.

    Local folders and ``s3://`` URIs must hold a ``config.json``; a hub id must have
    one on the Hub. The embedded ``tiny.en`` is always there (built on first load).
    """
    kind, text = reference_kind(ref)
    if kind == "s3":
        try:
            found = storage.exists(f"{text.rstrip('/')}/config.json")
        except (DataError, OSError) as exc:
            raise ModelLoadError(f"cannot read model {text}: {exc}") from None
        if not found:
            raise ModelLoadError(f"{text} is not a model folder: it holds no config.json")
    elif kind == "folder":
        _check_folder(Path(text).expanduser(), text)
    elif kind == "hub":
        from huggingface_hub import hf_hub_download

        repo_id, revision = split_revision(text)
        with _hub_errors(text):
            hf_hub_download(
                repo_id, "config.json", revision=revision, etag_timeout=HUB_ETAG_TIMEOUT_S
            )


@contextlib.contextmanager
def _hub_errors(repo_id: str):
    """Turn a failed Hub download into one clear :class:`ModelLoadError`."""
    from huggingface_hub.errors import HfHubHTTPError

    try:
        yield
    except (OSError, ValueError, HfHubHTTPError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelLoadError(
            f"{repo_id!r} is not a local folder, s3:// URI or tiny.en, and fetching it from "
            f"the Hugging Face Hub failed ({type(exc).__name__}: {reason})"
        ) from None


def _looks_like_path(text: str) -> bool:
    """Paths that can never be hub ids: absolute, ``./``, ``~``, or more than one slash."""
    return text.startswith((".", "/", "~")) or text.count("/") > 1 or "\\" in text


def _check_folder(path: Path, ref: str) -> Path:
    if not path.is_dir():
        raise ModelLoadError(f"model folder {ref!r} does not exist")
    if not (path / "config.json").is_file():
        raise ModelLoadError(f"{ref!r} is not a model folder: it holds no config.json")
    return path.resolve()


def s3_cache_dir(uri: str) -> Path:
    """Cache folder for an ``s3://`` model: readable name plus a hash of the full URI."""
    digest = hashlib.sha256(uri.rstrip("/").encode()).hexdigest()[:16]
    name = uri.rstrip("/").rsplit("/", 1)[-1] or "model"
    return models_cache() / "s3" / f"{name}-{digest}"


def _from_s3(uri: str) -> Path:
    def download(tmp: Path) -> None:
        logger.info("downloading %s", uri)
        try:
            storage.copy_tree(uri, tmp)
        except (DataError, OSError) as exc:
            raise ModelLoadError(f"cannot download model {uri}: {exc}") from None
        if not (tmp / "config.json").is_file():
            raise ModelLoadError(f"{uri} is not a model folder: it holds no config.json")

    return build_once(s3_cache_dir(uri), download)


def _from_hub(ref: str) -> Path:
    """The snapshot of ``org/name[@revision]`` in the Hub cache (downloaded if missing)."""
    from huggingface_hub import snapshot_download

    repo_id, revision = split_revision(ref)
    with _hub_errors(ref):
        folder = snapshot_download(
            repo_id,
            revision=revision,
            allow_patterns=HUB_PATTERNS,
            etag_timeout=HUB_ETAG_TIMEOUT_S,
        )
    return _check_folder(Path(folder), ref)


DTYPES = ("float32", "float16", "bfloat16")


def load_whisper(ref: str | os.PathLike, device="cpu", dtype=None, attn_implementation=None):
    """``(WhisperForConditionalGeneration, WhisperProcessor)`` for ``ref``, in eval mode.

    Weights are read only from safetensors; the generation config comes from the
    folder. ``dtype`` is a ``torch.dtype`` or one of ``float32``/``float16``/``bfloat16``
    (default: as saved); ``attn_implementation`` e.g. ``"sdpa"`` or ``"eager"``.
    """
    from transformers import WhisperForConditionalGeneration, WhisperProcessor

    from distilray.models.upstream_logs import quiet_model_io, quiet_whisper_generate

    quiet_whisper_generate()
    quiet_model_io()
    folder = resolve_model(ref)
    kwargs: dict = {"use_safetensors": True}
    if dtype is not None:
        kwargs["dtype"] = _torch_dtype(dtype)
    if attn_implementation:
        kwargs["attn_implementation"] = attn_implementation
    target = _torch_device(device)
    try:
        model = WhisperForConditionalGeneration.from_pretrained(folder, **kwargs)
        processor = WhisperProcessor.from_pretrained(folder)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(f"cannot load a Whisper model from {ref}: {exc}") from None
    model.to(target).eval()
    logger.info("loaded %s (%s, %s)", ref, target, next(model.parameters()).dtype)
    return model, processor


def _torch_dtype(dtype):
    import torch

    if isinstance(dtype, torch.dtype):
        return dtype
    if str(dtype) not in DTYPES:
        raise ModelLoadError(f"unknown dtype {dtype!r}: use one of {', '.join(DTYPES)}")
    return getattr(torch, str(dtype))


def _torch_device(device):
    import torch

    try:
        target = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ModelLoadError(f"invalid device {device!r}: {exc}") from None
    if target.type == "cuda" and not torch.cuda.is_available():
        raise ModelLoadError(f"device {device!r} requested but no CUDA device is available")
    return target
