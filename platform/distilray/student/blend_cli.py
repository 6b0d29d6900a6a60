"""``distilray blend``: the weighted average of students fine-tuned from one initial model."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "blend",
        help="average the weights of students distilled from the same initial student",
        description=(
            "Save the weighted mean of the models' weights as a new model folder (the first "
            "model's config and processor). Students distilled from one initial student "
            "with different seeds average into a 'model soup'; a student and its initial "
            "student blend back toward the copied teacher layers (WiSE-FT), what distill's "
            "run.export_init_share does at export. Models must share their architecture "
            "and copied teacher layers."
        ),
        epilog=(
            "examples: distilray blend runs/a/student runs/b/student --out runs/soup; "
            "distilray blend runs/quality/student runs/quality/student-init "
            "--weights 0.85 0.15 --out runs/quality/student-wise"
        ),
    )
    parser.add_argument(
        "models", nargs="+", help="model folders, s3:// URIs or hub ids (2 or more)"
    )
    parser.add_argument(
        "--weights",
        type=float,
        nargs="+",
        metavar="W",
        help="one weight per model, normalised to sum to 1 (default: equal)",
    )
    parser.add_argument("--out", required=True, help="output model folder (local or s3://)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty local --out")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from distilray.student.blend import blend_models

    print(blend_models(args.models, args.weights, args.out, force=args.force))
    return 0
