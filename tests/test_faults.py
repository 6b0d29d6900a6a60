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

pytestmark = [pytest.mark.slow, pytest.mark.ray]

HERE = Path(__file__).resolve().parent
SCENARIO_TIMEOUT_S = 300


def run_scenario(name: str, out_dir: Path, *options: str) -> dict:
    """Run one scenario to completion and return its JSON report."""
    ray_tmp = tempfile.mkdtemp(prefix="ft", dir="/tmp")  # short: Ray's sockets live here
    env = {
        **os.environ,
        "RAY_TMPDIR": ray_tmp,
        "RAY_AUTH_MODE": "disabled",
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
        finally:
            kill_leftovers(ray_tmp, proc.pid)
    tail = log.read_text()[-4000:]
    assert proc.returncode == 0, f"scenario {name} failed (rc {proc.returncode}):\n{tail}"
    return json.loads(report.read_text())


def test_serve_replica_killed_requests_still_answered(tmp_path, tiny_en, synth_clips):
    report = run_scenario("serve", tmp_path, "--teacher", str(tiny_en), "--clips", str(synth_clips))
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
    # After recovery every clip gets the same transcript as before the fault.
    assert report["after"] == baseline
