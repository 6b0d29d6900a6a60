"""All benchmarks in one run, summarised as one table of ratios (`make bench`).

Each benchmark compares our path with a baseline measured in the same process on the
same machine and writes JSON under bench/results/; this script runs them one after
another (never concurrently: they would skew each other) and prints every ratio,
equality check and acceptance rate they report, then writes bench/results/summary.md.

    python bench/run_all.py [--quick] [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent
RESULTS = ROOT / "results"
DEMO_STUDENT = ROOT.parent / "runs" / "demo" / "student"
# Keys worth a row in the summary: ratios, equality checks, acceptance, throughput.
INTERESTING = (
    "ratio",
    "speedup",
    "vs_teacher",
    "identical",
    "same",
    "acceptance",
    "samples_per_s",
    "audio_s_per_s",
    "throughput",
    "p50",
    "p95",
    "lost",
    "correct",
    "overhead",
)


def benches(quick: bool, device: str, student: str | None = None) -> dict[str, list[str]]:
    clips = "8" if quick else "24"
    distilled = ["--student", student] if student else []
    return {
        "label": ["bench/label.py", "--clips", clips, "--out", str(RESULTS / "label.json")],
        "distill": ["bench/distill.py", "--device", device, "--out", str(RESULTS / "distill.json")],
        "inference": [
            "bench/inference.py",
            "--clips",
            clips,
            "--device",
            device,
            *distilled,
            "--out",
            str(RESULTS / "inference.json"),
        ],
        "serve_load": [
            "bench/serve_load.py",
            "--requests",
            "16" if quick else "48",
            "--assistant",
            student or "cut",
            "--out",
            str(RESULTS / "serve_load.json"),
        ],
    }


def flatten(data, prefix: str = ""):
    if isinstance(data, dict):
        for key, value in data.items():
            yield from flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(data, list):  # e.g. inference suites: named by their "label"
        for index, item in enumerate(data):
            name = item.get("label", index) if isinstance(item, dict) else index
            yield from flatten(item, f"{prefix}.{name}")
    else:
        yield prefix, data


def summary_rows(name: str, path: Path) -> list[str]:
    if not path.is_file():
        return [f"| {name} | (no results: see its output above) | |"]
    data = json.loads(path.read_text())
    rows = []
    for key, value in flatten(data):
        leaf = key.rsplit(".", 1)[-1]
        if any(word in leaf for word in INTERESTING) and value is not None:
            shown = f"{value:.3g}" if isinstance(value, float) else str(value)
            rows.append(f"| {name} | `{key}` | {shown} |")
    return rows


def _shown(student: str | None) -> str:
    """The student as the summary names it: relative to the repository when inside it."""
    if not student:
        return "untrained 2-layer initialisation"
    path = Path(student).resolve()
    return str(path.relative_to(ROOT.parent)) if path.is_relative_to(ROOT.parent) else student


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer clips and requests")
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--only", nargs="*", help="run only these benchmarks")
    parser.add_argument(
        "--student",
        default=str(DEMO_STUDENT) if DEMO_STUDENT.is_dir() else None,
        help="distilled student for the inference benchmark (default: the one `make demo` "
        "exported, if any; otherwise the untrained 2-layer initialisation)",
    )
    parser.add_argument(
        "--summary-only", action="store_true", help="rewrite summary.md from existing results"
    )
    args = parser.parse_args(argv)
    RESULTS.mkdir(parents=True, exist_ok=True)
    failed = []
    for name, cmd in benches(args.quick, args.device, args.student).items():
        if (args.only and name not in args.only) or args.summary_only:
            continue
        print(f"\n=== bench {name}: {' '.join(cmd)}", flush=True)
        began = time.perf_counter()
        code = subprocess.call([sys.executable, *cmd], cwd=ROOT.parent, env=os.environ.copy())
        print(f"=== bench {name}: exit {code} in {time.perf_counter() - began:.0f} s", flush=True)
        if code:
            failed.append(name)
    lines = ["| benchmark | figure | value |", "|---|---|---|"]
    for name in benches(args.quick, args.device, args.student):
        if not args.only or name in args.only:
            lines += summary_rows(name, RESULTS / f"{name}.json")
    table = "\n".join(lines)
    print("\n" + table)
    (RESULTS / "summary.md").write_text(
        f"Measured {time.strftime('%Y-%m-%d')} on {os.cpu_count()} CPUs, device {args.device}; "
        f"inference student: {_shown(args.student)}.\n\n" + table + "\n"
    )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
