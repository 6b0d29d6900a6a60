"""Labelling throughput: the Ray Data pipeline and its engines against plain loops.

All variants label the same clips with the same teacher and greedy settings:

* plain loops in this process (decode, log-mel, decode batch after batch, every core):
  transformers ``generate`` and the CTranslate2 engine;
* faster-whisper's own ``BatchedInferencePipeline`` (the clips joined into one
  recording and given as ``clip_timestamps``, so they are batched like ours);
* ``distilray label`` on Ray: transformers, CTranslate2 float32 with 1 actor x 2 CPUs
  and 2 actors x 1 CPU, and CTranslate2 int8 both ways.

Each figure is audio-seconds per second; model loads and Ray's start are reported
apart from the steady rate (plain loops: after the load; Ray: after the first labelled
batch). Also: identical transcripts against the plain transformers loop, and for int8
the share of identical labels and the WER change. Writes JSON results.

    python bench/label.py --clips 40 --batch-size 8
    python bench/label.py --manifest data/train.jsonl --teacher openai/whisper-large-v3 \\
        --batch-size 32 --out bench/results/label.json
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
    p.add_argument("--clips", type=int, default=40, help="synthetic clips when no --manifest")
    p.add_argument("--teacher", default="tiny.en", help="teacher model reference")
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


def plain_loop(clips: list[dict], args: argparse.Namespace, engine: str) -> dict:
    """One process: decode, log-mel and greedy decoding batch after batch."""
    import torch

    from distilray.audio import decode_audio
    from distilray.features import log_mel
    from distilray.models import load_whisper

    cuda = torch.cuda.is_available() and args.gpus_per_actor != 0
    threads = args.threads or os.cpu_count() or 1
    torch.set_num_threads(threads)
    began = time.perf_counter()
    model, processor = load_whisper(
        args.teacher,
        device="cuda" if cuda else "cpu",
        dtype="bfloat16" if cuda else "float32",
        attn_implementation="sdpa",
    )
    decode = _transformers_decoder(model, processor, args)
    if engine == "ctranslate2":
        decode = _ct2_decoder(model, args, "cuda" if cuda else "cpu", threads)
    loaded = time.perf_counter()
    texts = {}
    for start in range(0, len(clips), args.batch_size):
        batch = clips[start : start + args.batch_size]
        audios = [decode_audio(c["source"], max_duration_s=30.0) for c in batch]
        features = torch.from_numpy(log_mel(processor.feature_extractor, audios))
        for clip, row in zip(batch, decode(features), strict=True):
            texts[clip["id"]] = processor.decode(row, skip_special_tokens=True).strip()
    done = time.perf_counter()
    return _rates(clips, began, loaded, done, texts)


def _transformers_decoder(model, processor, args):
    from distilray.inference.shortform import generate_greedy

    return lambda features: generate_greedy(
        model, processor, features, max_new_tokens=args.max_label_length
    )


def _ct2_decoder(model, args, device: str, threads: int):
    from distilray.engines.ct2 import CT2Whisper
    from distilray.inference.prompt import prompt_ids

    engine = CT2Whisper.load(args.teacher, device=device, compute_type="float32", threads=threads)
    prompt = prompt_ids(model.generation_config, None, None, False)
    return lambda features: engine.greedy(
        engine.encode(features.numpy()),
        [prompt] * len(features),
        max_new_tokens=args.max_label_length,
    )


def _rates(clips, began: float, loaded: float, done: float, texts: dict) -> dict:
    audio_s = sum(c["duration_s"] for c in clips)
    return {
        "load_s": round(loaded - began, 3),
        "label_s": round(done - loaded, 3),
        "wall_s": round(done - began, 3),
        "audio_s": round(audio_s, 3),
        "audio_s_per_s": round(audio_s / (done - began), 3),
        "steady_audio_s_per_s": round(audio_s / (done - loaded), 3),
        "texts": texts,
    }


def faster_whisper_batched(clips: list[dict], args: argparse.Namespace) -> dict:
    """faster-whisper's BatchedInferencePipeline on the clips joined into one recording,
    one ``clip_timestamps`` entry per clip (greedy, float32, no VAD, no timestamps)."""
    import numpy as np
    from faster_whisper import BatchedInferencePipeline, WhisperModel

    from distilray.audio import decode_audio
    from distilray.models.ct2_export import cached_ct2_model

    folder = cached_ct2_model(args.teacher)  # the teacher converted by CTranslate2
    audios = [decode_audio(c["source"], max_duration_s=30.0) for c in clips]
    bounds = np.cumsum([0] + [len(a) for a in audios]) / 16000
    began = time.perf_counter()
    model = WhisperModel(
        str(folder), device="cpu", compute_type="float32", cpu_threads=os.cpu_count() or 1
    )
    pipeline = BatchedInferencePipeline(model)
    loaded = time.perf_counter()
    segments, _ = pipeline.transcribe(
        np.concatenate(audios),
        clip_timestamps=[
            {"start": a, "end": b} for a, b in zip(bounds[:-1], bounds[1:], strict=True)
        ],
        batch_size=args.batch_size,
        beam_size=1,
        without_timestamps=True,
        vad_filter=False,
        log_progress=False,
    )
    parts: dict[str, list[str]] = {c["id"]: [] for c in clips}
    for segment in segments:
        index = int(np.searchsorted(bounds, segment.start + 1e-3, side="right")) - 1
        parts[clips[min(index, len(clips) - 1)]["id"]].append(segment.text.strip())
    done = time.perf_counter()
    return _rates(clips, began, loaded, done, {k: " ".join(v) for k, v in parts.items()})


def ray_pipeline(manifest: str, workdir: Path, args, name: str, **overrides) -> dict:
    """``distilray label`` on the embedded (or joined) Ray, timed from start to last shard."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling
    from distilray.labelling.shards import list_shards

    output = workdir / f"labels-{name}"
    cfg = LabelConfig(
        input=str(manifest),
        output=str(output),
        teacher=args.teacher,
        batch_size=args.batch_size,
        prepare_batch_size=args.batch_size,
        num_gpus_per_actor=args.gpus_per_actor,
        max_label_length=args.max_label_length,
        return_timestamps=False,  # as the plain loops decode
        concatenate_audio=False,
        resume=False,
        **overrides,
    )
    began = time.perf_counter()
    result = run_labelling(cfg)
    wall = time.perf_counter() - began
    table = pa.concat_tables(
        [pq.read_table(s, columns=["id", "pseudo_label"]) for s in list_shards(str(output))]
    )
    run = result.run
    return {
        "engine": run["engine"],
        "compute_type": run["compute_type"],
        "actors": cfg.max_actors,
        "cpus_per_actor": cfg.cpus_per_actor,
        "pipeline_s": run["elapsed_s"],  # actor start-up and model loads included
        "wall_s": round(wall, 3),  # plus manifest scan, teacher config, summary
        "startup_s": run["startup_s"],  # run start to the first labelled batch
        "audio_s": run["audio_s"],
        "audio_s_per_s": round(run["audio_s"] / wall, 3),
        "steady_audio_s_per_s": run["steady_audio_s_per_s"],
        "errors": run["errors"],
        "texts": dict(zip(table["id"].to_pylist(), table["pseudo_label"].to_pylist(), strict=True)),
    }


RAY_VARIANTS = {  # name -> LabelConfig overrides
    "ray_transformers_1x2": {"engine": "transformers", "max_actors": 1, "cpus_per_actor": 2},
    "ray_ct2_float32_1x2": {"engine": "ctranslate2", "max_actors": 1, "cpus_per_actor": 2},
    "ray_ct2_float32_2x1": {"engine": "ctranslate2", "min_actors": 2, "max_actors": 2},
    "ray_ct2_int8_1x2": {"compute_type": "int8", "max_actors": 1, "cpus_per_actor": 2},
    "ray_ct2_int8_2x1": {"compute_type": "int8", "min_actors": 2, "max_actors": 2},
}


def compare(texts: dict, reference: dict, references: dict) -> dict:
    """Identical transcripts and the WER change against ``reference``'s transcripts."""
    from distilray.text import corpus_wer

    ids = sorted(reference)
    refs = [references.get(i) for i in ids]
    wer = corpus_wer(refs, [texts.get(i) for i in ids]).wer
    base = corpus_wer(refs, [reference[i] for i in ids]).wer
    same = sum(texts.get(i) == reference[i] for i in ids)
    return {
        "same_transcripts": f"{same}/{len(ids)}",
        "wer": round(wer, 4),
        "wer_change_points": round(100 * (wer - base), 2),
    }


def run_all(manifest: str, clips: list[dict], workdir: Path, args) -> dict:
    from distilray.runtime import ensure_ray

    results = {
        "plain_transformers": plain_loop(clips, args, "transformers"),
        "plain_ct2_float32": plain_loop(clips, args, "ctranslate2"),
        "faster_whisper_batched": faster_whisper_batched(clips, args),
    }
    began = time.perf_counter()
    ensure_ray()
    ray_init_s = round(time.perf_counter() - began, 3)
    for name, overrides in RAY_VARIANTS.items():
        results[name] = ray_pipeline(manifest, workdir, args, name, **overrides)
    results["ray_init_s"] = ray_init_s
    return results


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    load_before = os.getloadavg()[0]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    with tempfile.TemporaryDirectory(prefix="bench-label-") as tmp:
        workdir = Path(tmp)
        manifest = args.manifest or str(synthetic_manifest(args.clips, workdir))
        clips = manifest_clips(manifest)
        references = _references(manifest)
        logger.info("%d clips, %.1f s of audio", len(clips), sum(c["duration_s"] for c in clips))
        results = run_all(manifest, clips, workdir, args)
    ray_init_s = results.pop("ray_init_s")
    texts = {name: result.pop("texts") for name, result in results.items()}
    base = texts["plain_transformers"]
    variants = {
        name: {**r, **compare(texts[name], base, references)} for name, r in results.items()
    }
    # reduced precision against the same engine at float32
    for name in ("ray_ct2_int8_1x2", "ray_ct2_int8_2x1"):
        variants[name]["vs_ct2_float32"] = compare(
            texts[name], texts["ray_ct2_float32_1x2"], references
        )
    report = {
        "bench": "label",
        "teacher": args.teacher,
        "clips": len(clips),
        "batch_size": args.batch_size,
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        # Other work on the machine skews every figure: compare runs at a low load.
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "ray_init_s": ray_init_s,
        "variants": variants,
        "ratios_steady": _ratios(variants),
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(report), f"\nresults: {out}")
    return 0


def _references(manifest: str) -> dict:
    from distilray.data.manifest import read_manifest

    table = read_manifest(manifest)
    return dict(zip(table["id"].to_pylist(), table["text"].to_pylist(), strict=True))


def _ratios(variants: dict) -> dict:
    """The issue's targets, as ratios of steady-state audio-s/s."""

    def rate(name: str) -> float:
        return variants[name]["steady_audio_s_per_s"] or 0.0

    plain, fw = rate("plain_transformers"), rate("faster_whisper_batched")
    return {
        "ray_ct2_over_plain_transformers": round(rate("ray_ct2_float32_1x2") / plain, 3),
        "ray_ct2_2x1_over_1x2": round(rate("ray_ct2_float32_2x1") / rate("ray_ct2_float32_1x2"), 3),
        "ray_transformers_over_plain_transformers": round(rate("ray_transformers_1x2") / plain, 3),
        "plain_ct2_over_plain_transformers": round(rate("plain_ct2_float32") / plain, 3),
        "plain_ct2_over_faster_whisper_batched": round(rate("plain_ct2_float32") / fw, 3),
        "ray_ct2_over_faster_whisper_batched": round(rate("ray_ct2_float32_1x2") / fw, 3),
        "ray_ct2_2x1_over_plain_transformers": round(rate("ray_ct2_float32_2x1") / plain, 3),
        "ray_ct2_int8_2x1_over_plain_transformers": round(rate("ray_ct2_int8_2x1") / plain, 3),
        "ray_ct2_int8_2x1_over_faster_whisper_batched": round(rate("ray_ct2_int8_2x1") / fw, 3),
    }


def _table(report: dict) -> str:
    lines = [f"{'variant':26} {'steady':>8} {'overall':>8} {'start-up':>9}  same   WER"]
    for name, v in report["variants"].items():
        startup = v.get("startup_s", v.get("load_s"))
        lines.append(
            f"{name:26} {v['steady_audio_s_per_s'] or 0:8.2f} {v['audio_s_per_s']:8.2f} "
            f"{startup or 0:8.1f}s  {v['same_transcripts']:>5} {100 * v['wer']:5.1f}%"
        )
    lines.append(f"ray init {report['ray_init_s']:.1f} s; steady ratios: {report['ratios_steady']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
