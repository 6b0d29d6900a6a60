"""The ``distill`` stage's one config model (Distil-Whisper's objective and schedule)."""

from __future__ import annotations

import logging
from typing import Literal

from pydantic import Field, ValidationInfo, model_validator

from distilray.config import StageConfig
from distilray.errors import ConfigError

logger = logging.getLogger(__name__)


class DataSection(StageConfig):
    """Which pseudo-labelled rows train the student and which evaluate it."""

    train: str | list[str] = Field(
        ...,
        description="labelled Parquet (file, folder or s3:// prefix) from `distilray label`, "
        "or a list of them trained on as one set (e.g. synthetic and real speech)",
    )
    wer_threshold: float | None = Field(
        0.1,
        ge=0,
        description="λ: keep rows whose teacher WER against the reference is <= this "
        "(the paper uses 0.1); null keeps every row",
    )
    keep_unscored: bool = Field(
        False,
        description="keep rows without a reference (null wer), judged by the teacher's "
        "confidence instead (min_avg_logprob, max_compression_ratio, max_no_speech_prob); "
        "the paper drops them",
    )
    min_avg_logprob: float | None = Field(
        -1.0,
        le=0,
        description="unscored rows: drop when the teacher's mean token log-probability is "
        "below this (Whisper's logprob_threshold); null: no limit",
    )
    max_compression_ratio: float | None = Field(
        2.4,
        gt=0,
        description="unscored rows: drop when the pseudo-label's gzip compression ratio is "
        "above this, a repetition loop (Whisper's compression_ratio_threshold); null: no limit",
    )
    max_no_speech_prob: float | None = Field(
        0.6,
        ge=0,
        le=1,
        description="unscored rows: drop when P(no speech) is above this (Whisper's "
        "no_speech_threshold); null: no limit",
    )
    max_speech_after_label_s: float | None = Field(
        None,
        ge=0,
        description="unscored rows: drop when the audio goes on for more than this many "
        "seconds after the pseudo-label's last timestamp (the labelled `speech_end_s`): "
        "the teacher stopped early, mostly inside a packed window, and the label would "
        "teach the student to end its transcript while someone is still speaking; needs "
        "labels with timestamps (`return_timestamps`); rows without them are kept; null: "
        "no check",
    )
    drop_unfinished: bool = Field(
        True,
        description="drop rows whose pseudo-label never ended: the teacher reached the "
        "labelling stage's max_label_length without <|endoftext|>, almost always a "
        "repetition loop that the compression ratio misses when the text before it was "
        "fine; trained on, such rows teach the student to loop to its token limit",
    )
    eval: str | list[str] | None = Field(
        None,
        description="held-out labelled Parquet(s) for evaluation and model selection (one "
        "URI or a list, read as one set: put real speech, 30 s windows and short clips "
        "here); null: hold out eval_fraction of the train rows instead",
    )
    eval_fraction: float = Field(
        0.05,
        ge=0,
        lt=1,
        description="share of train rows held out (by a hash of the id) when eval is null",
    )
    eval_reference: Literal["text", "pseudo_label"] = Field(
        "text",
        description="what eval WER is measured against; rows where it is null are not evaluated",
    )
    eval_max_rows: int | None = Field(
        256, ge=1, description="evaluate at most this many held-out rows (null: all)"
    )
    split_seed: int = Field(0, description="salt of the id hash that picks held-out rows")
    max_label_tokens: int = Field(
        448, ge=2, description="pseudo-labels are cut to this many tokens (Whisper's maximum)"
    )
    cache_features: bool = Field(
        False,
        description="compute the training log-mel features once and keep them in the Ray "
        "object store (small sets read for many epochs; about 1 MB per row)",
    )


class ModelSection(StageConfig):
    """Teacher and student models and what of the student trains."""

    teacher: str = Field(
        ..., description="teacher: hub id (pinned: org/name@revision), folder, s3:// URI or tiny.en"
    )
    student: str = Field(..., description="student initialised by `distilray init-student`")
    freeze_embed_positions: bool = Field(
        False, description="also freeze the decoder's position embeddings"
    )
    freeze_embed_tokens: bool = Field(
        False,
        description="also freeze the decoder's token embeddings (tied to the output "
        "projection: most of a small student's weights); keeps the teacher's vocabulary "
        "geometry when the training data is narrow",
    )
    freeze_cross_attention_kv: bool = Field(
        False,
        description="freeze the key and value projections of the student's cross-attention "
        "(copies of the teacher layers' it was initialised from): the student then attends "
        "over the audio with the teacher's own keys and values, which each step takes from "
        "the teacher's pass instead of computing them again (a tiny.en step 1.28x faster "
        "on CPU; worse real-speech WER on two seeds: README ablation rows 86-87)",
    )
    decoder_dropout: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="dropout on the student decoder's embeddings and residual branches "
        "while it trains (Whisper's `dropout`; the encoder and the exported config keep 0); "
        "regularises a student that sees its few hours of speech for many epochs",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute decoder activations in the backward pass to save memory"
    )
    teacher_dtype: Literal["auto", "float32", "bfloat16"] = Field(
        "auto", description="teacher weights dtype: auto = bfloat16 on GPU, float32 on CPU"
    )


class LossSection(StageConfig):
    """loss = kl_weight · KL(teacher ‖ student at T) · T² + pl_weight · CE(pseudo-labels)."""

    kl_weight: float = Field(0.8, ge=0, description="α_KL: weight of the KL term")
    pl_weight: float = Field(1.0, ge=0, description="α_PL: weight of the pseudo-label CE term")
    temperature: float = Field(2.0, gt=0, description="T: softmax temperature of the KL term")
    hidden_weight: float = Field(
        0.0,
        ge=0,
        description="weight of a hidden-state term (not in the paper): each student decoder "
        "layer's output is pulled towards the teacher's input to the next copied layer "
        "(relative MSE), so the copied layers keep their inputs; 0: off",
    )
    attention_weight: float = Field(
        0.0,
        ge=0,
        description="weight of a cross-attention term (not in the paper): each student "
        "decoder layer's cross-attention over the audio frames is pulled, head by head, "
        "towards that of the teacher layer it was copied from (KL), so the student keeps "
        "the teacher's alignment to the audio (it made the tiny student loop more: README "
        "ablation row 20); 0: off",
    )
    on_policy_weight: float = Field(
        0.0,
        ge=0,
        description="weight of an on-policy term (not in the paper): the student greedily "
        "transcribes the batch's rows without timestamps itself and the KL to the teacher "
        "is also taken along its own transcripts, so it learns how to leave a loop it "
        "falls into; 0: off",
    )
    repetition_weight: float = Field(
        0.0,
        ge=0,
        description="weight of an unlikelihood term on the student's own transcripts (not "
        "in the paper): where its greedy transcript of a row without timestamps repeats a "
        "4-token phrase more often than the row's pseudo-label does, the probability of "
        "each surplus token is pushed down, so it learns to leave a loop without asking "
        "the teacher (which continues loops too); shares the rollouts and `on_policy_*` "
        "settings; 0: off",
    )
    repetition_source: Literal["rollout", "synthetic"] = Field(
        "rollout",
        description="where the repetition term finds loops: `rollout`, the student's own "
        "greedy transcripts (a decoding per step: the loops it really makes, while it "
        "makes them); `synthetic`, loops made from the rows' pseudo-labels (a phrase of "
        "the label said again 2-5 more times, half of them at its end), teacher-forced "
        "with no decoding, so the term acts on every step it runs for the cost of a few "
        "more rows",
    )
    repetition_loops_at: Literal["anywhere", "end"] = Field(
        "anywhere",
        description="with `repetition_source: synthetic`, where a made loop starts: "
        "`anywhere`, half of them at the label's end and half inside it; `end`, only "
        "where the label ends, the one place where ending the transcript is the right way "
        "out of a loop (loops cut inside the label taught the demo student to stop where "
        "a loop began: README ablation row 48)",
    )
    deviation_weight: float = Field(
        0.0,
        ge=0,
        description="weight of a KL term on labels with slips (not in the paper): in "
        "`deviation_rows` rows without timestamps a few label tokens are replaced (a "
        "punctuation mark by another, any other token by a token of the slipped rows' labels) and "
        "the student is pulled towards the teacher's next-token distribution from the "
        "first slip on, so it learns to go on with the audio after writing something the "
        "teacher would not have (no rollout: the cost of a few more rows); 0: off",
    )
    deviation_rows: int = Field(
        4, ge=1, description="rows of a batch given slips (the first without timestamps)"
    )
    deviation_rate: float = Field(
        0.05,
        gt=0,
        le=1,
        description="share of a slipped label's tokens that are replaced (at least one)",
    )
    on_policy_every: int = Field(
        1,
        ge=1,
        description="add the extra-row terms on every this many steps: the on-policy and "
        "rollout repetition terms (each costs a rollout), the made loops and the slipped "
        "rows (extra teacher-forced rows)",
    )
    on_policy_max_new_tokens: int = Field(
        128,
        ge=1,
        description="longest on-policy transcript (also at most 1.5x the batch's longest label + 8)",
    )
    on_policy_rows: int | None = Field(
        None,
        ge=1,
        description="rows of a batch the student transcribes per rollout (of its rows "
        "without timestamps, as `on_policy_pick` says); on a CPU a greedy rollout costs more "
        "than a training step and grows with its rows; null: every row without timestamps",
    )
    on_policy_pick: Literal["first", "shortest"] = Field(
        "first",
        description="which rows `on_policy_rows` takes: the batch's first (batches are "
        "shuffled) or those with the shortest labels (short utterances are where a student "
        "trained on packed windows loops, and a rollout's length follows its longest row)",
    )


class OptimSection(StageConfig):
    """AdamW with linear warm-up, then a constant or linearly decaying rate."""

    learning_rate: float = Field(1e-4, gt=0, description="peak learning rate")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    anchor_decay: float = Field(
        0.0,
        ge=0,
        description="decay toward the student's initial (teacher-copied) weights instead of "
        "toward zero (L2-SP in AdamW's decoupled form): each step w -= lr * anchor_decay * "
        "(w - w_init), so the decoder stays near what the teacher does where the data is "
        "narrow; 0: off",
    )
    betas: tuple[float, float] = Field((0.9, 0.999), description="AdamW betas")
    warmup_steps: int = Field(50, ge=0, description="steps of linear warm-up from 0")
    schedule: Literal["constant", "linear"] = Field(
        "linear", description="after warm-up: constant, or linear decay to 0 at max_steps"
    )
    max_grad_norm: float | None = Field(
        1.0, gt=0, description="clip the global gradient norm to this (null: no clipping)"
    )


class AugmentSection(StageConfig):
    """Consistent augmentation (not in the paper; "function matching", Beyer et al. 2022):
    a share of the rows is perturbed each step and teacher and student both decode the
    frozen encoder's output of the perturbed features."""

    probability: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of training rows perturbed at each step (their encoder output is "
        "computed afresh, not read from the encoder cache); 0: off",
    )
    warp: float = Field(
        0.1,
        ge=0,
        lt=0.5,
        description="largest relative stretch of the mel axis (vocal tract length "
        "perturbation: a stretch of 0.1 moves formants by up to ±10 %); 0: none",
    )
    freq_masks: int = Field(2, ge=0, description="SpecAugment bands of mel bins masked per row")
    freq_mask_bins: int = Field(8, ge=0, description="widest masked band, in mel bins")
    time_masks: int = Field(
        2, ge=0, description="SpecAugment spans of frames masked per row (within its speech)"
    )
    time_mask_frames: int = Field(
        40,
        ge=0,
        description="widest masked span in 10 ms frames (also at most a fifth of the row's speech)",
    )


class AverageSection(StageConfig):
    """A running average of the student's weights (not in the paper; Polyak averaging,
    "stochastic weight averaging", Izmailov et al. 2018), which evaluation, checkpoints
    and the export use in place of the last step's weights."""

    decay: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="EMA decay per step once 1/(1-decay) steps are averaged (a plain mean "
        "of the steps before that); null: off, the last step's weights are the student",
    )
    start_step: int = Field(
        0,
        ge=0,
        description="first step whose weights enter the average (the first steps are "
        "still close to the untrained student)",
    )


class TrainSection(StageConfig):
    """Steps, batches, evaluation and checkpoint cadence."""

    max_steps: int = Field(..., ge=1, description="optimizer steps to train for")
    batch_size: int = Field(8, ge=1, description="rows per batch on each worker")
    eval_every: int = Field(
        100,
        ge=1,
        description="evaluate, checkpoint and report every this many steps (and at the end)",
    )
    log_every: int = Field(
        10, ge=1, description="print a progress line (loss, samples/s) every this many steps"
    )
    eval_batch_size: int = Field(
        8, ge=1, description="rows per greedy-decoding batch in evaluation"
    )
    eval_max_new_tokens: int = Field(128, ge=1, description="token limit of eval transcripts")
    eval_at_start: bool = Field(
        False, description="also evaluate the initial student (step 0) before training"
    )
    shuffle: Literal["global", "local", "none"] = Field(
        "global",
        description="global: the whole training set is reshuffled every epoch (seeded); "
        "local: only a buffer of shuffle_buffer rows per worker; none: file order",
    )
    shuffle_buffer: int | None = Field(
        256, ge=1, description="rows in each worker's local shuffle buffer (shuffle=local)"
    )
    timestamp_probability: float = Field(
        0.2,
        ge=0,
        le=1,
        description="share of rows trained with timestamp tokens (when their pseudo-label "
        "has them); the rest are stripped to <|notimestamps|> + text. The paper uses 0.5, "
        "its reference code 0.2",
    )
    augment: AugmentSection = Field(
        default_factory=AugmentSection,
        description="consistent feature augmentation for teacher and student (off by default)",
    )
    average: AverageSection = Field(
        default_factory=AverageSection,
        description="evaluate and export a running average of the weights (off by default)",
    )
    seed: int = Field(0, description="seed of the shuffle, the augmentation and torch")
    autocast: Literal["auto", "off", "bf16"] = Field(
        "auto", description="bf16 autocast: auto = on GPU only"
    )
    torch_threads: int | None = Field(
        None, ge=1, description="torch CPU threads per worker (null: Ray's default)"
    )
    encoder_cache_gb: float = Field(
        0.0,
        ge=0,
        description="keep each training row's frozen encoder output in worker memory, up to "
        "this many GiB, so later epochs skip the encoder (0: off; for multi-epoch runs)",
    )
    encoder_cache_dir: str | None = Field(
        None,
        description="also keep encoder outputs in this local folder, named by the teacher "
        "and each row's features, so reruns and ablations over the same labels skip the "
        "encoder from the first epoch (tiny.en: 2.3 MB per 30 s window); null: memory only",
    )
    feature_batch_size: int = Field(
        16, ge=1, description="rows per Ray Data task that decodes audio and computes log-mel"
    )
    fail_at_step: int | None = Field(
        None,
        ge=1,
        description="testing only: raise after this step when the attempt started from "
        "scratch, to exercise failure recovery",
    )


class ScalingSection(StageConfig):
    """How many Ray Train workers and what each one gets."""

    num_workers: int = Field(1, ge=1, description="data-parallel workers (DDP)")
    use_gpu: bool | Literal["auto"] = Field(
        "auto", description="one GPU per worker; auto = when the Ray cluster has GPUs"
    )
    cpus_per_worker: float = Field(
        1.0,
        gt=0,
        description="logical CPUs per worker; 0.5 leaves room for Ray Data on a 2-core laptop",
    )


class RunSection(StageConfig):
    """Where the run lives; rerunning the same name and storage resumes it."""

    name: str = Field("distill", description="run name: rerun with the same name to resume")
    storage: str = Field(
        "runs/train", description="checkpoint storage root: local folder or s3:// prefix"
    )
    num_to_keep: int = Field(
        2, ge=1, description="checkpoints kept (best by eval_wer; the latest is always kept)"
    )
    max_failures: int = Field(
        1, ge=0, description="worker-group failures to recover from the latest checkpoint"
    )
    export_to: str | None = Field(
        None,
        description="final student model folder (local or s3://); null: <storage>/<name>/student",
    )
    export_checkpoint: Literal["best", "latest"] = Field(
        "best", description="which checkpoint becomes the exported student"
    )
    best_within: float = Field(
        0.01,
        ge=0,
        le=1,
        description="with export_checkpoint=best: the latest checkpoint whose validation WER "
        "is at most this much (absolute; 0.01 = 1 point) above the lowest is exported, as "
        "validation sets of a few hundred words cannot tell them apart; 0: the lowest",
    )
    export_init_share: float = Field(
        0.0,
        ge=0,
        lt=1,
        description="blend this share of the initial student's weights (model.student, the "
        "copied teacher layers) into the exported student: (1 - s) * trained + s * initial "
        "(WiSE-FT); checkpoints and their validation WER stay the trained weights; 0: off",
    )
    export_ct2: Literal["float32", "int8", "int8_float16", "float16", "bfloat16"] | None = Field(
        None,
        description="also export the student for faster-whisper: CTranslate2 weights of this "
        "type in <student>/ct2 (faster_whisper.WhisperModel('<student>/ct2')); null: do not",
    )


class CardSection(StageConfig):
    """Hub metadata of the exported student's model card (README.md front matter)."""

    license: str = Field("mit", description="license id (Whisper's weights are MIT)")
    language: list[str] | None = Field(
        None, description="ISO 639-1 languages the student transcribes; null: en for *.en teachers"
    )
    datasets: list[str] = Field(
        default_factory=list,
        description="hub ids of the datasets the audio came from (e.g. "
        "mozilla-foundation/common_voice_17_0); the first also names the WER's dataset",
    )
    tags: list[str] = Field(default_factory=list, description="extra tags")


# validation context of a config the driver validated already (a Ray Train worker
# rebuilds it from its dump): errors still raise, warnings are not repeated
CHECKED_BEFORE = "checked_before"


class DistillConfig(StageConfig):
    """``distilray distill``: train a student on pseudo-labels with Ray Train."""

    data: DataSection = Field(..., description="training and evaluation data")
    model: ModelSection = Field(..., description="teacher and student")
    loss: LossSection = Field(default_factory=LossSection, description="objective weights")
    optim: OptimSection = Field(default_factory=OptimSection, description="optimizer")
    train: TrainSection = Field(..., description="steps, batches, evaluation cadence")
    scaling: ScalingSection = Field(default_factory=ScalingSection, description="workers")
    run: RunSection = Field(default_factory=RunSection, description="storage, resume, export")
    card: CardSection = Field(default_factory=CardSection, description="model card metadata")

    @model_validator(mode="after")
    def _check(self, info: ValidationInfo) -> DistillConfig:
        if self.data.eval is None and self.data.eval_fraction == 0:
            raise ConfigError(
                "no evaluation data: set data.eval to a labelled Parquet or data.eval_fraction > 0"
            )
        average = self.train.average
        checked_before = (info.context or {}).get(CHECKED_BEFORE, False)
        if (
            average.decay is not None
            and average.start_step >= self.train.max_steps
            and not checked_before  # the driver warned; its workers stay quiet
        ):
            # a shortened run (a smoke test) is fine: it just has no average to use
            logger.warning(
                "train.average.start_step (%d) is not below train.max_steps (%d): no step "
                "enters the average, the student is the last step's weights",
                average.start_step,
                self.train.max_steps,
            )
        if self.loss.kl_weight == 0 and self.loss.pl_weight == 0:
            raise ConfigError("loss.kl_weight and loss.pl_weight are both 0: nothing to learn")
        if (
            self.loss.repetition_loops_at != "anywhere"
            and self.loss.repetition_source != "synthetic"
        ):
            raise ConfigError(
                "loss.repetition_loops_at places loops made from the labels: it needs "
                "loss.repetition_source: synthetic"
            )
        if self.loss.repetition_source == "synthetic" and self.loss.on_policy_weight > 0:
            raise ConfigError(
                "loss.repetition_source: synthetic makes loops for the repetition term only; "
                "the on-policy KL (loss.on_policy_weight) needs the student's own transcripts: "
                "set loss.on_policy_weight: 0 or loss.repetition_source: rollout"
            )
        return self

    def run_uri(self) -> str:
        """The run's folder: its checkpoints, Ray's index of them and its history."""
        return f"{self.run.storage.rstrip('/')}/{self.run.name}"

    def export_uri(self) -> str:
        """Where the final student goes."""
        return self.run.export_to or f"{self.run_uri()}/student"
