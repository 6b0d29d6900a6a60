"""A stage killed with SIGKILL leaves no process of its embedded Ray behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from distilray.ray_watchdog import alive, session_processes, stop_session

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads /proc")


def test_stop_session_kills_only_that_sessions_processes(tmp_path):
    mine, other = str(tmp_path / "session_a"), str(tmp_path / "session_b")
    sleeper = "import sys, time; time.sleep(60)"
    ours = [subprocess.Popen([sys.executable, "-c", sleeper, f"--session-dir={mine}"])]
    theirs = subprocess.Popen([sys.executable, "-c", sleeper, f"--session-dir={other}"])
    try:
        assert sorted(session_processes(mine, exclude=os.getpid())) == [ours[0].pid]
        assert stop_session(mine) == 1
        ours[0].wait(timeout=10)
        assert alive(theirs.pid)
    finally:
        theirs.kill()
        theirs.wait()


@pytest.mark.slow
def test_sigkilled_stage_leaves_no_ray_process(tmp_path):
    """A driver that started the embedded Ray is SIGKILLed; its session's processes go."""
    ready = tmp_path / "session"
    script = textwrap.dedent(
        f"""
        import os, time
        os.environ["RAY_AUTH_MODE"] = "disabled"
        from distilray.runtime import ensure_ray, _session_dir
        ensure_ray(num_cpus=1)
        open({str(ready)!r}, "w").write(_session_dir())
        time.sleep(600)
        """
    )
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    driver = subprocess.Popen([sys.executable, "-c", script], env=env)
    deadline = time.monotonic() + 120
    while not ready.exists() and time.monotonic() < deadline:
        time.sleep(0.5)
    assert ready.exists(), "the embedded Ray did not start"
    session = ready.read_text()
    assert session_processes(session, exclude=driver.pid), "Ray runs for the driver"
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 30  # the issue measured over a minute before
    while session_processes(session, exclude=-1) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert session_processes(session, exclude=-1) == []
