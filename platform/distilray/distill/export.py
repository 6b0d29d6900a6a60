"""The final student: a checkpoint saved as a model folder with a short model card."""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path

from distilray import storage
from distilray.distill.config import DistillConfig
from distilray.distill.data import DataSummary
from distilray.distill.model_card import model_card, percent
from distilray.distill.outcome import DistillOutcome
from distilray.errors import DistilrayError

logger = logging.getLogger(__name__)

CARD_FILE = "README.md"


def choose_checkpoint(result, which: str, within: float = 0.0):
    """``(checkpoint, metrics)`` of the best (lowest eval WER) or the latest checkpoint.

    "Best" is the latest checkpoint whose eval WER is at most ``within`` (absolute:
    0.01 = 1 point) above the lowest: a few hundred validation words cannot tell such
    checkpoints apart (ties included), and the later one has seen more data, finished
    more of the schedule and, with a weight average, averages more steps.
    """
    pairs = list(result.best_checkpoints or [])
    if not pairs or result.checkpoint is None:
        raise DistilrayError("the run produced no checkpoint: is train.max_steps >= 1?")
    chosen = result.checkpoint
    if which != "latest":
        scored = [(c, m) for c, m in pairs if _finite(m.get("eval_wer"))]
        if scored:
            lowest = min(m["eval_wer"] for _, m in scored)
            close = [(c, m) for c, m in scored if m["eval_wer"] <= lowest + within + 1e-12]
            chosen = max(close, key=lambda cm: cm[1].get("step", 0))[0]
    metrics = next((m for c, m in pairs if c.path == chosen.path), result.metrics or {})
    return chosen, metrics


def blend_with_initial(model, initial_ref: str, share: float):
    """``model``'s weights moved back toward the initial student's (``run.export_init_share``):
    ``(1 - share) * trained + share * initial``, in place."""
    from distilray.models import load_whisper
    from distilray.student.blend import blend_weights

    initial, _ = load_whisper(initial_ref, dtype="float32")
    blend_weights([model, initial], [1 - share, share], names=["the trained student", initial_ref])
    logger.info("exported weights: %.3g x trained + %.3g x initial student", 1 - share, share)
    return model


def _finite(value) -> bool:
    return isinstance(value, (int, float)) and math.isfinite(value)


def _student_init_info(student_ref: str) -> dict:
    """What ``init-student`` recorded about the student (empty for other models)."""
    from distilray.models import resolve_model
    from distilray.student.build import INIT_INFO_FILE

    info = Path(resolve_model(student_ref)) / INIT_INFO_FILE
    return json.loads(info.read_text()) if info.is_file() else {}


def export_student(cfg: DistillConfig, result, summary: DataSummary) -> DistillOutcome:
    """Save the chosen checkpoint with the processor and a model card; return the outcome."""
    from distilray.distill.checkpoint import load_processor, load_student
    from distilray.student.build import save_model_folder
    from distilray.student.layers import keep_alignment_heads

    checkpoint, metrics = choose_checkpoint(result, cfg.run.export_checkpoint, cfg.run.best_within)
    init = _student_init_info(cfg.model.student)
    processor = load_processor(cfg.model.student)
    with checkpoint.as_directory() as ckpt_dir:
        model = load_student(Path(ckpt_dir))
    share = cfg.run.export_init_share
    if share:
        blend_with_initial(model, cfg.model.student, share)
        metrics = {**metrics, "init_share": share}
    layer_ids = init.get("decoder_layer_ids") or getattr(model.config, "teacher_layer_ids", None)
    keep_alignment_heads(model, layer_ids)
    out = cfg.export_uri()
    extra = {"distill_metrics.json": {k: v for k, v in metrics.items() if _plain(v)}}
    save_model_folder(model, processor, out, extra=extra)
    storage.write_bytes(
        f"{out.rstrip('/')}/{CARD_FILE}", model_card(cfg, summary, metrics, init).encode()
    )
    if cfg.run.export_ct2:
        from distilray.models.ct2_export import export_ct2_inside

        ct2 = export_ct2_inside(out, cfg.run.export_ct2)
        logger.info("faster-whisper copy (%s) in %s", cfg.run.export_ct2, ct2)
    logger.info(
        "student exported to %s (step %s, eval WER %s)",
        out,
        metrics.get("step"),
        percent(metrics.get("eval_wer")),
    )
    return DistillOutcome(
        student=out,
        run_path=str(result.path),
        steps=int((result.metrics or metrics).get("step", 0)),
        exported_step=int(metrics.get("step", 0)),
        eval_wer=float(metrics.get("eval_wer", float("nan"))),
        data=summary,
    )


def _plain(value) -> bool:
    return isinstance(value, int | float | str | bool) or value is None
