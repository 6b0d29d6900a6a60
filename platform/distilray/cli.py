"""The ``distilray`` command: one sub-command per stage.

Each stage keeps its own argument definitions in a light ``cli`` module (no torch or
Ray import at module level) exposing ``add_parser(subparsers)``; the parser it adds
sets ``func`` to a callable taking the parsed arguments. Global flags (``-v``) are
accepted before or after the sub-command.

Exit status: 0 success; 1 an unexpected failure (a traceback); 2 a user mistake
(:class:`~distilray.errors.DistilrayError`, reported as one ``error:`` line; for
``transcribe``, some files could not be decoded); 3 the stage ran but produced nothing
usable (``label``: no row labelled; ``eval``: no scored cell); 130 interrupted.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from distilray import __version__
from distilray.cli_common import EXIT_INTERRUPTED, EXIT_USER_ERROR
from distilray.errors import DistilrayError

# Order is the order `distilray --help` lists them in: the pipeline's order.
STAGE_CLI_MODULES = [
    "distilray.data.cli",  # data synth
    "distilray.models.cli",  # convert-teacher
    "distilray.inference.cli",  # transcribe
    "distilray.labelling.cli",  # label
    "distilray.student.cli",  # init-student
    "distilray.distill.cli",  # distill
    "distilray.models.export_cli",  # export (CTranslate2, for faster-whisper)
    "distilray.student.blend_cli",  # blend (model soups, back toward the initial student)
    "distilray.evaluation.cli",  # eval
    "distilray.serving.cli",  # serve
    "distilray.demo",  # demo: every stage above, end to end
]


def setup_logging(verbose: bool = False) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )


def add_global_arguments(parser: argparse.ArgumentParser, top: bool = False) -> None:
    """``-v``; on sub-commands its default is left unset so it cannot undo an earlier ``-v``."""
    default = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--verbose", "-v", action="store_true", default=default, help="debug logging"
    )


def _sub_parsers(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every sub-command parser below ``parser``, nested ones (``data synth``) included."""
    found: dict[int, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.setdefault(id(sub), sub)
    return [p for sub in found.values() for p in (sub, *_sub_parsers(sub))]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distilray",
        description="Distil a Whisper teacher into a fast student on Ray.",
    )
    parser.add_argument("--version", action="version", version=f"distilray {__version__}")
    add_global_arguments(parser, top=True)
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in STAGE_CLI_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:  # a stage (or its package) not in this build
            if exc.name != name and not name.startswith(f"{exc.name}."):
                raise
            continue
        module.add_parser(subparsers)
    for sub in _sub_parsers(parser):
        add_global_arguments(sub)
    return parser


def print_config(args: argparse.Namespace) -> int:
    """Run the command only as far as its configuration, and print that."""
    from distilray.config import ConfigResolved, config_yaml, stop_at_config

    try:
        with stop_at_config():
            args.func(args)
    except ConfigResolved as resolved:
        print(config_yaml(resolved.config), end="")
        return 0
    raise DistilrayError(f"{args.command} resolved no configuration to print")


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USER_ERROR
    setup_logging(args.verbose)
    try:
        result = print_config(args) if getattr(args, "print_config", False) else args.func(args)
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
