"""Training checkpoints: the student as a model folder plus one weights-only state file.

A checkpoint folder holds ``config.json``, ``generation_config.json`` and
``model.safetensors`` (``save_pretrained``, so any checkpoint loads as a model) and
``train_state.pt``: optimizer and scheduler state and the position in the data,
saved with plain tensors and numbers only so it loads with ``weights_only=True``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from distilray.errors import ModelLoadError

STATE_FILE = "train_state.pt"


@dataclass
class TrainState:
    """Where training is: enough to continue exactly where a checkpoint was taken."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # passes over the training shard started
    batch_in_epoch: int = 0  # batches of the current epoch already consumed
    samples: int = 0  # rows trained on by this worker
    batches_per_epoch: int = 0  # batches in one pass over the shard; 0 until a pass ends


def save_checkpoint(
    out: Path,
    student,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
    state: TrainState,
    extra: dict | None = None,
) -> None:
    """Write the student (safetensors) and the training state to folder ``out``;
    ``extra`` (tensors and numbers only) is kept in the state file beside it."""
    out.mkdir(parents=True, exist_ok=True)
    student.save_pretrained(out)
    torch.save(
        {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "state": asdict(state),
            **(extra or {}),
        },
        out / STATE_FILE,
    )


def load_student(folder: Path, dtype: torch.dtype = torch.float32):
    """The student saved in a checkpoint folder; only its safetensors weights are read."""
    from transformers import WhisperForConditionalGeneration

    from distilray.models.upstream_logs import quiet_model_io

    quiet_model_io()  # a resumed worker loads here first: no "Loading weights" bar
    try:
        return WhisperForConditionalGeneration.from_pretrained(
            folder, dtype=dtype, use_safetensors=True
        )
    except OSError as exc:  # no model.safetensors (e.g. a pickled pytorch_model.bin only)
        raise ModelLoadError(f"cannot load the student checkpoint in {folder}: {exc}") from None


def load_processor(model_ref: str):
    """The processor saved with a model folder (tokenizer, feature extractor)."""
    from transformers import WhisperProcessor

    from distilray.models import resolve_model

    return WhisperProcessor.from_pretrained(resolve_model(model_ref))


def read_train_state(folder: Path) -> dict:
    """The saved optimizer, scheduler and position (plain data, read with weights_only)."""
    return torch.load(folder / STATE_FILE, map_location="cpu", weights_only=True)


def apply_train_state(
    saved: dict,
    optimizer: torch.optim.Optimizer,
    scheduler: torch.optim.lr_scheduler.LRScheduler,
) -> TrainState:
    """Restore optimizer and scheduler from :func:`read_train_state` output; return the position."""
    optimizer.load_state_dict(saved["optimizer"])
    scheduler.load_state_dict(saved["scheduler"])
    return TrainState(**saved["state"])
