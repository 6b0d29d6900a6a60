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
