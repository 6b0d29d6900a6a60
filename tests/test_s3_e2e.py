"""Storage on ``s3://`` end to end, against a real S3 API on localhost (moto).

Nothing here is mocked inside the process: boto3, pyarrow and every subprocess reach
the server through the standard ``AWS_*`` variables, as they would reach S3 or MinIO.
"""

from __future__ import annotations

import json
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
    assert processor.tokenizer.decode(
        processor.tokenizer("hello").input_ids, skip_special_tokens=True
    )


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


@pytest.mark.slow
def test_pipeline_jobs_read_and_write_s3(
    bucket, ray_head, tiny_random, synth_clips, tmp_path, monkeypatch
):
    """label -> init-student -> distill as one submitted job, every input and output on s3://."""
    import shlex
    import subprocess

    import pyarrow.parquet as pq

    from distilray import storage
    from distilray.models import load_whisper
    from local_head import RAY_BIN

    s3 = f"s3://{bucket}/e2e"
    upload_manifest(Path(synth_clips), f"{s3}/data")
    storage.copy_tree(tiny_random, f"{s3}/models/teacher")
    teacher = f"{s3}/models/teacher"
    stages = [
        ["python", "jobs/label.py", "--config", "configs/tiny/label.yaml",
         f"input={s3}/data/manifest.jsonl", f"output={s3}/labels", f"teacher={teacher}",
         "batch_size=4", "prepare_batch_size=4", "max_label_length=16", "shard_rows=4",
         "concatenate_audio=false", "encoder_cache_dir=null"],
        ["python", "jobs/init_student.py", "--config", "configs/tiny/init_student.yaml",
         f"teacher={teacher}", f"out={s3}/students/init"],
        ["python", "jobs/distill.py", "--config", "configs/tiny/distill.yaml",
         f"data.train={s3}/labels", "data.wer_threshold=null", f"data.eval={s3}/labels",
         f"model.teacher={teacher}",
         f"model.student={s3}/students/init", "train.max_steps=2", "train.eval_every=1",
         "train.batch_size=1", "train.eval_max_new_tokens=8", "train.shuffle_buffer=null",
         "train.encoder_cache_dir=null",
         "optim.warmup_steps=1", "scaling.cpus_per_worker=0.5", f"run.storage={s3}/train",
         "run.name=e2e", "run.export_checkpoint=latest", f"run.export_to={s3}/students/distilled"],
    ]  # fmt: skip
    # One job runs the stages in turn, as deploy/rayjob.yaml's entrypoint does.
    entrypoint = ["bash", "-c", " && ".join(shlex.join(stage) for stage in stages)]
    result = subprocess.run(
        [str(RAY_BIN), "job", "submit", "--address", ray_head.dashboard_url,
         "--working-dir", ".", "--", *entrypoint],
        env=ray_head.client_env(), capture_output=True, text=True, timeout=900,
        cwd=Path(__file__).resolve().parents[1],
    )  # fmt: skip
    assert result.returncode == 0, (result.stdout + result.stderr)[-5000:]

    # Labelled Parquet on S3: every input id exactly once, with a pseudo-label.
    shards = [f for f in storage.list_files(f"{s3}/labels") if f.endswith(".parquet")]
    assert shards and storage.exists(f"{s3}/labels/_manifest.json")
    fs, _ = storage.filesystem_for(s3)
    rows = [
        r
        for shard in shards
        for r in pq.read_table(storage.filesystem_for(shard)[1], filesystem=fs).to_pylist()
    ]
    inputs = [json.loads(line)["id"] for line in Path(synth_clips).read_text().splitlines()]
    assert sorted(r["id"] for r in rows) == sorted(inputs)
    assert all(r["error"] is None and r["pseudo_label_ids"] for r in rows)
    # Checkpoints and the exported student on S3; the student loads from its s3:// URI.
    checkpoints = {f.split("/checkpoint_step_")[1].split("/")[0]
                   for f in storage.list_files(f"{s3}/train/e2e") if "/checkpoint_step_" in f}  # fmt: skip
    assert {"00000001", "00000002"} <= checkpoints
    monkeypatch.setenv("DISTILRAY_CACHE", str(tmp_path / "cache"))
    student, _ = load_whisper(f"{s3}/students/distilled")
    assert student.config.decoder_layers == 2
