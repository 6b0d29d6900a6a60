"""Where a model loses: an evaluation's WER per source or speaker of its manifests.

A test set such as ``distilray data real``'s mixes recordings of several kinds (read
books, conversation, spontaneous and disfluent speech); one WER per dataset hides
which of them a student falls behind its teacher on. This reads the
``transcripts.jsonl`` of an evaluation and the manifests it scored, groups the
utterances by a manifest field (``source`` or ``speaker``), and prints, per dataset,
form and SNR, each group's WER for every model (errors over reference words, as the
evaluation counts them) and each model's difference from the teacher in the group, with
its 95 % paired bootstrap interval (a group of a few clips rarely tells models apart)::

    python bench/breakdown.py runs/demo/eval/transcripts.jsonl \\
        --manifest real-test=runs/demo/real/test/manifest.jsonl --by speaker

Datasets without a ``--manifest`` are left out.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

MODES = ("teacher", "student", "speculative")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transcripts", type=Path, help="an evaluation's transcripts.jsonl")
    parser.add_argument(
        "--manifest",
        action="append",
        required=True,
        help="DATASET=PATH: the manifest that dataset was read from (repeatable)",
    )
    parser.add_argument("--by", default="source", help="manifest field to group by")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    return parser.parse_args(argv)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def groups(manifests: dict[str, Path], field: str) -> dict[tuple[str, str], str]:
    """``(dataset, id)`` -> the row's ``field`` (``"?"`` where a row has none)."""
    found = {}
    for dataset, path in manifests.items():
        for row in read_jsonl(path):
            found[(dataset, str(row["id"]))] = str(row.get(field) or "?")
    return found


def breakdown(rows: list[dict], group_of: dict[tuple[str, str], str]) -> dict[str, dict]:
    """``dataset/form[@SNR]`` -> group -> mode -> utterances, errors, reference words
    (and, for every mode but the teacher's, ``vs_teacher``: its WER minus the teacher's
    on the group's utterances both have, with the 95 % interval's ``low`` and ``high``)."""
    from distilray.evaluation.metrics import paired_difference
    from distilray.text import wer_stats

    table: dict[str, dict] = defaultdict(
        lambda: defaultdict(lambda: defaultdict(lambda: {"n": 0, "errors": 0, "words": 0}))
    )
    edits: dict[tuple[str, str, str], dict] = defaultdict(dict)  # (cell, group, mode) -> id
    datasets = {dataset for dataset, _ in group_of}
    for row in rows:
        if row["dataset"] not in datasets or not row.get("reference"):
            continue
        key = (row["dataset"], str(row["id"]))
        if key not in group_of:
            raise KeyError(f"{row['dataset']} utterance {row['id']} is not in its manifest")
        stats = wer_stats(row["reference"], row.get("hypothesis") or "")
        snr = row.get("snr_db")
        cell = f"{row['dataset']}/{row['form']}" + ("" if snr is None else f"@{snr}")
        entry = table[cell][group_of[key]][row["mode"]]
        entry["n"] += 1
        entry["errors"] += stats.errors
        entry["words"] += stats.ref_words
        edits[(cell, group_of[key], row["mode"])][key[1]] = stats
    for (cell, group, mode), own in edits.items():
        teacher = edits.get((cell, group, "teacher"))
        difference = paired_difference(own, teacher) if teacher and mode != "teacher" else None
        if difference is not None:
            table[cell][group][mode]["vs_teacher"] = {
                "points": difference.points,
                "low": difference.low,
                "high": difference.high,
            }
    return {cell: {g: dict(modes) for g, modes in sorted(gs.items())} for cell, gs in table.items()}


def versus_teacher(d: dict) -> str:
    from distilray.evaluation.report import versus_teacher as formatted

    keys = ("wer_vs_teacher", "wer_vs_teacher_low", "wer_vs_teacher_high")
    return formatted(dict(zip(keys, (d["points"], d["low"], d["high"]), strict=True)))


def markdown(cell: str, table: dict[str, dict], field: str) -> str:
    modes = [m for m in MODES if any(m in by_mode for by_mode in table.values())]
    versus = [m for m in modes if any("vs_teacher" in b.get(m, {}) for b in table.values())]
    titles = [f"{m} WER %" for m in modes] + [f"{m} - teacher (95 % CI)" for m in versus]
    lines = [
        f"{cell}",
        f"| {field} | utterances | reference words | " + " | ".join(titles),
        "|---|---|---|" + "---|" * len(titles),
    ]
    for group, by_mode in table.items():
        first = next(iter(by_mode.values()))
        wers = [
            f"{100 * by_mode[m]['errors'] / by_mode[m]['words']:.1f}"
            if m in by_mode and by_mode[m]["words"]
            else "–"
            for m in modes
        ]
        for m in versus:
            d = by_mode.get(m, {}).get("vs_teacher")
            wers.append("–" if d is None else versus_teacher(d))
        lines.append(f"| {group} | {first['n']} | {first['words']} | " + " | ".join(wers))
    return "\n".join(line + (" |" if line.startswith("| ") else "") for line in lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    manifests = {}
    for spec in args.manifest:
        dataset, _, path = spec.partition("=")
        if not path:
            print(f"error: --manifest {spec!r}: expected DATASET=PATH", file=sys.stderr)
            return 2
        manifests[dataset] = Path(path)
    for path in [args.transcripts, *manifests.values()]:
        if not path.is_file():
            print(f"error: {path} not found", file=sys.stderr)
            return 2
    try:
        report = breakdown(read_jsonl(args.transcripts), groups(manifests, args.by))
    except KeyError as exc:
        print(
            f"error: {exc.args[0]} (was the evaluation run on another manifest?)", file=sys.stderr
        )
        return 2
    for cell, table in sorted(report.items()):
        print(markdown(cell, table, args.by) + "\n")
    if args.out:
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
