"""Where the stages run: an existing Ray cluster, or an embedded local instance.

Under ``ray job submit`` (or with ``RAY_ADDRESS`` set) ``ray.init()`` joins the
cluster; on a laptop it starts an embedded Ray with no cluster at all. Stages call
:func:`ensure_ray` and never care which.
"""

from __future__ import annotations

import logging
import os

logger = logging.getLogger(__name__)


def ensure_ray(num_cpus: int | None = None) -> None:
    """Initialise Ray once per process (no-op when already initialised)."""
    import ray

    if ray.is_initialized():
        return
    kwargs: dict = {"configure_logging": False, "log_to_driver": True}
    if os.environ.get("RAY_ADDRESS"):
        ray.init(**kwargs)
        logger.info("joined Ray cluster at %s", os.environ["RAY_ADDRESS"])
        return
    # Embedded: give Ray a few more logical CPUs than cores so a Ray Train worker
    # group and the Ray Data tasks feeding it can run side by side on 2 cores.
    cpus = num_cpus or max(4, os.cpu_count() or 1)
    # The dashboard serves the state API that Ray Train's placement-group cleaner polls
    # (without it the cleaner logs a warning every second); port 8265 or the next free one.
    ray.init(address="local", num_cpus=cpus, include_dashboard=True, **kwargs)
    logger.info("started embedded Ray (%d logical CPUs)", cpus)


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def cluster_has_gpus() -> bool:
    """True when the Ray cluster (not necessarily this process) offers GPUs."""
    import ray

    return ray.cluster_resources().get("GPU", 0) > 0
