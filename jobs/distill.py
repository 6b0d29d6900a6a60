"""Distil the teacher into the student with Ray Train on the cluster (rerun to resume).

ray job submit --working-dir . -- python jobs/distill.py --config configs/large-v3/distill.yaml

Same arguments, output and exit codes as `distilray distill`: this script only names the stage.
"""

from __future__ import annotations

import sys

from distilray.cli import main as distilray


def main(argv: list[str] | None = None) -> int:
    return distilray(["distill", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
