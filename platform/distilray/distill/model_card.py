"""The exported student's ``README.md``: a model card the Hugging Face Hub understands.

YAML front matter (license, language, base model, pipeline tag, library, tags,
datasets, and a ``model-index`` with the measured validation WER) followed by a
short account of how the student was made. Models are named by hub id or folder
name, never by a path on the machine that trained them.
"""

from __future__ import annotations

import posixpath

import yaml

from distilray.distill.config import DistillConfig
from distilray.distill.data import DataSummary
from distilray.models.resolve import reference_kind, split_revision

# The embedded teacher is OpenAI's tiny.en converted back from CTranslate2: its hub twin.
EMBEDDED_BASE_MODEL = "openai/whisper-tiny.en"
TAGS = ["whisper", "distil-whisper", "knowledge-distillation", "distilray"]


def display_ref(ref: str) -> str:
    """How a card names a model: a hub id (with its revision), ``tiny.en``, or the last
    part of a folder path or ``s3://`` URI.

    >>> display_ref("/home/me/runs/students/student-2l"), display_ref("openai/whisper-small@v1")
    ('student-2l', 'openai/whisper-small@v1')
    """
    kind, text = reference_kind(ref)
    if kind in ("folder", "s3"):
        return posixpath.basename(text.replace("\\", "/").rstrip("/")) or text
    return text


def base_model(ref: str) -> str | None:
    """The teacher's hub id for ``base_model`` (None when it is not on the Hub)."""
    kind, text = reference_kind(ref)
    if kind == "embedded":
        return EMBEDDED_BASE_MODEL
    return split_revision(text)[0] if kind == "hub" else None


def front_matter(cfg: DistillConfig, metrics: dict, name: str) -> dict:
    """The card's metadata, in the Hub's field names."""
    card = cfg.card
    meta: dict = {"license": card.license}
    language = card.language or (["en"] if _english_only(cfg.model.teacher) else None)
    if language:
        meta["language"] = language
    teacher = base_model(cfg.model.teacher)
    if teacher:
        meta["base_model"] = teacher
    meta |= {
        "pipeline_tag": "automatic-speech-recognition",
        "library_name": "transformers",
        "tags": [*TAGS, *(t for t in card.tags if t not in TAGS)],
    }
    if card.datasets:
        meta["datasets"] = list(card.datasets)
    wer = metrics.get("eval_wer")
    if wer is not None:
        meta["model-index"] = [{"name": name, "results": [_wer_result(cfg, float(wer))]}]
    return meta


def _english_only(ref: str) -> bool:
    """``*.en`` Whisper models transcribe English only."""
    return split_revision(display_ref(ref))[0].endswith(".en")


def _wer_result(cfg: DistillConfig, wer: float) -> dict:
    data = cfg.data.eval
    eval_name = (
        ", ".join(display_ref(u) for u in ([data] if isinstance(data, str) else data))
        if data
        else "held-out share of the training pseudo-labels"
    )
    return {
        "task": {"type": "automatic-speech-recognition", "name": "Speech Recognition"},
        "dataset": {
            "name": eval_name,
            "type": cfg.card.datasets[0] if cfg.card.datasets else eval_name,
        },
        "metrics": [
            {"type": "wer", "value": round(100 * wer, 2), "name": "Validation WER (greedy, %)"}
        ],
    }


def model_card(cfg: DistillConfig, summary: DataSummary, metrics: dict, init: dict) -> str:
    """The whole ``README.md``: front matter, then where the student came from and how
    well it did."""
    name = display_ref(cfg.run.export_to) if cfg.run.export_to else cfg.run.name
    threshold = "none" if cfg.data.wer_threshold is None else f"{cfg.data.wer_threshold}"
    layers = init.get("decoder_layer_ids")
    loss = cfg.loss
    meta = yaml.safe_dump(front_matter(cfg, metrics, name), sort_keys=False, allow_unicode=True)
    lines = [
        "---",
        meta.rstrip("\n"),
        "---",
        "",
        f"# Distilled Whisper student: {name}",
        "",
        f"- Teacher: `{display_ref(cfg.model.teacher)}`",
        f"- Student initialisation: `{display_ref(cfg.model.student)}`"
        + (f" (teacher decoder layers {layers})" if layers else ""),
        f"- Training data: {summary.kept} clips, {summary.hours:.2f} hours of pseudo-labelled audio",
        f"- WER filter λ: {threshold} (unscored rows {'kept' if cfg.data.keep_unscored else 'dropped'});"
        f" kept {summary.kept} of {summary.candidates} rows",
        f"- Objective: {loss.kl_weight} · KL(T={loss.temperature}) · T² + {loss.pl_weight} · CE",
        f"- Steps: {metrics.get('step', '?')} of {cfg.train.max_steps}, "
        f"batch {cfg.train.batch_size} x {cfg.scaling.num_workers} workers, "
        f"peak learning rate {cfg.optim.learning_rate}",
        *_average_line(cfg),
        *_blend_line(cfg),
        f"- Eval WER (greedy, held-out): {percent(metrics.get('eval_wer'))}",
        "",
        "Produced by `distilray distill`.",
        "",
    ]
    return "\n".join(lines)


def _average_line(cfg: DistillConfig) -> list[str]:
    """The card's line on ``train.average`` (none when it is off)."""
    average = cfg.train.average
    if average.decay is None:
        return []
    return [
        f"- Weights: running average of the training steps' weights from step "
        f"{average.start_step} (EMA decay {average.decay}), not the last step's"
    ]


def _blend_line(cfg: DistillConfig) -> list[str]:
    """The card's line on ``run.export_init_share`` (none when it is off)."""
    share = cfg.run.export_init_share
    if not share:
        return []
    return [
        f"- Exported weights: {1 - share:g} x the trained weights + {share:g} x the initial "
        "student's (WiSE-FT); the eval WER below is the trained weights'"
    ]


def percent(value) -> str:
    return "n/a" if value is None else f"{100 * float(value):.2f} %"
