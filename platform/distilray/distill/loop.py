"""What each Ray Train worker runs: wire models, shards, DDP, checkpoints and reports.

The maths lives in :mod:`distilray.distill.step`; this module only sets up and
loops. Every ``train.eval_every`` steps rank 0 evaluates the student (greedy WER on
the held-out rows) and writes a checkpoint, and every worker reports; with
``train.average`` both see the running average of the weights, not the last step's.
A worker that starts with a checkpoint (a retried attempt, or the same run name
rerun) restores the student, optimizer, scheduler, average and its place in the data.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch

from distilray.distill.augment import FeatureAugment, augment_batch
from distilray.distill.average import WeightAverage, restore_raw
from distilray.distill.checkpoint import (
    TrainState,
    apply_train_state,
    load_processor,
    load_student,
    read_train_state,
    save_checkpoint,
)
from distilray.distill.collate import DistillCollate, TimestampMix
from distilray.distill.config import CHECKED_BEFORE, DistillConfig
from distilray.distill.encoder_cache import EncoderCache
from distilray.distill.history import append_history, history_uri
from distilray.distill.losses import DistillationLoss
from distilray.distill.on_policy import OnPolicy
from distilray.distill.optim import build_optimizer
from distilray.distill.step import (
    AttentionAlignment,
    HiddenAlignment,
    StudentHead,
    autocast,
    eval_step,
    train_step,
    unwrap,
)
from distilray.errors import AudioDecodeError, ConfigError, DataError
from distilray.inference.windows import CHUNK_LENGTH_S
from distilray.models.encoder_store import EncoderStore, encoder_namespace
from distilray.text import WerStats

logger = logging.getLogger(__name__)


class InjectedFailure(RuntimeError):
    """Raised by ``train.fail_at_step`` to test recovery."""


def train_loop_per_worker(config: dict) -> None:
    """Ray Train entry point; ``config["cfg"]`` is a dumped :class:`DistillConfig`,
    ``config["ray_train_log_level"]`` the console level of Ray Train's own lines."""
    quiet_train_reports(config.get("ray_train_log_level", "INFO"))
    cfg = DistillConfig.model_validate(config["cfg"], context={CHECKED_BEFORE: True})
    recipe = DistillRecipe(cfg)
    recipe.setup()
    recipe.train()


def quiet_train_reports(level: str) -> None:
    """Ray Train's "Reporting training result …" line (a whole checkpoint repr per
    report) at ``level``: Ray logs it under its module's file name rather than under
    ``ray.train``, so ``RunConfig.logging_config`` does not reach it."""
    try:
        from ray.train.v2._internal.execution import context
    except ImportError:  # another Ray Train layout: nothing to adjust
        return
    logging.getLogger(context.__file__).setLevel(level)


class DistillRecipe:
    """One worker's distillation run: ``setup`` then ``train``."""

    def __init__(self, cfg: DistillConfig):
        import ray.train
        import ray.train.torch

        self.cfg = cfg
        self.rank = ray.train.get_context().get_world_rank()
        self.device = ray.train.torch.get_device()
        on_gpu = self.device.type == "cuda"
        amp = cfg.train.autocast
        self.amp_dtype = torch.bfloat16 if amp == "bf16" or (amp == "auto" and on_gpu) else None
        teacher_dtype = cfg.model.teacher_dtype
        self.teacher_dtype = (
            torch.bfloat16
            if teacher_dtype == "bfloat16" or (teacher_dtype == "auto" and on_gpu)
            else torch.float32
        )
        self.world_size = ray.train.get_context().get_world_size()
        self.state = TrainState()
        self.started_fresh = True
        self.start_step = 0
        self.shared_cross_kv: list[int] | None = None  # model.freeze_cross_attention_kv

    def setup(self) -> None:
        """Load models (from the latest checkpoint if any), DDP, optimizer, data shards."""
        import ray.data
        import ray.train
        import ray.train.torch

        from distilray.models import load_whisper

        if self.cfg.train.torch_threads:
            torch.set_num_threads(self.cfg.train.torch_threads)
        # progress is this loop's own log lines, not Ray Data bars redrawn every epoch
        ray.data.DataContext.get_current().enable_progress_bars = False
        torch.manual_seed(self.cfg.train.seed)
        self.processor = load_processor(self.cfg.model.student)
        saved = None
        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            student, _ = load_whisper(self.cfg.model.student, dtype=torch.float32)
        else:
            with checkpoint.as_directory() as folder:
                student = load_student(Path(folder))
                saved = read_train_state(Path(folder))
        self.teacher, _ = load_whisper(
            self.cfg.model.teacher, device=self.device, dtype=self.teacher_dtype
        )
        self.teacher.requires_grad_(False)
        self._freeze(student)
        self.average = self._weight_average(student, (saved or {}).get("average"))
        # DDP wraps the head so that its forward (logits at labelled positions only) syncs
        self.student = ray.train.torch.prepare_model(StudentHead(student))
        self.optimizer, self.scheduler = build_optimizer(
            unwrap(self.student), self.cfg.optim, self.cfg.train.max_steps
        )
        if saved is not None:
            self.state = apply_train_state(saved, self.optimizer, self.scheduler)
            self.started_fresh = False
            self.start_step = self.state.step
            self._log("resumed at step %d (epoch %d, batch %d)", *self._position())
        cache_gb, cache_dir = self.cfg.train.encoder_cache_gb, self.cfg.train.encoder_cache_dir
        disk = (
            EncoderStore(cache_dir, encoder_namespace(self.cfg.model.teacher, self.teacher_dtype))
            if cache_dir
            else None
        )
        self.encoder_cache = (
            EncoderCache(int(cache_gb * 2**30), disk) if cache_gb > 0 or disk else None
        )
        self.loss_fn = DistillationLoss(
            self.cfg.loss.kl_weight, self.cfg.loss.pl_weight, self.cfg.loss.temperature
        )
        self.hidden = self._hidden_alignment()
        self.attention = self._attention_alignment()
        self.on_policy = self._on_policy()
        self.augment = self._augment()
        self.train_shard = ray.train.get_dataset_shard("train")
        self.eval_shard = ray.train.get_dataset_shard("eval")

    def _weight_average(self, student, kept: dict | None) -> WeightAverage | None:
        """The running average of ``train.average`` (None when off), resumed from a
        checkpoint's ``kept`` state; a checkpoint of an averaged run always gives its
        raw weights back to training."""
        settings = self.cfg.train.average
        average = (
            WeightAverage(student, settings.decay, settings.start_step) if settings.decay else None
        )
        if kept is not None and average is not None:
            average.resume(student, kept)
        elif kept is not None:
            restore_raw(student, kept)
        return average

    def _hidden_alignment(self) -> HiddenAlignment | None:
        """The layer pairs of ``loss.hidden_weight`` (None when the term is off)."""
        from distilray.student.layers import hidden_pairs

        if self.cfg.loss.hidden_weight <= 0:
            return None
        pairs = hidden_pairs(self._teacher_layer_ids(), self.teacher.config.decoder_layers)
        return HiddenAlignment(pairs, self.cfg.loss.hidden_weight)

    def _teacher_layer_ids(self, student=None) -> list[int]:
        """The teacher decoder layer each student decoder layer was copied from."""
        from distilray.student.layers import select_layers

        student = unwrap(self.student) if student is None else student
        student_config, teacher_config = student.config, self.teacher.config
        ids = getattr(student_config, "teacher_layer_ids", None) or select_layers(
            teacher_config.decoder_layers, student_config.decoder_layers
        )
        return list(ids)

    def _attention_alignment(self) -> AttentionAlignment | None:
        """The layer pairs of ``loss.attention_weight`` (None when the term is off)."""
        if self.cfg.loss.attention_weight <= 0:
            return None
        pairs = list(enumerate(self._teacher_layer_ids()))
        return AttentionAlignment(pairs, self.cfg.loss.attention_weight)

    def _on_policy(self) -> OnPolicy | None:
        """The terms on rows beyond the batch's own: ``loss.on_policy_weight``,
        ``loss.repetition_weight`` and ``loss.deviation_weight`` (None when all are off)."""
        from distilray.distill.deviations import PUNCTUATION

        loss = self.cfg.loss
        if max(loss.on_policy_weight, loss.repetition_weight, loss.deviation_weight) <= 0:
            return None
        config = unwrap(self.student).generation_config
        eos = config.eos_token_id
        return OnPolicy(
            loss.on_policy_weight,
            loss.on_policy_max_new_tokens,
            config.no_timestamps_token_id,
            eos[0] if isinstance(eos, list) else eos,
            loss.repetition_weight,
            loss.on_policy_rows,
            loss.on_policy_pick == "shortest",
            loss.repetition_source == "synthetic",
            loss.repetition_loops_at == "end",
            loss.deviation_weight,
            loss.deviation_rows,
            loss.deviation_rate,
            tuple(self.processor.tokenizer.convert_tokens_to_ids(list(PUNCTUATION))),
        )

    def _augment(self) -> FeatureAugment | None:
        """The consistent augmentation of ``train.augment`` (None when it is off)."""
        aug = self.cfg.train.augment
        if aug.probability <= 0:
            return None
        return FeatureAugment(**aug.model_dump())

    def _freeze(self, student) -> None:
        """Freeze the encoder (shared with the teacher) and optionally the positions."""
        from distilray.student.build import same_encoder
        from distilray.student.layers import set_decoder_dropout

        if not same_encoder(student, self.teacher):
            raise ConfigError(
                "the student's encoder differs from the teacher's: initialise the student "
                "from this teacher with `distilray init-student`"
            )
        student.model.encoder.requires_grad_(False)
        if self.cfg.model.freeze_embed_positions:
            student.model.decoder.embed_positions.requires_grad_(False)
        if self.cfg.model.freeze_embed_tokens:  # proj_out shares this weight
            student.model.decoder.embed_tokens.requires_grad_(False)
        if self.cfg.model.freeze_cross_attention_kv:
            self._freeze_cross_kv(student)
        set_decoder_dropout(student, self.cfg.model.decoder_dropout)
        if self.cfg.model.gradient_checkpointing:
            student.gradient_checkpointing_enable({"use_reentrant": False})
        student.train()

    def _freeze_cross_kv(self, student) -> None:
        """Freeze the student's cross-attention keys and values, after checking that
        they are the teacher layers' they will be read from (:func:`train_step`)."""
        from distilray.student.layers import freeze_cross_attention_kv

        teacher_layers = self.teacher.model.decoder.layers
        sources = self._teacher_layer_ids(student)
        for layer, source in zip(student.model.decoder.layers, sources, strict=True):
            mine, theirs = layer.encoder_attn, teacher_layers[source].encoder_attn
            for name in ("k_proj", "v_proj"):
                ours, want = getattr(mine, name).state_dict(), getattr(theirs, name).state_dict()
                if any(not torch.equal(ours[k], want[k].to(ours[k].dtype)) for k in ours):
                    raise ConfigError(
                        "model.freeze_cross_attention_kv: the student's cross-attention "
                        f"{name} differs from teacher decoder layer {source}'s (it was trained "
                        "unfrozen); start from a student fresh from `distilray init-student`"
                    )
        freeze_cross_attention_kv(student)
        self.shared_cross_kv = sources

    def _position(self) -> tuple[int, int, int]:
        return self.state.step, self.state.epoch, self.state.batch_in_epoch

    def _log(self, msg: str, *args) -> None:
        if self.rank == 0:
            logger.info(msg, *args)

    def train(self) -> None:
        """Train to ``max_steps``, evaluating, checkpointing and reporting on the way."""
        if self.started_fresh and self.cfg.train.eval_at_start:
            self.report({"eval_wer": self.evaluate()}, checkpoint=False)
        self.window = _Window(self.world_size)
        while self.state.step < self.cfg.train.max_steps:
            if self._epoch_done():  # the checkpoint was taken on an epoch's last batch
                self._next_epoch()
                continue
            seen = self._run_epoch()
            if seen == 0:
                raise DataError(
                    "an epoch gave no batch: fewer training rows than batch_size x num_workers"
                )
            if self.state.step < self.cfg.train.max_steps:  # the pass ran to its end
                self.state.batches_per_epoch = seen
                self._next_epoch()

    def _epoch_done(self) -> bool:
        per_epoch = self.state.batches_per_epoch
        return per_epoch > 0 and self.state.batch_in_epoch >= per_epoch

    def _next_epoch(self) -> None:
        self.state.epoch += 1
        self.state.batch_in_epoch = 0

    def _batches(self):
        train = self.cfg.train
        model_config = unwrap(self.student).config
        pad = model_config.pad_token_id
        collate = DistillCollate(
            pad_token_id=model_config.eos_token_id if pad is None else pad,
            decoder_start_token_id=model_config.decoder_start_token_id,
            max_tokens=self.cfg.data.max_label_tokens,
            timestamps=TimestampMix.from_config(
                unwrap(self.student).generation_config,
                train.timestamp_probability,
                seed=train.seed + self.state.epoch,
            ),
        )
        local = train.shuffle == "local" and train.shuffle_buffer
        return self.train_shard.iter_torch_batches(
            batch_size=train.batch_size,
            collate_fn=collate,
            drop_last=True,
            local_shuffle_buffer_size=train.shuffle_buffer if local else None,
            local_shuffle_seed=train.seed + self.state.epoch if local else None,
        )

    def _run_epoch(self) -> int:
        """One pass over the shard (skipping batches a checkpoint already consumed).

        Returns the number of batches the pass yielded (including skipped ones).
        """
        skip, seen = self.state.batch_in_epoch, 0
        for batch in self._batches():
            seen += 1
            if seen <= skip:
                continue
            if self.state.step >= self.cfg.train.max_steps:
                break
            self._step(
                {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            )
        return seen

    def _step(self, batch: dict[str, torch.Tensor]) -> None:
        # seeded by step and rank: a resumed run draws the same augmentation and loops
        seed = (self.cfg.train.seed * 1_000_003 + self.state.step) * 1009 + self.rank
        if self.augment is not None:
            batch = augment_batch(batch, self.augment, seed)
        metrics = train_step(
            self.student,
            self.teacher,
            self.loss_fn,
            self.optimizer,
            self.scheduler,
            batch,
            max_grad_norm=self.cfg.optim.max_grad_norm,
            amp_dtype=self.amp_dtype,
            encoder_cache=self.encoder_cache,
            hidden=self.hidden,
            attention=self.attention,
            shared_cross_kv=self.shared_cross_kv,
            on_policy=self.on_policy
            if self.on_policy and self.state.step % self.cfg.loss.on_policy_every == 0
            else None,
            seed=seed,
        )
        self.state.step += 1
        if self.average is not None:
            self.average.update(unwrap(self.student), self.state.step)
        self.state.batch_in_epoch += 1
        self.state.samples += batch["input_features"].shape[0]
        self.window.add(metrics, batch["input_features"].shape[0])
        step, train = self.state.step, self.cfg.train
        if step % train.log_every == 0:
            self._log("%s", progress_line(step, train.max_steps, self.window.summary()))
            if self.encoder_cache is not None:
                self._log("%s", self.encoder_cache.describe())
        if step % train.eval_every == 0 or step == train.max_steps:
            with self._averaged() as extra:  # evaluated and saved: the average, if any
                self.report(
                    {**self.window.summary(), "eval_wer": self.evaluate()},
                    checkpoint=True,
                    extra=extra,
                )
            self.window = _Window(self.world_size)
        if train.fail_at_step == step and self.started_fresh:
            raise InjectedFailure(f"train.fail_at_step={step}: failing on purpose")

    @contextmanager
    def _averaged(self) -> Iterator[dict | None]:
        """Inside: the student holds its averaged weights (when ``train.average`` is on);
        yields what the checkpoint must keep to resume (None when off)."""
        if self.average is None:
            yield None
            return
        with self.average.applied(unwrap(self.student)) as raw:
            if self.average.count:
                self._log(
                    "step %d: evaluating the average of the last %d steps' weights",
                    self.state.step,
                    self.average.count,
                )
            yield {"average": self.average.state_dict(raw)}

    def evaluate(self) -> float:
        """Greedy WER of the student on the held-out rows (rank 0; other ranks return nan)."""
        if self.rank != 0:
            return float("nan")
        model, stats, train = unwrap(self.student), WerStats(), self.cfg.train
        model.eval()
        with torch.no_grad(), autocast(self.device, self.amp_dtype):
            for batch in self.eval_shard.iter_batches(
                batch_size=train.eval_batch_size, batch_format="numpy"
            ):
                audios, refs = _decode_eval_rows(batch)
                if audios:
                    stats = stats + eval_step(
                        model,
                        self.processor,
                        audios,
                        refs,
                        max_new_tokens=train.eval_max_new_tokens,
                    )
        model.train()
        logger.info(
            "step %d: eval WER %.4f over %d words", self.state.step, stats.wer, stats.ref_words
        )
        return stats.wer

    def report(self, metrics: dict, *, checkpoint: bool, extra: dict | None = None) -> None:
        """``ray.train.report`` from every worker; rank 0 attaches the checkpoint (with
        ``extra`` in its state file)."""
        import ray.train

        metrics = {
            "step": self.state.step,
            "epoch": self.state.epoch,
            "samples": self.state.samples * self.world_size,  # rows trained on, all workers
            "attempt_start_step": self.start_step,  # > 0 when this attempt resumed
            **metrics,
        }
        name = f"checkpoint_step_{self.state.step:08d}"
        if self.rank == 0:
            append_history(history_uri(self.cfg.run.storage, self.cfg.run.name), metrics)
        if not checkpoint or self.rank != 0:
            ray.train.report(metrics, checkpoint_dir_name=name if checkpoint else None)
            return
        with tempfile.TemporaryDirectory(prefix="distilray-ckpt-") as tmp:
            save_checkpoint(
                Path(tmp), unwrap(self.student), self.optimizer, self.scheduler, self.state, extra
            )
            ray.train.report(
                metrics,
                checkpoint=ray.train.Checkpoint.from_directory(tmp),
                checkpoint_dir_name=name,
            )
        self._log(
            "step %d: checkpoint saved (epoch %d, %d samples; every report in %s)",
            self.state.step,
            self.state.epoch,
            metrics["samples"],
            history_uri(self.cfg.run.storage, self.cfg.run.name),
        )


def _decode_eval_rows(batch: dict) -> tuple[list, list[str]]:
    from distilray.audio import decode_audio

    audios, refs = [], []
    for row_id, data, ref in zip(batch["id"], batch["audio"], batch["reference"], strict=True):
        try:
            audios.append(decode_audio(bytes(data), max_duration_s=CHUNK_LENGTH_S))
            refs.append(str(ref))
        except AudioDecodeError as exc:
            logger.warning("eval: skipping row %s: %s", row_id, exc)
    return audios, refs


class _Window:
    """Running means of the step metrics since the last report, and throughput."""

    def __init__(self, world_size: int = 1):
        self.world_size = world_size  # throughput is reported for all workers together
        self.sums: dict[str, float] = {}
        self.counts: dict[str, int] = {}
        self.steps = 0
        self.samples = 0
        self.start = time.perf_counter()
        self.last: dict[str, float] = {}

    def add(self, metrics: dict[str, float], samples: int) -> None:
        for key, value in metrics.items():
            self.sums[key] = self.sums.get(key, 0.0) + value
            self.counts[key] = self.counts.get(key, 0) + 1  # some terms are not every step's
        self.steps += 1
        self.samples += samples
        self.last = metrics

    def summary(self) -> dict[str, float]:
        n = max(self.steps, 1)
        elapsed = time.perf_counter() - self.start
        return {
            "train_loss": self.sums.get("loss", float("nan")) / n,
            "train_kl": self.sums.get("kl", float("nan")) / n,
            "train_ce": self.sums.get("ce", float("nan")) / n,
            "grad_norm": self.sums.get("grad_norm", float("nan")) / n,
            # each optional term over the steps that added it (on-policy ones: every n-th)
            **{
                f"train_{key}": self.sums[key] / self.counts[key]
                for key in OPTIONAL_TERMS
                if key in self.sums
            },
            "lr": self.last.get("lr", float("nan")),
            "samples_per_s": self.samples * self.world_size / elapsed
            if elapsed > 0
            else float("nan"),
        }


# loss terms only some configurations or steps add, as train_step names them
OPTIONAL_TERMS = ("hidden", "attention", "on_policy_kl", "repetition", "deviation_kl")

# the loss's terms as the progress line names them, and their keys in a window's summary
TERMS = [
    ("kl", "train_kl"),
    ("ce", "train_ce"),
    ("hidden", "train_hidden"),
    ("attention", "train_attention"),
    ("on-policy kl", "train_on_policy_kl"),
    ("repetition", "train_repetition"),
    ("slips kl", "train_deviation_kl"),
]


def progress_line(step: int, max_steps: int, summary: dict[str, float]) -> str:
    """The training log's line for ``step``: the loss and each of its terms that is on.

    >>> progress_line(20, 260, {"train_loss": 1.5, "train_kl": 0.5, "train_ce": 1.0,
    ...                         "lr": 3e-4, "samples_per_s": 4.25})
    'step 20/260: loss 1.5000 (kl 0.5000, ce 1.0000), lr 0.0003, 4.2 samples/s'
    """
    terms = ", ".join(f"{name} {summary[key]:.4f}" for name, key in TERMS if key in summary)
    return (
        f"step {step}/{max_steps}: loss {summary['train_loss']:.4f} ({terms}), "
        f"lr {summary['lr']:.3g}, {summary['samples_per_s']:.1f} samples/s"
    )
