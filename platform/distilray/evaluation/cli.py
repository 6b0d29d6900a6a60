"""``distilray eval``: WER, hallucination and speed of teacher, student and speculative decoding."""

from __future__ import annotations

import argparse

from distilray.cli_common import add_config_arguments, nothing_usable


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "eval",
        help="evaluate teacher / student / speculative decoding (WER, RTFx, noise robustness)",
        description=(
            "Transcribe labelled manifests on Ray in each mode (teacher, student, speculative), "
            "form (short, chunked, sequential) and noise level, and write results.json, "
            "results.md and plots to output_dir. KEY=VALUE overrides any config field. "
            "Exits 3 when no cell could be scored."
        ),
    )
    parser.add_argument("--out", help="output folder (overrides output_dir)")
    add_config_arguments(parser, required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distilray.config import load_config
    from distilray.evaluation.config import EvalConfig
    from distilray.evaluation.report import markdown_table
    from distilray.evaluation.run import run_evaluation

    overrides = list(args.overrides)
    if args.out:
        overrides.append(f"output_dir={args.out}")
    result = run_evaluation(load_config(EvalConfig, args.config, overrides))
    print(markdown_table(result.cells), end="")
    print(f"results in {result.results_json}")
    if not result.cells:
        return nothing_usable(
            f"no scored cell: {len(result.errors)} utterances failed "
            f"(reasons in {result.results_json})"
        )
    return 0
