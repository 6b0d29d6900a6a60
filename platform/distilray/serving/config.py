"""Arguments of the serving app: the ``args`` block of ``serve_config.yaml``.

``build_app`` validates them with :class:`ServeArgs`; unknown keys are errors.
Replica resources and autoscaling are *not* here: they are Serve deployment
options, set per deployment in ``serve_config.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilray.config import StageConfig
from distilray.engines.ct2 import ComputeType, check_compute_type
from distilray.inference.fallback_config import FallbackConfig

MIB = 1024 * 1024


class LimitsConfig(StageConfig):
    """What one request may send; beyond these the endpoint answers 413."""

    max_upload_bytes: int = Field(
        25 * MIB, gt=0, description="larger uploads get 413 (OpenAI's limit is 25 MB)"
    )
    max_audio_s: float = Field(
        1800.0,
        gt=0,
        description="longer audio (after decoding) gets 413; a replica decodes one recording "
        "at a time, so this bounds how long one request can hold a replica",
    )
    min_audio_s: float = Field(
        0.1, ge=0, description="shorter audio (after decoding) gets 400 (OpenAI's minimum)"
    )


class BatchingConfig(StageConfig):
    """Dynamic batching of short (<= 30 s) requests on a model replica."""

    max_batch_size: int = Field(8, ge=1, description="`@serve.batch` size for short-form requests")
    batch_wait_timeout_s: float = Field(
        0.05, ge=0, description="how long the first request of a batch waits for others, in s"
    )


class ServeArgs(StageConfig):
    """Arguments of ``distilray.serving.app:build_app``."""

    teacher: str = Field(
        "tiny.en",
        description="teacher model: hub id, local folder, s3:// URI or the embedded tiny.en",
    )
    assistant: str | None = Field(
        None,
        description="distilled student used as the speculative-decoding assistant; "
        "null = teacher only",
    )
    engine: Literal["transformers", "ctranslate2"] = Field(
        "transformers",
        description="what decodes: transformers `generate`, or CTranslate2 (the teacher "
        "converted once and cached, as faster-whisper runs it: the same transcripts at "
        "float32; no assistant). Needs `pip install 'distilray[ct2]'`",
    )
    compute_type: ComputeType = Field(
        "auto",
        description="CTranslate2's compute type (engine: ctranslate2): auto = float32 on "
        "CPU, float16 on a GPU; int8 and the other reduced types may change transcripts",
    )
    num_draft_tokens: int = Field(
        5, ge=1, description="tokens the assistant drafts per teacher verification pass"
    )
    model_name: str = Field(
        "distilray-whisper",
        description="name `/v1/models` lists and the `model` form field must name",
    )
    model_aliases: list[str] = Field(
        default_factory=lambda: ["whisper-1"],
        description="other accepted `model` names, so stock OpenAI clients work unchanged",
    )
    chunk_length_s: float = Field(
        30.0, gt=0, le=30.0, description="long-form (> 30 s) audio: chunk length in seconds"
    )
    stride_s: float = Field(
        5.0, ge=0, description="long-form: overlap on each side of a chunk, in seconds"
    )
    long_form_batch_size: int = Field(
        8, ge=1, description="chunks of one long recording decoded together"
    )
    max_new_tokens: int | None = Field(
        None,
        ge=1,
        description="tokens decoded per 30 s window at most; null = the model's limit "
        "(444 for Whisper); a lower cap bounds the cost of a looping decode",
    )
    stream_windows: int = Field(
        2,
        ge=1,
        description="stream=true on long audio: 30 s windows decoded per step before the "
        "text they settle is sent; fewer = earlier first text, more = better batching",
    )
    device: Literal["auto", "cpu", "cuda"] = Field(
        "auto", description="auto takes CUDA when the replica was given a GPU"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="auto: float16 on CUDA, float32 on CPU"
    )
    torch_threads: int | None = Field(
        None,
        ge=1,
        description="torch intra-op threads per model replica; null = the replica's Ray CPUs "
        "(a fractional num_cpus otherwise means 1 thread)",
    )
    no_speech_threshold: float | None = Field(
        0.6,
        ge=0,
        le=1,
        description="a 30 s window whose P(<|nocaptions|>) is above this (and whose average "
        "log-probability is below logprob_threshold) is silence: it gets no text (Whisper's "
        "rule), as does a window of digital silence (peak below -60 dBFS); null returns the "
        "raw decoding",
    )
    logprob_threshold: float | None = Field(
        -1.0,
        le=0,
        description="with no_speech_threshold: a window is silence only when its average "
        "log-probability is also below this (Whisper's rule: confident text is kept); null "
        "lets the no-speech probability decide alone (drops some real speech on tiny.en)",
    )
    fallback: FallbackConfig = Field(
        default_factory=FallbackConfig,
        description="temperature 0 requests: Whisper's temperature fallback for windows "
        "that loop or are unsure (sampled by the teacher alone); temperatures [] = greedy only",
    )
    resume_gap_s: float | None = Field(
        None,
        gt=0,
        description="decode on where a clip's or chunked window's transcript ends more than "
        "this many seconds before its last sound (a distilled student's early end; README "
        '"Keeping going after an early end"); null: Whisper\'s decoding',
    )
    api_key_env: str | None = Field(
        "DISTILRAY_API_KEY",
        description="environment variable holding the API key; when it is set and not empty, "
        "/v1/* and the API docs (/docs, /redoc, /openapi.json) need "
        "`Authorization: Bearer <key>`; null disables auth",
    )
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)

    @model_validator(mode="after")
    def _check_chunking(self) -> ServeArgs:
        if 2 * self.stride_s >= self.chunk_length_s:
            raise ValueError(
                f"stride_s ({self.stride_s}) must be below half of chunk_length_s "
                f"({self.chunk_length_s}): neighbouring windows overlap by 2 x stride_s"
            )
        if self.engine == "ctranslate2" and self.assistant:
            raise ValueError(
                "speculative decoding (assistant) runs on transformers: set engine: "
                "transformers or leave assistant unset"
            )
        check_compute_type(self.engine, self.compute_type)
        return self

    def model_ids(self) -> list[str]:
        """Every name the `model` field accepts, the served name first."""
        return [self.model_name, *[a for a in self.model_aliases if a != self.model_name]]
