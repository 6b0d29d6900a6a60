"""The evaluation stage: manifests in, a table of metrics and plots out.

Ray Data reads every dataset, decodes and noises the audio in CPU tasks, and
streams it through a pool of model actors that transcribe each clip in every
requested mode (teacher, student, speculative) and form (short, chunked,
sequential). The driver gathers the per-utterance rows, groups them into cells and
writes ``results.json``, ``results.md`` and the plots.
"""

from __future__ import annotations

import logging
import tempfile
import time
from dataclasses import dataclass

import pyarrow as pa

from distilray.evaluation.config import EvalConfig
from distilray.evaluation.report import build_cells, write_report

logger = logging.getLogger(__name__)


def load_datasets(cfg: EvalConfig) -> pa.Table:
    """All manifests as one table with a ``dataset`` column (first ``limit`` rows each)."""
    from distilray.data.manifest import read_manifest

    tables = []
    for dataset in cfg.datasets:
        table = read_manifest(dataset.manifest, dataset.manifest_columns())
        if dataset.limit is not None:
            table = table.slice(0, dataset.limit)
        tables.append(
            table.append_column("dataset", pa.array([dataset.name] * len(table), pa.string()))
        )
        logger.info("dataset %s: %d rows from %s", dataset.name, len(table), dataset.manifest)
    return pa.concat_tables(tables)


def transcribe_all(cfg: EvalConfig, table: pa.Table) -> list[dict]:
    """Per-utterance result rows for every (clip, SNR, mode, form), computed on Ray."""
    import ray

    from distilray.evaluation.steps import EvalWorker, decode_rows
    from distilray.runtime import ensure_ray

    ensure_ray()
    rt = cfg.runtime
    rows = ray.data.from_arrow(row_blocks(table, rt.rows_per_batch))
    decoded = rows.map_batches(
        decode_rows,
        fn_kwargs={"snr_db": cfg.snr_by_dataset(), "seed": cfg.noise.seed},
        batch_format="pyarrow",
        batch_size=rt.rows_per_batch,
    )
    results = decoded.map_batches(
        EvalWorker,
        fn_constructor_kwargs={"cfg": cfg},
        batch_format="pyarrow",
        batch_size=rt.rows_per_batch,
        num_cpus=rt.cpus_per_actor,
        num_gpus=rt.gpus_per_actor,
        compute=ray.data.ActorPoolStrategy(min_size=1, max_size=rt.num_actors),
    )
    return _collect(results, table.num_rows)


PROGRESS_EVERY_S = 30.0


def row_blocks(table: pa.Table, rows: int) -> list[pa.Table]:
    """``table`` cut into blocks of ``rows`` rows. As one block, the whole evaluation
    went to one actor and its results came back together at the end: no progress
    line for the length of the run, and no second actor to share the work."""
    return [table.slice(start, rows) for start in range(0, max(table.num_rows, 1), rows)]


def _collect(results, recordings: int, every_s: float = PROGRESS_EVERY_S) -> list[dict]:
    """Every result row, with a progress line at most every ``every_s`` seconds: an
    evaluation of several models, forms and noise levels runs for many minutes."""
    rows: list[dict] = []
    seen: set[tuple[str, str]] = set()
    started = last = time.monotonic()
    for batch in results.iter_batches(batch_size=None, batch_format="pyarrow"):
        part = batch.to_pylist()
        rows.extend(part)
        seen.update((r["dataset"], r["id"]) for r in part)
        now = time.monotonic()
        if now - last >= every_s:
            last = now
            logger.info(
                "evaluated %d of %d recordings (%d results, %.0f s)",
                len(seen),
                recordings,
                len(rows),
                now - started,
            )
    logger.info("evaluated %d recordings in %.0f s", len(seen), time.monotonic() - started)
    return rows


@dataclass(frozen=True)
class EvalRun:
    """What an evaluation produced."""

    cells: list[dict]  # one scored row per (dataset, SNR, mode, form): see report.build_cells
    errors: list[dict]  # utterances that could not be scored: {"dataset", "id", "error"}
    paths: dict[str, str]  # report files by kind: json, markdown, transcripts, plots

    @property
    def results_json(self) -> str:
        """Where ``results.json`` (cells, errors, config) was written."""
        return self.paths["json"]


def run_evaluation(cfg: EvalConfig) -> EvalRun:
    """Run the whole evaluation and write its report."""
    from distilray.models.resolve import check_model_ref

    began = time.perf_counter()
    for ref in (cfg.models.teacher, cfg.models.student):
        if ref:
            check_model_ref(ref)
    table = load_datasets(cfg)
    rows = transcribe_all(cfg, table)
    errors = [
        {"dataset": r["dataset"], "id": r["id"], "error": r["error"]} for r in rows if r["error"]
    ]
    for error in errors[:10]:
        logger.warning("skipped %s/%s: %s", error["dataset"], error["id"], error["error"])
    cells = build_cells(rows, cfg.worst_utterances)
    extra = {
        "engine": cfg.runtime.engine_name(),
        "decoding": cfg.runtime.decoding(),
        "config": cfg.model_dump(),
        "errors": errors,
        "wall_s": time.perf_counter() - began,
    }
    paths = _write(cfg.output_dir, cells, extra, rows)
    logger.info("wrote %s", ", ".join(paths.values()))
    return EvalRun(cells=cells, errors=errors, paths=paths)


def _write(output_dir: str, cells: list[dict], extra: dict, rows: list[dict]) -> dict[str, str]:
    """Write the report locally, or to a temporary folder copied to ``s3://``."""
    from distilray.storage import copy_tree, is_s3

    if not is_s3(output_dir):
        return {k: str(v) for k, v in write_report(output_dir, cells, extra, rows).items()}
    with tempfile.TemporaryDirectory() as tmp:
        paths = write_report(tmp, cells, extra, rows)
        copy_tree(tmp, output_dir)
    return {k: f"{output_dir.rstrip('/')}/{v.name}" for k, v in paths.items()}
