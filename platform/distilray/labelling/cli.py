"""``distilray label``: pseudo-label manifests with the teacher into Parquet shards."""

from __future__ import annotations

import argparse

from distilray.cli_common import add_config_arguments, nothing_usable


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "label",
        help="pseudo-label audio with the teacher (Ray Data) into Parquet shards",
        description=(
            "Decode the input manifest's audio on CPU tasks, transcribe it greedily with the "
            "teacher on an actor pool, score it against references and write Parquet shards "
            "plus _manifest.json. Rerunning into the same output resumes. KEY=VALUE "
            "overrides any config field, e.g. limit=100 teacher=tiny.en. Exits 3 when the "
            "output holds no labelled row (no input, or every row failed)."
        ),
    )
    add_config_arguments(parser, required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distilray.config import load_config
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling
    from distilray.labelling.summary import format_summary

    cfg = load_config(LabelConfig, args.config, args.overrides)
    result = run_labelling(cfg)
    summary = result.summary
    print(format_summary(summary, result.run, cfg.output))
    print(f"manifest: {result.manifest}")
    if summary.labelled == 0:
        return nothing_usable(
            f"no usable labels in {cfg.output}: {summary.rows} rows, "
            f"{summary.errors} of them failed (reasons above)"
        )
    return 0
