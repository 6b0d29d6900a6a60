"""How far a student's word timings are from its teacher's, on the same clips.

Reads the ``transcripts.jsonl`` of an evaluation run made with word timings for both
models, e.g.::

    distilray eval --config configs/tiny/eval.yaml 'modes=[teacher,student]' \\
        'forms=[short]' 'noise.snr_db=[null]' word_timestamps=true \\
        'datasets=[{name: real-test, manifest: runs/quality/real/test/manifest.jsonl}]' \\
        output_dir=runs/quality/eval-words
    python bench/word_timings.py runs/quality/eval-words/transcripts.jsonl

Per clip, the two word sequences are aligned on their normalised spelling (difflib's
longest matching blocks); every word both models transcribe alike contributes the
distance between the teacher's and the student's start and end times. Prints the mean,
median and 90th percentile of those distances, and writes them as JSON with ``--out``.
"""

from __future__ import annotations

import argparse
import difflib
import json
import sys
from pathlib import Path

import numpy as np


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("transcripts", type=Path, help="transcripts.jsonl of a word-timed eval")
    parser.add_argument("--dataset", default=None, help="only this dataset (default: all)")
    parser.add_argument("--form", default="short", help="short or chunked (default: short)")
    parser.add_argument("--out", type=Path, default=None, help="also write the figures here")
    return parser.parse_args(argv)


def _spelling(word: str) -> str:
    return "".join(ch for ch in word.lower() if ch.isalnum() or ch == "'")


def matched_distances(teacher: list[dict], student: list[dict]) -> list[float]:
    """|start difference| and |end difference| of every word both sequences share."""
    a = [_spelling(w["word"]) for w in teacher]
    b = [_spelling(w["word"]) for w in student]
    out: list[float] = []
    for block in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_matching_blocks():
        for i in range(block.size):
            t, s = teacher[block.a + i], student[block.b + i]
            if not a[block.a + i]:
                continue  # punctuation-only "words"
            out += [abs(t["start"] - s["start"]), abs(t["end"] - s["end"])]
    return out


def compare(rows: list[dict], dataset: str | None, form: str) -> dict:
    """The timing distances over every clip both models have word timings for."""
    words: dict[str, dict[str, list[dict]]] = {"teacher": {}, "student": {}}
    for row in rows:
        if row.get("snr_db") is not None or row.get("form") != form:
            continue
        if dataset is not None and row.get("dataset") != dataset:
            continue
        if row.get("mode") in words and row.get("words"):
            words[row["mode"]][f"{row['dataset']}/{row['id']}"] = row["words"]
    clips = sorted(set(words["teacher"]) & set(words["student"]))
    if not clips:
        raise SystemExit(
            "no clip has word timings from both teacher and student: run the evaluation "
            "with word_timestamps=true and modes=[teacher,student]"
        )
    distances: list[float] = []
    for clip in clips:
        distances += matched_distances(words["teacher"][clip], words["student"][clip])
    d = np.asarray(distances)
    return {
        "clips": len(clips),
        "matched_words": len(d) // 2,
        "mean_s": round(float(d.mean()), 3) if len(d) else None,
        "median_s": round(float(np.median(d)), 3) if len(d) else None,
        "p90_s": round(float(np.percentile(d, 90)), 3) if len(d) else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not args.transcripts.is_file():
        print(f"error: {args.transcripts} does not exist", file=sys.stderr)
        return 2
    rows = [json.loads(line) for line in args.transcripts.read_text().splitlines() if line]
    figures = compare(rows, args.dataset, args.form)
    print(
        f"{figures['clips']} clips, {figures['matched_words']} words transcribed alike: "
        f"student word boundaries {figures['mean_s']} s from the teacher's on average "
        f"(median {figures['median_s']} s, 90th percentile {figures['p90_s']} s)"
    )
    if args.out:
        args.out.write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
