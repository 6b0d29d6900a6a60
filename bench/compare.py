"""Is a recipe change a result or a draw? Two evaluations of the same test sets, compared
utterance by utterance.

Each ablation of the recipe ends in an evaluation (``distilray eval``); the WER of one
against the WER of another says little on a few dozen clips, where a single hard clip
moves a cell by points. This reads two evaluations' ``transcripts.jsonl``, pairs the
utterances they share per dataset, form and SNR (one mode from each, ``student`` by
default), and prints B's WER minus A's with a 95 % paired bootstrap interval, as the
evaluation does against the teacher::

    python bench/compare.py runs/demo/eval/transcripts.jsonl \\
        runs/demo/eval-ts05/transcripts.jsonl --label row76 --label ts05

An interval that takes in 0 means the two runs are not told apart on these clips; cells
of fewer than 10 shared utterances (a handful of long recordings) get the difference
without an interval and are not judged. Cells only one run has, or utterances only one scored, are left out and counted.
``--exclude ID`` (repeatable) leaves an utterance out of both runs: one recording that
decides a cell can be set apart to see what the change does to the others; the word
errors of each run on the utterances compared are printed beside the WERs.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from distilray.evaluation.metrics import MIN_BOOTSTRAP_UTTERANCES, paired_difference
from distilray.text import WerStats, normalize, wer_stats

Cell = tuple[str, str, str]  # dataset, form, SNR ("clean" or dB)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("a", type=Path, help="run A's transcripts.jsonl (the baseline)")
    parser.add_argument("b", type=Path, help="run B's transcripts.jsonl (the change)")
    parser.add_argument(
        "--mode", default="student", help="mode of both runs to compare (default: student)"
    )
    parser.add_argument("--mode-b", default=None, help="B's mode, where it differs (teacher…)")
    parser.add_argument(
        "--label", action="append", default=None, help="names of A and B (twice), for the table"
    )
    parser.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="ID",
        help="leave this utterance out of both runs (repeatable)",
    )
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    return parser.parse_args(argv)


def edits(
    path: Path, mode: str, exclude: frozenset[str] = frozenset()
) -> dict[Cell, dict[str, WerStats]]:
    """``(dataset, form, SNR)`` -> utterance id -> its edits, for one mode of a run
    (utterances named in ``exclude`` left out)."""
    cells: dict[Cell, dict[str, WerStats]] = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if row["mode"] != mode or not normalize(row.get("reference") or ""):
                continue
            if str(row["id"]) in exclude:
                continue
            snr = "clean" if row.get("snr_db") is None else f"{row['snr_db']:g} dB"
            cell = (row["dataset"], row["form"], snr)
            cells.setdefault(cell, {})[str(row["id"])] = wer_stats(
                row["reference"], row.get("hypothesis") or ""
            )
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValueError(f"{path}:{number}: not an evaluation transcript line ({exc})") from exc
    return cells


def compare(a: dict[Cell, dict], b: dict[Cell, dict]) -> list[dict]:
    """One entry per cell both runs have: WERs, B - A and its interval, utterances."""
    table = []
    for cell in sorted(set(a) & set(b)):
        difference = paired_difference(b[cell], a[cell])
        if difference is None:
            continue
        shared = sorted(set(a[cell]) & set(b[cell]))
        total_a, total_b = _total(a[cell], shared), _total(b[cell], shared)
        table.append(
            {
                "dataset": cell[0],
                "form": cell[1],
                "snr": cell[2],
                "utterances": difference.utterances,
                "unpaired": len(set(a[cell]) ^ set(b[cell])),
                "wer_a": total_a.wer,
                "wer_b": total_b.wer,
                "errors_a": total_a.errors,
                "errors_b": total_b.errors,
                "difference": difference.points,
                "low": difference.low,
                "high": difference.high,
            }
        )
    return table


def _total(stats: dict[str, WerStats], ids: list[str]) -> WerStats:
    return sum((stats[i] for i in ids), WerStats())


def markdown(table: list[dict], names: tuple[str, str]) -> str:
    a, b = names
    lines = [
        f"| dataset | form | SNR | utterances | {a} WER % | {b} WER % | "
        f"{a} / {b} word errors | {b} - {a}, points (95 % CI) | told apart |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for e in table:
        if e["low"] is None:
            interval = f"(n < {MIN_BOOTSTRAP_UTTERANCES})"
            apart = "too few to tell"
        else:
            interval = f"({100 * e['low']:+.1f}, {100 * e['high']:+.1f})"
            apart = "yes" if e["low"] > 0 or e["high"] < 0 else "no"
        lines.append(
            f"| {e['dataset']} | {e['form']} | {e['snr']} | {e['utterances']} | "
            f"{100 * e['wer_a']:.1f} | {100 * e['wer_b']:.1f} | "
            f"{e['errors_a']} / {e['errors_b']} | "
            f"{100 * e['difference']:+.1f} {interval} | {apart} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = tuple(args.label or ("A", "B"))
    if len(names) != 2:
        print("error: give --label twice (A's name, then B's) or not at all", file=sys.stderr)
        return 2
    for path in (args.a, args.b):
        if not path.is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    try:
        exclude = frozenset(args.exclude)
        a = edits(args.a, args.mode, exclude)
        b = edits(args.b, args.mode_b or args.mode, exclude)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = compare(a, b)
    if not table:
        print(
            f"error: no dataset, form and SNR with scored {args.mode} utterances in both runs",
            file=sys.stderr,
        )
        return 2
    print(markdown(table, names))
    unpaired = sum(e["unpaired"] for e in table)
    if unpaired:
        print(f"\n{unpaired} utterances scored in one run only were left out")
    if args.out:
        args.out.write_text(json.dumps(table, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
