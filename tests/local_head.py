"""A throwaway single-node Ray cluster started with ``ray start --head``, for tests
that go through the cluster's front door (``ray job submit``, ``RAY_ADDRESS``).

Every port is chosen free and the temp dir is private, so it runs beside other Ray
instances on the same machine. It is stopped by signalling only the processes it
started (its own process group and whatever lives in its temp dir): ``ray stop``
would stop every Ray on the machine.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

RAY_BIN = Path(sys.executable).with_name("ray")
PORT_FLAGS = (
    "--port",
    "--dashboard-port",
    "--ray-client-server-port",
    "--dashboard-agent-listen-port",
    "--dashboard-agent-grpc-port",
    "--metrics-export-port",
    "--runtime-env-agent-port",
    "--node-manager-port",
    "--object-manager-port",
)


def free_ports(n: int) -> list[int]:
    """``n`` distinct TCP ports free on 127.0.0.1 right now."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for sock in socks:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in socks]
    finally:
        for sock in socks:
            sock.close()


class LocalRayHead:
    """``ray start --head --block`` in its own process group, with token auth."""

    def __init__(self, num_cpus: int = 2, env: dict[str, str] | None = None):
        # Short path: Ray's unix sockets live below it (108-byte limit).
        self.temp_dir = Path(tempfile.mkdtemp(prefix="rh", dir="/tmp"))
        self.token_path = self.temp_dir / "auth_token"
        self.token_path.write_text(secrets.token_hex(32))
        self.token_path.chmod(0o600)
        self.ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        self.num_cpus = num_cpus
        self.extra_env = env or {}
        self.process: subprocess.Popen | None = None
        self.log = self.temp_dir / "ray_start.log"

    @property
    def dashboard_url(self) -> str:
        return f"http://127.0.0.1:{self.ports['--dashboard-port']}"

    @property
    def gcs_address(self) -> str:
        return f"127.0.0.1:{self.ports['--port']}"

    def client_env(self, with_token: bool = True) -> dict[str, str]:
        """Environment for ``ray job submit`` and drivers joining this head."""
        env = {**os.environ, **self.extra_env}
        # `python` in a job's entrypoint must be this interpreter, activated or not.
        env["PATH"] = f"{RAY_BIN.parent}{os.pathsep}{env.get('PATH', '')}"
        env.pop("RAY_ADDRESS", None)
        env.pop("RAY_AUTH_TOKEN", None)
        if with_token:
            env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN_PATH=str(self.token_path))
        else:
            env["RAY_AUTH_MODE"] = "disabled"
            env.pop("RAY_AUTH_TOKEN_PATH", None)
        return env

    def api(self, path: str, *, token: bool = True) -> dict:
        """GET a dashboard REST path (``/api/jobs/``...) and return its JSON."""
        request = urllib.request.Request(f"{self.dashboard_url}{path}")
        if token:
            request.add_header("Authorization", f"Bearer {self.token_path.read_text().strip()}")
        with urllib.request.urlopen(request, timeout=30) as response:
            return json.loads(response.read())

    def start(self, timeout_s: float = 90) -> LocalRayHead:
        ports = [f"{flag}={port}" for flag, port in self.ports.items()]
        cmd = [
            str(RAY_BIN), "start", "--head", "--block",
            "--node-ip-address=127.0.0.1", "--dashboard-host=127.0.0.1",
            "--include-dashboard=true", f"--num-cpus={self.num_cpus}",
            f"--temp-dir={self.temp_dir}", "--disable-usage-stats",
            f"--object-store-memory={256 * 1024**2}", *ports,
        ]  # fmt: skip
        with open(self.log, "wb") as log:
            self.process = subprocess.Popen(
                cmd,
                env=self.client_env(),
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group, stopped as one
            )
        self._wait_ready(timeout_s)
        return self

    def _wait_ready(self, timeout_s: float) -> None:
        """Until the dashboard answers (401 counts: it is up and enforcing auth)."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited:\n{self.log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(f"{self.dashboard_url}/api/version", timeout=2)
                return
            except urllib.error.HTTPError as exc:
                if exc.code in (401, 403):
                    return
            except OSError:
                pass
            time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"Ray head not ready in {timeout_s}s:\n{self.log.read_text()[-3000:]}")

    def _own_pids(self) -> list[int]:
        return pids_mentioning(self.temp_dir)

    def stop(self) -> None:
        """SIGTERM ``ray start --block`` (it shuts its children down in ~5 s), then
        SIGKILL whatever of its process group or temp dir is still running."""
        if self.process is None:
            return
        self.process.terminate()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and (self.process.poll() is None or self._own_pids()):
            time.sleep(0.2)
        kill_leftovers(self.temp_dir, self.process.pid)
        self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.temp_dir, ignore_errors=True)

    def __enter__(self) -> LocalRayHead:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def pids_mentioning(path: str | Path) -> list[int]:
    """Processes whose command line names ``path`` (a private Ray temp dir), read from
    Linux /proc; elsewhere the empty list (process groups still stop everything)."""
    mine, needle = [], str(path).encode()
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if needle in cmdline and int(entry.name) != os.getpid():
            mine.append(int(entry.name))
    return mine


def kill_leftovers(path: str | Path, pgid: int | None = None) -> None:
    """SIGKILL a process group we started and every process naming ``path``."""
    if pgid is not None:
        _signal_group(pgid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while (left := pids_mentioning(path)) and time.monotonic() < deadline:
        for pid in left:
            _signal(pid, signal.SIGKILL)
        time.sleep(0.2)
