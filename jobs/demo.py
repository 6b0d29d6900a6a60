"""The whole pipeline on the embedded teacher, end to end.

python jobs/demo.py --config configs/tiny/demo.yaml    (what `make demo` runs)

Same arguments, output and exit codes as `distilray demo`: this script only names the stage.
"""

from __future__ import annotations

import sys

from distilray.cli import main as distilray


def main(argv: list[str] | None = None) -> int:
    return distilray(["demo", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
