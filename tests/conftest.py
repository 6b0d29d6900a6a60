"""Shared, session-scoped fixtures: one local Ray instance, the embedded teacher,
a tiny random Whisper and a small synthetic speech set, each built once per run."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

# One torch thread per process: tests run a driver and several Ray workers on 2 cores,
# and oversubscribed intra-op threads make tiny models 20-60x slower.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Tests never touch a hub; a stray download would hang or fail slowly otherwise.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
# Local test clusters run without token auth (ray job submit tests set their own).
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
os.environ.setdefault("RAY_TRAIN_V2_ENABLED", "1")


@pytest.fixture(scope="session")
def ray_local():
    """A fresh local Ray instance shared by the whole session.

    4 logical CPUs on a 2-core machine so a 2-worker TorchTrainer and Ray Data can
    both get resources (1-CPU workers on ``num_cpus=2`` deadlock).
    """
    import ray

    ray.init(
        address="local",
        num_cpus=4,
        include_dashboard=False,
        log_to_driver=False,
        configure_logging=False,
        object_store_memory=512 * 1024**2,
    )
    try:
        from ray.data import DataContext

        DataContext.get_current().enable_progress_bars = False
        yield ray
    finally:
        ray.shutdown()


@pytest.fixture(scope="session")
def tiny_en() -> Path:
    """The real Whisper tiny.en teacher, converted once from the embedded CTranslate2 model."""
    from distilray.models import resolve_model

    return resolve_model("tiny.en")


@pytest.fixture(scope="session")
def tiny_random(tmp_path_factory, tiny_en) -> Path:
    """A 2-encoder / 4-decoder-layer, 64-dim random Whisper with the real tokenizer."""
    from distilray.models.testing import make_tiny_random_whisper

    return make_tiny_random_whisper(tmp_path_factory.mktemp("tiny_random"), decoder_layers=4)


@pytest.fixture(scope="module")
def distill_models(tiny_random):
    """A trainable 2-layer student of ``tiny_random`` (encoder frozen), its frozen
    teacher and the processor, as the distillation steps use them (one per module:
    tests train deep copies)."""
    import torch

    from distilray.models import load_whisper
    from distilray.student import build_student

    teacher, processor = load_whisper(str(tiny_random), dtype=torch.float32)
    student = build_student(teacher, [0, 3]).train()
    student.model.encoder.requires_grad_(False)
    return student, teacher.requires_grad_(False), processor


@pytest.fixture(scope="session")
def synth_clips(tmp_path_factory) -> Path:
    """Eight short synthetic English clips (two voices) with references: manifest path."""
    from distilray.data.synth import synthesize_dataset

    out = tmp_path_factory.mktemp("synth")
    # Fixed, plain sentences: tests of decoding must not depend on what the sentence bank
    # happens to hold (quotations with odd names are hard for tiny.en on espeak-ng).
    return synthesize_dataset(
        out, 8, voices=["espeak-ng:en-us", "flite:slt"], seed=0, sentences=PLAIN_SENTENCES
    )


PLAIN_SENTENCES = [
    "The weather was much colder than we expected this morning.",
    "My sister painted the kitchen walls last weekend.",
    "Could you call the insurance company before lunch?",
    "The old fisherman repaired the broken fence near the river.",
    "We missed the last train home after the concert.",
    "Our neighbour bought some fresh bread at the market.",
    "The museum guide opened a small bakery in the village.",
    "Please check the weather forecast before the meeting.",
]


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A moto S3 server on a free localhost port: a real S3 API, no network.

    Sets the standard AWS variables (endpoint, dummy credentials, region) for the
    rest of the session, so boto3, pyarrow and every process started afterwards
    (CLIs, ``ray start``) talk to it. Yields the endpoint URL.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ENDPOINT_URL_S3": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    saved = {key: os.environ.get(key) for key in env}
    os.environ.update(env)
    try:
        yield endpoint
    finally:
        server.stop()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="session")
def ray_head(s3_server, tmp_path_factory):
    """A real ``ray start --head`` (token auth, free ports, private temp dir) for
    ``ray job submit`` tests; its processes see the S3 server's AWS variables and a
    private model cache. Stopped by signalling only its own processes."""
    from local_head import LocalRayHead

    cache = tmp_path_factory.mktemp("ray-head-cache")
    env = {"DISTILRAY_CACHE": str(cache), "RAY_DATA_DISABLE_PROGRESS_BARS": "1"}
    with LocalRayHead(num_cpus=4, env=env) as head:
        yield head
