"""``distilray transcribe``: transcribe audio files with a teacher (and optional assistant).

Files are decoded and transcribed one batch at a time (a batch is up to
``--batch-size`` consecutive clips of at most 30 s, or one longer recording), and each
result is printed as soon as its batch is done: one line per file, ``path<TAB>text``,
in the order given. With ``--timestamps`` the text carries its segments as
``[start-end] text``; with ``--json`` each line is a JSON object with the full result.
``--output-format txt|srt|vtt|json|all`` also writes ``DIR/<name>.<format>`` per file
into ``--output-dir`` (default: the current folder), as whisper does. Windows are
decoded greedily with Whisper's temperature fallback, as ``distilray serve`` and
whisper's own command do (``--no-fallback``: greedy output alone; ``--temperature``
above 0 samples; ``--prompt`` is Whisper's initial prompt for every file). A file that
cannot be read or decoded is reported on stderr as ``error: path: reason``; the other
files are still transcribed, and the command then exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from distilray.errors import AudioDecodeError, DistilrayError

EXIT_SOME_FAILED = 2  # same status as any other user error
# --output-format → the serving response format that renders it (serving/formats.py).
FILE_FORMATS = {"txt": "text", "srt": "srt", "vtt": "vtt", "json": "verbose_json"}


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
        "--word-timestamps",
        action="store_true",
        help="time every word too (in --json output: segments[].words with start, end, word, "
        "probability); implies --timestamps",
    )
    parser.add_argument(
        "--long-form",
        choices=["chunked", "sequential"],
        default="chunked",
        help="algorithm for audio over 30 s (default: chunked)",
    )
    parser.add_argument(
        "--resume-gap",
        type=float,
        metavar="S",
        help="decode on where a clip's or chunked window's text ends more than S seconds "
        "before its last sound (a distilled student's early end; README \"Keeping going "
        "after an early end\"); default: off, Whisper's decoding",
    )
    parser.add_argument(
        "--prompt",
        metavar="TEXT",
        help="Whisper's initial prompt: text that conditions decoding of every clip and "
        "window (names, spellings, style); not with --long-form sequential",
    )
    parser.add_argument(
        "--temperature",
        type=float,
        default=0.0,
        metavar="T",
        help="0 (default): greedy, with Whisper's temperature fallback; above 0: sampled "
        "at that temperature by the model alone (no --assistant drafting); not with "
        "--long-form sequential",
    )
    parser.add_argument(
        "--no-fallback",
        action="store_true",
        help="greedy output only: no temperature fallback for windows whose text loops "
        "(compresses more than 2.4x) or is too unsure (average log-probability under -1)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--engine",
        choices=["transformers", "ctranslate2"],
        default="transformers",
        help="decoder: transformers generate, or CTranslate2 (the model converted once into "
        "the model cache; chunked long-form only, no --assistant)",
    )
    parser.add_argument(
        "--compute-type",
        choices=["auto", "float32", "int8", "float16", "int8_float16", "bfloat16"],
        default="auto",
        help="CTranslate2 compute type (default: float32 on CPU, float16 on GPU)",
    )
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
    parser.add_argument(
        "--output-format",
        "-f",
        choices=[*FILE_FORMATS, "all"],
        help="also write each transcript to DIR/<name>.<format> (srt, vtt, json: timestamped)",
    )
    parser.add_argument(
        "--output-dir", "-o", help="folder for --output-format files (default: current folder)"
    )
    parser.set_defaults(func=run)


@dataclass(frozen=True)
class FileOutputs:
    """Where and in which formats transcripts are written as files (none: stdout only)."""

    directory: Path | None = None  # None: no files
    formats: tuple[str, ...] = ()  # keys of FILE_FORMATS

    @property
    def timestamped(self) -> bool:
        from distilray.serving.formats import needs_timestamps

        return any(needs_timestamps(FILE_FORMATS[f]) for f in self.formats)

    def paths(self, source: str) -> list[Path]:
        if self.directory is None:
            return []
        return [self.directory / f"{Path(source).stem}.{fmt}" for fmt in self.formats]


def file_outputs(
    output_format: str | None, output_dir: str | None, files: list[str]
) -> FileOutputs:
    """The files to write, checked before any work: one name per input, a usable folder."""
    if output_format is None:
        if output_dir is not None:
            raise DistilrayError("--output-dir needs --output-format (txt, srt, vtt, json or all)")
        return FileOutputs()
    formats = tuple(FILE_FORMATS) if output_format == "all" else (output_format,)
    outputs = FileOutputs(Path(output_dir or "."), formats)
    seen: dict[str, str] = {}
    for source in files:
        stem = Path(source).stem
        if stem in seen:
            raise DistilrayError(
                f"{seen[stem]} and {source} would both be written as {stem}.* in "
                f"{outputs.directory}: transcribe them into different --output-dir folders"
            )
        seen[stem] = source
    try:
        outputs.directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DistilrayError(f"cannot create --output-dir {outputs.directory}: {exc}") from None
    return outputs


def format_line(path: str, result, timestamps: bool) -> str:
    """``path<TAB>text``; the text as ``[start-end] text`` segments with timestamps on."""
    if timestamps and result.segments:
        text = " ".join(f"[{s.start:.2f}-{s.end:.2f}] {s.text}" for s in result.segments)
    else:
        text = result.text
    return f"{path}\t{' '.join(text.split())}"


def render_file(result, file_format: str) -> str:
    """The body of ``result`` in one of :data:`FILE_FORMATS`, rendered as serving does."""
    from distilray.serving.formats import Segment, Transcript, render

    segments = tuple(Segment(s.start, s.end, s.text) for s in result.segments)
    body, _ = render(
        Transcript(result.text, result.duration_s, segments), FILE_FORMATS[file_format]
    )
    return body if body.endswith("\n") else body + "\n"


@dataclass
class Batcher:
    """Groups decoded recordings into engine batches, keeping the input order.

    Up to ``batch_size`` consecutive short clips share a batch; a recording longer
    than ``window_samples`` is a batch of its own (its windows are batched inside).
    """

    batch_size: int
    window_samples: int
    pending: list[tuple[str, Any]] = field(default_factory=list)

    def add(self, path: str, audio) -> Iterator[list[tuple[str, Any]]]:
        """The batches ready once ``audio`` is added (zero, one or two)."""
        if len(audio) > self.window_samples:
            yield from self.flush()
            yield [(path, audio)]
            return
        self.pending.append((path, audio))
        if len(self.pending) >= self.batch_size:
            yield from self.flush()

    def flush(self) -> Iterator[list[tuple[str, Any]]]:
        if self.pending:
            batch, self.pending = self.pending, []
            yield batch


def transcribe_files(
    transcribe: Callable[[list], list],
    paths: Iterable[str],
    batcher: Batcher,
    on_error: Callable[[str, Exception], None],
    decode: Callable[[str], Any],
) -> Iterator[tuple[str, Any]]:
    """``(path, result)`` per decodable file, each batch as soon as it is transcribed.

    Files are decoded one at a time, so at most one batch of audio is held in memory;
    a file that fails to decode goes to ``on_error`` and the rest carry on.
    """

    def run(batch: list[tuple[str, Any]]) -> Iterator[tuple[str, Any]]:
        results = transcribe([audio for _, audio in batch])
        yield from zip([path for path, _ in batch], results, strict=True)

    for path in paths:
        try:
            audio = decode(path)
        except AudioDecodeError as exc:
            on_error(path, exc)
            continue
        for batch in batcher.add(path, audio):
            yield from run(batch)
    for batch in batcher.flush():
        yield from run(batch)


def emit(path: str, result, args: argparse.Namespace, outputs: FileOutputs) -> None:
    """Print one result (and write its files) right away."""
    if args.json:
        print(json.dumps({"path": path, **result.as_dict()}), flush=True)
    else:
        print(format_line(path, result, args.timestamps), flush=True)
    for target, fmt in zip(outputs.paths(path), outputs.formats, strict=True):
        try:
            target.write_text(render_file(result, fmt), encoding="utf-8")
        except OSError as exc:
            raise DistilrayError(f"cannot write {target}: {exc}") from None


def resume_rule(gap_s: float | None):
    """The :class:`~distilray.inference.resume.ResumeRule` of ``--resume-gap`` (None: off)."""
    from distilray.inference.resume import ResumeRule

    try:
        return ResumeRule.of(gap_s)
    except ValueError:  # the rule's own check: gap_s above 0
        raise DistilrayError(
            f"--resume-gap must be a number of seconds above 0, got {gap_s}"
        ) from None


def decode_options(args: argparse.Namespace, tokenizer=None):
    """The decoding settings of ``--prompt``, ``--temperature`` and ``--no-fallback`` for
    every file (``--prompt`` is encoded once a ``tokenizer`` is given), checked."""
    from distilray.inference.decoder import DecodeOptions, Fallback
    from distilray.inference.prompt import text_prompt_ids

    sequential = args.long_form == "sequential"
    if sequential and (args.prompt is not None or args.temperature != 0):
        raise DistilrayError(
            "--prompt and --temperature work with --long-form chunked (the default): "
            "sequential long-form has its own temperature ladder and no text prompt"
        )
    if not args.temperature >= 0:  # NaN included
        raise DistilrayError(f"--temperature must be 0 or more, got {args.temperature}")
    prompt = text_prompt_ids(tokenizer, args.prompt) if args.prompt and tokenizer else ()
    return DecodeOptions(
        prompt_ids=prompt,
        temperature=args.temperature,
        fallback=None if args.no_fallback else Fallback(),
    )


def run(args: argparse.Namespace) -> int:
    from distilray.audio import decode_audio
    from distilray.inference.engine import Transcriber
    from distilray.inference.windows import N_SAMPLES

    outputs = file_outputs(args.output_format, args.output_dir, args.files)
    decode_options(args)  # flags checked before the model loads
    if args.word_timestamps and args.long_form == "sequential":
        raise DistilrayError("--word-timestamps works with --long-form chunked (the default)")
    load = Transcriber.load
    engine_options = {
        "num_draft_tokens": args.num_draft_tokens,
        "draft_schedule": args.draft_schedule,
    }
    if args.engine == "ctranslate2":
        from distilray.engines.ct2_transcriber import CT2Transcriber

        load, engine_options = CT2Transcriber.load, {"compute_type": args.compute_type}
        if args.long_form == "sequential":
            raise DistilrayError(
                "--engine ctranslate2 decodes long audio chunked: drop --long-form"
            )
    elif args.compute_type != "auto":
        raise DistilrayError("--compute-type is CTranslate2's: add --engine ctranslate2")
    engine_options["resume"] = resume_rule(args.resume_gap)
    transcriber = load(
        args.model,
        args.assistant,
        **engine_options,
        device=args.device,
        batch_size=args.batch_size,
        language=args.language,
    )
    options = decode_options(args, transcriber.processor.tokenizer)
    timestamps = args.timestamps or args.word_timestamps or outputs.timestamped
    failed: list[str] = []

    def on_error(path: str, exc: Exception) -> None:
        print(f"error: {path}: {exc}", file=sys.stderr, flush=True)
        failed.append(path)

    def transcribe(audios: list) -> list:
        return transcriber.transcribe(
            audios,
            long_form=args.long_form,
            return_timestamps=timestamps,
            word_timestamps=args.word_timestamps,
            options=options,
        )

    batcher = Batcher(transcriber.batch_size, N_SAMPLES)
    for path, result in transcribe_files(transcribe, args.files, batcher, on_error, decode_audio):
        emit(path, result, args, outputs)
    return EXIT_SOME_FAILED if failed else 0
