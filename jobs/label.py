"""Pseudo-label manifests with the teacher on the cluster (Ray Data).

ray job submit --working-dir . -- python jobs/label.py --config configs/large-v3/label.yaml
"""

from __future__ import annotations

import argparse
import logging
import sys

from distilray.config import load_config
from distilray.errors import DistilrayError
from distilray.labelling.config import LabelConfig
from distilray.labelling.pipeline import run_labelling
from distilray.labelling.summary import format_summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", "-c", required=True, help="label YAML config")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        cfg = load_config(LabelConfig, args.config, args.overrides)
        result = run_labelling(cfg)
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(result["summary"], result["run"], cfg.output))
    return 0


if __name__ == "__main__":
    sys.exit(main())
