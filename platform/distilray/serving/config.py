"""Arguments of the serving app: the ``args`` block of ``serve_config.yaml``.

``build_app`` validates them with :class:`ServeArgs`; unknown keys are errors.
Replica resources and autoscaling are *not* here: they are Serve deployment
options, set per deployment in ``serve_config.yaml``.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from distilray.config import StageConfig

MIB = 1024 * 1024


class LimitsConfig(StageConfig):
    """What one request may send; beyond these the endpoint answers 413."""

    # Largest accepted upload (the file part), in bytes. OpenAI's limit is 25 MB.
    max_upload_bytes: int = Field(25 * MIB, gt=0)
    # Longest accepted audio, in seconds, measured after decoding.
    max_audio_s: float = Field(1800.0, gt=0)


class BatchingConfig(StageConfig):
    """Dynamic batching of short (<= 30 s) requests on a model replica."""

    # Most short requests decoded together in one forward pass.
    max_batch_size: int = Field(8, ge=1)
    # How long the first request of a batch waits for others to join, in seconds.
    batch_wait_timeout_s: float = Field(0.05, ge=0)


class ServeArgs(StageConfig):
    """Arguments of ``distilray.serving.app:build_app``."""

    # Teacher model: hub id, local folder, s3:// URI or the embedded "tiny.en".
    teacher: str = "tiny.en"
    # Distilled student used as the speculative-decoding assistant; None = teacher only.
    assistant: str | None = None
    # Tokens the assistant drafts per verification step of the teacher.
    num_draft_tokens: int = Field(5, ge=1)
    # Name /v1/models lists and the `model` form field must name.
    model_name: str = "distilray-whisper"
    # Other names accepted in `model`, so stock OpenAI clients work unchanged.
    model_aliases: list[str] = Field(default_factory=lambda: ["whisper-1"])
    # Long-form (> 30 s) audio: chunk length and overlap on each side, in seconds.
    chunk_length_s: float = Field(30.0, gt=0, le=30.0)
    stride_s: float = Field(5.0, ge=0)
    # Chunks of one long recording decoded together.
    long_form_batch_size: int = Field(8, ge=1)
    # "auto" takes CUDA when the replica was given a GPU.
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # "auto": float16 on CUDA, float32 on CPU.
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = "auto"
    # Torch intra-op threads per model replica; None = the replica's Ray CPUs
    # (at least 1). Set it: a fractional num_cpus otherwise means 1 thread.
    torch_threads: int | None = Field(None, ge=1)
    # Environment variable holding the API key; when it is set and not empty,
    # /v1/* requests need `Authorization: Bearer <key>`. None disables auth.
    api_key_env: str | None = "DISTILRAY_API_KEY"
    limits: LimitsConfig = Field(default_factory=LimitsConfig)
    batching: BatchingConfig = Field(default_factory=BatchingConfig)

    @model_validator(mode="after")
    def _check_chunking(self) -> ServeArgs:
        if 2 * self.stride_s >= self.chunk_length_s:
            raise ValueError(
                f"stride_s ({self.stride_s}) must be below half of chunk_length_s "
                f"({self.chunk_length_s}): neighbouring windows overlap by 2 x stride_s"
            )
        return self

    def model_ids(self) -> list[str]:
        """Every name the `model` field accepts, the served name first."""
        return [self.model_name, *[a for a in self.model_aliases if a != self.model_name]]
