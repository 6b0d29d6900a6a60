"""The endpoint driven by the official ``openai`` client, as users point it at us.

One deployment per module (real Serve, HTTP on 127.0.0.1): a tiny random
*multilingual* teacher with a 2-layer random assistant (speculative decoding on),
an API key, a small upload limit. Expected transcripts are the same engine's output
computed in-process without Serve. Plus raw multipart with ``curl``, as from a shell.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import time

import numpy as np
import pytest

from distilray.audio import SAMPLING_RATE, encode_wav
from multilingual import make_multilingual

openai = pytest.importorskip("openai")

pytestmark = [pytest.mark.ray]

API_KEY = "sk-test-openai-client"
KEY_ENV = "DISTILRAY_OPENAI_TEST_KEY"
MAX_UPLOAD = 2_500_000  # bytes: 78 s of 16-bit 16 kHz audio
MAX_NEW_TOKENS = 24  # keeps random models' transcripts (and the tests) short


def _noise(seconds: float, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return (0.1 * rng.standard_normal(int(seconds * SAMPLING_RATE))).astype(np.float32)


CLIP = _noise(3.0)
LONG = _noise(70.0, seed=1)  # three windows on the chunked long-form path


def _wav(audio: np.ndarray = CLIP) -> tuple[str, bytes, str]:
    return ("clip.wav", encode_wav(audio), "audio/wav")


@pytest.fixture(scope="module")
def models(tmp_path_factory, tiny_en):
    from distilray.models.testing import make_tiny_random_whisper

    teacher = make_tiny_random_whisper(tmp_path_factory.mktemp("ml_teacher"), decoder_layers=4)
    student = make_tiny_random_whisper(
        tmp_path_factory.mktemp("ml_student"), decoder_layers=2, seed=1
    )
    return make_multilingual(teacher), make_multilingual(student)


@pytest.fixture(scope="module")
def engine(models):
    """The teacher alone, in-process: what the endpoint must answer."""
    from distilray.inference.engine import Transcriber
    from distilray.models import load_whisper

    model, processor = load_whisper(models[0])
    return Transcriber(model, processor, max_new_tokens=MAX_NEW_TOKENS, no_speech_threshold=None)


def expected(engine, audio, language="en", prompt="", task="transcribe", timestamps=False):
    from distilray.inference.engine import DecodeOptions
    from distilray.inference.prompt import text_prompt_ids

    prompt_ids = text_prompt_ids(engine.processor.tokenizer, prompt)
    options = DecodeOptions(language=language, task=task, prompt_ids=prompt_ids)
    return engine.transcribe([audio], return_timestamps=timestamps, options=options)[0]


@pytest.fixture(scope="module")
def base_url(ray_local, models):
    from ray import serve

    from conftest import free_port
    from distilray.serving.app import make_app

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    args = {
        "teacher": str(models[0]),
        "assistant": str(models[1]),
        "torch_threads": 1,
        "api_key_env": KEY_ENV,
        "no_speech_threshold": None,
        # answers are checked against greedy decoding (a random model loops, and the
        # fallback would sample it); the fallback's own tests are in test_inference_decoder
        "fallback": {"temperatures": []},
        "limits": {"max_upload_bytes": MAX_UPLOAD, "max_audio_s": 90},
        "batching": {"max_batch_size": 4, "batch_wait_timeout_s": 0.05},
        "stream_windows": 1,
        "max_new_tokens": MAX_NEW_TOKENS,
    }
    ingress = {
        "ray_actor_options": {"num_cpus": 0.1, "runtime_env": {"env_vars": {KEY_ENV: API_KEY}}}
    }
    model = {"ray_actor_options": {"num_cpus": 0.5}}
    try:
        app = make_app(args, ingress_options=ingress, model_options=model)
        serve.run(app, name="openai", route_prefix="/")
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def client(base_url):
    return openai.OpenAI(base_url=f"{base_url}/v1", api_key=API_KEY, max_retries=0, timeout=120)


def test_json_text_and_raw_headers(client, engine):
    want = expected(engine, CLIP)
    result = client.audio.transcriptions.create(model="whisper-1", file=_wav(), language="en")
    assert result.text == want.text and want.text
    assert result.usage.seconds == 3
    text = client.audio.transcriptions.create(
        model="whisper-1", file=_wav(), response_format="text", language="english"
    )
    assert text.strip() == want.text
    raw = client.audio.transcriptions.with_raw_response.create(model="whisper-1", file=_wav())
    assert float(raw.headers["x-distilray-acceptance-rate"]) >= 0  # speculative decoding


@pytest.mark.parametrize("fmt", ["srt", "vtt"])
def test_subtitles(client, engine, fmt):
    body = client.audio.transcriptions.create(
        model="whisper-1", file=_wav(), response_format=fmt, language="en"
    )
    want = expected(engine, CLIP, timestamps=True)
    assert body.count(" --> ") == max(1, len(want.segments))
    assert body.startswith("WEBVTT\n\n" if fmt == "vtt" else "1\n")


def test_verbose_json_has_openais_segment_schema(client, engine):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=_wav(), response_format="verbose_json", language="de"
    )
    want = expected(engine, CLIP, language="de", timestamps=True)
    assert result.language == "german" and result.text == want.text
    assert result.duration == pytest.approx(3.0)
    assert [s.text for s in result.segments] == [s.text for s in want.segments]
    for segment in result.segments:
        assert segment.avg_logprob < 0 and 0 <= segment.no_speech_prob <= 1
        assert segment.compression_ratio > 0 and segment.tokens and segment.temperature == 0
        assert list(segment.tokens) == list(want.segments[segment.id].tokens)
    assert result.words is None


def test_language_is_detected_when_not_given(client):
    result = client.audio.transcriptions.create(
        model="whisper-1", file=_wav(), response_format="verbose_json"
    )
    assert result.language in {"english", "german", "french", "spanish"}


def test_prompt_conditions_decoding(client, engine):
    prompt = "Ray Serve, Kubernetes and Whisper."
    result = client.audio.transcriptions.create(
        model="whisper-1", file=_wav(), prompt=prompt, language="en"
    )
    want = expected(engine, CLIP, prompt=prompt)
    assert result.text == want.text != expected(engine, CLIP).text


def test_temperature_samples_with_the_teacher(client, engine):
    raw = client.audio.transcriptions.with_raw_response.create(
        model="whisper-1", file=_wav(), temperature=1.0, language="en"
    )
    assert raw.http_response.status_code == 200
    assert "x-distilray-acceptance-rate" not in raw.headers  # no speculative decoding
    assert raw.parse().text != expected(engine, CLIP).text


def test_word_and_segment_granularities(client):
    result = client.audio.transcriptions.create(
        model="whisper-1",
        file=_wav(),
        response_format="verbose_json",
        timestamp_granularities=["word", "segment"],
    )
    assert result.segments and result.words
    assert all(0 <= w.start <= w.end <= result.duration for w in result.words)
    words_only = client.audio.transcriptions.create(
        model="whisper-1",
        file=_wav(),
        response_format="verbose_json",
        timestamp_granularities=["word"],
    )
    assert words_only.words and words_only.segments is None


def test_translation(client, engine):
    result = client.audio.translations.create(model="whisper-1", file=_wav(), prompt="Hello.")
    spoken = engine.detect_language(CLIP)  # the translations API takes no language
    want = expected(engine, CLIP, language=spoken, task="translate", prompt="Hello.")
    assert result.text == want.text


def test_stream_sends_deltas_then_done(client, engine):
    want = expected(engine, LONG).text
    sent = time.perf_counter()
    stream = client.audio.transcriptions.create(
        model="whisper-1", file=_wav(LONG), stream=True, language="en"
    )
    events, arrivals = [], []
    for event in stream:
        events.append(event)
        arrivals.append(time.perf_counter())
    assert [e.type for e in events[:-1]] == ["transcript.text.delta"] * (len(events) - 1)
    assert events[-1].type == "transcript.text.done" and events[-1].text == want
    assert "".join(e.delta for e in events[:-1]) == want
    assert len(events) >= 3  # text settled before the last window
    # The first delta was sent while later windows were still decoding: events held
    # back until the end would arrive together, microseconds apart (here the windows
    # after the first delta take about a quarter of the request's time).
    assert arrivals[-1] - arrivals[0] > 0.1 * (arrivals[-1] - sent)


@pytest.mark.parametrize(
    ("kwargs", "exception", "param"),
    [
        ({"language": "xx"}, openai.BadRequestError, "language"),
        ({"temperature": 3}, openai.BadRequestError, "temperature"),
        ({"response_format": "xml"}, openai.BadRequestError, "response_format"),
        ({"timestamp_granularities": ["word"]}, openai.BadRequestError, "timestamp_granularities"),
        ({"include": ["logprobs"]}, openai.BadRequestError, "include"),
        (
            {"chunking_strategy": {"type": "server_vad"}},
            openai.BadRequestError,
            "chunking_strategy",
        ),
        ({"model": "gpt-9"}, openai.NotFoundError, "model"),
    ],
)
def test_errors_map_to_the_sdks_exceptions(client, kwargs, exception, param):
    kwargs = {"model": "whisper-1", **kwargs}
    with pytest.raises(exception) as info:
        client.audio.transcriptions.create(file=_wav(), **kwargs)
    assert info.value.body["param"] == param and info.value.body["message"]
    assert info.value.body["type"] == "invalid_request_error"


def test_auth_and_size_errors(client, base_url):
    wrong = openai.OpenAI(base_url=f"{base_url}/v1", api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.audio.transcriptions.create(model="whisper-1", file=_wav())
    with pytest.raises(openai.APIStatusError) as info:
        client.audio.transcriptions.create(model="whisper-1", file=_wav(_noise(80.0)))
    assert info.value.status_code == 413 and info.value.body["code"] == "file_too_large"
    with pytest.raises(openai.BadRequestError) as bad:
        client.audio.transcriptions.create(
            model="whisper-1", file=("x.wav", io.BytesIO(b"not audio"), "audio/wav")
        )
    assert bad.value.body["code"] == "invalid_audio"


@pytest.mark.skipif(shutil.which("curl") is None, reason="needs curl")
def test_curl_multipart(base_url, engine, tmp_path):
    wav = tmp_path / "clip.wav"
    wav.write_bytes(encode_wav(CLIP))
    command = [
        "curl", "-sS", f"{base_url}/v1/audio/transcriptions",
        "-H", f"Authorization: Bearer {API_KEY}",
        "-F", f"file=@{wav}", "-F", "model=whisper-1", "-F", "response_format=verbose_json",
        "-F", "timestamp_granularities[]=segment", "-F", "language=en",
    ]  # fmt: skip
    out = subprocess.run(command, capture_output=True, text=True, timeout=120, check=True)
    body = json.loads(out.stdout)
    want = expected(engine, CLIP, timestamps=True)
    assert body["text"] == want.text and body["language"] == "english"
    assert body["segments"][0]["tokens"]
