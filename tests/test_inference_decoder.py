"""The one decoder interface: speculative sequential long-form equals the teacher's, and
word timestamps on teacher and student."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from distilray.audio import decode_audio


@pytest.fixture(scope="module")
def models(tiny_en):
    from distilray.models import load_whisper
    from distilray.student import build_student

    teacher, processor = load_whisper(tiny_en)
    return teacher, processor, build_student(teacher, [0, 3])


@pytest.fixture(scope="module")
def clips(synth_clips):
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()]
    return [decode_audio(synth_clips.parent / r["audio"]) for r in rows]


def test_speculative_sequential_equals_teacher_on_multi_window_audio(models, clips):
    from distilray.inference.engine import Transcriber

    teacher, processor, student = models
    audio = np.concatenate(clips * 2)[: 35 * 16000]  # two windows at least
    assert len(audio) > 30 * 16000
    torch.manual_seed(0)
    [alone] = Transcriber(teacher, processor).transcribe(
        [audio], long_form="sequential", return_timestamps=True
    )
    torch.manual_seed(0)
    [drafted] = Transcriber(teacher, processor, student).transcribe(
        [audio], long_form="sequential", return_timestamps=True
    )
    assert drafted.token_ids == alone.token_ids
    assert drafted.segments == alone.segments
    assert drafted.segments[-1].end > 30
    assert drafted.speculative is not None and drafted.speculative.accepted > 0


def test_sequential_fallback_sampling_is_seeded_per_recording(models, clips):
    """Sampled fallback windows give a recording the same transcript in every run and
    batch, with or without an assistant: the speculative run is still the teacher's."""
    from dataclasses import replace

    from distilray.inference.engine import Transcriber
    from distilray.inference.longform import SequentialOptions

    teacher, processor, student = models
    audio = np.concatenate(clips * 2)[: 35 * 16000]  # two windows
    other = np.concatenate(clips[::-1])[: 8 * 16000]  # batched with it, decoded apart
    # every window's text "compresses" above 0.5: each one is sampled again at T = 1
    options = SequentialOptions(temperatures=(0.0, 1.0), compression_ratio_threshold=0.5)

    def run(sequential, audios, assistant=None):
        transcriber = Transcriber(teacher, processor, assistant, sequential=sequential)
        return transcriber.transcribe(audios, long_form="sequential", return_timestamps=True)

    torch.manual_seed(1)
    [alone] = run(options, [audio])
    torch.manual_seed(2)
    [_, batched] = run(options, [other, audio])
    torch.manual_seed(3)
    [drafted] = run(options, [audio], student)
    assert batched.token_ids == alone.token_ids
    assert drafted.token_ids == alone.token_ids and drafted.segments == alone.segments
    [reseeded] = run(replace(options, seed=1), [audio])
    assert reseeded.token_ids != alone.token_ids  # the windows really were sampled


def test_student_alignment_heads_exist_in_its_decoder(models):
    from distilray.inference.words import has_alignment_heads

    teacher, _, student = models
    assert has_alignment_heads(teacher) and has_alignment_heads(student)
    # tiny.en heads in teacher layer 3 become student layer 1 (built from layers 0 and 3)
    assert student.generation_config.alignment_heads == [[1, h] for h in range(5)]


def test_word_timestamps_teacher_and_student(models, clips):
    from distilray.inference.engine import Transcriber

    teacher, processor, student = models
    clip = clips[0]
    duration = len(clip) / 16000
    timed = {}
    for name, model in (("teacher", teacher), ("student", student)):
        [result] = Transcriber(model, processor).transcribe([clip], word_timestamps=True)
        words = result.words
        assert words, name
        assert "".join(w.word for w in words).strip() == result.text
        starts = [w.start for w in words]
        assert starts == sorted(starts)
        assert all(0 <= w.start <= w.end <= duration + 1e-6 for w in words)
        timed[name] = words
    if [w.word for w in timed["teacher"]] == [w.word for w in timed["student"]]:
        gaps = [
            abs(a.start - b.start) for a, b in zip(timed["teacher"], timed["student"], strict=True)
        ]
        assert np.mean(gaps) < 0.5


def test_fallback_resamples_looping_rows_only_and_repeatably(models, clips):
    from distilray.features import log_mel
    from distilray.inference.confidence import compression_ratio
    from distilray.inference.decoder import DecodeOptions, Fallback, GreedyDecoder

    _, processor, student = models  # the untrained student loops on most clips
    features = log_mel(processor.feature_extractor, clips[:6])
    decoder = GreedyDecoder(student, processor, max_new_tokens=60)
    greedy = decoder.decode(features)
    texts = processor.batch_decode(greedy.ids, skip_special_tokens=True)
    loops = [i for i, t in enumerate(texts) if compression_ratio(t) > 2.4]
    assert loops and len(loops) < len(texts)  # both kinds of row in the batch
    options = DecodeOptions(fallback=Fallback(logprob_threshold=None))
    first = decoder.decode(features, options=options)
    for i in range(len(texts)):
        assert (first.ids[i] == greedy.ids[i]) == (i not in loops), i
    assert decoder.decode(features, options=options).ids == first.ids  # seeded


def test_a_fallback_sample_does_not_depend_on_its_batch(models, clips):
    """A window sampled by the fallback gets the same text alone, in a batch, and in the
    batch reversed: a served request does not change with the traffic batched beside
    it, and an evaluation's teacher and speculative runs sample alike."""
    from distilray.features import log_mel
    from distilray.inference.decoder import DecodeOptions, Fallback, GreedyDecoder

    teacher, processor, _ = models
    features = torch.from_numpy(log_mel(processor.feature_extractor, clips[:4]))
    decoder = GreedyDecoder(teacher, processor, max_new_tokens=30)
    # thresholds every greedy row fails, so that each one is sampled up the ladder
    options = DecodeOptions(fallback=Fallback((0.5, 1.0), 0.1, 0.0))
    batched = decoder.decode(features, options=options).ids
    backwards = decoder.decode(features.flip(0), options=options).ids[::-1]
    alone = [decoder.decode(features[i : i + 1], options=options).ids[0] for i in range(4)]
    assert batched == alone == backwards
    assert batched != decoder.decode(features).ids  # the rows really were sampled


def test_speculative_fallback_equals_the_teachers(models, clips):
    from distilray.features import log_mel
    from distilray.inference.decoder import (
        DecodeOptions,
        Fallback,
        GreedyDecoder,
        SpeculativeDecoder,
    )

    teacher, processor, student = models
    features = log_mel(processor.feature_extractor, clips[:4])
    # thresholds every greedy row fails, so that each one is sampled up the ladder
    options = DecodeOptions(fallback=Fallback((0.5, 1.0), 0.1, 0.0))
    alone = GreedyDecoder(teacher, processor, max_new_tokens=40).decode(features, options=options)
    drafted = SpeculativeDecoder(teacher, student, processor, max_new_tokens=40).decode(
        features, options=options
    )
    greedy = GreedyDecoder(teacher, processor, max_new_tokens=40).decode(features)
    assert drafted.ids == alone.ids and alone.ids != greedy.ids


def test_a_fallback_ladder_encodes_the_batch_once(models, clips):
    """Greedy pass, scores and every sampled temperature share one encoder pass."""
    from distilray.features import log_mel
    from distilray.inference.decoder import DecodeOptions, Fallback, GreedyDecoder

    teacher, processor, _ = models
    features = log_mel(processor.feature_extractor, clips[:2])
    calls = []
    hook = teacher.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        for logprob in (None, 0.0):  # compression ratio alone, then with the log-prob test
            calls.clear()
            rule = Fallback((0.5, 1.0), compression_ratio_threshold=0.1, logprob_threshold=logprob)
            GreedyDecoder(teacher, processor, max_new_tokens=8).decode(
                features, options=DecodeOptions(fallback=rule)
            )
            assert len(calls) == 1, logprob  # every row failed up the whole ladder
    finally:
        hook.remove()


def test_a_scored_transcription_encodes_each_batch_once(models, clips):
    """Serving's rules (no-speech test, fallback) and the windows' scores, greedy or
    speculative: one encoder pass per batch serves decoding, fallback and scores."""
    from distilray.inference.decoder import DecodeOptions, Fallback
    from distilray.inference.engine import Transcriber

    teacher, processor, student = models
    calls = []
    hook = teacher.model.encoder.register_forward_hook(lambda *_: calls.append(1))
    try:
        for assistant in (None, student):
            calls.clear()
            transcriber = Transcriber(
                teacher,
                processor,
                assistant,
                max_new_tokens=8,
                batch_size=2,
                no_speech_threshold=0.6,
                fallback=Fallback(),
            )
            results = transcriber.transcribe(clips[:4], options=DecodeOptions(scores=True))
            assert all(r.windows for r in results)  # each clip's window was scored
            assert len(calls) == 2, assistant is not None  # two batches of two clips
    finally:
        hook.remove()


def test_fallback_temperatures_are_checked():
    from distilray.errors import DistilrayError
    from distilray.inference.decoder import Fallback

    for bad in ((), (0.0, 0.5), (1.5,)):
        with pytest.raises(DistilrayError, match="fallback temperatures"):
            Fallback(bad)


def test_transcriber_applies_its_fallback_unless_the_call_sets_one(models, clips):
    from distilray.inference.confidence import compression_ratio
    from distilray.inference.decoder import DecodeOptions, Fallback
    from distilray.inference.engine import Transcriber

    _, processor, student = models
    plain = Transcriber(student, processor, max_new_tokens=60)
    looping = [
        c
        for c, r in zip(clips[:6], plain.transcribe(clips[:6]), strict=True)
        if compression_ratio(r.text) > 2.4
    ]
    assert looping
    rule = Fallback(logprob_threshold=None)
    ruled = Transcriber(student, processor, max_new_tokens=60, fallback=rule)
    [before] = plain.transcribe(looping[:1])
    [after] = ruled.transcribe(looping[:1])
    assert after.token_ids != before.token_ids
    # a call's own rule wins: a ladder nothing fails leaves the greedy text
    never = DecodeOptions(fallback=Fallback((0.5,), None, None))
    [kept] = ruled.transcribe(looping[:1], options=never)
    assert kept.token_ids == before.token_ids
