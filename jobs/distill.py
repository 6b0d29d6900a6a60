"""Distil the teacher into the student with Ray Train on the cluster (rerun to resume).

ray job submit --working-dir . -- python jobs/distill.py --config configs/large-v3/distill.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

from distilray.config import load_config
from distilray.distill.config import DistillConfig
from distilray.distill.trainer import run_distillation
from distilray.errors import DistilrayError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True, help="distill YAML config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        outcome = run_distillation(load_config(DistillConfig, args.config, args.overrides))
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    logging.getLogger("jobs.distill").info(
        "student %s: %d steps, eval WER %.4f", outcome.student, outcome.steps, outcome.eval_wer
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
