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


# Whisper keeps at most the last n_text_ctx // 2 - 1 prompt tokens (openai/whisper
# decoding.py): half of the 448 decoder positions stay free for the transcript.
MAX_PROMPT_TOKENS = 448 // 2 - 1  # 223 text tokens after <|startofprev|>


def text_prompt_ids(tokenizer, text: str, max_tokens: int = MAX_PROMPT_TOKENS) -> tuple[int, ...]:
    """``<|startofprev|>`` + the last ``max_tokens`` tokens of ``text``: Whisper's initial
    prompt (OpenAI's ``prompt`` field), as ``generate(prompt_ids=...)`` takes it.

    Empty text gives no prompt. Text that spells a special token (``<|en|>``) is
    encoded as plain text, never as the special token.
    """
    if not text.strip():
        return ()
    start_of_prev = tokenizer.convert_tokens_to_ids("<|startofprev|>")
    ids = tokenizer.encode(" " + text.strip(), add_special_tokens=False, split_special_tokens=True)
    return (start_of_prev, *ids[-max_tokens:])
