"""Where distillation runs: build the TorchTrainer, fit it, export the student.

``run_distillation`` is the whole stage: summarise and build the datasets, fit a
``TorchTrainer`` whose run lives at ``<run.storage>/<run.name>`` (local or s3://),
then save the chosen checkpoint as a model folder with a model card. Rerunning
with the same name and storage resumes from the latest checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import logging
import signal
import threading
from dataclasses import dataclass
from pathlib import Path

from distilray import storage
from distilray.distill.config import DistillConfig
from distilray.distill.data import (
    DataSummary,
    eval_dataset,
    eval_uris,
    featurize,
    summarize,
    train_dataset,
    train_uris,
)
from distilray.distill.export import export_student
from distilray.distill.outcome import DistillOutcome
from distilray.errors import DataError, DistilrayError
from distilray.storage_checks import check_access

logger = logging.getLogger(__name__)


class TrainingFailed(DistilrayError):
    """The worker group failed more often than ``run.max_failures`` allows."""


def absolute_ref(ref: str) -> str:
    """Model/data references as workers on any node can use them: local paths made absolute."""
    if storage.is_s3(ref) or "://" in ref:
        return ref
    path = Path(ref).expanduser()
    return str(path.resolve()) if path.exists() else ref


def worker_config(cfg: DistillConfig) -> DistillConfig:
    """``cfg`` with local paths absolute (workers do not share the driver's cwd)."""
    data = cfg.data.model_copy(
        update={
            "train": [absolute_ref(uri) for uri in train_uris(cfg.data)],
            "eval": [absolute_ref(uri) for uri in eval_uris(cfg.data)] or None,
        }
    )
    model = cfg.model.model_copy(
        update={
            "teacher": absolute_ref(cfg.model.teacher),
            "student": absolute_ref(cfg.model.student),
        }
    )
    run = cfg.run.model_copy(
        update={
            "storage": absolute_storage(cfg.run.storage),
            "export_to": cfg.run.export_to and absolute_storage(cfg.run.export_to),
        }
    )
    cache_dir = cfg.train.encoder_cache_dir
    train = cfg.train.model_copy(
        update={"encoder_cache_dir": cache_dir and absolute_storage(cache_dir)}
    )
    return cfg.model_copy(update={"data": data, "model": model, "run": run, "train": train})


def absolute_storage(uri: str) -> str:
    """An output location: local paths made absolute (they may not exist yet)."""
    if storage.is_s3(uri) or "://" in uri:
        return uri
    return str(Path(uri).expanduser().resolve())


@dataclass(frozen=True)
class StudentShape:
    """What the data pipeline needs from the student's config.json."""

    mel_bins: int  # 80, or 128 for large-v3
    eos_token_id: int  # <|endoftext|>: a finished pseudo-label ends with it
    timestamp_begin: int | None = None  # <|0.00|>; None without a generation_config.json


def student_shape(model_ref: str) -> StudentShape:
    """The student's mel-bin count, end-of-text and first timestamp token, from its
    config.json and generation_config.json."""
    config = _model_json(model_ref, "config.json")
    generation = _model_json(model_ref, "generation_config.json", missing_ok=True) or {}
    no_timestamps = generation.get("no_timestamps_token_id")
    return StudentShape(
        int(config.get("num_mel_bins", 80)),
        int(config["eos_token_id"]),
        None if no_timestamps is None else int(no_timestamps) + 1,
    )


def _model_json(model_ref: str, name: str, *, missing_ok: bool = False) -> dict | None:
    if storage.is_s3(model_ref):
        uri = model_ref.rstrip("/") + "/" + name
        if missing_ok and not storage.exists(uri):
            return None
        return json.loads(storage.read_bytes(uri))
    from distilray.models import resolve_model

    path = Path(resolve_model(model_ref)) / name
    if missing_ok and not path.is_file():
        return None
    return json.loads(path.read_text())


def use_gpu(cfg: DistillConfig) -> bool:
    if cfg.scaling.use_gpu == "auto":
        from distilray.runtime import cluster_has_gpus

        return cluster_has_gpus()
    return bool(cfg.scaling.use_gpu)


def train_log_level() -> str:
    """Ray Train's own console level: WARNING, or INFO under -v.

    At INFO Ray Train prints every worker-group start, checkpoint path and metrics
    report; the workers' progress lines say what matters, and Ray Train's session log
    files keep every level either way.
    """
    from distilray.runtime import verbose

    return "INFO" if verbose() else "WARNING"


def ingest_options():
    """Ray Data's execution options for the training datasets: Ray Train's defaults
    (taken from the current ``DataContext``) without the deprecated
    ``exclude_resources``, which Ray Train's own default copies and so warns about in
    every run."""
    from ray.data import DataContext, ExecutionOptions

    current = DataContext.get_current().execution_options
    return ExecutionOptions(
        resource_limits=current.resource_limits,
        preserve_order=current.preserve_order,
        verbose_progress=current.verbose_progress,
    )


def build_trainer(cfg: DistillConfig, datasets: dict, gpu: bool):
    """The ``TorchTrainer``: DDP workers, run storage, checkpoint and failure policy."""
    from ray.train import (
        CheckpointConfig,
        DataConfig,
        FailureConfig,
        LoggingConfig,
        RunConfig,
        ScalingConfig,
    )
    from ray.train.torch import TorchConfig, TorchTrainer

    from distilray.distill.loop import train_loop_per_worker

    fs, root = storage.filesystem_for(cfg.run.storage)
    resources = {"CPU": cfg.scaling.cpus_per_worker, **({"GPU": 1} if gpu else {})}
    log_level = train_log_level()
    return TorchTrainer(
        train_loop_per_worker,
        train_loop_config={
            "cfg": cfg.model_dump(mode="json"),
            "ray_train_log_level": log_level,
        },
        torch_config=TorchConfig(backend="nccl" if gpu else "gloo"),
        scaling_config=ScalingConfig(
            num_workers=cfg.scaling.num_workers, use_gpu=gpu, resources_per_worker=resources
        ),
        run_config=RunConfig(
            name=cfg.run.name,
            storage_path=root,
            storage_filesystem=fs,
            checkpoint_config=CheckpointConfig(
                num_to_keep=cfg.run.num_to_keep,
                checkpoint_score_attribute="eval_wer",
                checkpoint_score_order="min",
            ),
            failure_config=FailureConfig(max_failures=cfg.run.max_failures),
            logging_config=LoggingConfig(log_level=log_level),
        ),
        datasets=datasets,
        # Only the training set is split; rank 0 evaluates on all held-out rows.
        dataset_config=DataConfig(datasets_to_split=["train"], execution_options=ingest_options()),
    )


def check_inputs(cfg: DistillConfig) -> tuple[DataSummary, StudentShape]:
    """Fail fast, before starting Ray: read the student's shape and count the filter's rows."""
    shape = student_shape(cfg.model.student)
    summary = summarize(cfg.data, eos=shape.eos_token_id, timestamp_begin=shape.timestamp_begin)
    logger.info(summary.describe(cfg.data))
    if summary.kept == 0:
        raise DataError(
            f"no training rows left after the filter ({summary.describe(cfg.data)}): "
            "raise data.wer_threshold or check the labels"
        )
    return summary, shape


@contextlib.contextmanager
def _quiet_datasets():
    """Datasets created inside have no Ray Data progress bars.

    Training iterates its datasets for many epochs, and the workers' own progress
    lines (step, loss, samples/s) say more than a bar redrawn at every epoch.
    """
    from ray.data import DataContext

    context = DataContext.get_current()
    saved = context.enable_progress_bars
    context.enable_progress_bars = False
    try:
        yield
    finally:
        context.enable_progress_bars = saved


def build_datasets(cfg: DistillConfig, shape: StudentShape) -> dict:
    """The streaming training set (features computed on the fly) and the held-out set."""
    with _quiet_datasets():
        return _build_datasets(cfg, shape)


def _build_datasets(cfg: DistillConfig, shape: StudentShape) -> dict:
    train = featurize(
        train_dataset(cfg.data, eos=shape.eos_token_id, timestamp_begin=shape.timestamp_begin),
        shape.mel_bins,
        cfg.train.feature_batch_size,
    )
    if cfg.data.cache_features:
        train = train.materialize()
        logger.info("training features cached in the object store (%d rows)", train.count())
    if cfg.train.shuffle == "global":
        # A seeded shuffle that Ray Data reseeds at every execution: each epoch sees the
        # whole set in a new (reproducible) order, not just a locally shuffled buffer.
        train = train.random_shuffle(seed=cfg.train.seed)
    # Small and read at every evaluation: read once into the object store.
    held_out = eval_dataset(cfg.data).materialize()
    rows = held_out.count()
    if rows == 0:
        raise DataError(
            "no evaluation rows with a reference: set data.eval, raise data.eval_fraction, "
            "or evaluate against data.eval_reference=pseudo_label"
        )
    logger.info("evaluating on %d held-out rows", rows)
    return {"train": train, "eval": held_out}


def run_distillation(cfg: DistillConfig) -> DistillOutcome:
    """Fit (or resume) the run and export the student; the ``distill`` stage."""
    from ray.train import TrainingFailedError

    from distilray.runtime import ensure_ray

    check_access(
        read=[
            *(("data.train", uri) for uri in train_uris(cfg.data)),
            *(("data.eval", uri) for uri in eval_uris(cfg.data)),
        ],
        write=[("run.storage", cfg.run.storage), ("run.export_to", cfg.export_uri())],
    )
    cfg = worker_config(cfg)
    summary, shape = check_inputs(cfg)
    ensure_ray()
    trainer = build_trainer(cfg, build_datasets(cfg, shape), use_gpu(cfg))
    try:
        with sigint_handler_restored():
            result = trainer.fit()
    except TrainingFailedError as exc:
        raise TrainingFailed(
            f"training failed ({_cause(exc)}); rerun the same command to resume from the "
            "latest checkpoint"
        ) from exc
    except SystemExit as exc:
        # Ctrl-C inside fit(): Ray Train's own SIGINT handler aborts the run, then the
        # interrupted wait raises SystemExit(1), silently. Say what happened and what
        # is kept, and let the CLI exit as an interruption (130), not a failure.
        logger.warning(interrupted_message(cfg))
        raise KeyboardInterrupt from exc
    return export_student(cfg, result, summary)


@contextlib.contextmanager
def sigint_handler_restored():
    """Put back the process's Ctrl-C handler after ``fit()``: Ray Train installs its own
    (abort this run) and leaves it there, so a later Ctrl-C in the same process (a
    notebook, a second fit) would try to abort a run that has ended and exit."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers belong to the main thread; Ray installs none here either
        return
    previous = signal.getsignal(signal.SIGINT)
    try:
        yield
    finally:
        if previous is not None:  # None: a handler not set from Python, left as it is
            signal.signal(signal.SIGINT, previous)


RAY_CHECKPOINT_INDEX = "checkpoint_manager_snapshot.json"  # what Ray Train resumes from


def interrupted_message(cfg: DistillConfig) -> str:
    """What an interrupted run keeps (the checkpoint a rerun resumes from), and how."""
    run = cfg.run_uri()
    try:
        step = resumable_step(run)
    except ValueError:  # an index this code does not know: do not guess its step
        return f"training interrupted; rerun the same command to resume from {run}"
    if step is None:
        return (
            f"training interrupted before its first checkpoint (step {cfg.train.eval_every}); "
            "rerun the same command to start it again"
        )
    return (
        f"training interrupted; its latest checkpoint (step {step}) is in {run}: "
        "rerun the same command to resume from it"
    )


def resumable_step(run: str) -> int | None:
    """The step of the checkpoint Ray Train resumes ``run`` from (None: none yet).

    Read from Ray's checkpoint index, not from the folders: a checkpoint written just
    before the interrupt but not yet registered there is not resumed from. ValueError
    when the index is not one this code can read.
    """
    uri = f"{run}/{RAY_CHECKPOINT_INDEX}"
    if not storage.exists(uri):
        return None
    try:
        latest = json.loads(storage.read_bytes(uri))["latest_checkpoint_result"]
        return int(latest["metrics"]["step"]) if latest else None
    except (KeyError, TypeError) as exc:
        raise ValueError(f"unknown checkpoint index {uri}") from exc


def _cause(exc: BaseException) -> str:
    inner = exc.__cause__ or exc
    text = str(inner).strip().splitlines()
    return text[-1] if text else type(inner).__name__
