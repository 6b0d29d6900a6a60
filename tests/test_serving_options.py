"""Request options through the engine, in-process: prompt, temperature, window scores,
word timings and the streamed merge (tiny random models, no Ray)."""

from __future__ import annotations

import numpy as np
import pytest

from distilray.audio import SAMPLING_RATE
from distilray.inference.engine import DecodeOptions, Transcriber
from distilray.inference.prompt import MAX_PROMPT_TOKENS, text_prompt_ids
from distilray.serving.model import DecodeRequest, to_transcript, words_unavailable
from distilray.serving.streaming import StreamedMerge


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SAMPLING_RATE))).astype(np.float32)


@pytest.fixture(scope="module")
def models(tiny_random, tmp_path_factory):
    """Teacher (4 decoder layers) and a 2-layer random assistant of the same width."""
    from distilray.models import load_whisper
    from distilray.models.testing import make_tiny_random_whisper

    small = make_tiny_random_whisper(tmp_path_factory.mktemp("assistant"), decoder_layers=2, seed=1)
    teacher, processor = load_whisper(tiny_random)
    assistant = load_whisper(small)[0]
    return teacher, processor, assistant


def _engine(models, assistant: bool, **kwargs) -> Transcriber:
    teacher, processor, student = models
    kwargs.setdefault("max_new_tokens", 24)
    return Transcriber(teacher, processor, student if assistant else None, **kwargs)


def test_prompt_ids_are_whispers_initial_prompt(models):
    tokenizer = models[1].tokenizer
    ids = text_prompt_ids(tokenizer, "Hello <|en|> world")
    assert ids[0] == tokenizer.convert_tokens_to_ids("<|startofprev|>")
    assert max(ids[1:]) < tokenizer.convert_tokens_to_ids("<|endoftext|>")  # no special token
    assert text_prompt_ids(tokenizer, "   ") == ()
    assert len(text_prompt_ids(tokenizer, "word " * 1000)) == MAX_PROMPT_TOKENS + 1


@pytest.mark.parametrize("timestamps", [False, True])
def test_prompt_conditions_teacher_and_speculative_alike(models, timestamps):
    clips = [_noise(3.0, 0), _noise(2.0, 1)]
    prompt = text_prompt_ids(models[1].tokenizer, "Glossary: Kubernetes, Ray Serve, Whisper.")
    options = DecodeOptions(prompt_ids=prompt)
    plain = _engine(models, False).transcribe(clips, return_timestamps=timestamps)
    greedy = _engine(models, False).transcribe(clips, return_timestamps=timestamps, options=options)
    spec = _engine(models, True).transcribe(clips, return_timestamps=timestamps, options=options)
    assert [r.token_ids for r in spec] == [r.token_ids for r in greedy]
    assert [r.segments for r in spec] == [r.segments for r in greedy]
    assert [r.token_ids for r in greedy] != [r.token_ids for r in plain]  # the prompt counts


def test_temperature_samples_with_the_teacher_alone(models):
    clip = [_noise(3.0)]
    greedy = _engine(models, True).transcribe(clip)[0]
    sampled = _engine(models, True).transcribe(clip, options=DecodeOptions(temperature=1.0))[0]
    assert greedy.speculative is not None and sampled.speculative is None
    assert sampled.token_ids != greedy.token_ids


def test_window_scores_become_segment_fields(models):
    engine = _engine(models, True, no_speech_threshold=None)
    result = engine.transcribe(
        [_noise(3.0)], return_timestamps=True, options=DecodeOptions(scores=True)
    )[0]
    assert len(result.windows) == 1
    window = result.windows[0]
    assert window.avg_logprob < 0 and 0 <= window.no_speech_prob <= 1
    assert window.compression_ratio > 0
    transcript = to_transcript(result, {}, DecodeRequest(timestamps=True, scores=True))
    assert transcript.segments and transcript.language == "english"
    for segment in transcript.segments:
        assert segment.avg_logprob == window.avg_logprob and segment.tokens


def test_long_audio_has_one_score_per_window(models):
    engine = _engine(models, False, no_speech_threshold=None)
    result = engine.transcribe(
        [_noise(65.0)], return_timestamps=True, options=DecodeOptions(scores=True)
    )[0]
    assert result.form == "chunked" and len(result.windows) == 3
    spans = [(w.start_s, w.end_s) for w in result.windows]
    assert spans[0][0] == 0 and spans[-1][1] == pytest.approx(65.0)
    assert all(a[1] == pytest.approx(b[0]) for a, b in zip(spans, spans[1:], strict=False))


def test_streamed_deltas_add_up_to_the_transcript(models):
    engine = _engine(models, False)
    audio = _noise(75.0, 3)
    expected = engine.transcribe([audio])[0].text
    from distilray.inference.longform import split_windows

    windows, owners = split_windows([audio], engine.chunk_length_s, engine.stride_s)
    merge = StreamedMerge(engine, [span for _, span in owners])
    deltas = []
    for i, window in enumerate(windows):
        ids = engine.decode_clips([window], False).ids
        deltas.append(merge.add(ids, final=i == len(windows) - 1))
    assert "".join(deltas) == expected == merge.text
    assert deltas[0] == "" and any(deltas[:-1])  # text settled before the last window


@pytest.mark.parametrize("assistant", [False, True])
def test_word_timings_cover_the_segments(models, assistant):
    engine = _engine(models, assistant)
    audio = _noise(4.0)
    assert words_unavailable(engine.teacher) is None
    result = engine.transcribe([audio], word_timestamps=True)[0]
    request = DecodeRequest(timestamps=True, words=True)
    transcript = to_transcript(result, {}, request)
    words = transcript.words
    assert words and len(words) == len(result.words)
    assert " ".join(w.word for w in words) == " ".join(s.text for s in transcript.segments)
    assert all(0 <= w.start <= w.end <= transcript.duration_s for w in words)
    assert [w.start for w in words] == sorted(w.start for w in words)
    assert all(w.word == w.word.strip() and w.word for w in words)  # OpenAI's words


def test_alignment_heads_must_exist(models):
    teacher = models[0]
    saved = teacher.generation_config.alignment_heads
    try:
        teacher.generation_config.alignment_heads = [[9, 0]]
        assert "does not have" in words_unavailable(teacher)
        teacher.generation_config.alignment_heads = None
        assert "no alignment_heads" in words_unavailable(teacher)
    finally:
        teacher.generation_config.alignment_heads = saved


def test_options_are_checked_once_by_the_decoder(models):
    from distilray.errors import DistilrayError

    engine = _engine(models, True)
    assert not getattr(engine.teacher.generation_config, "is_multilingual", False)
    clip = [_noise(1.0)]
    for options, message in [
        (DecodeOptions(task="summarise"), "task must be"),
        (DecodeOptions(language="de"), "English-only"),
        (DecodeOptions(task="translate"), "cannot translate"),
        (DecodeOptions(temperature=-1.0), "temperature"),
        (DecodeOptions(prompt_ids=(1, 2)), "startofprev"),
    ]:
        with pytest.raises(DistilrayError, match=message):
            engine.transcribe(clip, options=options)
    prompt = text_prompt_ids(models[1].tokenizer, "Ray Serve")
    with pytest.raises(DistilrayError, match="sequential"):
        engine.transcribe(
            [_noise(31.0)], long_form="sequential", options=DecodeOptions(prompt_ids=prompt)
        )
    # English by code or name is what an English-only model decodes anyway.
    english = engine.transcribe(clip, options=DecodeOptions(language="english", task="transcribe"))
    assert english[0].token_ids == engine.transcribe(clip)[0].token_ids
