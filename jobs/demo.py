"""The whole pipeline on the embedded teacher, end to end.

python jobs/demo.py --config configs/tiny/demo.yaml    (what `make demo` runs)
"""

from __future__ import annotations

import sys

from distilray.cli import main

if __name__ == "__main__":
    sys.exit(main(["demo", *sys.argv[1:]]))
