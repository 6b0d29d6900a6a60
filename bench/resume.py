"""Decoding on after an early end: each model's WER with and without the resume rule.

    python bench/resume.py --manifest runs/quality/real/test/manifest.jsonl \\
        --model tiny.en runs/quality/student-blend --gap 2 --out bench/results/resume.json

Clips of up to 30 s are decoded short-form, longer recordings chunked (30 s windows,
5 s stride, 160 tokens per window: what ``distilray eval`` runs with
``configs/tiny/eval.yaml``), in each of ``--decodings``: ``greedy`` (the paper's
figure), ``resumed`` (greedy with the resume rule,
:class:`distilray.inference.resume.ResumeRule`: ``runtime.resume_gap_s`` in an
evaluation), ``fallback`` (Whisper's temperature fallback, ``runtime.fallback``: windows
that loop or are unsure sampled again at 0.2 ... 1.0, seeded) and ``fallback+resumed``.
Prints, per model, the WER of each form in each decoding, how many clips or windows were
decoded on, and the recordings whose error count differs between the first two
decodings; ``--out`` writes it as JSON (``--per-recording``: with every recording's
errors and transcript).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

MAX_NEW_TOKENS = 160  # configs/tiny/eval.yaml's runtime.max_new_tokens
DECODINGS = ("greedy", "resumed", "fallback", "fallback+resumed")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="JSONL manifest with text")
    parser.add_argument("--model", nargs="+", required=True, help="models: folder, hub id, tiny.en")
    parser.add_argument("--gap", type=float, default=2.0, help="the rule's gap_s (default 2)")
    parser.add_argument(
        "--decodings",
        nargs="+",
        choices=DECODINGS,
        default=["greedy", "resumed"],
        help="decodings to compare (default: greedy resumed)",
    )
    parser.add_argument("--seed", type=int, default=0, help="torch seed of each fallback decoding")
    parser.add_argument("--limit", type=int, default=None, help="first N rows only")
    parser.add_argument("--out", type=Path, default=None, help="also write the results here")
    parser.add_argument(
        "--per-recording",
        action="store_true",
        help="with --out: every recording's errors and transcript in each decoding too",
    )
    return parser.parse_args(argv)


def read_manifest(path: Path, limit: int | None) -> list[dict]:
    """Rows with an id, a reference and their audio decoded (16 kHz mono)."""
    from distilray.audio import decode_audio

    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    rows = [r for r in rows if r.get("text")][:limit]
    for row in rows:
        row["samples"] = decode_audio(path.parent / row["audio"])
    return rows


def score(rows: list[dict], results: list) -> dict:
    """WER (after Whisper's English normaliser), repeated 5-grams (summed over
    transcripts, as the evaluation's "5-gram dups") and decoded-on count per form; each
    recording's errors and transcript."""
    from distilray.evaluation.metrics import repeated_ngrams
    from distilray.text import WerStats, wer_stats

    edits: dict[str, WerStats] = {}
    counts: dict[str, list[int]] = {}  # form -> [windows decoded on, repeated 5-grams]
    per_row, texts = {}, {}
    for row, result in zip(rows, results, strict=True):
        stats = wer_stats(row["text"], result.text)
        edits[result.form] = edits.get(result.form, WerStats()) + stats
        form = counts.setdefault(result.form, [0, 0])
        form[0] += result.resumed_windows or 0
        form[1] += repeated_ngrams(result.text)
        per_row[row["id"]] = stats.errors
        texts[row["id"]] = result.text
    forms = {
        form: {
            "wer": 100 * stats.wer,
            "errors": stats.errors,
            "words": stats.ref_words,
            "resumed_windows": counts[form][0],
            "repeated_5grams": counts[form][1],
        }
        for form, stats in edits.items()
    }
    return {"forms": forms, "errors": per_row, "transcripts": texts}


def run_model(
    reference: str, rows: list[dict], gap: float, decodings=("greedy", "resumed"), seed: int = 0
) -> dict:
    """One model's transcripts of ``rows`` in each of ``decodings``, scored."""
    import torch

    from distilray.inference.decoder import Fallback
    from distilray.inference.engine import Transcriber
    from distilray.inference.resume import ResumeRule
    from distilray.models import load_whisper

    model, processor = load_whisper(reference)
    audios = [row["samples"] for row in rows]
    out = {}
    for name in decodings:
        rule = ResumeRule(gap_s=gap) if name.endswith("resumed") else None
        fallback = Fallback() if name.startswith("fallback") else None
        transcriber = Transcriber(
            model, processor, max_new_tokens=MAX_NEW_TOKENS, resume=rule, fallback=fallback
        )
        torch.manual_seed(seed)  # the fallback's sampling
        began = time.perf_counter()
        results = transcriber.transcribe(audios, long_form="chunked")
        out[name] = {**score(rows, results), "seconds": time.perf_counter() - began}
    return out


def changes(result: dict) -> dict[str, tuple[int, int]]:
    """Recordings whose errors differ between the first two decodings: ``id -> (a, b)``."""
    names = list(result)
    if len(names) < 2:
        return {}
    before, after = result[names[0]]["errors"], result[names[1]]["errors"]
    return {key: (before[key], after[key]) for key in before if before[key] != after[key]}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.manifest.is_file():
        print(f"error: {args.manifest} not found (a JSONL manifest)", file=sys.stderr)
        return 2
    if not args.gap > 0:
        print(f"error: --gap must be above 0, got {args.gap}", file=sys.stderr)
        return 2
    rows = read_manifest(args.manifest, args.limit)
    report = {"manifest": str(args.manifest), "gap_s": args.gap, "models": {}}
    for reference in args.model:
        result = run_model(reference, rows, args.gap, args.decodings, args.seed)
        kept = result
        if not args.per_recording:  # the figures, and the recordings that changed
            kept = {
                name: {k: v for k, v in part.items() if k not in ("errors", "transcripts")}
                for name, part in result.items()
            }
        report["models"][reference] = {**kept, "changed": changes(result)}
        cells = []
        for form in sorted(result[args.decodings[0]]["forms"]):
            figures = [result[name]["forms"][form] for name in args.decodings]
            decoded_on = max(f["resumed_windows"] for f in figures)
            wers = " -> ".join(format(f["wer"], ".1f") for f in figures)
            grams = " -> ".join(str(f["repeated_5grams"]) for f in figures)
            cells.append(f"{form} {wers} % ({decoded_on} decoded on; 5-grams {grams})")
        moved = ", ".join(f"{k} {a}->{b}" for k, (a, b) in changes(result).items())
        print(f"{reference}: {'; '.join(cells)}" + (f"; {moved}" if moved else ""), flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
