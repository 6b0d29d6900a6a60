"""Build a student from its teacher's weights and save it as a model folder."""

from __future__ import annotations

import copy
import json
import logging
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from distilray import storage
from distilray.student.config import StudentInitConfig
from distilray.student.layers import resolve_layer_ids, set_alignment_heads, weight_sources

logger = logging.getLogger(__name__)

INIT_INFO_FILE = "distilray_student.json"  # teacher and layer map, read by the model card


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

    def describe(self) -> str:
        """One line for the console: which layers, how many parameters."""
        return (
            f"decoder layers {self.decoder_layer_ids} of the teacher's "
            f"{self.teacher_decoder_layers}, {self.parameters / 1e6:.1f}M parameters "
            f"(teacher {self.teacher_parameters / 1e6:.1f}M)"
        )


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
    logger.info("student: %s -> %s", info.describe(), cfg.out)
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
