"""Labelling throughput: the Ray Data pipeline against a plain single-process loop.

Both label the same clips with the same teacher and greedy settings: the plain loop
decodes, featurises and calls ``generate`` batch by batch in this process (torch
using every core); the pipeline is ``distilray label`` (decode tasks + a pool of
``--actors`` teacher actors). Prints audio-seconds per second for both and their
ratio, checks the two produce the same transcripts, and writes JSON results.

    python bench/label.py --clips 48 --actors 2
    python bench/label.py --manifest data/train.jsonl --teacher openai/whisper-large-v3 \\
        --actors 4 --batch-size 32 --out bench/results/label.json
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

logger = logging.getLogger("bench.label")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--manifest", help="input manifest (default: synthesise --clips clips)")
    p.add_argument("--clips", type=int, default=48, help="synthetic clips when no --manifest")
    p.add_argument("--teacher", default="tiny.en", help="teacher model reference")
    p.add_argument("--actors", type=int, default=2, help="teacher actors in the Ray pipeline")
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per teacher actor")
    p.add_argument("--gpus-per-actor", type=float, help="GPUs per actor (default: auto)")
    p.add_argument("--batch-size", type=int, default=8, help="clips per generate() call")
    p.add_argument("--max-label-length", type=int, default=128, help="tokens per clip at most")
    p.add_argument("--threads", type=int, help="torch threads of the plain loop (default: all)")
    p.add_argument("--out", default="bench/results/label.json", help="JSON results file")
    return p.parse_args(argv)


def synthetic_manifest(count: int, workdir: Path) -> Path:
    from distilray.data.synth import synthesize_dataset

    return synthesize_dataset(workdir / "synth", count, seed=0)


def manifest_clips(manifest: str) -> list[dict]:
    """``id``, audio source and duration of every clip (decoded once, untimed)."""
    from distilray.audio import decode_audio
    from distilray.data.manifest import read_manifest

    clips = []
    for row in read_manifest(manifest).to_pylist():
        source = row["audio_bytes"] if row["audio_bytes"] is not None else row["audio_path"]
        seconds = decode_audio(source, max_duration_s=30.0).size / 16000
        clips.append({"id": row["id"], "source": source, "duration_s": seconds})
    return clips


def plain_loop(clips: list[dict], args: argparse.Namespace) -> dict:
    """One process: decode, log-mel and ``generate`` batch after batch."""
    import torch

    from distilray.audio import decode_audio
    from distilray.features import log_mel
    from distilray.inference.shortform import generate_greedy
    from distilray.models import load_whisper

    cuda = torch.cuda.is_available() and args.gpus_per_actor != 0
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    began = time.perf_counter()
    model, processor = load_whisper(
        args.teacher,
        device="cuda" if cuda else "cpu",
        dtype="bfloat16" if cuda else "float32",
        attn_implementation="sdpa",
    )
    loaded = time.perf_counter()
    texts = {}
    for start in range(0, len(clips), args.batch_size):
        batch = clips[start : start + args.batch_size]
        audios = [decode_audio(c["source"], max_duration_s=30.0) for c in batch]
        features = torch.from_numpy(log_mel(processor.feature_extractor, audios))
        ids = generate_greedy(model, processor, features, max_new_tokens=args.max_label_length)
        for clip, row in zip(batch, ids, strict=True):
            texts[clip["id"]] = processor.decode(row, skip_special_tokens=True).strip()
    done = time.perf_counter()
    audio_s = sum(c["duration_s"] for c in clips)
    return {
        "load_s": round(loaded - began, 3),
        "label_s": round(done - loaded, 3),
        "wall_s": round(done - began, 3),
        "audio_s": round(audio_s, 3),
        "audio_s_per_s": round(audio_s / (done - began), 3),
        "audio_s_per_s_after_load": round(audio_s / (done - loaded), 3),
        "texts": texts,
    }


def ray_pipeline(manifest: str, workdir: Path, args: argparse.Namespace) -> dict:
    """``distilray label`` on the embedded (or joined) Ray, timed from start to last shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling
    from distilray.labelling.shards import list_shards
    from distilray.runtime import ensure_ray

    ensure_ray()
    output = workdir / "labels"
    cfg = LabelConfig(
        input=str(manifest),
        output=str(output),
        teacher=args.teacher,
        batch_size=args.batch_size,
        prepare_batch_size=args.batch_size,
        min_actors=args.actors,
        max_actors=args.actors,
        cpus_per_actor=args.cpus_per_actor,
        num_gpus_per_actor=args.gpus_per_actor,
        max_label_length=args.max_label_length,
        resume=False,
    )
    began = time.perf_counter()
    result = run_labelling(cfg)
    wall = time.perf_counter() - began
    table = pa.concat_tables(
        [pq.read_table(s, columns=["id", "pseudo_label"]) for s in list_shards(str(output))]
    )
    run = result.run
    return {
        "pipeline_s": run["elapsed_s"],  # actor start-up and model loads included
        "wall_s": round(wall, 3),  # plus manifest scan, teacher config, summary
        "audio_s": run["audio_s"],
        "audio_s_per_s": round(run["audio_s"] / wall, 3),
        "audio_s_per_s_pipeline": run["audio_s_per_s"],
        "device": run["device"],
        "errors": run["errors"],
        "texts": dict(zip(table["id"].to_pylist(), table["pseudo_label"].to_pylist(), strict=True)),
    }


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-label-") as tmp:
        workdir = Path(tmp)
        manifest = args.manifest or str(synthetic_manifest(args.clips, workdir))
        clips = manifest_clips(manifest)
        logger.info("%d clips, %.1f s of audio", len(clips), sum(c["duration_s"] for c in clips))
        plain = plain_loop(clips, args)
        ray_result = ray_pipeline(manifest, workdir, args)
    same = sum(plain["texts"][k] == ray_result["texts"].get(k) for k in plain["texts"])
    report = {
        "bench": "label",
        "teacher": args.teacher,
        "clips": len(clips),
        "actors": args.actors,
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        # Other work on the machine skews both figures: compare runs at a low load.
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "plain": {k: v for k, v in plain.items() if k != "texts"},
        "ray": {k: v for k, v in ray_result.items() if k != "texts"},
        "ratio_ray_over_plain": round(ray_result["audio_s_per_s"] / plain["audio_s_per_s"], 3),
        "same_transcripts": f"{same}/{len(plain['texts'])}",
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(
        f"plain loop : {plain['audio_s_per_s']:8.2f} audio-s/s "
        f"({plain['audio_s_per_s_after_load']:.2f} after the {plain['load_s']:.1f} s model load)\n"
        f"ray data   : {ray_result['audio_s_per_s']:8.2f} audio-s/s "
        f"({args.actors} actors, {ray_result['device']})\n"
        f"ratio      : {report['ratio_ray_over_plain']:8.2f}x   "
        f"same transcripts: {report['same_transcripts']}   results: {out}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
