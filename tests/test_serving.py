"""The transcription endpoint end to end: real Serve, real HTTP on 127.0.0.1.

One module-scoped deployment (``@serve.batch`` does not work in Serve's local
testing mode): app ``main`` serves tiny.en with a 2-layer student drawn from it as
speculative assistant, auth off; app ``secure`` is a second ingress onto the same
model replica that requires an API key.
Expected transcripts are the teacher's own greedy output, computed in-process.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from distilray.audio import SAMPLING_RATE, decode_audio, encode_wav
from hostile_audio import CORPUS, Target

pytestmark = [pytest.mark.ray, pytest.mark.slow]

API_KEY = "test-key-123"
KEY_ENV = "DISTILRAY_TEST_API_KEY"
MAX_UPLOAD = 1_500_000  # bytes
MAX_AUDIO_S = 40.0
TRANSCRIBE = "/v1/audio/transcriptions"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="module")
def clips(synth_clips) -> list[np.ndarray]:
    """Four short clips of synthetic speech (two voices)."""
    rows = [json.loads(line) for line in Path(synth_clips).read_text().splitlines() if line]
    return [decode_audio(Path(synth_clips).parent / row["audio"]) for row in rows[:4]]


@pytest.fixture(scope="module")
def long_clip(clips) -> np.ndarray:
    """32 s of speech: clips joined with 0.3 s pauses (the chunked long-form path)."""
    pause = np.zeros(int(0.3 * SAMPLING_RATE), np.float32)
    parts, total = [], 0
    while total < 32 * SAMPLING_RATE:
        for clip in clips:
            parts += [clip, pause]
            total += len(clip) + len(pause)
    return np.concatenate(parts)[: 32 * SAMPLING_RATE]


@pytest.fixture(scope="module")
def teacher_greedy(tiny_en, clips, long_clip):
    """The teacher's greedy transcripts (no assistant): what the endpoint must return."""
    from distilray.inference.engine import Transcriber
    from distilray.models import load_whisper

    model, processor = load_whisper(tiny_en)
    results = Transcriber(model, processor).transcribe([*clips, long_clip])
    return [r.text for r in results]


@pytest.fixture(scope="module")
def student(tiny_en, tmp_path_factory) -> Path:
    """A 2-layer student initialised from tiny.en (decoder layers 0 and 3)."""
    from distilray.student import StudentInitConfig, init_student

    out = tmp_path_factory.mktemp("student")
    init_student(StudentInitConfig(teacher=str(tiny_en), decoder_layers=2, out=str(out)))
    return out


@pytest.fixture(scope="module")
def base_url(ray_local, tiny_en, student):
    from ray import serve

    from distilray.serving.app import make_app
    from distilray.serving.model import MODEL_DEPLOYMENT

    port = _free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    common = {
        "teacher": str(tiny_en),
        "limits": {"max_upload_bytes": MAX_UPLOAD, "max_audio_s": MAX_AUDIO_S},
        "fallback": {"temperatures": []},  # answers are checked against greedy decoding
    }
    main = {
        **common,
        "assistant": str(student),
        "torch_threads": 1,
        "api_key_env": None,
        "batching": {"max_batch_size": 16, "batch_wait_timeout_s": 0.2},
    }
    secure = {**common, "api_key_env": KEY_ENV}
    key_env = {"num_cpus": 0.1, "runtime_env": {"env_vars": {KEY_ENV: API_KEY}}}
    try:
        serve.run(
            make_app(main, ingress_options={"ray_actor_options": {"num_cpus": 0.1}}),
            name="main",
            route_prefix="/",
        )
        # A second front door with auth on, onto the same model replica.
        model = serve.get_deployment_handle(MODEL_DEPLOYMENT, app_name="main")
        serve.run(
            make_app(secure, ingress_options={"ray_actor_options": key_env}, model=model),
            name="secure",
            route_prefix="/secure",
        )
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


@pytest.fixture(scope="module")
def client(base_url):
    with httpx.Client(base_url=base_url, timeout=120) as c:
        yield c


def _post(client, audio: bytes | None, path: str = TRANSCRIBE, headers=None, **fields):
    files = {"file": ("clip.wav", audio, "audio/wav")} if audio is not None else None
    return client.post(path, files=files, data=fields, headers=headers)


def _error(resp, status: int, code: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    error = resp.json()["error"]
    assert error["code"] == code and error["type"] and error["message"]
    return error


def test_health_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    models = client.get("/v1/models").json()
    assert models["object"] == "list"
    assert [m["id"] for m in models["data"]] == ["distilray-whisper"]


def test_json_is_teacher_greedy_with_speculative_decoding(client, clips, teacher_greedy):
    resp = _post(client, encode_wav(clips[0]), model="whisper-1", temperature="0", language="en")
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == teacher_greedy[0]
    assert teacher_greedy[0]  # real speech, not an empty match
    assert 0.0 < float(resp.headers["x-distilray-acceptance-rate"]) <= 1.0


def test_translation_needs_a_multilingual_teacher(client, clips):
    resp = _post(client, encode_wav(clips[0]), path="/v1/audio/translations")
    error = _error(resp, 400, "unsupported_task")
    assert "English-only" in error["message"]


def test_text_format(client, clips, teacher_greedy):
    resp = _post(client, encode_wav(clips[1]), response_format="text")
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/plain")
    assert resp.text == teacher_greedy[1] + "\n"


def test_verbose_json_srt_vtt(base_url, clips):
    wav = encode_wav(clips[2])

    def send(fmt: str) -> httpx.Response:
        with httpx.Client(base_url=base_url, timeout=120) as c:
            return _post(c, wav, response_format=fmt)

    with ThreadPoolExecutor(3) as pool:  # concurrent: decoded in one batch
        verbose, srt, vtt = (r.text for r in pool.map(send, ["verbose_json", "srt", "vtt"]))
    verbose = json.loads(verbose)
    segments = verbose["segments"]
    assert verbose["duration"] == pytest.approx(len(clips[2]) / SAMPLING_RATE, abs=1e-3)
    assert segments and all(0 <= s["start"] < s["end"] for s in segments)
    assert segments[-1]["end"] <= verbose["duration"] + 0.5
    assert " ".join(s["text"].strip() for s in segments).split() == verbose["text"].split()

    first = srt.split("\n\n")[0].splitlines()
    assert first[0] == "1" and " --> " in first[1] and "," in first[1]
    assert first[2] == segments[0]["text"].strip()
    assert srt.count(" --> ") == len(segments)

    assert vtt.startswith("WEBVTT\n\n")
    assert vtt.count(" --> ") == len(segments)


def test_long_audio_takes_the_chunked_path(client, long_clip, teacher_greedy):
    resp = _post(client, encode_wav(long_clip))
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == teacher_greedy[-1]
    assert resp.json()["usage"]["seconds"] == 32
    assert resp.headers["x-distilray-form"] == "chunked"


def test_burst_of_concurrent_requests_all_correct(base_url, clips, teacher_greedy):
    wavs = [encode_wav(c) for c in clips]
    jobs = [i % len(clips) for i in range(16)]

    def send(i: int):
        with httpx.Client(base_url=base_url, timeout=120) as c:
            return i, _post(c, wavs[i])

    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(send, jobs))
    assert len(answers) == 16
    for i, resp in answers:
        assert resp.status_code == 200, resp.text
        assert resp.json()["text"] == teacher_greedy[i]
    batches = [int(resp.headers["x-distilray-batch-size"]) for _, resp in answers]
    assert max(batches) > 1  # dynamic batching gathered concurrent requests


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        (b"RIFF\x00\x00\x00\x00WAVEfmt garbage", 400, "invalid_audio"),
        (b"just some text, definitely not audio\n" * 20, 400, "invalid_audio"),
        (b"", 400, "invalid_audio"),
    ],
)
def test_bad_audio_is_400(client, body, status, code):
    _error(_post(client, body), status, code)


@pytest.mark.parametrize(
    ("fields", "status", "code", "param"),
    [
        ({"response_format": "xml"}, 400, "invalid_value", "response_format"),
        ({"temperature": "1.5"}, 400, "invalid_value", "temperature"),
        ({"temperature": "warm"}, 400, "invalid_value", "temperature"),
        ({"language": "fr"}, 400, "invalid_value", "language"),
        ({"timestamp_granularities[]": "word"}, 400, "invalid_value", "timestamp_granularities"),
        ({"stream": "maybe"}, 400, "invalid_value", "stream"),
        ({"model": "gpt-9"}, 404, "model_not_found", "model"),
    ],
)
def test_bad_fields(client, clips, fields, status, code, param):
    error = _error(_post(client, encode_wav(clips[0][:8000]), **fields), status, code)
    assert error["param"] == param


def test_missing_file_is_400(client):
    error = _error(_post(client, None, response_format="json"), 400, "missing_field")
    assert error["param"] == "file"
    _error(client.post(TRANSCRIBE, json={"file": "x"}), 400, "missing_field")


def test_too_large_upload_is_413(client):
    # Declared size beyond the limit: refused before the body is parsed.
    _error(_post(client, b"\0" * (MAX_UPLOAD * 2)), 413, "file_too_large")
    # Just over the limit, within the form slack: refused after parsing.
    _error(_post(client, b"\0" * (MAX_UPLOAD + 1)), 413, "file_too_large")


BOUNDARY = "distilray-test-boundary"


def _chunked_upload(client, file_pieces: Iterable[bytes]) -> httpx.Response:
    """POST a multipart form whose file part is streamed: chunked, no Content-Length."""

    def body() -> Iterator[bytes]:
        yield (
            f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="file"; '
            'filename="clip.wav"\r\nContent-Type: audio/wav\r\n\r\n'
        ).encode()
        yield from file_pieces
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    headers = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
    resp = client.post(TRANSCRIBE, content=body(), headers=headers)
    assert "content-length" not in resp.request.headers
    return resp


def _ingress_peak_rss(app: str) -> int | None:
    """Peak resident memory (bytes) of this test's ``app`` ingress replica; None off Linux."""
    title = f"ServeReplica:{app}:APIIngress".encode()
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    todo, found = [os.getpid()], []  # descendants only: other sessions may run Serve too
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        try:
            if title in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(pid)
        except OSError:
            continue
    if len(found) != 1:
        return None
    status = Path(f"/proc/{found[0]}/status").read_text()
    peak_kb = next(line.split()[1] for line in status.splitlines() if line.startswith("VmHWM"))
    return int(peak_kb) * 1024


def test_chunked_upload_is_cut_off_at_the_limit(client):
    """No Content-Length to check first: the ingress counts while reading and stops."""
    mib = b"\0" * 2**20
    before = _ingress_peak_rss("main")
    resp = _chunked_upload(client, (mib for _ in range(MAX_UPLOAD // len(mib) + 256)))
    _error(resp, 413, "file_too_large")
    after = _ingress_peak_rss("main")
    # 257 MiB sent: reading it whole would grow the ingress by at least that much; what
    # it takes in before stopping is the limit plus socket and server read-ahead (5 MiB
    # on a quiet machine, up to ~45 MiB seen under heavy load)
    if before is not None and after is not None:
        assert after - before < 96 * 2**20, f"ingress peak grew by {after - before} bytes"
    # A chunked upload within the limit is transcribed as usual.
    wav = encode_wav(np.zeros(SAMPLING_RATE, np.float32))
    assert _chunked_upload(client, [wav[:1000], wav[1000:]]).status_code == 200


@pytest.mark.parametrize("case", list(CORPUS))
def test_hostile_uploads_are_400(client, case):
    """Playlists, SDP, image sequences: refused before FFmpeg could open what they name."""
    upload = CORPUS[case](Target(secret="secret.wav", tcp_port=9, udp_port=9))
    _error(_post(client, upload), 400, "invalid_audio")


def test_too_short_audio_is_400(client):
    tiny = encode_wav(np.full(8, 0.1, np.float32))  # 8 samples: a 60-byte WAV
    assert len(tiny) == 60
    error = _error(_post(client, tiny), 400, "audio_too_short")
    assert error["param"] == "file"


@pytest.mark.parametrize("field", ["language", "model", "temperature", "response_format"])
def test_error_bodies_quote_fields_cut_short(client, clips, field):
    value = "x" * 200_000
    resp = _post(client, encode_wav(clips[0][:8000]), **{field: value})
    error = resp.json()["error"]
    assert resp.status_code in (400, 404) and error["param"] == field
    assert "200000 characters" in error["message"]
    assert len(resp.content) < 1000


def test_unknown_field_name_is_cut_short(client, clips):
    resp = _post(client, encode_wav(clips[0][:8000]), **{"y" * 50_000: "1"})
    assert resp.status_code == 400
    assert len(resp.content) < 1000


def test_too_long_audio_is_413(client):
    # 45 s of quiet noise at 8 kHz: small upload, long audio.
    rng = np.random.default_rng(0)
    audio = (0.01 * rng.standard_normal(45 * 8000)).astype(np.float32)
    _error(_post(client, encode_wav(audio, sampling_rate=8000)), 413, "audio_too_long")


def test_unknown_route_and_method_are_json(client):
    _error(client.get("/v1/nope"), 404, "not_found")
    _error(client.get(TRANSCRIBE), 405, "method_not_allowed")


def test_auth_required_when_key_is_set(client, clips, teacher_greedy):
    wav = encode_wav(clips[3])
    secure = f"/secure{TRANSCRIBE}"
    assert client.get("/secure/healthz").status_code == 200  # health stays open
    _error(_post(client, wav, path=secure), 401, "invalid_api_key")
    _error(
        _post(client, wav, path=secure, headers={"Authorization": "Bearer nope"}),
        401,
        "invalid_api_key",
    )
    _error(client.get("/secure/v1/models"), 401, "invalid_api_key")
    resp = _post(client, wav, path=secure, headers={"Authorization": f"Bearer {API_KEY}"})
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == teacher_greedy[3]
    # The main app has auth off: the same request without a key works there.
    assert _post(client, wav).status_code == 200


@pytest.mark.parametrize("page", ["/openapi.json", "/docs", "/redoc"])
def test_api_docs_need_the_key_when_auth_is_on(client, page):
    _error(client.get(f"/secure{page}"), 401, "invalid_api_key")
    bearer = {"Authorization": f"Bearer {API_KEY}"}
    resp = client.get(f"/secure{page}", headers=bearer)
    assert resp.status_code == 200, resp.text
    assert client.get(page).status_code == 200  # auth off on the main app
    if page == "/openapi.json":
        assert TRANSCRIBE in resp.json()["paths"]
        assert resp.json()["servers"] == [{"url": "/secure"}]
    else:
        assert "/secure/openapi.json" in resp.text


def test_near_silence_gets_empty_text(client):
    """Whisper's no-speech rule is on by default: no invented "you" for room noise."""
    rng = np.random.default_rng(0)
    noise = (0.01 * rng.standard_normal(5 * SAMPLING_RATE)).astype(np.float32)
    resp = _post(client, encode_wav(noise))
    assert resp.status_code == 200, resp.text
    assert resp.json()["text"] == ""
