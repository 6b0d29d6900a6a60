"""Stop an embedded Ray when the process that started it dies without shutting it down.

A stage killed with SIGKILL (or by the OOM killer) never runs ``ray.shutdown()``:
Ray's GCS and raylet notice, but its dashboard, runtime-env and log agents and idle
workers linger for a minute or more. :func:`watch` starts this module as a small
detached process that polls the stage's pid and, once it is gone, terminates every
process of *that* Ray session (found by the session folder on its command line),
never another Ray on the machine. It reads ``/proc``: on other systems it does nothing.

    python -m distilray.ray_watchdog DRIVER_PID SESSION_DIR
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

POLL_S = 1.0  # how often the driver is checked
GRACE_S = 3.0  # SIGTERM, then SIGKILL after this long
PROC = Path("/proc")


def watch(session_dir: str) -> subprocess.Popen | None:
    """Start the watchdog for this process and its embedded Ray session (Linux only)."""
    if not PROC.is_dir():
        return None
    return subprocess.Popen(
        [sys.executable, "-m", "distilray.ray_watchdog", str(os.getpid()), session_dir],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # not killed with the driver's process group
    )


def alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie, dead but not reaped, does not)."""
    try:
        stat = (PROC / str(pid) / "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def session_processes(session_dir: str, exclude: int) -> list[int]:
    """Pids whose command line names ``session_dir`` (this session's Ray)."""
    found = []
    for entry in PROC.iterdir():
        if not entry.name.isdigit() or int(entry.name) == exclude:
            continue
        with contextlib.suppress(OSError):
            if session_dir.encode() in (entry / "cmdline").read_bytes():
                found.append(int(entry.name))
    return found


def stop_session(session_dir: str) -> int:
    """Terminate the session's processes (SIGKILL the stubborn); how many there were."""
    pids = session_processes(session_dir, exclude=os.getpid())
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + GRACE_S
    while time.monotonic() < deadline and any(alive(p) for p in pids):
        time.sleep(0.1)
    for pid in pids:
        if alive(pid):
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
    return len(pids)


def main(argv: list[str]) -> int:
    driver, session_dir = int(argv[0]), argv[1]
    while alive(driver):
        time.sleep(POLL_S)
    stop_session(session_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
