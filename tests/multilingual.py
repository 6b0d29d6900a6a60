"""A tiny random *multilingual* Whisper for tests: the tiny random model with the
language and task tokens of the tiny.en vocabulary switched on in its generation config."""

from __future__ import annotations

import json
from pathlib import Path

LANGUAGES = ("en", "de", "fr", "es")  # enough to test language choice and detection


def make_multilingual(model_dir: Path) -> Path:
    """Turn the saved tiny random Whisper in ``model_dir`` multilingual, in place."""
    from transformers import WhisperTokenizer

    tokenizer = WhisperTokenizer.from_pretrained(model_dir)
    path = model_dir / "generation_config.json"
    config = json.loads(path.read_text())
    config["is_multilingual"] = True
    config["lang_to_id"] = {
        f"<|{code}|>": tokenizer.convert_tokens_to_ids(f"<|{code}|>") for code in LANGUAGES
    }
    config["task_to_id"] = {
        task: tokenizer.convert_tokens_to_ids(f"<|{task}|>") for task in ("transcribe", "translate")
    }
    path.write_text(json.dumps(config, indent=2))
    return model_dir
