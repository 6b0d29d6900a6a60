"""Fault tolerance: a node lost while labelling, a worker lost while distilling, a Serve
replica killed while answering. Each check that nothing was lost or done twice.

Every scenario runs in a subprocess (tests/fault_scenarios.py) with its own Ray: a
multi-node local cluster whose nodes can be removed cannot share this session's Ray.
The subprocess gets a private ``RAY_TMPDIR`` and its own process group; whatever of
it outlives the run is killed by process group and temp dir, nothing else.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from local_head import RAY_BIN, kill_leftovers

pytestmark = pytest.mark.slow  # each scenario brings its own Ray (not the session one)

HERE = Path(__file__).resolve().parent
SCENARIO_TIMEOUT_S = 600  # a safety net: a quiet 2-core machine needs ~1-2 min


def run_scenario(name: str, out_dir: Path, *options: str) -> tuple[dict, str]:
    """Run one scenario to completion; its JSON report and its log."""
    ray_tmp = tempfile.mkdtemp(prefix="ft", dir="/tmp")  # short: Ray's sockets live here
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmp,
        "RAY_AUTH_MODE": "disabled",
        "RAY_DATA_DISABLE_PROGRESS_BARS": "1",  # progress bars flood the log, cost CPU
        "PATH": f"{RAY_BIN.parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("RAY_ADDRESS", None)
    report = out_dir / f"{name}.json"
    log = out_dir / f"{name}.log"
    cmd = [sys.executable, str(HERE / "fault_scenarios.py"), name, "--out", str(report), *options]
    with open(log, "w") as log_file:
        proc = subprocess.Popen(
            cmd, env=env, stdout=log_file, stderr=subprocess.STDOUT, start_new_session=True
        )
        try:
            proc.wait(timeout=SCENARIO_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        finally:
            kill_leftovers(ray_tmp, proc.pid)
    text = log.read_text()
    assert proc.returncode == 0, f"scenario {name} failed (rc {proc.returncode}):\n{text[-4000:]}"
    return json.loads(report.read_text()), text


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory, tiny_random, synth_clips) -> tuple[dict, str]:
    """Label then distil on a 1-worker cluster whose worker is replaced mid-stage, twice."""
    out = tmp_path_factory.mktemp("faults")
    return run_scenario(
        "pipeline", out, "--teacher", str(tiny_random), "--clips", str(synth_clips),
        "--workdir", str(out / "work"),
    )  # fmt: skip


def test_labelling_survives_node_loss_every_row_once(pipeline):
    report = pipeline[0]["label"]
    assert report["killed_at"], "the worker node was replaced during labelling"
    assert 0 < report["done_at_kill"] < report["inputs"], "the node died mid-run"
    assert report["errors"] == 0
    written = report["ids_written"]
    assert len(written) == len(set(written)), "some inputs were labelled twice"
    assert sorted(written) == sorted(report["input_ids"]), "some inputs were never labelled"


def test_distillation_resumes_from_checkpoint_after_worker_loss(pipeline):
    report, log = pipeline[0]["distill"], pipeline[1]
    assert report["killed_at"], "the training worker's node was replaced"
    at_kill = {int(step): mtime for step, mtime in report["checkpoints_at_kill"].items()}
    final = {int(step): mtime for step, mtime in report["checkpoints"].items()}
    assert at_kill and max(at_kill) < report["max_steps"], "the worker died mid-training"
    assert "[FailurePolicy] RETRY" in log, "Ray Train retried the worker group"
    # Resumed, not restarted: the checkpoint taken before the loss was never rewritten,
    # and every later one was written after it.
    last = max(at_kill)
    assert final[last] == at_kill[last]
    later = [step for step in final if step > last]
    assert later and all(final[step] > report["killed_at"] for step in later)
    # ... and it finished: the exported student is the final step's, loadable.
    assert report["steps"] == report["max_steps"] == max(final)
    assert {"config.json", "model.safetensors"} <= set(report["student_files"])


def test_serve_replica_killed_requests_still_answered(tmp_path, tiny_en, synth_clips):
    report, _ = run_scenario(
        "serve", tmp_path, "--teacher", str(tiny_en), "--clips", str(synth_clips)
    )
    baseline = report["baseline"]
    assert all(baseline), "every clip transcribed before the fault"
    # A replacement replica took the killed one's place.
    assert report["killed"] in report["replicas_before"]
    assert report["killed"] not in report["replicas_after"]
    assert len(report["replicas_after"]) == len(report["replicas_before"])
    # Requests sent while the replica died: each answered (a client retries 5xx), and
    # answered correctly.
    during = report["during"]
    assert during, "traffic was flowing when the replica was killed"
    for request in during:
        assert request["text"] == baseline[request["clip"]], request
    # A request lost with its replica is retried on the other one, or answered 503 with
    # Retry-After: never a bare 500.
    statuses = [a for request in during for a in request["attempts"]]
    assert 500 not in statuses, statuses
    # After recovery every clip gets the same transcript as before the fault.
    assert report["after"] == baseline
