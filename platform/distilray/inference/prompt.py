"""The decoder prompt, from one place: what generation is forced to start with.

Labelling stores ``prompt + generated + end of text`` as the pseudo-label, the
no-speech rule scores the same sequence, and both must start exactly as
``generate`` did: start of transcript, then (multilingual models) language and
task, then ``<|notimestamps|>`` unless timestamps are predicted. A language or
task stored in the generation config counts as given, as ``generate`` reads it.

Decoders report the prompt each row was actually generated from
(:attr:`distilray.inference.decoder.Decoded.prompts`, split off the output with
:func:`split_output`); :func:`prompt_ids` predicts it where no model is at hand.
"""

from __future__ import annotations

from collections.abc import Sequence

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
        language = language or getattr(generation_config, "language", None) or "en"
        task = task or getattr(generation_config, "task", None) or "transcribe"
        ids.append(language_token(generation_config, language))
        ids.append(generation_config.task_to_id[task])
    if not return_timestamps:
        ids.append(generation_config.no_timestamps_token_id)
    return ids


def full_sequence(prompt: list[int], generated: list[int], eos: int, max_new: int) -> list[int]:
    """Prompt + generated + end of text (left off when generation was cut at ``max_new``)."""
    tail = [] if len(generated) >= max_new else [eos]
    return [*prompt, *generated, *tail]


def prompt_vocabulary(generation_config) -> set[int]:
    """Ids that only ever appear in Whisper's forced decoder prompt.

    Start of transcript, language, task and ``<|notimestamps|>``: the suppress list
    keeps the model from generating any of them after the prompt.
    """
    ids = {generation_config.decoder_start_token_id}
    ids.update((getattr(generation_config, "lang_to_id", None) or {}).values())
    ids.update((getattr(generation_config, "task_to_id", None) or {}).values())
    no_ts = getattr(generation_config, "no_timestamps_token_id", None)
    if no_ts is not None:
        ids.add(no_ts)
    return {i for i in ids if i is not None}


def end_ids(generation_config) -> set[int]:
    """End-of-text and padding ids (Whisper pads with end of text)."""
    eos = generation_config.eos_token_id
    ids = set(eos) if isinstance(eos, list) else {eos}
    ids.add(generation_config.pad_token_id)
    return {i for i in ids if i is not None}


def end_of_text(generation_config) -> int:
    """The end-of-text id a finished row ends with."""
    eos = generation_config.eos_token_id
    return eos[0] if isinstance(eos, list) else eos


def split_output(
    row: Sequence[int], prompt_ids: set[int], eos_ids: set[int]
) -> tuple[list[int], list[int]]:
    """``(prompt, generated)`` of one ``generate`` output row; end of text and padding dropped.

    >>> split_output([50, 51, 7, 8, 0, 0], {50, 51}, {0})
    ([50, 51], [7, 8])
    """
    ids = list(row)
    start = 0
    while start < len(ids) and ids[start] in prompt_ids:
        start += 1
    end = len(ids)
    while end > start and ids[end - 1] in eos_ids:
        end -= 1
    return ids[:start], ids[start:end]


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


def transcript_start(prompt: Sequence[int], start_of_transcript: int) -> int:
    """Where ``<|startoftranscript|>`` sits in a decoder prompt: after a text prompt
    (``<|startofprev|>`` + text), if there is one; 0 otherwise.

    >>> transcript_start([9, 5, 6, 1, 2], 1), transcript_start([1, 2], 1)
    (3, 0)
    """
    prompt = list(prompt)
    return prompt.index(start_of_transcript) if start_of_transcript in prompt else 0
