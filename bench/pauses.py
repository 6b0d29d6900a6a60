"""Does a model go on transcribing after a pause inside a window, or stop there?

Chunked long-form cuts recordings into 30 s windows; a student that ends its
transcript at the first pause of a window loses the rest of it (deletions). This
joins consecutive pairs of referenced clips of a manifest (real speech: the test
split of ``distilray data real``) into one window with a pause between them, of
each kind asked for (digital silence, or Gaussian noise at the first clip's noise
floor, as labelling's ``pack_gap_s`` makes them), decodes every window greedily
with each model, and prints per model and pause: WER, deletion rate, and how many
windows *stopped at the pause* (at least half the second clip's words missing)::

    python bench/pauses.py --manifest runs/demo/real/test/manifest.jsonl \\
        --model teacher=tiny.en --model student=runs/demo/student

The noise is at the level labelling's pauses use (``labelling.prepare.make_pause``);
the lengths are the same for every pair (``--pauses``), not drawn per clip.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

WINDOW_S = 28.0  # pairs longer than this (with the pause) are skipped


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--manifest", type=Path, required=True, help="JSONL with id, audio, text")
    parser.add_argument(
        "--model", action="append", required=True, help="NAME=REF (hub id, folder or tiny.en)"
    )
    parser.add_argument(
        "--pauses", type=float, nargs="+", default=[0.0, 1.5, 3.0], help="pause lengths, s"
    )
    parser.add_argument("--pairs", type=int, default=24, help="pairs of clips at most")
    parser.add_argument("--out", type=Path, default=None, help="also write the table as JSON")
    return parser.parse_args(argv)


def pairs(manifest: Path, limit: int) -> list[tuple[dict, np.ndarray, dict, np.ndarray]]:
    """Consecutive short referenced clips of ``manifest``, decoded, in pairs."""
    from distilray.audio import SAMPLING_RATE, decode_audio

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    clips = []
    for row in rows:
        if not row.get("text") or row.get("long_form"):
            continue
        audio = decode_audio(manifest.parent / row["audio"])
        if audio.size < (WINDOW_S - 3.0) / 2 * SAMPLING_RATE:
            clips.append((row, audio))
    return [(*clips[i], *clips[i + 1]) for i in range(0, len(clips) - 1, 2)][:limit]


def window(first: np.ndarray, second: np.ndarray, seconds: float, kind: str) -> np.ndarray:
    """``first``, a pause of ``seconds`` (``silence`` or ``noise``), ``second``."""
    from distilray.audio import SAMPLING_RATE
    from distilray.labelling.prepare import make_pause

    samples = int(seconds * SAMPLING_RATE)
    pause = make_pause(samples, first, silent=kind == "silence", seed=samples)
    return np.concatenate([first, pause, second])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)

    from distilray.inference.decoder import make_decoder
    from distilray.models import load_whisper
    from distilray.text import normalize, wer_stats

    work = pairs(args.manifest, args.pairs)
    if not work:
        print(f"error: no pairs of short referenced clips in {args.manifest}", file=sys.stderr)
        return 2
    kinds = [("none", 0.0)] if 0.0 in args.pauses else []
    kinds += [(k, s) for s in args.pauses if s > 0 for k in ("silence", "noise")]
    results = []
    print(f"{len(work)} pairs of clips from {args.manifest}")
    print("| model | pause | WER % | deletions % | stopped at the pause |")
    print("|---|---|---|---|---|")
    for spec in args.model:
        name, _, ref = spec.partition("=")
        model, processor = load_whisper(ref or name)
        decoder = make_decoder(model, processor, max_new_tokens=200)
        for kind, seconds in kinds:
            audios = [window(a, b, seconds, kind) for _, a, _, b in work]
            features = processor.feature_extractor(
                audios, sampling_rate=16000, return_tensors="pt"
            ).input_features
            hyps = []
            for start in range(0, len(audios), 8):
                decoded = decoder.decode(features[start : start + 8])
                hyps += processor.tokenizer.batch_decode(decoded.ids, skip_special_tokens=True)
            refs = [f"{r1['text']} {r2['text']}" for r1, _, r2, _ in work]
            stats = [wer_stats(ref, hyp) for ref, hyp in zip(refs, hyps, strict=True)]
            total = sum(stats[1:], stats[0])
            stopped = sum(
                s.deletions >= 0.5 * len(normalize(r2["text"]).split())
                for s, (_, _, r2, _) in zip(stats, work, strict=True)
            )
            label = "none" if kind == "none" else f"{seconds:g} s {kind}"
            print(
                f"| {name} | {label} | {100 * total.wer:.1f} | "
                f"{100 * total.rate('deletions'):.1f} | {stopped}/{len(work)} |",
                flush=True,
            )
            results.append(
                {
                    "model": name,
                    "pause": label,
                    "wer": total.wer,
                    "stopped": stopped,
                    "deletion_rate": total.rate("deletions"),
                    "pairs": len(work),
                }
            )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
