"""Evaluate teacher, student and speculative decoding on the cluster.

ray job submit --working-dir . -- python jobs/evaluate.py --config configs/large-v3/eval.yaml

Same arguments, output and exit codes as `distilray eval`: this script only names the stage.
"""

from __future__ import annotations

import sys

from distilray.cli import main as distilray


def main(argv: list[str] | None = None) -> int:
    return distilray(["eval", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
