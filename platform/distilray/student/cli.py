"""``distilray init-student``: a student Whisper built from its teacher's layers."""

from __future__ import annotations

import argparse

from distilray.cli_common import add_config_arguments


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "init-student",
        help="initialise a student from a teacher (whole encoder, maximally spaced decoder layers)",
        description=(
            "Copy the teacher's encoder, embeddings and a few maximally spaced decoder layers "
            "into a smaller Whisper and save it as a model folder with its processor. Flags "
            "override the --config file; KEY=VALUE overrides any field."
        ),
    )
    parser.add_argument("--teacher", help="teacher: hub id, folder, s3:// URI or tiny.en")
    parser.add_argument("--decoder-layers", type=int, help="student decoder layers (default 2)")
    parser.add_argument(
        "--layers",
        type=int,
        nargs="+",
        metavar="I",
        help="explicit teacher decoder layers to copy, e.g. --layers 0 31",
    )
    parser.add_argument("--out", help="output model folder (local path or s3:// URI)")
    add_config_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distilray.config import load_config
    from distilray.student.build import init_student
    from distilray.student.config import StudentInitConfig

    overrides = list(args.overrides)
    if args.teacher:
        overrides.append(f"teacher={args.teacher}")
    if args.decoder_layers is not None:
        overrides.append(f"decoder_layers={args.decoder_layers}")
    if args.layers:
        overrides.append(f"decoder_layer_ids={list(args.layers)}")
    if args.out:
        overrides.append(f"out={args.out}")
    info = init_student(load_config(StudentInitConfig, args.config, overrides))
    print(f"student saved to {info.out}: {info.describe()}")
    return 0
