"""What a user sees on the console of a stage run on an embedded Ray: the project's
progress lines, and none of Ray's own chatter (its session logs keep that)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from labelled import labelled_table

ROOT = Path(__file__).resolve().parents[1]

# Lines Ray printed at every distillation before the console was quieted.
RAY_CHATTER = [
    "RayDeprecationWarning",  # Ray Train's default ingest options (exclude_resources)
    "PreemptionWatcher",  # the watcher actor's creation logged an error line
    "worker processes have been started",  # raylet: too many workers for 2 cores
    "Reporting training result",  # Ray Train INFO, one per report
    "Checkpoint successfully created",  # Ray Train INFO
    "Moving model to device",  # Ray Train INFO
    "Attempting to start training worker group",  # Ray Train INFO
]


@pytest.fixture(scope="module")
def run_inputs(synth_clips, tiny_random, tmp_path_factory) -> dict[str, Path]:
    from transformers import WhisperTokenizer

    from distilray.student import StudentInitConfig, init_student

    root = tmp_path_factory.mktemp("quiet")
    labels = root / "labels"
    labels.mkdir()
    tokenizer = WhisperTokenizer.from_pretrained(tiny_random)
    pq.write_table(labelled_table(synth_clips, tokenizer, 2), labels / "part-0.parquet")
    student = root / "student"
    init_student(StudentInitConfig(teacher=str(tiny_random), decoder_layers=2, out=str(student)))
    return {"root": root, "labels": labels, "student": student}


@pytest.fixture
def embedded_env(tmp_path_factory) -> Iterator[dict[str, str]]:
    """The environment of a user's shell: the stage starts its own embedded Ray (in a
    temp folder of its own: Ray's socket paths must stay short)."""
    ray_tmp = tempfile.mkdtemp(prefix="ray-")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_TMPDIR"] = ray_tmp  # no cluster `ray start` left here to join
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "platform"), env.get("PYTHONPATH", "")])
    yield env
    shutil.rmtree(ray_tmp, ignore_errors=True)


def test_distill_console_shows_progress_and_no_ray_chatter(run_inputs, tiny_random, embedded_env):
    root = run_inputs["root"]
    argv = [
        sys.executable, "jobs/distill.py", "--config", "configs/tiny/distill.yaml",
        f"data.train={run_inputs['labels']}", "data.keep_unscored=false",
        "data.eval_fraction=0.25", "data.eval=null",
        "data.eval_max_rows=2", f"model.teacher={tiny_random}",
        f"model.student={run_inputs['student']}", "train.max_steps=2", "train.eval_every=2",
        "train.batch_size=2", "train.eval_max_new_tokens=4", "train.encoder_cache_dir=null",
        "train.log_every=1", "optim.warmup_steps=1", f"run.storage={root / 'train'}",
        "run.name=quiet", f"run.export_to={root / 'out'}",
    ]  # fmt: skip
    result = subprocess.run(
        argv, cwd=ROOT, env=embedded_env, capture_output=True, text=True, timeout=600
    )
    console = result.stdout + result.stderr
    assert result.returncode == 0, console[-4000:]
    assert "step 2/2: loss" in console  # the project's own progress
    assert "step 2: checkpoint saved" in console
    assert [line for line in RAY_CHATTER if line in console] == []


SERVE_CHECK = """
import logging, sys, requests
from ray import serve  # configures its logger on import: the level a caller sees
from distilray.serving.config import ServeArgs
from distilray.serving.local import local_endpoint

args = ServeArgs(teacher=sys.argv[1], api_key_env=None)
before = logging.getLogger("ray.serve").level
with local_endpoint(args, port=int(sys.argv[3]), quiet=True) as url:
    with open(sys.argv[2], "rb") as f:
        resp = requests.post(url + "/v1/audio/transcriptions", files={"file": f}, timeout=120)
print("status", resp.status_code)
print("serve logger restored", logging.getLogger("ray.serve").level == before)
"""


def test_quiet_local_endpoint_answers_without_serve_log_lines(
    tiny_random, synth_clips, embedded_env
):
    """The demo's serving check: no replica start/stop or access-log lines on the console."""
    import json
    import socket

    first = json.loads(Path(synth_clips).read_text().splitlines()[0])
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    clip = Path(synth_clips).parent / first["audio"]
    result = subprocess.run(
        [sys.executable, "-c", SERVE_CHECK, str(tiny_random), str(clip), str(port)],
        cwd=ROOT, env=embedded_env, capture_output=True, text=True,
        timeout=600,
    )  # fmt: skip
    console = result.stdout + result.stderr
    assert result.returncode == 0 and "status 200" in console, console[-4000:]
    assert "serve logger restored True" in console  # quiet for the check, not for the caller
    # Serve's own format: "INFO <time> <component> <id> -- <message>"
    serve_info = [line for line in console.splitlines() if "INFO" in line and " -- " in line]
    assert serve_info == []
