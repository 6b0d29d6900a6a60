"""Initialise a student from its teacher on the cluster.

ray job submit --working-dir . -- python jobs/init_student.py --config configs/large-v3/init_student.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

from distilray.config import load_config
from distilray.errors import DistilrayError
from distilray.student import StudentInitConfig, init_student


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True, help="init_student YAML config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        init_student(load_config(StudentInitConfig, args.config, args.overrides))
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
