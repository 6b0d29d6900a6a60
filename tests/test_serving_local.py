"""The local endpoint's start-up checks: a busy port fails in a second, clearly."""

from __future__ import annotations

import socket

import pytest

from distilray.errors import DistilrayError
from distilray.serving.config import ServeArgs
from distilray.serving.local import local_endpoint


def test_a_busy_port_is_a_clear_error_before_ray_or_serve_start():
    import ray

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        was_running = ray.is_initialized()
        busy_port = f"port {port} on 127.0.0.1 is in use"
        with (
            pytest.raises(DistilrayError, match=busy_port),
            local_endpoint(ServeArgs(api_key_env=None), "127.0.0.1", port),
        ):
            pytest.fail("the block must not run")
        assert ray.is_initialized() == was_running  # nothing started, nothing to shut down
