"""The decoder prompt, from one place: what generation is forced to start with.

Labelling stores ``prompt + generated + end of text`` as the pseudo-label, the
no-speech rule scores the same sequence, and both must start exactly as
``generate`` did: start of transcript, then (multilingual models) language and
task, then ``<|notimestamps|>`` unless timestamps are predicted.
"""

from __future__ import annotations

from distilray.errors import ConfigError


def language_token(generation_config, language: str) -> int:
    """Id of ``<|xx|>`` for a language given as a code (``en``) or name (``english``)."""
    from transformers.models.whisper.tokenization_whisper import TO_LANGUAGE_CODE

    code = language.strip().strip("<|>").lower()
    code = TO_LANGUAGE_CODE.get(code, code)
    lang_to_id = getattr(generation_config, "lang_to_id", None) or {}
    if f"<|{code}|>" not in lang_to_id:
        raise ConfigError(f"language {language!r} is not one of the teacher's languages")
    return lang_to_id[f"<|{code}|>"]


def prompt_ids(
    generation_config, language: str | None, task: str | None, return_timestamps: bool
) -> list[int]:
    """The forced decoder prompt ``generate`` starts from (and the labels start with)."""
    ids = [generation_config.decoder_start_token_id]
    if getattr(generation_config, "is_multilingual", False):
        ids.append(language_token(generation_config, language or "en"))
        ids.append(generation_config.task_to_id[task or "transcribe"])
    if not return_timestamps:
        ids.append(generation_config.no_timestamps_token_id)
    return ids


def full_sequence(prompt: list[int], generated: list[int], eos: int, max_new: int) -> list[int]:
    """Prompt + generated + end of text (left off when generation was cut at ``max_new``)."""
    tail = [] if len(generated) >= max_new else [eos]
    return [*prompt, *generated, *tail]
