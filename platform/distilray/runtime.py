"""Where the stages run: an existing Ray cluster, or an embedded local instance.

:func:`ensure_ray` decides the way ``ray.init()`` does: with ``RAY_ADDRESS`` set (as
under ``ray job submit``) it joins that cluster; else, when ``ray start`` runs a
cluster this node belongs to, it joins that one; else it starts an embedded Ray with
no cluster at all. Stages call :func:`ensure_ray` and never care which.

When the project starts Ray itself, Ray's own INFO and WARNING lines stay off the
console (``-v`` shows them) and in Ray's session logs (``ray-data.log``, the
workers' files); errors, and the project's own progress lines, still reach it.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)

RAY_CONSOLE_LEVEL = logging.ERROR  # Ray's own lines shown on the console without -v
RAY_CONSOLE_LOGGERS = ("ray", "ray.data")  # the loggers Ray gives a console handler


def verbose() -> bool:
    """Whether the user asked for everything on the console (``-v``: the root logger
    at DEBUG); then Ray's own INFO lines are shown too."""
    return logging.getLogger().isEnabledFor(logging.DEBUG)


def running_cluster() -> str | None:
    """Address of the cluster ``ray start`` started (or joined) on this node, if any.

    The same lookup ``ray.init()`` makes without an address: the address file ``ray
    start`` writes into Ray's temp folder (``/tmp/ray``, or under ``RAY_TMPDIR``).
    """
    from ray._private.services import canonicalize_bootstrap_address

    if os.environ.get("RAY_ADDRESS"):
        return None  # ray.init() reads it itself (it may be a ray:// client address)
    return canonicalize_bootstrap_address(None)


def quiet_ray_console() -> None:
    """Ray's INFO/WARNING off the console; its session log files keep them."""
    from ray.data import DataContext  # installs Ray Data's handlers, then we adjust them

    if verbose():
        return
    for name in RAY_CONSOLE_LOGGERS:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.setLevel(RAY_CONSOLE_LEVEL)
    context = DataContext.get_current()
    context.enable_progress_bars = False  # labelling and training log their own progress
    context.print_on_execution_start = False


TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"
TOKEN_AUTH_NOTICE = "Token authentication is enabled for this Ray cluster"


class _DefaultTokenAuthNotice(logging.Filter):
    """Drops Ray's notice that a new local cluster uses token auth, its default."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(TOKEN_AUTH_NOTICE)


def hide_default_token_auth_notice() -> None:
    """Ray keeps token authentication on for the embedded instance (its default, which
    ``RAY_AUTH_MODE=disabled`` turns off) without saying so at every start. Ray reads
    the mode once per process, so it is not set here: only the notice is filtered."""
    log = logging.getLogger(TOKEN_AUTH_LOGGER)
    if not any(isinstance(f, _DefaultTokenAuthNotice) for f in log.filters):
        log.addFilter(_DefaultTokenAuthNotice())


def quiet_ray_data_processes() -> str | None:
    """Ray Data's INFO/WARNING off the console in every process of an embedded Ray.

    Ray Data's coordinators and the training workers log each dataset execution
    ("Dataset train_… execution finished", "Progress bars disabled") to their console,
    which Ray forwards to ours once per epoch. Ray Data reads its logging setup from
    the file named by ``RAY_DATA_LOGGING_CONFIG`` in each process; this writes Ray's
    own default with the console handler at ERROR (``ray-data.log`` in the session
    folder keeps everything) and names it, unless the user set one or asked for -v.
    Returns the file's path, or None when nothing was changed.
    """
    import copy
    import json
    import tempfile

    from ray.data._internal import logging as ray_data_logging  # the default it would use

    name = ray_data_logging.RAY_DATA_LOGGING_CONFIG_ENV_VAR_NAME
    if os.environ.get(name) or verbose():
        return None
    config = copy.deepcopy(ray_data_logging.DEFAULT_CONFIG)
    for handler in config.get("handlers", {}).values():
        if handler.get("class", "").endswith(("PlainRayHandler", "StreamHandler")):
            handler["level"] = logging.getLevelName(RAY_CONSOLE_LEVEL)
    path = os.path.join(tempfile.gettempdir(), f"distilray-ray-data-logging-{os.getuid()}.json")
    with open(path, "w") as f:  # JSON is YAML: Ray Data loads it with yaml.safe_load
        json.dump(config, f)
    os.environ[name] = path
    return path


PREEMPTION_WATCHER_ENV = "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER"


def no_preemption_watcher() -> None:
    """No Ray Train preemption watcher on an embedded Ray (unless the user asks for one).

    Ray Train starts an actor per run that polls for nodes being drained (spot
    instances reclaimed); one embedded node is never drained, and creating that actor
    logs an error line at every run (ray-project/ray#53727). Ray Train passes this
    variable from the driver to its controller.
    """
    os.environ.setdefault(PREEMPTION_WATCHER_ENV, "0")


def ensure_ray(num_cpus: int | None = None) -> None:
    """Initialise Ray once per process (no-op when already initialised)."""
    import ray

    if ray.is_initialized():
        return
    quiet_ray_console()
    kwargs: dict = {"configure_logging": False, "log_to_driver": True}
    address = running_cluster()
    if os.environ.get("RAY_ADDRESS") or address:
        ray.init(address=address, **kwargs)
        logger.info("joined Ray cluster at %s", address or os.environ["RAY_ADDRESS"])
        return
    # Embedded: give Ray a few more logical CPUs than cores so a Ray Train worker
    # group and the Ray Data tasks feeding it can run side by side on 2 cores.
    cpus = num_cpus or max(4, os.cpu_count() or 1)
    hide_default_token_auth_notice()
    quiet_ray_data_processes()
    no_preemption_watcher()
    # The dashboard serves the state API that Ray Train's placement-group cleaner polls
    # (without it the cleaner logs a warning every second); port 8265 or the next free one.
    # Ray sizes worker start-up, and the worker count past which it warns, by physical
    # cores rather than by the logical CPUs given here, and a training run's controller,
    # workers and Ray Data coordinators pass that count on 2 cores.
    system = {"worker_maximum_startup_concurrency": cpus}
    ray.init(
        address="local", num_cpus=cpus, include_dashboard=True, _system_config=system, **kwargs
    )
    logger.info("started embedded Ray (%d logical CPUs)", cpus)
    _watch_embedded_ray()


def _watch_embedded_ray() -> None:
    """Stop this embedded Ray's processes too if this process is killed (SIGKILL)."""
    from distilray.ray_watchdog import watch

    session_dir = _session_dir()
    if session_dir:
        watch(session_dir)


def _session_dir() -> str | None:
    """The session folder of the Ray this process started (None if unknown)."""
    import ray

    node = getattr(ray._private.worker.global_worker, "node", None)  # no public accessor
    try:
        return node.get_session_dir_path() if node is not None else None
    except AttributeError:
        return None


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cluster_has_gpus() -> bool:
    """True when the Ray cluster (not necessarily this process) offers GPUs."""
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
