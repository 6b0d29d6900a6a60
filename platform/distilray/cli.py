"""The ``distilray`` command: one sub-command per stage.

Each stage keeps its own argument definitions in a light ``cli`` module (no torch or
Ray import at module level) exposing ``add_parser(subparsers)``; the parser it adds
sets ``func`` to a callable taking the parsed arguments. User mistakes raise
:class:`~distilray.errors.DistilrayError` and end as one ``error:`` line and exit 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from distilray import __version__
from distilray.errors import DistilrayError

# Order is the order `distilray --help` lists them in: the pipeline's order.
STAGE_CLI_MODULES = [
    "distilray.data.cli",  # data synth
    "distilray.models.cli",  # convert-teacher
    "distilray.inference.cli",  # transcribe
    "distilray.labelling.cli",  # label
    "distilray.student_cli",  # init-student
    "distilray.distill.cli",  # distill
    "distilray.evaluation.cli",  # eval
    "distilray.serving.cli",  # serve
    "distilray.demo",  # demo: every stage above, end to end
]


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The ``--config FILE`` plus ``key.sub=value`` overrides every stage accepts."""
    parser.add_argument("--config", "-c", required=required, help="YAML config file")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override config fields, e.g. data.wer_threshold=0.2 (values parsed as YAML)",
    )


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distilray",
        description="Distil a Whisper teacher into a fast student on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"distilray {__version__}")
    parser.add_argument("--verbose", "-v", action="store_true", help="debug logging")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGE_CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a stage (or its package) not in this build
            if exc.name != name and not name.startswith(f"{exc.name}."):
                raise
            continue
        module.add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose)
    try:
        result = args.func(args)
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
