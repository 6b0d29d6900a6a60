"""Unreachable storage fails fast: one StorageError line on the driver, before Ray starts.

Against the moto S3 server: a missing bucket for every location a stage reads or
writes, wrong credentials (moto's IAM check switched on for one test) and an endpoint
nobody listens on.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

from conftest import free_port

pytestmark = pytest.mark.s3
CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.fixture(autouse=True)
def _s3(s3_server) -> None:
    """Every test talks to the moto server (or, where it says so, to nobody)."""


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    import boto3

    name = f"checks-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


@pytest.fixture
def no_ray(monkeypatch):
    """Fail the test if a stage tries to start Ray."""
    import ray

    from distilray import runtime

    def refuse(*_, **__) -> None:
        raise AssertionError("Ray was started before the storage check")

    monkeypatch.setattr(runtime, "ensure_ray", refuse)
    running = ray.is_initialized()  # another test's session cluster may be up already
    yield
    assert ray.is_initialized() == running  # the stage started none


@pytest.fixture
def manifest(tmp_path) -> str:
    path = tmp_path / "manifest.jsonl"
    path.write_text('{"id": "a", "audio": "a.wav"}\n')
    return str(path)


def missing_bucket() -> str:
    return f"s3://missing-{uuid.uuid4().hex[:10]}"


def one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_label_input_in_missing_bucket(no_ray, tmp_path):
    from distilray.errors import StorageError
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling

    uri = f"{missing_bucket()}/data/manifest.jsonl"
    cfg = LabelConfig(input=uri, output=str(tmp_path / "labels"))
    with pytest.raises(StorageError) as exc:
        run_labelling(cfg)
    assert one_line(exc) == f"input {uri}: the bucket {uri[5:].split('/')[0]!r} does not exist"


def test_label_input_missing_in_existing_bucket(no_ray, bucket, tmp_path):
    from distilray.errors import StorageError
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling

    uri = f"s3://{bucket}/nothing/manifest.jsonl"
    with pytest.raises(StorageError, match="does not exist"):
        run_labelling(LabelConfig(input=uri, output=str(tmp_path / "labels")))


def test_label_output_in_missing_bucket(no_ray, manifest):
    from distilray.errors import StorageError
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling

    uri = f"{missing_bucket()}/labels"
    with pytest.raises(StorageError) as exc:
        run_labelling(LabelConfig(input=manifest, output=uri))
    assert one_line(exc).startswith(f"output {uri} is not writable: the bucket ")


def distill_config(tmp_path, *overrides: str):
    """The tiny distill config on local labels (never read: the storage check comes first)."""
    from distilray.config import load_config
    from distilray.distill.config import DistillConfig

    labels = tmp_path / "labels.parquet"
    labels.write_bytes(b"not Parquet")
    config = CONFIGS / "tiny/distill.yaml"
    return load_config(
        DistillConfig, config, [f"data.train={labels}", f"run.storage={tmp_path}", *overrides]
    )


@pytest.mark.parametrize("key", ["storage", "export_to"])
def test_distill_output_in_missing_bucket(no_ray, tmp_path, key):
    from distilray.distill.trainer import run_distillation
    from distilray.errors import StorageError

    uri = f"{missing_bucket()}/out"
    with pytest.raises(StorageError) as exc:
        run_distillation(distill_config(tmp_path, f"run.{key}={uri}"))
    assert one_line(exc).startswith(f"run.{key} {uri} is not writable: the bucket ")


def test_distill_labels_in_missing_bucket(no_ray, tmp_path):
    from distilray.distill.trainer import run_distillation
    from distilray.errors import StorageError

    cfg = distill_config(tmp_path, f"data.train={missing_bucket()}")
    with pytest.raises(StorageError, match=r"^data.train s3://missing-\w+: the bucket"):
        run_distillation(cfg)


def test_wrong_credentials(bucket, monkeypatch):
    from moto import settings

    from distilray.errors import StorageError
    from distilray.storage_checks import check_readable, check_writable

    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)  # moto checks keys now
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    with pytest.raises(StorageError, match="access key id is not valid"):
        check_writable(f"s3://{bucket}/out", "output")
    with pytest.raises(StorageError, match="is not readable: access denied"):
        check_readable(f"s3://{bucket}/in", "input")


def test_unreachable_endpoint(monkeypatch, capsys, manifest, tmp_path):
    from distilray.cli import main

    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL", dead)
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    config = tmp_path / "label.yaml"
    config.write_text(f"input: {manifest}\noutput: s3://any-bucket/labels\n")
    assert main(["label", "--config", str(config)]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        f"error: output s3://any-bucket/labels is not writable: cannot connect to the S3 "
        f"endpoint {dead}"
    )


def test_writable_probe_leaves_nothing(bucket, tmp_path):
    from distilray import storage
    from distilray.errors import StorageError
    from distilray.storage_checks import check_writable

    check_writable(f"s3://{bucket}/probe-here", "output")
    assert storage.list_files(f"s3://{bucket}/probe-here") == []
    check_writable(str(tmp_path / "new" / "folder"), "output")
    assert not (tmp_path / "new").exists()  # nothing created on local disk
    (tmp_path / "file").write_text("x")
    with pytest.raises(StorageError, match="is a file, not a folder"):
        check_writable(str(tmp_path / "file" / "sub"), "output")
