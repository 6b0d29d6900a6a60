"""Weight blends of distilled students, evaluated on a recipe's test sets.

A student blended back toward its initial student (WiSE-FT: ``--initial`` with
``--shares``), or several students of one initial student averaged (a model soup:
``--soup``), each saved with ``distilray blend``'s code and evaluated alone on the
recipe's test sets (clean audio, short and chunked, as ``bench/recipe_ablation.py``
evaluates its variants). Prints one line per blend and writes JSON::

    python bench/blend_eval.py --config configs/tiny/quality.yaml \\
        --student runs/quality/student --initial runs/quality/student-init \\
        --shares 0 0.15 0.25 --out runs/quality/blends
    python bench/blend_eval.py --config configs/tiny/quality.yaml \\
        --soup runs/quality/student runs/quality/ablation/students/seed-1 --out runs/quality/blends

Share 0 evaluates the student as it is (the baseline of the same run). Compare two
blends clip by clip with ``bench/compare.py OUT/eval/A/transcripts.jsonl
OUT/eval/B/transcripts.jsonl``.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

logger = logging.getLogger("bench.blend_eval")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny/quality.yaml", help="demo-style recipe")
    parser.add_argument("--student", help="the distilled student to blend back (with --initial)")
    parser.add_argument("--initial", help="the student's initial model (init-student's output)")
    parser.add_argument(
        "--shares",
        type=float,
        nargs="+",
        default=[0.0, 0.15],
        help="shares of the initial weights to evaluate (0: the student as it is)",
    )
    parser.add_argument("--soup", nargs="+", help="students of one initial student to average")
    parser.add_argument("--out", type=Path, required=True, help="blends, evaluations and JSON")
    args = parser.parse_args(argv)
    if not args.soup and not (args.student and args.initial):
        parser.error("give --student and --initial, or --soup")
    if args.soup and len(args.soup) < 2:
        parser.error("--soup needs two students or more")
    return args


def plans(args: argparse.Namespace) -> dict[str, list[tuple[str, float]]]:
    """Blend name -> ``(model, weight)`` pairs; a single pair is the model as it is.

    >>> plans(parse_args(["--student", "s", "--initial", "i", "--shares", "0", "0.2", "--out", "o"]))
    {'share-0': [('s', 1.0)], 'share-0.2': [('s', 0.8), ('i', 0.2)]}
    """
    found: dict[str, list[tuple[str, float]]] = {}
    if args.student:
        for share in args.shares:
            if not 0 <= share < 1:
                raise SystemExit(f"--shares must be in [0, 1), got {share}")
            pairs = [(args.student, round(1 - share, 6))]
            found[f"share-{share:g}"] = pairs + ([(args.initial, share)] if share else [])
    if args.soup:
        found["soup"] = [(s, 1.0) for s in args.soup]
    return found


def main(argv: list[str] | None = None) -> int:
    from distilray.config import load_config
    from distilray.demo import DemoConfig, Stages
    from distilray.evaluation.run import run_evaluation
    from distilray.student.blend import blend_models
    from recipe_ablation import eval_config, summarize_cells

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    stages = Stages.load(load_config(DemoConfig, args.config))
    results = {}
    for name, pairs in plans(args).items():
        began = time.perf_counter()
        model = pairs[0][0]
        if len(pairs) > 1:
            model = blend_models(
                [m for m, _ in pairs],
                [w for _, w in pairs],
                str(args.out / "models" / name),
                force=True,
            )
        cfg = eval_config(stages, model, ["student"], args.out / "eval" / name)
        cells = summarize_cells(run_evaluation(cfg).cells)
        results[name] = {
            "models": pairs,
            "results": cells,
            "wall_s": round(time.perf_counter() - began, 1),
        }
        figures = ", ".join(
            f"{cell} {100 * c['wer']:.1f} % ({c['repeated_5grams']} dups, {c['loops']} loops)"
            for cell, c in cells.items()
        )
        print(f"{name}: {figures}", flush=True)
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "blends.json").write_text(json.dumps(results, indent=2))
    print(f"\nresults in {args.out / 'blends.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
