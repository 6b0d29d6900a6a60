"""What a finished distillation run produced (made by ``export``, returned by ``trainer``)."""

from __future__ import annotations

from dataclasses import dataclass

from distilray.distill.data import DataSummary


@dataclass(frozen=True)
class DistillOutcome:
    """What a finished run produced."""

    student: str  # exported model folder
    run_path: str  # the Ray Train run folder (checkpoints, results)
    steps: int  # optimizer steps the run trained for
    exported_step: int  # step of the exported checkpoint
    eval_wer: float  # of the exported checkpoint
    data: DataSummary
