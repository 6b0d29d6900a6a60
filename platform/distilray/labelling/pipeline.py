"""The labelling stage: manifests in, pseudo-labelled Parquet shards out, on Ray Data.

    read manifest ─► skip done ids ─► decode + pack + log-mel (CPU tasks)
        ─► teacher greedy decoding (actor pool, GPU when the cluster has one)
        ─► WER vs reference (CPU tasks) ─► Parquet shards in <output>/run-<time>/

Resume is by id: the ids in the output's complete shards are skipped before any
audio is read, so rerunning a crashed job finishes it without duplicates or gaps.
With ``retry_errors`` the ids of errored rows are labelled again, and the old rows are
dropped from their shards once the new ones are written.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from distilray.audio import SAMPLING_RATE
from distilray.errors import DataError
from distilray.inference.windows import N_FRAMES
from distilray.labelling.config import LabelConfig
from distilray.labelling.schema import OUTPUT_COLUMNS, OUTPUT_SCHEMA
from distilray.labelling.shards import (
    OutputState,
    new_run_dir,
    prune_superseded,
    read_manifest,
    scan_output,
    write_manifest,
)
from distilray.labelling.summary import LabelSummary, summarize
from distilray.storage_checks import check_access

logger = logging.getLogger("distilray.labelling")

AUDIO_FORMAT = "wav/pcm_s16le/16000Hz/mono"  # what the audio column holds


@dataclass(frozen=True)
class Plan:
    """Which inputs this run labels."""

    total: int  # input ids considered (the first `limit` when set)
    skipped: int  # of those, already in the output
    retried: int  # errored ids in the output labelled again (retry_errors)
    skip: pa.Array | None  # ids to leave out (already labelled); None: nothing to skip
    only: pa.Array | None  # ids to keep (the first `limit`); None: all

    @property
    def todo(self) -> int:
        return self.total - self.skipped


@dataclass(frozen=True)
class Placement:
    """Where the teacher actors run."""

    num_gpus: float
    device: str
    dtype: str
    engine: str = "transformers"  # or "ctranslate2" (labelling/ct2_teacher.py)
    compute_type: str | None = None  # CTranslate2's compute type


def plan_work(ids: pa.Array, state: OutputState, cfg: LabelConfig) -> Plan:
    """Which input ids to label: the first ``limit`` ids, minus those already labelled
    (errored rows count as labelled unless ``retry_errors`` picks them)."""
    wanted = ids.slice(0, cfg.limit) if cfg.limit else ids
    done = state.done_ids(cfg.retry_errors)
    skipped = 0
    if len(done):
        skipped = pc.sum(pc.is_in(wanted, value_set=done)).as_py() or 0
    retried = len(state.retry_ids(cfg.retry_errors))
    return Plan(
        total=len(wanted),
        skipped=skipped,
        retried=retried,
        skip=done if len(done) else None,
        only=wanted if cfg.limit and cfg.limit < len(ids) else None,
    )


def place_teacher(cfg: LabelConfig) -> Placement:
    """GPU actors in bf16 when the cluster has GPUs (unless configured), else CPU fp32."""
    from distilray.runtime import cluster_has_gpus

    has_gpus = cluster_has_gpus()
    gpus = cfg.num_gpus_per_actor
    if gpus is None:
        gpus = 1.0 if has_gpus else 0.0
    elif gpus > 0 and not has_gpus:  # an autoscaler may still add GPU nodes
        logger.warning("no GPUs in the cluster yet: the teacher actors wait until one joins")
    return placement_for(cfg, gpus)


def placement_for(cfg: LabelConfig, gpus: float) -> Placement:
    """Device, dtype and engine of actors with ``gpus`` GPUs each (0: CPU actors)."""
    from distilray.labelling.ct2_teacher import choose_engine

    device = "cuda" if gpus > 0 else "cpu"
    dtype = cfg.dtype if cfg.dtype != "auto" else ("bfloat16" if gpus > 0 else "float32")
    chosen = choose_engine(cfg.engine, cfg.compute_type, device, cfg.encoder_cache_dir)
    return Placement(gpus, device, dtype, chosen.engine, chosen.compute_type)


def prepare_kwargs(cfg: LabelConfig, feature_extractor) -> dict:
    """Keyword arguments of :func:`~distilray.labelling.prepare.prepare_batch` for ``cfg``."""
    return {
        "feature_extractor": feature_extractor,
        "max_duration_s": cfg.max_duration_s,
        "concatenate": cfg.concatenate_audio,
        "max_chunk_s": cfg.max_chunk_s,
        "pack_fraction": cfg.pack_fraction,
        "pack_gap_s": cfg.pack_gap_s,
    }


def teacher_actor(cfg: LabelConfig, placement: Placement, counter=None) -> tuple[type, dict]:
    """The labelling actor's class for ``placement``'s engine and its constructor
    arguments (``counter``: the progress actor told about every batch, if any)."""
    if placement.engine == "ctranslate2":
        from distilray.labelling.ct2_teacher import CT2TeacherLabeller

        labeller, engine_kwargs = CT2TeacherLabeller, {"compute_type": placement.compute_type}
    else:
        from distilray.labelling.teacher import TeacherLabeller

        labeller = TeacherLabeller
        engine_kwargs = {"dtype": placement.dtype, "attn_implementation": cfg.attn_implementation}
    return labeller, {
        "teacher": cfg.teacher,
        "device": placement.device,
        **engine_kwargs,
        "max_new_tokens": cfg.max_label_length,
        "return_timestamps": cfg.return_timestamps,
        "language": cfg.language,
        "task": cfg.task,
        "threads": max(1, int(cfg.cpus_per_actor)),
        "progress": counter,
        "encoder_cache_dir": cfg.encoder_cache_dir
        and str(Path(cfg.encoder_cache_dir).expanduser().resolve()),
    }


def check_output(cfg: LabelConfig, state: OutputState) -> None:
    """Refuse to mix teachers, or to write into a used folder without resume."""
    if not state.table.num_rows:
        return
    if not cfg.resume:
        raise DataError(
            f"{cfg.output} already holds {state.table.num_rows} labelled rows: set resume=true "
            "to continue that job, or choose an empty output folder"
        )
    others = [t for t in state.teachers() if t != cfg.teacher]
    if others:
        raise DataError(
            f"{cfg.output} holds labels from teacher {others[0]!r}, not {cfg.teacher!r}: "
            "use a new output folder for a different teacher"
        )


def build_dataset(cfg: LabelConfig, plan: Plan, placement: Placement, feature_extractor, counter):
    """The lazy Ray dataset of labelled rows (nothing runs until it is written)."""
    import ray.data

    from distilray.labelling.prepare import prepare_batch
    from distilray.labelling.readers import keep_rows, read_inputs
    from distilray.labelling.score import finish_batch

    ds = read_inputs(cfg.input, cfg.manifest_columns())
    if plan.skip is not None or plan.only is not None:
        ds = ds.map_batches(
            keep_rows, fn_kwargs={"skip": plan.skip, "only": plan.only}, batch_format="pyarrow"
        )
    # Manifests of paths are tiny: split them so decoding fans out over many tasks.
    ds = ds.repartition(target_num_rows_per_block=cfg.prepare_batch_size)
    ds = ds.map_batches(
        prepare_batch,
        fn_kwargs=prepare_kwargs(cfg, feature_extractor),
        batch_size=cfg.prepare_batch_size,
        batch_format="pyarrow",
        num_cpus=1,
        memory=decode_task_memory(cfg, feature_extractor.feature_size),
    )
    labeller, constructor_kwargs = teacher_actor(cfg, placement, counter)
    ds = ds.map_batches(
        labeller,
        fn_constructor_kwargs=constructor_kwargs,
        batch_size=cfg.batch_size,
        batch_format="pyarrow",
        num_cpus=cfg.cpus_per_actor,
        num_gpus=placement.num_gpus,
        compute=ray.data.ActorPoolStrategy(min_size=cfg.min_actors, max_size=cfg.max_actors),
    )
    return ds.map_batches(
        finish_batch,
        fn_kwargs={"teacher": cfg.teacher},
        batch_format="pyarrow",
    )


def decode_task_memory(cfg: LabelConfig, n_mels: int) -> int:
    """Bytes a decode task holds at most: a batch of float32 audio (twice, while packing)
    and log-mel features, plus the interpreter.

    Declaring it also keeps Ray Data from fusing the decode step into the teacher
    actors (their resources differ), so decoding runs in parallel CPU tasks instead
    of serially inside each actor.
    """
    audio = int(cfg.max_duration_s * SAMPLING_RATE) * 4
    features = n_mels * N_FRAMES * 4
    return cfg.prepare_batch_size * (2 * audio + features) + 256 * 2**20


def write_dataset(ds, run_dir: str, shard_rows: int) -> None:
    """Stream the dataset into Parquet shards of at most ``shard_rows`` rows."""
    from distilray.storage import filesystem_for

    fs, path = filesystem_for(run_dir)
    ds.write_parquet(
        path,
        filesystem=fs,
        min_rows_per_file=shard_rows,
        max_rows_per_file=shard_rows,
        schema=OUTPUT_SCHEMA,
    )


def label_run(cfg: LabelConfig, plan: Plan, feature_extractor) -> dict:
    """Label ``plan``'s inputs into a new run folder; returns this run's figures."""
    import ray

    from distilray.labelling.progress import (
        ProgressReporter,
        batch_counts,
        progress_line,
        start_counter,
        startup_and_steady,
    )

    placement = place_teacher(cfg)
    run_dir = new_run_dir(cfg.output)
    logger.info(
        "labelling %d inputs with %s on %d-%d %s actor(s) (%s %s) into %s",
        plan.todo,
        cfg.teacher,
        cfg.min_actors,
        cfg.max_actors,
        placement.device,
        placement.engine,
        placement.compute_type or placement.dtype,
        run_dir,
    )
    counter = start_counter()
    started_at = time.time()
    try:
        ds = build_dataset(cfg, plan, placement, feature_extractor, counter)
        with ProgressReporter(counter, plan.todo, cfg.progress_every_s) as progress:
            write_dataset(ds, run_dir, cfg.shard_rows)
            elapsed = progress.elapsed_s()
        try:
            timing = ray.get(counter.timings.remote(), timeout=30)
        except Exception:  # noqa: BLE001 - timing figures must never fail the job
            timing = {}
    finally:
        ray.kill(counter)
    # Count what reached the shards (the counter may lag by a batch or two).
    totals = batch_counts(scan_output(run_dir).table)
    logger.info(progress_line(totals, plan.todo, elapsed))
    return {
        "run_dir": run_dir,
        "device": placement.device,
        "dtype": placement.dtype,
        "engine": placement.engine,
        "compute_type": placement.compute_type,
        "elapsed_s": round(elapsed, 3),
        "rows_written": totals["rows"],
        "inputs_labelled": totals["inputs"],
        "audio_s": round(totals["audio_s"], 3),
        "audio_s_per_s": round(totals["audio_s"] / elapsed, 3) if elapsed > 0 else 0.0,
        **startup_and_steady(timing, started_at, totals["audio_s"]),
        "errors": totals["errors"],
    }


def empty_run() -> dict:
    keys = ("elapsed_s", "rows_written", "inputs_labelled", "audio_s", "audio_s_per_s", "errors")
    return {"run_dir": None, **dict.fromkeys(keys, 0)}


@dataclass(frozen=True)
class LabelRun:
    """What one labelling run did, and what the output holds after it."""

    run: dict  # this run's figures, as appended to _manifest.json's "runs"
    summary: LabelSummary  # the whole output (every run so far)
    manifest: str  # URI of _manifest.json


def run_labelling(cfg: LabelConfig) -> LabelRun:
    """Label ``cfg.input`` into ``cfg.output`` (resuming), write ``_manifest.json``."""
    from distilray.labelling.readers import input_ids
    from distilray.labelling.teacher import check_options, teacher_assets
    from distilray.runtime import ensure_ray

    started = time.time()
    check_access(read=[("input", cfg.input)], write=[("output", cfg.output)])
    feature_extractor, generation_config = teacher_assets(cfg.teacher)
    check_options(generation_config, cfg.language, cfg.task)
    state = current_state(cfg.output)
    check_output(cfg, state)
    plan = plan_work(input_ids(cfg.input, cfg.manifest_columns()), state, cfg)
    logger.info(
        "%d inputs: %d already labelled in %s, %d to do (%d errored rows retried)",
        plan.total,
        plan.skipped,
        cfg.output,
        plan.todo,
        plan.retried,
    )
    run = empty_run()
    if plan.todo:
        ensure_ray()
        run = label_run(cfg, plan, feature_extractor)
    run.update(
        started=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(started)),
        inputs_total=plan.total,
        inputs_skipped=plan.skipped,
        errors_retried=plan.retried,
        partial_files_set_aside=state.partial,
    )
    summary = summarize(current_state(cfg.output).table)
    manifest = record_run(cfg, run, summary)
    return LabelRun(run=run, summary=summary, manifest=manifest)


def current_state(output: str) -> OutputState:
    """What ``output`` holds, once rows that a later run labelled again are dropped."""
    state = scan_output(output)
    return scan_output(output) if prune_superseded(state) else state


def record_run(cfg: LabelConfig, run: dict, summary: LabelSummary) -> str:
    """Append this run to ``_manifest.json`` with the dataset's new summary."""
    previous = read_manifest(cfg.output) or {}
    data = {
        "teacher": cfg.teacher,
        "input": cfg.input,
        "output": cfg.output,
        "columns": OUTPUT_COLUMNS,
        "audio_format": AUDIO_FORMAT,
        "config": cfg.model_dump(),
        "updated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "summary": summary.as_dict(),
        "runs": [*previous.get("runs", []), run],
    }
    return write_manifest(cfg.output, data)
