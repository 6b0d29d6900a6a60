"""``distilray transcribe``: transcribe audio files with a teacher (and optional assistant).

Prints one line per file, ``path<TAB>text``, in the order given. With
``--timestamps`` the text carries its segments as ``[start-end] text``; with
``--json`` each line is a JSON object with the full result. A file that cannot be
read or decoded is reported on stderr as ``error: path: reason``; the other files
are still transcribed, and the command then exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys

EXIT_SOME_FAILED = 2  # same status as any other user error


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "transcribe",
        help="transcribe audio files (short or long form, optionally speculative)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("files", nargs="+", metavar="FILE", help="audio files (any ffmpeg format)")
    parser.add_argument(
        "--model", "-m", required=True, help="teacher: hub id, folder, s3:// URI or tiny.en"
    )
    parser.add_argument("--assistant", "-a", help="student drafting for speculative decoding")
    parser.add_argument("--timestamps", action="store_true", help="print timestamped segments")
    parser.add_argument(
        "--long-form",
        choices=["chunked", "sequential"],
        default="chunked",
        help="algorithm for audio over 30 s (default: chunked)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--batch-size", type=int, default=8, help="clips per forward pass")
    parser.add_argument("--num-draft-tokens", type=int, default=5, help="drafts per round")
    parser.add_argument(
        "--draft-schedule",
        choices=["constant", "heuristic"],
        default="constant",
        help="keep the drafts per round fixed, or adapt them to the acceptance",
    )
    parser.add_argument("--language", help="language code for multilingual models (e.g. en)")
    parser.add_argument("--json", action="store_true", help="one JSON object per line")
    parser.set_defaults(func=run)


def format_line(path: str, result, timestamps: bool) -> str:
    """``path<TAB>text``; the text as ``[start-end] text`` segments with timestamps on."""
    if timestamps and result.segments:
        text = " ".join(f"[{s.start:.2f}-{s.end:.2f}] {s.text}" for s in result.segments)
    else:
        text = result.text
    return f"{path}\t{' '.join(text.split())}"


def run(args: argparse.Namespace) -> int:
    from distilray.audio import decode_audio
    from distilray.errors import AudioDecodeError
    from distilray.inference.engine import Transcriber

    audios, paths, failed = [], [], 0
    for path in args.files:
        try:
            audios.append(decode_audio(path))
            paths.append(path)
        except AudioDecodeError as exc:
            print(f"error: {path}: {exc}", file=sys.stderr)
            failed += 1
    if audios:
        transcriber = Transcriber.load(
            args.model,
            args.assistant,
            device=args.device,
            batch_size=args.batch_size,
            num_draft_tokens=args.num_draft_tokens,
            draft_schedule=args.draft_schedule,
            language=args.language,
        )
        results = transcriber.transcribe(
            audios, long_form=args.long_form, return_timestamps=args.timestamps
        )
        for path, result in zip(paths, results, strict=True):
            if args.json:
                print(json.dumps({"path": path, **result.as_dict()}))
            else:
                print(format_line(path, result, args.timestamps))
    return EXIT_SOME_FAILED if failed else 0
