"""Loops in the transcripts of an evaluation run, counted after the fact.

Evaluations count looping transcripts themselves (the ``loops`` column of
``results.md``); this reads the ``transcripts.jsonl`` of any run, including runs made
before that column existed, e.g.::

    python bench/loops.py runs/demo/eval/transcripts.jsonl

A transcript loops when it says a phrase of up to four words at least four more times
in a row than its reference repeats any phrase, fillers included
(:func:`distilray.evaluation.metrics.is_loop`). Prints, per dataset, model, form and
SNR, how many transcripts loop and which, and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transcripts", type=Path, nargs="+", help="transcripts.jsonl files")
    parser.add_argument("--out", type=Path, default=None, help="also write the counts here")
    return parser.parse_args(argv)


def count(rows: list[dict]) -> dict[str, dict]:
    """``dataset/mode/form[@SNR]`` -> transcripts and the ids of those that loop."""
    from distilray.evaluation.metrics import is_loop

    cells: dict[str, dict] = defaultdict(lambda: {"transcripts": 0, "loops": []})
    for row in rows:
        snr = row.get("snr_db")
        key = f"{row['dataset']}/{row['mode']}/{row['form']}" + ("" if snr is None else f"@{snr}")
        cells[key]["transcripts"] += 1
        if is_loop(row.get("hypothesis"), row.get("reference")):
            cells[key]["loops"].append(row["id"])
    return dict(cells)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = {}
    for path in args.transcripts:
        if not path.is_file():
            print(f"error: {path} not found (an evaluation's transcripts.jsonl)", file=sys.stderr)
            return 2
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        report[str(path)] = cells = count(rows)
        print(path)
        for key, cell in cells.items():
            names = f": {', '.join(cell['loops'])}" if cell["loops"] else ""
            print(f"  {key}: {len(cell['loops'])} of {cell['transcripts']} loop{names}")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
