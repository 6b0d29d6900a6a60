"""Distillation with everything on ``s3://`` (moto on localhost): models, labels,
checkpoints, history and the exported student; a rerun with more steps resumes
from the S3 checkpoint. Runs the real ``distilray`` commands in subprocesses, which
start their own embedded Ray with the S3 endpoint in their environment."""

from __future__ import annotations

import subprocess
import sys
import uuid

import pytest
import yaml

from labelled import labelled_table, parquet_bytes

pytestmark = [pytest.mark.s3, pytest.mark.slow]


@pytest.fixture(scope="module")
def bucket(s3_server) -> str:
    import boto3

    name = f"distill-{uuid.uuid4().hex[:10]}"
    boto3.client("s3").create_bucket(Bucket=name)
    return name


def _distilray(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "distilray.cli", *args],
        capture_output=True,
        text=True,
        timeout=900,
    )


def test_distill_on_s3_exports_and_resumes(bucket, tiny_random, synth_clips, tmp_path):
    from transformers import WhisperTokenizer

    from distilray import storage
    from distilray.distill.history import read_history
    from distilray.models import load_whisper

    base = f"s3://{bucket}"
    storage.copy_tree(tiny_random, f"{base}/models/teacher")
    tokenizer = WhisperTokenizer.from_pretrained(tiny_random)
    labels = parquet_bytes(labelled_table(synth_clips, tokenizer, copies=3))
    storage.write_bytes(f"{base}/labels/part-0.parquet", labels)
    init = _distilray(
        "init-student", "--teacher", f"{base}/models/teacher", "--out", f"{base}/models/init"
    )
    assert init.returncode == 0, init.stderr[-2000:]

    config = {
        "data": {"train": f"{base}/labels", "eval_fraction": 0.2, "eval_max_rows": 2},
        "model": {"teacher": f"{base}/models/teacher", "student": f"{base}/models/init"},
        "optim": {"warmup_steps": 1},
        "train": {"max_steps": 4, "batch_size": 2, "eval_every": 2, "eval_max_new_tokens": 4},
        "scaling": {"num_workers": 1, "use_gpu": False, "cpus_per_worker": 1},
        "run": {"name": "s3run", "storage": f"{base}/train", "export_to": f"{base}/student"},
    }
    path = tmp_path / "distill.yaml"
    path.write_text(yaml.safe_dump(config))
    first = _distilray("distill", "--config", str(path))
    assert first.returncode == 0, first.stderr[-3000:]
    second = _distilray("distill", "--config", str(path), "train.max_steps=6")
    assert second.returncode == 0, second.stderr[-3000:]

    history = read_history(f"{base}/train/s3run/history.jsonl")
    assert [(h["step"], h["attempt_start_step"]) for h in history] == [
        (2, 0),
        (4, 0),
        (6, 4),
    ]
    files = storage.list_files(f"{base}/train/s3run")
    assert any(f.endswith("checkpoint_step_00000006/train_state.pt") for f in files)
    card = storage.read_bytes(f"{base}/student/README.md").decode()
    assert card.startswith("---\nlicense: mit\n") and "# Distilled Whisper student: student" in card
    model, _ = load_whisper(f"{base}/student")
    assert model.config.decoder_layers == 2
