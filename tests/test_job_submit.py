"""``ray job submit`` against a real head, as the README runs every stage.

The head is started with ``ray start --head`` and token authentication (the Ray 2.60
cluster path: ``RAY_AUTH_MODE=token`` on the head and the client, the token from a
file); a client without the token is turned away. It is stopped by signalling only
its own processes, never with ``ray stop``.
"""

from __future__ import annotations

import json
import subprocess
import urllib.error
import uuid
from pathlib import Path

import pytest

from local_head import RAY_BIN, LocalRayHead

pytestmark = pytest.mark.slow  # its own head via `ray start` (not the session Ray)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def head(ray_head):
    """The session's ``ray start`` head (tests/conftest.py)."""
    return ray_head


def ray_cli(head: LocalRayHead, *args: str, token: bool = True, timeout: float = 300):
    return subprocess.run(
        [str(RAY_BIN), *args],
        env=head.client_env(with_token=token),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
    )


def submit(head: LocalRayHead, entrypoint: list[str], *, token: bool = True, timeout=300):
    """``ray job submit --working-dir .`` from the repository root; (result, job id)."""
    job_id = f"test-{uuid.uuid4().hex[:8]}"
    result = ray_cli(
        head,
        "job", "submit", "--address", head.dashboard_url, "--submission-id", job_id,
        "--working-dir", ".", "--", *entrypoint,
        token=token, timeout=timeout,
    )  # fmt: skip
    return result, job_id


def job_status(head: LocalRayHead, job_id: str) -> str:
    """SUCCEEDED, FAILED, ... from the Jobs REST API (what ``ray job status`` asks)."""
    return head.api(f"/api/jobs/{job_id}")["status"]


def job_logs(head: LocalRayHead, job_id: str) -> str:
    return head.api(f"/api/jobs/{job_id}/logs")["logs"]


def test_submit_with_token_runs_in_the_uploaded_working_dir(head):
    probe = (
        "import json, os, distilray; "
        "print('PROBE', json.dumps({'files': sorted(os.listdir('.')), "
        "'version': distilray.__version__}))"
    )
    result, job_id = submit(head, ["python", "-c", probe])
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-3000:]
    assert job_status(head, job_id) == "SUCCEEDED"
    logs = job_logs(head, job_id)
    probe_line = next(line for line in logs.splitlines() if line.startswith("PROBE "))
    seen = json.loads(probe_line[len("PROBE ") :])
    # The job runs in the uploaded copy of the repository, without the heavy parts.
    assert {"jobs", "configs", "pyproject.toml", "cluster.yaml"} <= set(seen["files"])
    assert not {".git", ".venv", "runs"} & set(seen["files"])
    assert seen["version"]


def test_submit_without_token_is_refused(head):
    result, job_id = submit(head, ["python", "-c", "print('should not run')"], token=False)
    assert result.returncode != 0
    assert "Unauthorized" in result.stdout + result.stderr
    with pytest.raises(urllib.error.HTTPError) as refused:
        head.api("/api/jobs/", token=False)
    assert refused.value.code == 401
    assert job_id not in {job["submission_id"] for job in head.api("/api/jobs/")}


def test_failing_job_reports_failed(head):
    result, job_id = submit(head, ["python", "jobs/distill.py", "--config", "no/such/config.yaml"])
    assert result.returncode != 0
    assert job_status(head, job_id) == "FAILED"
    logs = job_logs(head, job_id)
    assert "error:" in logs and "no/such/config.yaml" in logs
