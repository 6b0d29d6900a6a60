"""``distilray data ...``: dataset tools (``data synth`` makes synthetic speech)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser("data", help="dataset tools: synthetic speech")
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = actions.add_parser(
        "synth",
        help="synthesise English speech clips with references (espeak-ng, flite)",
        description="Write 16 kHz WAV clips of bank sentences and a manifest.jsonl into --out.",
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num", type=int, default=40, help="number of sentence clips (default 40)")
    synth.add_argument(
        "--voices",
        help="comma-separated ENGINE:VOICE list, e.g. espeak-ng:en-us,flite:slt (default: 8 voices)",
    )
    synth.add_argument("--snr-db", type=float, help="add white noise at this SNR (dB)")
    synth.add_argument("--seed", type=int, default=0, help="random seed (rates, noise)")
    synth.add_argument(
        "--split",
        default="train",
        choices=["train", "validation", "test"],
        help="sentence-bank split; splits never share sentences (default train)",
    )
    synth.add_argument(
        "--offset", type=int, default=0, help="first sentence of the split to use (default 0)"
    )
    synth.add_argument(
        "--long-form", type=int, default=0, help="also make N long-form clips of 40-90 s"
    )
    synth.add_argument(
        "--rate-jitter",
        type=float,
        default=0.0,
        help="vary speaking rate uniformly within 1 +- this (e.g. 0.15)",
    )
    synth.set_defaults(func=run_synth)


def run_synth(args: argparse.Namespace) -> int:
    import json

    from distilray.data.synth import DEFAULT_VOICES, SUMMARY_NAME, synthesize_dataset

    voices = [v for v in args.voices.split(",") if v.strip()] if args.voices else DEFAULT_VOICES
    manifest = synthesize_dataset(
        args.out,
        args.num,
        voices=voices,
        snr_db=args.snr_db,
        seed=args.seed,
        long_form=args.long_form,
        split=args.split,
        offset=args.offset,
        rate_jitter=args.rate_jitter,
    )
    summary = json.loads((manifest.parent / SUMMARY_NAME).read_text())
    print(f"wrote {summary['clips']} clips ({summary['hours']:.3f} h of audio): {manifest}")
    if summary["split"]:
        print(f"next disjoint set: --split {summary['split']} --offset {summary['next_offset']}")
    return 0
