"""What every stage's ``cli`` module shares: config arguments and exit statuses.

Stage ``cli`` modules import these from here, never from :mod:`distilray.cli` (which
imports them to build the ``distilray`` command). Light: no torch or Ray import.
"""

from __future__ import annotations

import argparse
import sys

EXIT_FAILED = 1  # an unexpected exception (Python's own status for a traceback)
EXIT_USER_ERROR = 2  # a DistilrayError: bad config, input, model reference, ...
EXIT_NOTHING_USABLE = 3  # the stage ran but produced nothing usable
EXIT_INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = False) -> None:
    """The ``--config FILE`` plus ``key.sub=value`` overrides every stage accepts.

    With ``--print-config`` the command resolves its configuration as it would to run
    (file, overrides, flags), prints it as YAML and exits 0 without doing anything else.
    """
    parser.add_argument("--config", "-c", required=required, help="YAML config file")
    parser.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration as YAML and exit",
    )
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="override config fields, e.g. data.wer_threshold=0.2 or datasets.0.limit=5 "
        "(values parsed as YAML)",
    )


def nothing_usable(message: str) -> int:
    """Report that a stage produced nothing usable; the exit status to return."""
    print(f"error: {message}", file=sys.stderr)
    return EXIT_NOTHING_USABLE
