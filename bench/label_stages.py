"""Where a labelling actor's time goes: preparation, encoder, decoding, scoring.

Labels the first ``--limit`` clips of a labelling config's input in this process with
the actor the pipeline would run on this machine (same engine, packing, batch sizes
and label settings; the encoder store, when the config keeps one, writes to a
temporary folder), and times each stage of it:

* ``prepare``: decode, pack, re-encode and log-mel (the pipeline's CPU tasks);
* ``encode``: the teacher's encoder, one 30 s window per row, however short its clip;
* ``decode``: greedy generation of the label;
* ``store``: writing encoder outputs for distillation (only with ``encoder_cache_dir``);
* ``score``: the rest of the actor: the teacher-forced pass for the confidence scores
  and building the output rows.

Each ``--variant`` is a list of dotted overrides applied on top of the config (one
measured run each, in order), so packing settings can be compared on the same clips:

    python bench/label_stages.py --config configs/tiny/label-real.yaml \\
        --input runs/quality/real/train/manifest.jsonl --limit 240 \\
        --variant "pack_gap_s=[0,0]" --variant "pack_gap_s=[0,3]"

Prints one table row per variant (rows, single-clip rows, audio, tokens, seconds per
stage and audio-seconds per second) and writes them as JSON (``--out``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

STAGES = ("prepare", "encode", "decode", "store", "score")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--config", required=True, help="labelling config (YAML)")
    p.add_argument("--input", help="manifest to read instead of the config's input")
    p.add_argument("--limit", type=int, default=240, help="first clips of the manifest")
    p.add_argument(
        "--variant",
        action="append",
        default=[],
        help="dotted overrides, space separated (repeatable; default: the config as it is)",
    )
    p.add_argument("--out", default="bench/results/label_stages.json", help="JSON results")
    return p.parse_args(argv)


class StageClock:
    """Seconds spent per stage, added up by :meth:`wrap`-ped callables."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(STAGES, 0.0)

    def wrap(self, stage: str, fn: Callable) -> Callable:
        def timed(*args, **kwargs):
            began = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - began

        return timed


def build_labeller(cfg):
    """The actor ``distilray label`` would run for ``cfg`` on this machine's CPU, and
    its placement (engine, compute type)."""
    from distilray.labelling.pipeline import placement_for, teacher_actor

    placement = placement_for(cfg, 0.0)
    labeller, kwargs = teacher_actor(cfg, placement)
    return labeller(**kwargs), placement


def measure(cfg, rows, labeller, clock: StageClock) -> dict:
    """Label ``rows`` (manifest rows) as the pipeline batches them; counts and times.

    One clip is labelled first, untimed: the engine's first calls allocate.
    """
    import pyarrow as pa

    from distilray.labelling.pipeline import prepare_kwargs
    from distilray.labelling.prepare import prepare_batch

    kwargs = prepare_kwargs(cfg, labeller.processor.feature_extractor)

    def prepare(batch: pa.Table) -> pa.Table:
        return prepare_batch(batch, **kwargs)

    labeller(prepare(rows.slice(0, 1)))  # warm-up (first calls allocate), not counted
    clock.seconds = dict.fromkeys(STAGES, 0.0)
    prepare = clock.wrap("prepare", prepare)
    counts = {"rows": 0, "single_rows": 0, "audio_s": 0.0, "tokens": 0, "errors": 0}
    actor_s = 0.0
    began = time.perf_counter()
    for start in range(0, rows.num_rows, cfg.prepare_batch_size):
        prepared = prepare(rows.slice(start, cfg.prepare_batch_size))
        for first in range(0, prepared.num_rows, cfg.batch_size):
            t = time.perf_counter()
            out = labeller(prepared.slice(first, cfg.batch_size))
            actor_s += time.perf_counter() - t
            counts["rows"] += out.num_rows
            counts["single_rows"] += sum(len(ids) == 1 for ids in out["source_ids"].to_pylist())
            counts["audio_s"] += sum(d or 0.0 for d in out["duration_s"].to_pylist())
            counts["tokens"] += sum(len(ids or []) for ids in out["pseudo_label_ids"].to_pylist())
            counts["errors"] += sum(e is not None for e in out["error"].to_pylist())
    total = time.perf_counter() - began
    seconds = dict(clock.seconds)
    seconds["score"] = actor_s - seconds["encode"] - seconds["decode"] - seconds["store"]
    return {
        **counts,
        "clips": rows.num_rows,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
        "total_s": round(total, 2),
        "audio_s_per_s": round(counts["audio_s"] / total, 2) if total else None,
    }


def run_variant(config: str, overrides: list[str], args) -> dict:
    from distilray.config import load_config
    from distilray.data.manifest import read_manifest
    from distilray.labelling.config import LabelConfig

    extra = [f"input={args.input}"] if args.input else []
    cfg = load_config(LabelConfig, config, [*extra, *overrides])
    rows = read_manifest(cfg.input, cfg.manifest_columns()).slice(0, args.limit)
    clock = StageClock()
    with tempfile.TemporaryDirectory(prefix="label-stages-") as tmp:
        if cfg.encoder_cache_dir:  # time the store without writing where the config says
            cfg = cfg.model_copy(update={"encoder_cache_dir": str(Path(tmp) / "encoder-cache")})
        labeller, chosen = build_labeller(cfg)
        labeller._encode = clock.wrap("encode", labeller._encode)
        labeller.decoder.decode = clock.wrap("decode", labeller.decoder.decode)
        if labeller.store is not None:
            labeller.store.save = clock.wrap("store", labeller.store.save)
        result = measure(cfg, rows, labeller, clock)
    engine = chosen.engine + (f" {chosen.compute_type}" if chosen.compute_type else "")
    return {"variant": " ".join(overrides) or "as configured", "engine": engine, **result}


def table(results: list[dict]) -> str:
    head = (
        "| variant | clips | rows (single) | audio s | tokens | "
        + " | ".join(f"{s} s" for s in STAGES)
        + " | total s | audio-s/s |"
    )
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in results:
        stages = " | ".join(f"{r['seconds'][s]:.1f}" for s in STAGES)
        lines.append(
            f"| {r['variant']} | {r['clips']} | {r['rows']} ({r['single_rows']}) | "
            f"{r['audio_s']:.0f} | {r['tokens']} | {stages} | {r['total_s']:.1f} | "
            f"{r['audio_s_per_s']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from distilray.errors import DistilrayError

    args = parse_args(argv)
    variants = [shlex.split(v) for v in args.variant] or [[]]
    try:
        results = [run_variant(args.config, overrides, args) for overrides in variants]
    except DistilrayError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"engine: {results[0]['engine']}")
    print(table(results))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
