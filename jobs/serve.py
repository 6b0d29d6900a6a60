"""Deploy serve_config.yaml from inside the cluster (the apps outlive this job).

ray job submit --working-dir . -- python jobs/serve.py --config serve_config.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

from distilray.errors import DistilrayError
from distilray.serving.deploy_config import deploy


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", default="serve_config.yaml", help="Serve deploy config")
    parser.add_argument("--no-wait", action="store_true", help="return before the apps are RUNNING")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        names = deploy(args.config, wait=not args.no_wait)
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("jobs.serve").info("deployed %s", ", ".join(names))
    return 0


if __name__ == "__main__":
    sys.exit(main())
