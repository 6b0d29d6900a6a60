"""Initialise a student Whisper from its teacher (Distil-Whisper, section 4.1).

The student keeps the teacher's whole encoder and a few of its decoder layers,
chosen maximally spaced (the first and the last for two layers), plus the token
and position embeddings and the final layer norm. Every student weight is a copy
of one teacher weight: :func:`weight_sources` says which.
"""

from __future__ import annotations

import copy
import json
import logging
import re
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from pydantic import Field

from distilray import storage
from distilray.config import StageConfig
from distilray.errors import ConfigError

logger = logging.getLogger(__name__)

INIT_INFO_FILE = "distilray_student.json"  # teacher and layer map, read by the model card
_DECODER_LAYER = re.compile(r"^model\.decoder\.layers\.(\d+)\.")


class StudentInitConfig(StageConfig):
    """``distilray init-student``: which teacher, which decoder layers, where to save."""

    teacher: str = Field(
        "tiny.en",
        description="teacher model: hub id (pinned: org/name@revision), local folder, s3:// URI or tiny.en",
    )
    decoder_layers: int = Field(
        2, ge=1, description="number of student decoder layers, taken maximally spaced"
    )
    decoder_layer_ids: list[int] | None = Field(
        None,
        description="explicit teacher decoder layers to copy, in order (negative counts from "
        "the end); when set it replaces decoder_layers and the spacing rule",
    )
    out: str = Field(..., description="output model folder: local path or s3:// URI")


@dataclass(frozen=True)
class StudentInfo:
    """What :func:`init_student` built."""

    teacher: str  # the teacher reference as given
    out: str  # where the student was saved
    decoder_layer_ids: list[int]  # teacher decoder layer copied into each student layer
    teacher_decoder_layers: int
    encoder_layers: int
    parameters: int  # student parameter count
    teacher_parameters: int


def select_layers(n_teacher: int, n_student: int) -> list[int]:
    """Teacher layer indices for ``n_student`` layers, maximally spaced, both ends included.

    Follows the Distil-Whisper reference: ``np.linspace(0, n - 1, k)`` truncated to
    integers, with the last entry forced to the teacher's last layer
    (32 → 2 gives ``[0, 31]``, 32 → 4 gives ``[0, 10, 20, 31]``).
    """
    if n_teacher < 1:
        raise ConfigError(f"the teacher has {n_teacher} layers; need at least 1")
    if not 1 <= n_student <= n_teacher:
        raise ConfigError(
            f"cannot take {n_student} decoder layers from a teacher with {n_teacher}: "
            f"choose between 1 and {n_teacher}"
        )
    ids = np.linspace(0, n_teacher - 1, n_student, dtype=int)
    ids[-1] = n_teacher - 1
    return [int(i) for i in ids]


def resolve_layer_ids(
    n_teacher: int, n_student: int | None = None, layer_ids: list[int] | None = None
) -> list[int]:
    """The teacher layers to copy: an explicit list (validated) or :func:`select_layers`."""
    if layer_ids is None:
        return select_layers(n_teacher, n_student if n_student is not None else 2)
    if n_student is not None and len(layer_ids) != n_student:
        raise ConfigError(
            f"decoder_layer_ids has {len(layer_ids)} entries but decoder_layers is {n_student}"
        )
    if not layer_ids:
        raise ConfigError("decoder_layer_ids is empty: list at least one teacher layer")
    resolved = []
    for i in layer_ids:
        if not -n_teacher <= i < n_teacher:
            raise ConfigError(
                f"decoder layer {i} does not exist: the teacher has layers 0..{n_teacher - 1}"
            )
        resolved.append(i % n_teacher)
    if len(set(resolved)) != len(resolved):
        raise ConfigError(f"decoder_layer_ids {layer_ids} name a layer twice")
    return resolved


def weight_sources(student_keys: list[str], layer_ids: list[int]) -> dict[str, str]:
    """Map each student state-dict key to the teacher key it is copied from.

    Student decoder layer ``i`` comes from teacher decoder layer ``layer_ids[i]``;
    every other weight (encoder, embeddings, final norms) has the same name in both.
    """

    def source(key: str) -> str:
        match = _DECODER_LAYER.match(key)
        if not match:
            return key
        teacher_layer = layer_ids[int(match.group(1))]
        return f"model.decoder.layers.{teacher_layer}." + key[match.end() :]

    return {key: source(key) for key in student_keys}


def hidden_pairs(layer_ids: list[int], teacher_layers: int) -> list[tuple[int, int]]:
    """``(student, teacher)`` indices of decoder hidden states that should agree.

    Student layer ``k`` is a copy of teacher layer ``layer_ids[k]``, so its output is
    what the next copied layer expects as input: the teacher's hidden state entering
    layer ``layer_ids[k + 1]``. Indices are into ``decoder_hidden_states`` (0 is the
    embedding output, ``i`` the output of layer ``i - 1``); the last layer's output is
    left to the logits.

    >>> hidden_pairs([0, 3], 4)
    [(1, 3)]
    >>> hidden_pairs([0, 10, 21, 31], 32)
    [(1, 10), (2, 21), (3, 31)]
    """
    del teacher_layers  # the last student layer maps to the teacher's last: no pair
    return [(k + 1, layer_ids[k + 1]) for k in range(len(layer_ids) - 1)]


def student_alignment_heads(
    teacher_heads: list[list[int]] | None, layer_ids: list[int], heads_per_layer: int
) -> list[list[int]]:
    """Cross-attention heads for word timestamps, in the student's own layer numbers.

    A teacher head in a copied layer keeps its place (teacher layer ``layer_ids[i]``
    is student layer ``i``); when no teacher head survives, every head of the
    student's second half of layers, transformers' default.

    >>> student_alignment_heads([[1, 0], [2, 5], [3, 0], [3, 4]], [0, 3], 6)
    [[1, 0], [1, 4]]
    >>> student_alignment_heads([[1, 0], [2, 5]], [0, 3], 2)
    [[1, 0], [1, 1]]
    """
    where = {teacher: student for student, teacher in enumerate(layer_ids)}
    mapped = [[where[int(layer)], int(h)] for layer, h in teacher_heads or [] if int(layer) in where]
    if mapped:
        return mapped
    n = len(layer_ids)
    return [[layer, h] for layer in range(n // 2, n) for h in range(heads_per_layer)]


def set_alignment_heads(model, layer_ids: list[int] | None) -> None:
    """Give a student valid ``alignment_heads`` (mapped from the teacher's it inherited).

    ``layer_ids``: the teacher layers it was built from (None: unknown, and heads that
    do not exist in the model are replaced by the default).
    """
    config = model.generation_config
    heads = getattr(config, "alignment_heads", None)
    n, per_layer = model.config.decoder_layers, model.config.decoder_attention_heads
    if layer_ids is not None and len(layer_ids) == n:
        config.alignment_heads = student_alignment_heads(heads, list(layer_ids), per_layer)
    elif not heads or any(not (0 <= int(a) < n and 0 <= int(b) < per_layer) for a, b in heads):
        config.alignment_heads = student_alignment_heads(None, list(range(n)), per_layer)


def build_student(teacher, layer_ids: list[int]):
    """A new ``WhisperForConditionalGeneration`` whose every weight is copied from ``teacher``."""
    from transformers import WhisperForConditionalGeneration

    config = copy.deepcopy(teacher.config)
    config.decoder_layers = len(layer_ids)
    # kept in config.json: distillation aligns each layer's output with the teacher's
    config.teacher_layer_ids = list(layer_ids)
    student = WhisperForConditionalGeneration(config)
    teacher_state = teacher.state_dict()
    sources = weight_sources(list(student.state_dict()), layer_ids)
    student.load_state_dict({key: teacher_state[src] for key, src in sources.items()}, strict=True)
    student.generation_config = copy.deepcopy(teacher.generation_config)
    set_alignment_heads(student, layer_ids)  # word timestamps: heads the student has
    return student.eval()


def same_encoder(student, teacher) -> bool:
    """Whether two Whisper models have identical encoder weights (compared in the teacher's dtype)."""
    import torch

    a = student.model.encoder.state_dict()
    b = teacher.model.encoder.state_dict()
    if a.keys() != b.keys():
        return False
    return all(
        a[k].shape == b[k].shape and torch.equal(a[k].to(b[k].device, b[k].dtype), b[k]) for k in a
    )


def init_student(cfg: StudentInitConfig) -> StudentInfo:
    """Build the student from ``cfg.teacher`` and save it (model, processor, generation config)."""
    from distilray.models import load_whisper

    teacher, processor = load_whisper(cfg.teacher, dtype=_float32())
    n_teacher = teacher.config.decoder_layers
    explicit = cfg.decoder_layer_ids
    layer_ids = resolve_layer_ids(n_teacher, None if explicit else cfg.decoder_layers, explicit)
    student = build_student(teacher, layer_ids)
    info = StudentInfo(
        teacher=cfg.teacher,
        out=cfg.out,
        decoder_layer_ids=layer_ids,
        teacher_decoder_layers=n_teacher,
        encoder_layers=student.config.encoder_layers,
        parameters=sum(p.numel() for p in student.parameters()),
        teacher_parameters=sum(p.numel() for p in teacher.parameters()),
    )
    save_model_folder(student, processor, cfg.out, extra={INIT_INFO_FILE: asdict(info)})
    logger.info(
        "student: decoder layers %s of %d copied, %.1fM parameters (teacher %.1fM) -> %s",
        layer_ids,
        n_teacher,
        info.parameters / 1e6,
        info.teacher_parameters / 1e6,
        cfg.out,
    )
    return info


def save_model_folder(model, processor, out: str, extra: dict[str, dict] | None = None) -> None:
    """``save_pretrained`` model + processor (+ JSON files) to a local folder or ``s3://``."""
    if storage.is_s3(out):
        with tempfile.TemporaryDirectory(prefix="distilray-model-") as tmp:
            _save_local(model, processor, Path(tmp), extra)
            storage.copy_tree(tmp, out)
        return
    _save_local(model, processor, Path(out), extra)


def _save_local(model, processor, out: Path, extra: dict[str, dict] | None) -> None:
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)  # config, generation config, model.safetensors
    processor.save_pretrained(out)
    for name, data in (extra or {}).items():
        (out / name).write_text(json.dumps(data, indent=2) + "\n")


def _float32():
    import torch

    return torch.float32
