"""End-to-end distillation quality on CPU: does the distilled student transcribe better?

Synthesises training speech and a held-out test set (other sentences, other voices),
pseudo-labels the training clips with the teacher (greedy), then runs the real
commands ``distilray init-student`` and ``distilray distill`` with the tiny configs,
and measures WER on the held-out set for the teacher, the initial student and the
distilled student. Results are printed and written as JSON.

    python bench/distill_quality.py --workdir runs/quality --steps 300
"""

from __future__ import annotations

import argparse
import json
import logging
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

logger = logging.getLogger("bench.distill_quality")

TRAIN_VOICES = "espeak-ng:en-us,espeak-ng:en-gb,flite:slt,flite:rms"
TEST_VOICES = "espeak-ng:en+m3,espeak-ng:en-us+f3,flite:awb,flite:kal"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default="runs/quality", help="everything goes here")
    parser.add_argument("--teacher", default="tiny.en", help="teacher model reference")
    parser.add_argument("--train-clips", type=int, default=96, help="training clips")
    parser.add_argument("--test-clips", type=int, default=24, help="held-out clips")
    parser.add_argument("--steps", type=int, default=300, help="distillation steps")
    parser.add_argument("--batch-size", type=int, default=8, help="rows per step")
    parser.add_argument("--out", default=None, help="JSON results (default: WORKDIR/quality.json)")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="extra overrides for `distilray distill`"
    )
    return parser.parse_args(argv)


def synth(out: Path, num: int, voices: str, split: str) -> Path:
    manifest = out / "manifest.jsonl"
    if not manifest.exists():
        run_cli(["data", "synth", "--out", str(out), "--num", str(num), "--voices", voices,
                 "--split", split, "--rate-jitter", "0.1"])  # fmt: skip
    return manifest


def read_clips(manifest: Path) -> list[dict]:
    from distilray.audio import decode_audio

    rows = [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]
    for row in rows:
        row["bytes"] = (manifest.parent / row["audio"]).read_bytes()
        row["array"] = decode_audio(row["bytes"])
    return rows


def transcribe(model_ref: str, clips: list[dict], batch_size: int = 8):
    """Greedy generated ids per clip (prompt and end of text removed), texts, and the processor."""
    import torch

    from distilray.features import log_mel
    from distilray.inference.shortform import generate_greedy
    from distilray.models import load_whisper

    model, processor = load_whisper(model_ref, dtype=torch.float32)
    ids = []
    for i in range(0, len(clips), batch_size):
        chunk = [c["array"] for c in clips[i : i + batch_size]]
        feats = torch.from_numpy(log_mel(processor.feature_extractor, chunk))
        ids.extend(generate_greedy(model, processor, feats, max_new_tokens=128))
    texts = [t.strip() for t in processor.batch_decode(ids, skip_special_tokens=True)]
    return ids, texts, processor


def held_out_wer(model_ref: str, clips: list[dict]) -> dict:
    """Corpus WER of ``model_ref`` on ``clips`` (greedy, normalised)."""
    start = time.perf_counter()
    _, hyps, _ = transcribe(model_ref, clips)
    return wer_summary(clips, hyps, time.perf_counter() - start)


def wer_summary(clips: list[dict], hyps: list[str], seconds: float) -> dict:
    from distilray.text import corpus_wer

    stats = corpus_wer([c["text"] for c in clips], hyps)
    return {**stats.as_dict(), "seconds": seconds, "examples": hyps[:3]}


def write_labels(path: Path, clips: list[dict], teacher: str) -> tuple[list[str], list]:
    """Pseudo-label ``clips`` with the teacher into the labelling stage's Parquet schema.

    Returns the teacher's transcripts and their WER against the references.
    """
    from distilray.text import wer

    ids, texts, processor = transcribe(teacher, clips)
    tok = processor.tokenizer
    prompt = list(tok.prefix_tokens)  # <|startoftranscript|> (+ language, task) <|notimestamps|>
    records = [
        {
            "id": c["id"],
            "audio": c["bytes"],
            "duration_s": len(c["array"]) / 16000,
            "text": c["text"],
            "pseudo_label": text,
            "pseudo_label_ids": prompt + list(row) + [tok.eos_token_id],
            "wer": wer(c["text"], text),
            "teacher": teacher,
            "error": None,
        }
        for c, text, row in zip(clips, texts, ids, strict=True)
    ]
    schema = pa.Table.from_pylist(records).schema
    schema = schema.set(
        schema.get_field_index("pseudo_label_ids"),
        pa.field("pseudo_label_ids", pa.list_(pa.int32())),
    )
    path.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pylist(records, schema=schema), path / "part-00000.parquet")
    return texts, [r["wer"] for r in records]


def run_cli(args: list[str]) -> None:
    command = ["distilray", *args]
    logger.info("$ %s", shlex.join(command))
    subprocess.run(command, check=True)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    work = Path(args.workdir)
    train = read_clips(synth(work / "synth-train", args.train_clips, TRAIN_VOICES, "train"))
    test = read_clips(synth(work / "synth-test", args.test_clips, TEST_VOICES, "test"))
    start = time.perf_counter()
    _, train_wers = write_labels(work / "labels", train, args.teacher)
    teacher_test, _ = write_labels(work / "heldout", test, args.teacher)  # eval references: text
    teacher_wer = wer_summary(test, teacher_test, time.perf_counter() - start)
    student_init, student = work / "student-init", work / "student"
    run_cli(["init-student", "--config", "configs/tiny/init_student.yaml", f"out={student_init}"])
    distill = [
        "distill", "--config", "configs/tiny/distill.yaml",
        f"data.train={work / 'labels'}", f"data.eval={work / 'heldout'}",
        f"model.teacher={args.teacher}", f"model.student={student_init}",
        f"train.max_steps={args.steps}", f"train.batch_size={args.batch_size}",
        f"run.storage={work / 'train'}", f"run.export_to={student}", *args.overrides,
    ]  # fmt: skip
    start = time.perf_counter()
    run_cli(distill)
    result = {
        "train_clips": len(train),
        "test_clips": len(test),
        "train_voices": TRAIN_VOICES,
        "test_voices": TEST_VOICES,
        "train_labels_within_wer_0.1": sum((w or 0) <= 0.1 for w in train_wers),
        "steps": args.steps,
        "distill_seconds": time.perf_counter() - start,
        "command": shlex.join(["distilray", *distill]),
        "wer": {
            "teacher": teacher_wer,
            "student_init": held_out_wer(str(student_init), test),
            "student_distilled": held_out_wer(str(student), test),
        },
    }
    out = Path(args.out or work / "quality.json")
    out.write_text(json.dumps(result, indent=2) + "\n")
    for name, row in result["wer"].items():
        print(f"{name:18s} WER {100 * row['wer']:6.2f} %   e.g. {row['examples'][0]!r}")
    print(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
