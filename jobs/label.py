"""Pseudo-label manifests with the teacher on the cluster (Ray Data).

ray job submit --working-dir . -- python jobs/label.py --config configs/large-v3/label.yaml

Same arguments, output and exit codes as `distilray label`: this script only names the stage.
"""

from __future__ import annotations

import sys

from distilray.cli import main as distilray


def main(argv: list[str] | None = None) -> int:
    return distilray(["label", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
