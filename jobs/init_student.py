"""Initialise a student from its teacher on the cluster.

ray job submit --working-dir . -- python jobs/init_student.py --config configs/large-v3/init_student.yaml

Same arguments, output and exit codes as `distilray init-student`: this script only names the stage.
"""

from __future__ import annotations

import sys

from distilray.cli import main as distilray


def main(argv: list[str] | None = None) -> int:
    return distilray(["init-student", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
