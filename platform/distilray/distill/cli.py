"""``distilray distill``: train the student on pseudo-labels with Ray Train."""

from __future__ import annotations

import argparse

from distilray.cli_common import add_config_arguments


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "distill",
        help="distil the teacher into the student on pseudo-labels (Ray Train; resumable)",
        description=(
            "Train the student with the Distil-Whisper objective on the labelled Parquet, "
            "checkpointing under run.storage/run.name; rerunning the same run name resumes. "
            "KEY=VALUE overrides any field, e.g. train.max_steps=500 data.wer_threshold=0.2."
        ),
    )
    add_config_arguments(parser, required=True)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from distilray.config import load_config
    from distilray.distill.config import DistillConfig
    from distilray.distill.trainer import run_distillation

    outcome = run_distillation(load_config(DistillConfig, args.config, args.overrides))
    print(
        f"student saved to {outcome.student}: checkpoint of step {outcome.exported_step} "
        f"of {outcome.steps}, eval WER "
        f"{100 * outcome.eval_wer:.2f} % on held-out data; "
        f"trained on {outcome.data.kept} clips ({outcome.data.hours:.2f} h); run at {outcome.run_path}"
    )
    return 0
