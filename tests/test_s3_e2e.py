"""Storage on ``s3://`` end to end, against a real S3 API on localhost (moto).

Nothing here is mocked inside the process: boto3, pyarrow and every subprocess reach
the server through the standard ``AWS_*`` variables, as they would reach S3 or MinIO.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest

pytestmark = pytest.mark.s3


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    """A fresh bucket (unique per run: nothing is cached from an earlier run)."""
    import boto3

    name = f"distilray-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def test_storage_round_trip(bucket, tmp_path):
    from distilray import storage

    base = f"s3://{bucket}/roundtrip"
    storage.write_bytes(f"{base}/a/one.bin", b"\x00\x01")
    storage.write_bytes(f"{base}/a/b/two.txt", b"two")
    assert storage.exists(f"{base}/a/one.bin")
    assert not storage.exists(f"{base}/missing")
    assert storage.read_bytes(f"{base}/a/b/two.txt") == b"two"
    assert storage.list_files(f"{base}/a") == [f"{base}/a/b/two.txt", f"{base}/a/one.bin"]
    storage.copy_tree(f"{base}/a", tmp_path / "down")
    assert (tmp_path / "down" / "b" / "two.txt").read_bytes() == b"two"
    storage.copy_tree(tmp_path / "down", f"{base}/copy")
    assert storage.read_bytes(f"{base}/copy/one.bin") == b"\x00\x01"


def test_model_loads_from_s3(bucket, tiny_random, tmp_path, monkeypatch):
    """``s3://`` model references download once into the cache and load like a folder."""
    import torch

    from distilray import storage
    from distilray.models import load_whisper, resolve_model

    monkeypatch.setenv("DISTILRAY_CACHE", str(tmp_path / "cache"))
    uri = f"s3://{bucket}/models/tiny-random"
    storage.copy_tree(tiny_random, uri)
    folder = resolve_model(uri)
    assert folder.is_relative_to(tmp_path / "cache")
    assert resolve_model(uri + "/") == folder  # a second reference reuses the download
    model, processor = load_whisper(uri)
    local, _ = load_whisper(tiny_random)
    for name, tensor in local.state_dict().items():
        assert torch.equal(tensor, model.state_dict()[name]), name
    assert processor.tokenizer.decode(processor.tokenizer("hello").input_ids, skip_special_tokens=True)


def test_missing_s3_model_is_a_clear_error(bucket, tmp_path, monkeypatch):
    from distilray.errors import ModelLoadError
    from distilray.models import resolve_model

    monkeypatch.setenv("DISTILRAY_CACHE", str(tmp_path / "cache"))
    with pytest.raises(ModelLoadError, match="s3://"):
        resolve_model(f"s3://{bucket}/models/nothing-here")


def upload_manifest(manifest: Path, uri: str) -> None:
    """Copy a synthetic dataset (wavs + manifest.jsonl with relative paths) to S3."""
    from distilray import storage

    storage.copy_tree(manifest.parent, uri)
