"""The labelling stage's configuration (``distilray label --config ...``)."""

from __future__ import annotations

import posixpath
from pathlib import Path, PurePath, PurePosixPath
from typing import Literal

from pydantic import Field, model_validator

from distilray.config import StageConfig
from distilray.data.columns_config import (
    ManifestColumnFields,
    audio_column_field,
    id_column_field,
    text_column_field,
)
from distilray.engines.ct2 import ComputeType, check_compute_type

WHISPER_WINDOW_S = 30.0  # seconds of audio the encoder sees; longer clips would be cut
MAX_TARGET_POSITIONS = 448  # decoder positions of every Whisper size
MAX_PROMPT_TOKENS = 4  # <|startoftranscript|> <|lang|> <|task|> <|notimestamps|>
MAX_LABEL_TOKENS = MAX_TARGET_POSITIONS - MAX_PROMPT_TOKENS - 1  # room for <|endoftext|>


class LabelConfig(StageConfig, ManifestColumnFields):
    """Which audio to label with which teacher, where to write it, and how to run."""

    input: str = Field(
        description="input manifest: Parquet/JSONL file or folder, or a folder of audio files "
        "(+ same-stem .txt references, LibriSpeech *.trans.txt or Sphinx *.transcription lists); "
        "local path or s3:// URI"
    )
    audio_column: str = audio_column_field()
    text_column: str | None = text_column_field()
    id_column: str | None = id_column_field()
    output: str = Field(
        description="output folder (local or s3://) for the labelled Parquet shards and "
        "_manifest.json; rerunning into the same folder resumes"
    )
    teacher: str = Field(
        "tiny.en",
        description="teacher model: tiny.en, a model folder, s3:// URI or hub id (pinned: org/name@revision)",
    )
    batch_size: int = Field(16, ge=1, description="clips per teacher generate() call")
    prepare_batch_size: int = Field(
        32,
        ge=1,
        description="clips per CPU decode/feature task; packing (concatenate_audio) joins "
        "clips within one such batch",
    )
    min_actors: int = Field(1, ge=1, description="teacher actors kept alive at least")
    max_actors: int = Field(1, ge=1, description="teacher actors at most (the pool grows to this)")
    num_gpus_per_actor: float | None = Field(
        None,
        ge=0,
        description="GPUs each teacher actor reserves; null = 1 when the cluster has GPUs, else 0",
    )
    cpus_per_actor: float = Field(
        1.0, gt=0, description="CPUs each teacher actor reserves (also its torch threads on CPU)"
    )
    dtype: Literal["auto", "float32", "float16", "bfloat16"] = Field(
        "auto", description="teacher weights dtype; auto = bfloat16 on GPU, float32 on CPU"
    )
    attn_implementation: Literal["sdpa", "eager"] = Field(
        "sdpa", description="attention kernel of the teacher"
    )
    engine: Literal["auto", "transformers", "ctranslate2"] = Field(
        "auto",
        description="what decodes the teacher: transformers generate, or CTranslate2 (the "
        "teacher converted once into the model cache; pip install 'distilray[ct2]'); auto = "
        "ctranslate2 at float32 on CPU actors when installed (same labels, faster), "
        "transformers on GPU actors",
    )
    compute_type: ComputeType = Field(
        "auto",
        description="CTranslate2 compute type (setting one selects ctranslate2); auto = "
        "float32 on CPU (labels identical to transformers'), float16 on GPU; int8 and "
        "the 16-bit types are faster but change a share of labels (bench/label.py)",
    )
    concatenate_audio: bool = Field(
        True,
        description="pack consecutive short clips into chunks of up to max_chunk_s (the "
        "paper's recipe: the student sees full 30 s windows): the chunk's id and text are "
        "the parts' joined with '+' and ' '",
    )
    pack_fraction: float = Field(
        0.5,
        ge=0,
        le=1,
        description="with concatenate_audio: share of clips (chosen by a hash of the id) that "
        "are packed; the rest stay single, so the student also sees short utterances",
    )
    max_chunk_s: float = Field(
        WHISPER_WINDOW_S, gt=0, le=WHISPER_WINDOW_S, description="longest packed chunk, seconds"
    )
    pack_gap_s: tuple[float, float] = Field(
        (0.0, 3.0),
        description="with concatenate_audio: [shortest, longest] pause between the clips of "
        "a packed chunk, seconds (drawn per clip by a hash of its id; half digital silence, "
        "half the previous clip's noise floor; counts towards max_chunk_s): a student that "
        "never heard a pause inside a window ends its transcript at the first one",
    )
    return_timestamps: bool = Field(
        True,
        description="let the teacher predict timestamp tokens (kept in pseudo_label_ids); "
        "distillation strips them from a share of rows (train.timestamp_probability)",
    )
    language: str | None = Field(
        None, description="language of a multilingual teacher (e.g. en); unset for *.en models"
    )
    task: Literal["transcribe", "translate"] | None = Field(
        None, description="task of a multilingual teacher (default transcribe)"
    )
    encoder_cache_dir: str | None = Field(
        None,
        description="leave the teacher's encoder output of every row in this local folder "
        "(see distill's train.encoder_cache_dir: point both at the same folder and "
        "distillation skips the encoder); null: do not keep them",
    )
    max_label_length: int = Field(
        128, ge=1, le=MAX_LABEL_TOKENS, description="tokens the teacher may generate per clip"
    )
    max_duration_s: float = Field(
        WHISPER_WINDOW_S,
        gt=0,
        le=WHISPER_WINDOW_S,
        description="longer input clips are recorded with an error instead of being labelled",
    )
    limit: int | None = Field(
        None, ge=1, description="label at most this many input rows (demos, benchmarks)"
    )
    resume: bool = Field(
        True,
        description="skip input ids already in the output; false refuses a non-empty output",
    )
    retry_errors: bool | Literal["all"] = Field(
        False,
        description="with resume: label errored rows again; true = rows whose error may be "
        "transient (audio file missing or unreadable, storage error, teacher failure), "
        "all = every errored row (e.g. after raising max_duration_s); each id stays once",
    )
    shard_rows: int = Field(10000, ge=1, description="rows per output Parquet file at most")
    progress_every_s: float = Field(
        10.0, gt=0, description="seconds between progress lines while labelling"
    )

    @model_validator(mode="after")
    def _check(self) -> LabelConfig:
        if self.min_actors > self.max_actors:
            raise ValueError("min_actors must not exceed max_actors")
        low, high = self.pack_gap_s
        if not 0 <= low <= high < self.max_chunk_s:
            raise ValueError(
                f"pack_gap_s must be [shortest, longest] with 0 <= shortest <= longest < "
                f"max_chunk_s ({self.max_chunk_s}), got {list(self.pack_gap_s)}"
            )
        check_compute_type(self.engine, self.compute_type)
        if is_inside(self.output, self.input):
            # A Parquet input folder would read the labelled shards back as input.
            raise ValueError(
                f"output {self.output!r} is the input folder {self.input!r} or inside it: "
                "write the labels to a folder outside the input"
            )
        return self


def is_inside(location: str, folder: str) -> bool:
    """Whether ``location`` is ``folder`` or lies under it, both local paths or s3:// URIs.

    Compared after resolving: relative against absolute, ``~``, ``..``, symlinks,
    ``file://`` and doubled or trailing slashes all count.

    >>> is_inside("s3://b/data//./labels/", "s3://b/data"), is_inside("s3://b/data2", "s3://b/data")
    (True, False)
    """
    (kind, path), (folder_kind, folder_path) = _resolved(location), _resolved(folder)
    return kind == folder_kind and path.is_relative_to(folder_path)


def _resolved(location: str) -> tuple[str, PurePath]:
    """``("s3", /bucket/key)`` or ``("local", absolute real path)`` of a location."""
    if location.startswith("s3://"):
        return "s3", PurePosixPath(posixpath.normpath("/" + location.removeprefix("s3://")))
    return "local", Path(location.removeprefix("file://")).expanduser().resolve()
