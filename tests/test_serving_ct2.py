"""The endpoint on the CTranslate2 engine (``engine: ctranslate2``), driven by the
official ``openai`` client: the transformers engine's transcripts, words and stream.

One deployment (real Serve, HTTP on 127.0.0.1) of the real tiny.en teacher on
CTranslate2 at float32, greedy (the fallback off, so the answers are compared with
the transformers engine's greedy output computed in-process).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from distilray.audio import SAMPLING_RATE, decode_audio, encode_wav

openai = pytest.importorskip("openai")
pytest.importorskip("ctranslate2")

pytestmark = [pytest.mark.ray]


@pytest.fixture(scope="module")
def clips(synth_clips) -> list[np.ndarray]:
    """Two short clips and 55 s made of clips (three chunked windows)."""
    rows = [json.loads(line) for line in Path(synth_clips).read_text().splitlines()[:4]]
    audio = [decode_audio(Path(synth_clips).parent / row["audio"]) for row in rows]
    pause = np.zeros(SAMPLING_RATE // 2, np.float32)
    long = np.concatenate([part for clip in audio * 8 for part in (clip, pause)])
    assert len(long) >= 55 * SAMPLING_RATE
    return [audio[0], audio[1], long[: 55 * SAMPLING_RATE]]


@pytest.fixture(scope="module")
def reference(tiny_en):
    """The transformers engine, greedy: what the endpoint must answer."""
    from distilray.inference.engine import Transcriber

    return Transcriber.load(str(tiny_en))


@pytest.fixture(scope="module")
def client(ray_local, tiny_en):
    from ray import serve

    from conftest import free_port
    from distilray.serving.app import make_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "teacher": str(tiny_en),
        "engine": "ctranslate2",
        "torch_threads": 1,
        "api_key_env": None,
        "fallback": {"temperatures": []},
        "stream_windows": 1,
    }
    cpus = {"ray_actor_options": {"num_cpus": 0.1}}
    try:
        serve.run(
            make_app(
                args, ingress_options=cpus, model_options={"ray_actor_options": {"num_cpus": 0.5}}
            ),
            name="ct2",
            route_prefix="/",
        )
        yield openai.OpenAI(
            base_url=f"http://127.0.0.1:{port}/v1", api_key="unused", max_retries=0, timeout=120
        )
    finally:
        serve.shutdown()


def _wav(audio: np.ndarray) -> tuple[str, bytes, str]:
    return ("clip.wav", encode_wav(audio), "audio/wav")


def test_transcripts_words_and_stream_are_the_transformers_engines(client, reference, clips):
    want = reference.transcribe(clips)
    for audio, expected in zip(clips, want, strict=True):
        got = client.audio.transcriptions.create(model="whisper-1", file=_wav(audio))
        assert got.text == expected.text and expected.text
    timed = reference.transcribe(clips[:1], word_timestamps=True)[0]
    verbose = client.audio.transcriptions.create(
        model="whisper-1",
        file=_wav(clips[0]),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert verbose.text == timed.text
    assert [w.word for w in verbose.words] == [w.word.strip() for w in timed.words]
    for served, local in zip(verbose.words, timed.words, strict=True):
        assert served.start == pytest.approx(local.start, abs=0.021)
        assert served.end == pytest.approx(local.end, abs=0.021)
    assert verbose.segments and verbose.segments[0].avg_logprob < 0
    stream = client.audio.transcriptions.create(model="whisper-1", file=_wav(clips[2]), stream=True)
    events = list(stream)
    assert events[-1].type == "transcript.text.done" and events[-1].text == want[2].text
    deltas = [e.delta for e in events if e.type == "transcript.text.delta"]
    assert len(deltas) > 1 and "".join(deltas) == want[2].text  # text before the end


def test_serve_args_refuse_what_the_engine_cannot_do():
    from pydantic import ValidationError

    from distilray.serving.config import ServeArgs

    with pytest.raises(ValidationError, match="speculative decoding .* runs on transformers"):
        ServeArgs(engine="ctranslate2", assistant="runs/demo/student")
    with pytest.raises(ValidationError, match="compute_type is CTranslate2's"):
        ServeArgs(compute_type="int8")
    assert ServeArgs(engine="ctranslate2", compute_type="int8").compute_type == "int8"


def test_a_multilingual_teacher_detects_its_language_on_ctranslate2(tmp_path, tiny_en):
    """A replica on CTranslate2 serves a multilingual teacher: the language a request
    names none of is detected by CTranslate2, as the transformers replica detects it."""
    from distilray.models.testing import make_tiny_random_whisper
    from distilray.serving.config import ServeArgs
    from distilray.serving.model import load_transcriber, model_info

    teacher = make_tiny_random_whisper(tmp_path / "ml", decoder_layers=2, multilingual=True)
    ct2 = load_transcriber(ServeArgs(teacher=str(teacher), engine="ctranslate2", device="cpu"))
    plain = load_transcriber(ServeArgs(teacher=str(teacher), device="cpu"))
    assert type(ct2).__name__ == "CT2Transcriber" and model_info(ct2).multilingual
    noise = (0.1 * np.random.default_rng(0).standard_normal(48000)).astype(np.float32)
    assert ct2.detect_language(noise) == plain.detect_language(noise)
