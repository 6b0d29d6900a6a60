"""``distilray export``: a student (or any Whisper) as a folder for faster-whisper."""

from __future__ import annotations

import argparse

from distilray.models.ct2_export import QUANTIZATIONS  # a light module: no torch import

FORMATS = ("ct2",)  # CTranslate2: what faster-whisper loads


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "export",
        help="export a Whisper (e.g. the distilled student) for faster-whisper",
        description=(
            "Convert a transformers Whisper folder (a distilled student, s3:// URI, hub id "
            "or tiny.en) with CTranslate2's converter into a folder that "
            "faster_whisper.WhisperModel(DIR) loads (tokenizer and feature settings "
            "included). float32 transcribes exactly as the transformers model does; "
            "int8 is smaller and faster on CPU."
        ),
    )
    parser.add_argument("model", help="model folder, s3:// URI, hub id or tiny.en")
    parser.add_argument("--format", choices=FORMATS, default="ct2", help="output format")
    parser.add_argument(
        "--quantization",
        choices=QUANTIZATIONS,
        default="float32",
        help="weights type of the exported model (default: float32)",
    )
    parser.add_argument("--out", required=True, help="output folder (must be new or empty)")
    parser.add_argument("--force", action="store_true", help="replace a non-empty --out")
    parser.set_defaults(func=run)
    return parser


def run(args: argparse.Namespace) -> int:
    from distilray.models.ct2_export import export_ct2

    print(export_ct2(args.model, args.out, args.quantization, force=args.force))
    return 0
