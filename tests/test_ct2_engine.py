"""The CTranslate2 teacher engine: the same pseudo-labels as transformers at float32."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest
import torch

from distilray.audio import decode_audio
from distilray.errors import ConfigError

ctranslate2 = pytest.importorskip("ctranslate2")


@pytest.fixture(scope="module")
def isolated_cache(tmp_path_factory):
    """A private model cache for the CTranslate2 copies made here."""
    mp = pytest.MonkeyPatch()
    mp.setenv("DISTILRAY_CACHE", str(tmp_path_factory.mktemp("cache")))
    yield
    mp.undo()


@pytest.fixture(scope="module")
def random_ct2(tiny_random, isolated_cache):
    from distilray.models.ct2_export import cached_ct2_model

    return cached_ct2_model(str(tiny_random))


def test_random_teacher_greedy_ids_equal_transformers(tiny_random, random_ct2):
    """Random weights loop until the token budget: also checks both count it alike."""
    from distilray.engines.ct2 import CT2Whisper
    from distilray.inference.prompt import prompt_ids
    from distilray.inference.shortform import generate_greedy
    from distilray.models import load_whisper

    model, processor = load_whisper(tiny_random)
    engine = CT2Whisper(random_ct2, compute_type="float32")
    features = np.random.default_rng(0).standard_normal((3, 80, 3000)).astype(np.float32)
    for timestamps in (False, True):
        want = generate_greedy(
            model,
            processor,
            torch.from_numpy(features),
            max_new_tokens=25,
            return_timestamps=timestamps,
        )
        got = engine.greedy(
            engine.encode(features),
            [prompt_ids(model.generation_config, None, None, timestamps)] * len(features),
            max_new_tokens=25,
            max_initial_timestamp_index=model.generation_config.max_initial_timestamp_index,
        )
        assert got == want
        assert all(len(row) == 25 for row in got)


def test_ct2_decoder_gives_the_greedy_decoders_rows(tiny_random, random_ct2):
    """One decoder interface: the same Decoded rows (prompts, ids, segments) as
    GreedyDecoder, with a text prompt and with Whisper's fallback too (random weights
    loop, so every row is sampled again), and a clear error for sequential long-form."""
    from distilray.engines.ct2 import CT2Whisper
    from distilray.engines.ct2_decoder import CT2Decoder
    from distilray.errors import DistilrayError
    from distilray.inference.decoder import DecodeOptions, Fallback, GreedyDecoder
    from distilray.inference.engine import Transcriber
    from distilray.inference.longform import SequentialOptions
    from distilray.inference.prompt import text_prompt_ids
    from distilray.models import load_whisper

    model, processor = load_whisper(tiny_random)
    engine = CT2Whisper(random_ct2, compute_type="float32")
    ct2 = CT2Decoder(engine, model, processor, max_new_tokens=20)
    greedy = GreedyDecoder(model, processor, max_new_tokens=20)
    features = np.random.default_rng(1).standard_normal((2, 80, 3000)).astype(np.float32)
    for timestamps in (False, True):
        want = greedy.decode(features, return_timestamps=timestamps, end_times=[30.0, 30.0])
        got = ct2.decode(features, return_timestamps=timestamps, end_times=[30.0, 30.0])
        assert (got.ids, got.prompts, got.segments) == (want.ids, want.prompts, want.segments)
        for states in (ct2.encode(features), ct2.encode(features).clone()):  # its own, a copy
            again = ct2.decode(features, return_timestamps=timestamps, encoder_hidden_states=states)
            assert again.ids == want.ids
    prompt = text_prompt_ids(processor.tokenizer, "hello there")
    fallback = Fallback(temperatures=(0.5, 1.0))
    for options in (DecodeOptions(prompt_ids=prompt), DecodeOptions(fallback=fallback)):
        want, got = greedy.decode(features, options=options), ct2.decode(features, options=options)
        assert (got.ids, got.prompts) == (want.ids, want.prompts)
    assert got.ids != greedy.decode(features).ids  # the fallback's samples, not the loops
    # the token budget as transformers counts it, also where a long text prompt eats
    # into it (random weights decode to the budget)
    for words, budget in ((100, 25), (400, 100), (400, 300)):
        options = DecodeOptions(prompt_ids=text_prompt_ids(processor.tokenizer, "x " * words))
        pair = (
            GreedyDecoder(model, processor, max_new_tokens=budget),
            CT2Decoder(engine, model, processor, max_new_tokens=budget),
        )
        for timestamps in (False, True):
            want, got = (
                d.decode(features[:1], return_timestamps=timestamps, options=options) for d in pair
            )
            assert got.ids == want.ids and len(got.ids[0]) > 0
    caps = ct2.capabilities
    assert caps.timestamps and caps.encoder_states and not caps.sequential
    assert caps.word_timestamps == greedy.capabilities.word_timestamps
    refused = [
        lambda: ct2.sequential([np.zeros(16000, np.float32)], SequentialOptions()),
        lambda: Transcriber(model, processor, decoder=ct2).transcribe(
            [np.zeros(16000, np.float32)], long_form="sequential"
        ),
    ]
    for call in refused:
        with pytest.raises(DistilrayError):
            call()


def test_cached_copy_is_keyed_by_content(tiny_random, random_ct2, tmp_path):
    import shutil

    from distilray.models.ct2_export import cached_ct2_model

    copy = shutil.copytree(tiny_random, tmp_path / "same")
    assert cached_ct2_model(str(copy)) == random_ct2  # same weights: converted once
    assert cached_ct2_model(str(random_ct2)) == random_ct2  # a CTranslate2 folder as is
    config = json.loads((copy / "generation_config.json").read_text())
    config["suppress_tokens"] = config["suppress_tokens"][:-1]
    (copy / "generation_config.json").write_text(json.dumps(config))
    assert cached_ct2_model(str(copy)) != random_ct2  # changed: converted again


def speech_batch(synth_clips, feature_extractor, n: int) -> pa.Table:
    """``n`` synthetic clips plus a silent one, as the labelling actors receive them."""
    from ray.data.extensions import ArrowTensorArray

    from distilray.features import log_mel

    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()[:n]]
    audios = [decode_audio(synth_clips.parent / r["audio"]) for r in rows]
    audios.append(np.zeros(3 * 16000, np.float32))
    features = log_mel(feature_extractor, audios)
    return pa.table(
        {
            "id": [r["id"] for r in rows] + ["silence"],
            "error": pa.array([None] * (n + 1), pa.string()),
            "input_features": ArrowTensorArray.from_numpy(features),
        }
    )


@pytest.mark.parametrize("timestamps", [True, False])
def test_labeller_rows_equal_the_transformers_labellers(
    tiny_en, synth_clips, isolated_cache, timestamps
):
    """Real teacher, synthetic speech: identical ids and text, the same confidence."""
    from distilray.labelling.ct2_teacher import CT2TeacherLabeller
    from distilray.labelling.teacher import TeacherLabeller

    reference = TeacherLabeller(str(tiny_en), "cpu", "float32", "sdpa", 96, timestamps, None, None)
    ct2 = CT2TeacherLabeller(str(tiny_en), "cpu", "float32", 96, timestamps, None, None)
    batch = speech_batch(synth_clips, reference.processor.feature_extractor, 5)
    want, got = reference(batch), ct2(batch)
    assert got.schema == want.schema
    for column in ("id", "pseudo_label", "pseudo_label_ids", "compression_ratio", "error"):
        assert got[column].to_pylist() == want[column].to_pylist(), column
    for column in ("avg_logprob", "no_speech_prob"):
        np.testing.assert_allclose(
            got[column].to_pylist(), want[column].to_pylist(), rtol=1e-3, atol=1e-4
        )
    assert all(ids[-1] == reference.eos for ids in got["pseudo_label_ids"].to_pylist())


def test_engine_choice_rule(monkeypatch):
    from distilray.labelling import ct2_teacher
    from distilray.labelling.ct2_teacher import EngineChoice, choose_engine

    assert choose_engine("auto", "auto", "cpu") == EngineChoice("ctranslate2", "float32")
    assert choose_engine("auto", "auto", "cuda") == EngineChoice("transformers", None)
    assert choose_engine("auto", "int8", "cuda") == EngineChoice("ctranslate2", "int8")
    assert choose_engine("ctranslate2", "auto", "cuda") == EngineChoice("ctranslate2", "float16")
    assert choose_engine("transformers", "auto", "cpu") == EngineChoice("transformers", None)
    with pytest.raises(ConfigError, match="encoder_cache_dir"):
        choose_engine("ctranslate2", "int8", "cpu", encoder_cache_dir="enc")
    monkeypatch.setattr(ct2_teacher, "_has_ct2", lambda: False)
    assert choose_engine("auto", "auto", "cpu") == EngineChoice("transformers", None)
    with pytest.raises(ConfigError, match=r"distilray\[ct2\]"):
        choose_engine("auto", "int8", "cpu")


def test_config_refuses_compute_type_for_transformers(tmp_path):
    from pydantic import ValidationError

    from distilray.labelling.config import LabelConfig

    base = {"input": str(tmp_path / "in"), "output": str(tmp_path / "out")}
    assert LabelConfig(**base, compute_type="int8").engine == "auto"
    with pytest.raises(ValidationError, match="compute_type is CTranslate2's"):
        LabelConfig(**base, engine="transformers", compute_type="int8")


@pytest.fixture(scope="module")
def multilingual_random(tmp_path_factory, isolated_cache):
    """A random Whisper with the multilingual models' vocabulary layout (51,865 ids)."""
    from distilray.models.testing import make_tiny_random_whisper

    return make_tiny_random_whisper(
        tmp_path_factory.mktemp("multilingual"), decoder_layers=2, multilingual=True
    )


def _sounds() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    t = np.arange(2 * 16000) / 16000
    return [
        (0.1 * rng.standard_normal(3 * 16000)).astype(np.float32),
        (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32),
        np.zeros(16000, np.float32),
    ]


def test_a_multilingual_model_detects_and_decodes_as_on_transformers(multilingual_random):
    """CTranslate2 detects the language itself (its first step over the language
    tokens) where none is given, as transformers' ``generate`` does, and every prompt
    names the task (transcribe unless told otherwise), as Whisper's does: the same
    languages, prompts and ids as the transformers engine, detected or named, for
    transcription and translation, with and without timestamps."""
    from distilray.engines.ct2_transcriber import CT2Transcriber
    from distilray.features import log_mel
    from distilray.inference.engine import DecodeOptions, Transcriber

    path = str(multilingual_random)
    reference = Transcriber.load(path, max_new_tokens=12)
    ct2 = CT2Transcriber.load(path, max_new_tokens=12, compute_type="float32")
    assert ct2.engine.is_multilingual
    audios = _sounds()
    detected = [reference.detect_language(a) for a in audios]
    assert [ct2.detect_language(a) for a in audios] == detected
    assert all(f"<|{code}|>" in reference.teacher.generation_config.lang_to_id for code in detected)

    features = torch.from_numpy(log_mel(reference.processor.feature_extractor, audios))
    want, got = reference.decoder.decode(features), ct2.decoder.decode(features)
    transcribe = reference.teacher.generation_config.task_to_id["transcribe"]
    assert got.prompts == want.prompts and got.ids == want.ids
    assert all(prompt[2] == transcribe for prompt in got.prompts)  # detected, then the task
    for options in (None, DecodeOptions(language="de"), DecodeOptions(task="translate")):
        for timestamps in (False, True):
            a = reference.transcribe(audios, return_timestamps=timestamps, options=options)
            b = ct2.transcribe(audios, return_timestamps=timestamps, options=options)
            assert [r.token_ids for r in b] == [r.token_ids for r in a]


def test_rows_of_one_batch_may_start_from_other_languages(multilingual_random):
    """One CTranslate2 call decodes rows in different languages (detection gives
    each row its own): each row's ids are those it gets decoded alone."""
    from distilray.engines.ct2 import CT2Whisper
    from distilray.features import log_mel
    from distilray.inference.prompt import prompt_ids
    from distilray.models import load_whisper

    model, processor = load_whisper(str(multilingual_random))
    engine = CT2Whisper.load(str(multilingual_random), compute_type="float32")
    features = log_mel(processor.feature_extractor, _sounds()[:2])
    config = model.generation_config
    prompts = [prompt_ids(config, code, None, False) for code in ("de", "fr")]
    assert prompts[0] != prompts[1]
    together = engine.greedy(engine.encode(features), prompts, max_new_tokens=10)
    alone = [
        engine.greedy(engine.encode(features[i : i + 1]), [prompts[i]], max_new_tokens=10)[0]
        for i in range(2)
    ]
    assert together == alone


def test_a_model_ctranslate2_reads_otherwise_is_refused(tiny_random, tmp_path):
    """A configuration that calls tiny.en's vocabulary multilingual: CTranslate2 would
    decode it as English-only, so the engine says so instead of decoding."""
    import shutil

    from distilray.engines.ct2 import CT2Whisper
    from distilray.engines.ct2_decoder import CT2Decoder
    from distilray.errors import DistilrayError
    from distilray.models import load_whisper
    from multilingual import make_multilingual

    model_dir = tmp_path / "fake"
    shutil.copytree(tiny_random, model_dir)
    make_multilingual(model_dir)

    model, processor = load_whisper(model_dir)
    engine = CT2Whisper.load(str(model_dir), compute_type="float32")
    with pytest.raises(DistilrayError, match="does not read this model's vocabulary"):
        CT2Decoder(engine, model, processor)


def test_the_rows_decoding_time_includes_the_ctranslate2_encoder(tiny_random, random_ct2):
    """Each row's ``compute_s`` (what RTFx and latency reports add up) counts the
    CTranslate2 encoder pass as the transformers decoder's counts its own: an encoder
    made 0.4 s slower makes the two rows' decoding time at least 0.4 s."""
    import time

    from distilray.engines.ct2 import CT2Whisper
    from distilray.engines.ct2_decoder import CT2Decoder
    from distilray.models import load_whisper

    model, processor = load_whisper(tiny_random)
    engine = CT2Whisper(random_ct2, compute_type="float32")
    encode = engine.encode

    def slow_encode(features):
        time.sleep(0.4)
        return encode(features)

    engine.encode = slow_encode
    features = np.random.default_rng(1).standard_normal((2, 80, 3000)).astype(np.float32)
    decoded = CT2Decoder(engine, model, processor, max_new_tokens=4).decode(features)
    assert sum(row.compute_s for row in decoded.stats) >= 0.4
