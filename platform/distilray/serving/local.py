"""Serve the app on this machine: embedded Ray, HTTP on one host and port."""

from __future__ import annotations

import errno
import logging
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager

from distilray.errors import DistilrayError
from distilray.serving.config import ServeArgs

logger = logging.getLogger(__name__)

APP_NAME = "distilray"


def check_port_free(host: str, port: int) -> None:
    """Fail early, with the fix, when ``host:port`` cannot be bound."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise DistilrayError(
                    f"port {port} on {host} is in use: pick another with --port"
                ) from None
            raise DistilrayError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


def check_models(args: ServeArgs) -> None:
    """Resolve teacher and assistant here first: a bad reference fails in seconds, clearly."""
    from distilray.models import resolve_model

    for ref in (args.teacher, args.assistant):
        if ref:
            resolve_model(ref)


def start_local(
    args: ServeArgs,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    model_cpus: float = 1.0,
    quiet: bool = False,
) -> str:
    """Deploy the app on the embedded (or ``RAY_ADDRESS``) Ray; its base URL.

    The model replica asks for ``model_cpus`` CPUs and no GPU unless CUDA is here.
    ``quiet``: Serve's INFO lines (replicas starting and stopping, one access-log line
    per request) stay in its log files, off the console (a short check, not a server).
    """
    from ray import serve

    from distilray.runtime import cuda_available, ensure_ray
    from distilray.serving.app import make_app

    check_port_free(host, port)
    check_models(args)
    ensure_ray()
    logging_config = None
    if quiet:
        logging_config = {"log_level": "WARNING", "enable_access_log": False}
        logging.getLogger("ray.serve").setLevel(logging.WARNING)  # this process's lines
    serve.start(http_options={"host": host, "port": port}, logging_config=logging_config)
    resources = {"num_cpus": model_cpus, "num_gpus": 1 if cuda_available() else 0}
    app = make_app(args, model_options={"ray_actor_options": resources})
    try:
        serve.run(app, name=APP_NAME, route_prefix="/", logging_config=logging_config)
    except RuntimeError as exc:  # a replica failed to start; its traceback is in the log
        serve.shutdown()
        raise DistilrayError(f"the endpoint failed to start: {exc}") from None
    url = f"http://{host}:{port}"
    logger.info("serving %s at %s/v1/audio/transcriptions", args.model_name, url)
    return url


@contextmanager
def local_endpoint(
    args: ServeArgs,
    host: str = "127.0.0.1",
    port: int = 8000,
    *,
    model_cpus: float = 1.0,
    quiet: bool = False,
) -> Iterator[str]:
    """:func:`start_local` for the length of a ``with`` block: yields the base URL, then
    shuts Serve down and gives this process's ``ray.serve`` logger its level back."""
    from ray import serve

    serve_logger = logging.getLogger("ray.serve")
    level = serve_logger.level
    try:  # a failed start has already cleaned up after itself (nothing to shut down)
        url = start_local(args, host, port, model_cpus=model_cpus, quiet=quiet)
    except BaseException:
        serve_logger.setLevel(level)
        raise
    try:
        yield url
    finally:
        try:
            serve.shutdown()
        finally:
            serve_logger.setLevel(level)


def serve_forever(
    args: ServeArgs, host: str = "127.0.0.1", port: int = 8000, *, model_cpus: float = 1.0
) -> None:
    """:func:`local_endpoint` until Ctrl-C."""
    with local_endpoint(args, host, port, model_cpus=model_cpus) as url:
        print(
            f"distilray: serving on {url} (POST /v1/audio/transcriptions); Ctrl-C stops",
            flush=True,
        )
        try:
            while True:
                time.sleep(1.0)
        except KeyboardInterrupt:
            logger.info("stopping")
