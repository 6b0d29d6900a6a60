"""``ray job submit`` against a real head, as the README runs every stage.

The head is started with ``ray start --head`` and token authentication (the Ray 2.60
cluster path: ``RAY_AUTH_MODE=token`` on the head and the client, the token from a
file); a client without the token is turned away. It is stopped by signalling only
its own processes, never with ``ray stop``.
"""

from __future__ import annotations

import json
import shutil
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


def ray_cli(
    head: LocalRayHead, *args: str, token: bool = True, timeout: float = 300, cwd: Path = ROOT
):
    return subprocess.run(
        [str(RAY_BIN), *args],
        env=head.client_env(with_token=token),
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=cwd,
    )


def submit(
    head: LocalRayHead,
    entrypoint: list[str],
    *,
    token: bool = True,
    timeout=300,
    cwd: Path = ROOT,
    runtime_env: dict | None = None,
):
    """``ray job submit --working-dir .`` from ``cwd`` (the repository root); (result, job id)."""
    job_id = f"test-{uuid.uuid4().hex[:8]}"
    env_args = ["--runtime-env-json", json.dumps(runtime_env)] if runtime_env else []
    result = ray_cli(
        head,
        "job", "submit", "--address", head.dashboard_url, "--submission-id", job_id,
        "--working-dir", ".", *env_args, "--", *entrypoint,
        token=token, timeout=timeout, cwd=cwd,
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


# What the README's job submission prints from the driver and from a Ray task on a worker.
SHIPPED_PROBE = """
import json, ray, distilray

@ray.remote
def on_a_worker():
    import distilray
    return getattr(distilray, "EDITED_MARKER", None)

ray.init()
driver = getattr(distilray, "EDITED_MARKER", None)
print("PROBE", json.dumps({"driver": driver, "worker": ray.get(on_a_worker.remote())}))
"""


def test_py_modules_ship_the_edited_working_copy(head, tmp_path):
    """The nodes have distilray installed (this checkout's venv); a working copy edited
    since runs instead, in the driver and on workers, when the README's
    ``{"py_modules": ["platform/distilray"]}`` ships it."""
    copy = tmp_path / "checkout"
    shutil.copytree(
        ROOT / "platform" / "distilray",
        copy / "platform" / "distilray",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    (copy / "probe.py").write_text(SHIPPED_PROBE)
    marker = uuid.uuid4().hex
    init = copy / "platform" / "distilray" / "__init__.py"
    init.write_text(init.read_text() + f"\nEDITED_MARKER = {marker!r}  # edited after install\n")

    ship = {"py_modules": ["platform/distilray"]}
    result, job_id = submit(head, ["python", "probe.py"], cwd=copy, runtime_env=ship)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    logs = job_logs(head, job_id)
    probe = next(line for line in logs.splitlines() if line.startswith("PROBE "))
    assert json.loads(probe[len("PROBE ") :]) == {"driver": marker, "worker": marker}

    # Without py_modules the installed copy runs: the edit is not seen.
    result, job_id = submit(head, ["python", "probe.py"], cwd=copy)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    probe = next(line for line in job_logs(head, job_id).splitlines() if line.startswith("PROBE "))
    assert json.loads(probe[len("PROBE ") :]) == {"driver": None, "worker": None}
