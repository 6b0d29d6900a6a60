"""Evaluate teacher, student and speculative decoding on the cluster.

ray job submit --working-dir . -- python jobs/evaluate.py --config configs/large-v3/eval.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

from distilray.config import load_config
from distilray.errors import DistilrayError
from distilray.evaluation.config import EvalConfig
from distilray.evaluation.run import run_evaluation


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True, help="eval YAML config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        run_evaluation(load_config(EvalConfig, args.config, args.overrides))
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
