"""Whisper's no-speech rule: a window the model thinks is silence gets no transcript.

Whisper (openai/whisper ``transcribe``) skips a 30 s window when the probability of
``<|nocaptions|>`` at the start of its transcript is above ``no_speech_threshold``
*and* the average log-probability of what it decoded is below ``logprob_threshold``:
without this, silence and near-silence come out as invented text ("you you you").
A confident hallucination passes Whisper's combined rule: tiny.en decodes digital
silence as "you" with P(no speech) 0.95 but an average log-probability of -0.38, so
``logprob_threshold=None`` (the no-speech probability alone) is offered too.
The rule is applied after decoding, to the ids decoding returned, so greedy and
speculative decoding (same ids) give the same result.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

NO_SPEECH_THRESHOLD = 0.6  # whisper's default
LOGPROB_THRESHOLD = -1.0  # whisper's default
# Digital silence: tiny.en says a confident "you" on zeros, which Whisper's combined
# rule keeps; a window whose loudest sample is below -60 dBFS holds no speech at all.
SILENT_PEAK = 1e-3


def is_digital_silence(audio, peak: float = SILENT_PEAK) -> bool:
    """Whether a window is (near-)digital silence: no sample louder than ``peak``.

    >>> import numpy as np
    >>> is_digital_silence(np.zeros(16000)), is_digital_silence(np.full(16000, 0.01))
    (True, False)
    """
    import numpy as np

    samples = np.asarray(audio)
    return samples.size == 0 or float(np.abs(samples).max()) < peak


def is_silence(
    no_speech_prob: float,
    avg_logprob: float,
    no_speech_threshold: float = NO_SPEECH_THRESHOLD,
    logprob_threshold: float | None = LOGPROB_THRESHOLD,
) -> bool:
    """Whisper's test for a silent window; ``logprob_threshold=None``: the no-speech
    probability alone decides.

    >>> is_silence(0.9, -1.5), is_silence(0.9, -0.2), is_silence(0.3, -1.5)
    (True, False, False)
    >>> is_silence(0.9, -0.2, logprob_threshold=None)
    True
    """
    if no_speech_prob <= no_speech_threshold:
        return False
    return logprob_threshold is None or avg_logprob < logprob_threshold


def window_scores(
    model,
    features: torch.Tensor | None,
    generated: Sequence[Sequence[int]],
    *,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    encoded: torch.Tensor | None = None,
) -> list[tuple[float, float]]:
    """``(avg_logprob, no_speech_prob)`` of each decoded window: one encoder and one
    teacher-forced decoder pass over ``prompt + generated (+ end of text)`` per row of
    ``features`` (``prompts[i]``: the decoder prompt row ``i`` was generated from, a
    text prompt included; the no-speech probability is read at its start of transcript).
    ``encoded``, the encoder's output for those rows when the caller has it, skips the
    encoder pass (``features`` may then be None)."""
    from distilray.inference.confidence import no_speech_token_id, sequence_scores
    from distilray.inference.prompt import end_of_text, full_sequence, transcript_start
    from distilray.inference.speculative import encode

    config = model.generation_config
    eos = end_of_text(config)
    if encoded is None:
        with torch.inference_mode():
            encoded = encode(model, features)
    # Generation stops at max_new_tokens or at the last decoder position, whichever
    # comes first (a long text prompt leaves fewer): no end of text after a cut row.
    positions = model.config.max_target_positions
    sequences = [
        full_sequence(list(prompt), list(row), eos, min(max_new_tokens, positions - len(prompt)))
        for prompt, row in zip(prompts, generated, strict=True)
    ]
    return sequence_scores(
        model,
        encoded,
        sequences,
        [len(prompt) for prompt in prompts],
        suppress_tokens=list(config.suppress_tokens or []),
        no_speech_id=no_speech_token_id(config),
        start_positions=[transcript_start(p, config.decoder_start_token_id) for p in prompts],
    )


def silent_windows(
    model,
    features: torch.Tensor,
    generated: Sequence[Sequence[int]],
    *,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    no_speech_threshold: float = NO_SPEECH_THRESHOLD,
    logprob_threshold: float | None = LOGPROB_THRESHOLD,
) -> list[bool]:
    """Which of the decoded windows are silence (:func:`window_scores`, then
    :func:`is_silence`)."""
    scores = window_scores(
        model, features, generated, prompts=prompts, max_new_tokens=max_new_tokens
    )
    return [
        is_silence(no_speech, logprob, no_speech_threshold, logprob_threshold)
        for logprob, no_speech in scores
    ]
