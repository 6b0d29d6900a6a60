"""The evaluation stage's configuration (``distilray eval --config ...``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from distilray.config import StageConfig
from distilray.data.columns_config import (
    ManifestColumnFields,
    audio_column_field,
    id_column_field,
    text_column_field,
)
from distilray.engines.ct2 import ComputeType, check_compute_type
from distilray.inference.fallback_config import FallbackConfig

Mode = Literal["teacher", "student", "speculative"]
Form = Literal["short", "chunked", "sequential"]


class ModelsConfig(StageConfig):
    """The models under test."""

    teacher: str = Field(
        "tiny.en",
        description="teacher: hub id (pinned: org/name@revision), folder, s3:// URI or tiny.en",
    )
    student: str | None = Field(
        None, description="distilled student (needed by the student and speculative modes)"
    )


class DatasetConfig(StageConfig, ManifestColumnFields):
    """One labelled evaluation set."""

    name: str = Field(description="name used in the results tables")
    manifest: str = Field(description="manifest URI: Parquet/JSONL file or folder, local or s3://")
    audio_column: str = audio_column_field()
    text_column: str | None = text_column_field()
    id_column: str | None = id_column_field()
    limit: int | None = Field(None, ge=1, description="evaluate only the first N rows")
    snr_db: list[float | None] | None = Field(
        None,
        description="signal-to-noise ratios for this dataset (null = clean audio); "
        "default: noise.snr_db",
    )


class NoiseConfig(StageConfig):
    """White noise mixed into the audio on the fly."""

    snr_db: list[float | None] = Field(
        default_factory=lambda: [None],
        description="signal-to-noise ratios in dB; null = the clean audio",
    )
    seed: int = Field(0, description="noise seed (each clip and SNR gets its own stream)")
    modes: list[Mode] | None = Field(
        None,
        description="of `modes`, those that also transcribe the noisy copies (null: all; "
        "others listed here are ignored, so that `modes` can be narrowed alone); e.g. "
        "[teacher, student] leaves out speculative decoding, whose output is the "
        "teacher's by construction, and the cost of its noisy cells",
    )


class RuntimeConfig(StageConfig):
    """Where and how decoding runs."""

    device: str = Field("cpu", description="torch device of the actors: cpu or cuda")
    dtype: Literal["float32", "float16", "bfloat16"] | None = Field(
        None, description="model dtype (default: float32 on CPU, float16 on GPU)"
    )
    engine: Literal["transformers", "ctranslate2"] = Field(
        "transformers",
        description="what decodes the teacher and student modes: transformers `generate`, "
        "or CTranslate2 (the model converted once and cached, as faster-whisper runs it; "
        "short and chunked forms; speculative decoding and sequential long-form need "
        "transformers). Needs `pip install 'distilray[ct2]'`",
    )
    compute_type: ComputeType = Field(
        "auto",
        description="CTranslate2's compute type (engine: ctranslate2): auto = float32 on "
        "CPU (the transformers engine's transcripts), float16 on a GPU; int8 and the other "
        "reduced types change a share of transcripts (faster on hardware that has "
        "fast int8 or float16 kernels)",
    )
    num_actors: int = Field(1, ge=1, description="model actors at most (Ray actor pool size)")
    gpus_per_actor: float = Field(0.0, ge=0, description="GPUs each actor reserves")
    cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs each actor reserves (and its torch threads, at least 1)"
    )
    rows_per_batch: int = Field(8, ge=1, description="rows handed to an actor at a time")
    batch_size: int = Field(8, ge=1, description="clips (or 30 s windows) per forward pass")
    num_draft_tokens: int = Field(5, ge=1, description="speculative: drafts per round")
    draft_schedule: Literal["constant", "heuristic"] = Field(
        "constant", description="speculative: fixed drafts per round, or adapt to acceptance"
    )
    max_new_tokens: int | None = Field(None, ge=1, description="tokens per 30 s window at most")
    chunk_length_s: float = Field(
        30.0, gt=0, le=30, description="chunked long-form window of the teacher (and speculative)"
    )
    student_chunk_length_s: float | None = Field(
        None,
        gt=0,
        le=30,
        description="chunked long-form window of the student alone (the paper: 15 s for "
        "distilled students); null: chunk_length_s. Speculative decoding always uses the "
        "teacher's window, so its output stays the teacher's",
    )
    stride_s: float = Field(5.0, ge=0, description="chunked long-form overlap on each side")
    language: str | None = Field(None, description="language of multilingual teachers (e.g. en)")
    fallback: FallbackConfig | None = Field(
        None,
        description="Whisper's temperature fallback for short clips and chunked windows, "
        "e.g. {temperatures: [0.2, 0.4, 0.6, 0.8, 1.0]}; null: greedy, as the paper "
        "evaluates (sequential long-form always has its own)",
    )

    resume_gap_s: float | None = Field(
        None,
        gt=0,
        description="decode on where a short clip's or chunked window's transcript ends "
        "more than this many seconds before its last sound, for every mode (README "
        '"Keeping going after an early end"; 2 is what it measures); null: the paper\'s '
        "greedy decoding, final at the end of text",
    )

    def engine_name(self) -> str:
        """The engine in words (results tables): ``transformers`` or ``CTranslate2 int8``."""
        if self.engine == "transformers":
            return "transformers"
        from distilray.engines.ct2 import resolve_compute_type

        kind = self.device.partition(":")[0]
        return f"CTranslate2 {resolve_compute_type(self.compute_type, kind)}"

    def decoding(self) -> str:
        """How short clips and chunked windows are decoded, in words (results tables)."""
        ways = []
        if self.fallback and self.fallback.temperatures:
            ladder = self.fallback.temperatures
            ways.append(f"Whisper's temperature fallback ({ladder[0]:g}-{ladder[-1]:g})")
        if self.resume_gap_s is not None:
            ways.append(
                f"decoded on where the text ends more than {self.resume_gap_s:g} s before the sound"
            )
        if not ways:
            return "greedy, as the paper evaluates"
        return "greedy, then " + " and ".join(ways) + ", for every model alike"

    def resume_rule(self):
        """The :class:`~distilray.inference.resume.ResumeRule` of ``resume_gap_s`` (None: off)."""
        from distilray.inference.resume import ResumeRule

        return ResumeRule.of(self.resume_gap_s)

    def chunk_length_for(self, mode: str) -> float:
        """The chunked long-form window of ``mode`` (teacher, student or speculative)."""
        if mode == "student" and self.student_chunk_length_s is not None:
            return self.student_chunk_length_s
        return self.chunk_length_s


class EvalConfig(StageConfig):
    """Which models to evaluate on which data, in which modes, forms and noise levels."""

    models: ModelsConfig = Field(default_factory=ModelsConfig)
    datasets: list[DatasetConfig] = Field(min_length=1, description="evaluation sets")
    modes: list[Mode] = Field(
        default_factory=lambda: ["teacher"],
        description="teacher / student alone, or speculative (teacher verifying student drafts)",
    )
    forms: list[Form] = Field(
        default_factory=lambda: ["short", "chunked"],
        description="short: clips ≤ 30 s; chunked / sequential: long-form algorithm for clips > 30 s",
    )
    noise: NoiseConfig = Field(default_factory=NoiseConfig)
    runtime: RuntimeConfig = Field(default_factory=RuntimeConfig)
    output_dir: str = Field(description="where results.json, results.md and the plots go")
    worst_utterances: int = Field(
        3,
        ge=0,
        description="name each cell's N utterances with the most errors and, in cells of at "
        "least 5 N, report the WER of the others too (a model that loops on one recording "
        "shows up there); 0: off",
    )
    word_timestamps: bool = Field(
        False,
        description="give each transcripts.jsonl row its words with start and end times (s) "
        "and probabilities, from the models' alignment heads; short and chunked forms "
        "(sequential rows carry none)",
    )

    def snr_by_dataset(self) -> dict[str, list[float | None]]:
        """Each dataset's noise levels (its own list, else ``noise.snr_db``)."""
        return {
            d.name: list(d.snr_db if d.snr_db is not None else self.noise.snr_db)
            for d in self.datasets
        }

    @field_validator("modes", "forms")
    @classmethod
    def _unique(cls, values: list) -> list:
        if not values:
            raise ValueError("list at least one")
        if len(set(values)) != len(values):
            raise ValueError("entries must be unique")
        return values

    def noisy_modes(self) -> list[str]:
        """The modes that transcribe the noisy copies (clean audio: every mode)."""
        if self.noise.modes is None:
            return list(self.modes)
        return [m for m in self.modes if m in self.noise.modes]

    @model_validator(mode="after")
    def _student_needed(self) -> EvalConfig:
        needs = [m for m in self.modes if m in ("student", "speculative")]
        if needs and not self.models.student:
            raise ValueError(f"modes {needs} need models.student")
        for mode in ("teacher", "student"):
            if 2 * self.runtime.stride_s >= self.runtime.chunk_length_for(mode):
                raise ValueError(
                    "runtime.stride_s must be below half of every chunk length "
                    "(runtime.chunk_length_s, runtime.student_chunk_length_s)"
                )
        self._engine_fits()
        return self

    def _engine_fits(self) -> None:
        """What the CTranslate2 engine cannot run is refused before any model loads."""
        rt = self.runtime
        check_compute_type(rt.engine, rt.compute_type, field="runtime.compute_type")
        if rt.engine == "transformers":
            return
        if "speculative" in self.modes:
            raise ValueError(
                "speculative decoding runs on transformers: drop it from modes or set "
                "runtime.engine=transformers"
            )
        if "sequential" in self.forms:
            raise ValueError(
                "runtime.engine=ctranslate2 decodes long-form chunked: drop sequential from "
                "forms or set runtime.engine=transformers"
            )
