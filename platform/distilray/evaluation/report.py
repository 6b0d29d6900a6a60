"""Turn per-utterance results into cells, and cells into JSON, Markdown and plots."""

from __future__ import annotations

import json
import logging
import math
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path

from distilray.evaluation.metrics import (
    MIN_BOOTSTRAP_UTTERANCES,
    Utterance,
    cell_metrics,
    paired_difference,
    relative_latency,
    scored_stats,
)
from distilray.text import WerStats

logger = logging.getLogger(__name__)

CellKey = tuple[str, str, str, float | None]  # dataset, mode, form, SNR (None: clean)
MD_COLUMNS = [
    ("dataset", "dataset", "{}"),
    ("mode", "mode", "{}"),
    ("form", "form", "{}"),
    ("snr_db", "SNR dB", "{}"),
    ("utterances", "n", "{}"),
    ("wer", "WER %", "{:.2f}"),
    ("wer_without_worst", "WER % w/o worst", "{:.2f}"),
    ("wer_vs_teacher", "vs teacher, points (95 % CI)", "{:+.2f}"),
    ("substitution_rate", "sub %", "{:.2f}"),
    ("deletion_rate", "del %", "{:.2f}"),
    ("insertion_rate", "ins (IER) %", "{:.2f}"),
    ("repeated_5grams", "5-gram dups", "{}"),
    ("repeated_5grams_corpus", "5-gram dups (corpus)", "{}"),
    ("loops", "loops", "{}"),
    ("unfinished", "hit token limit", "{}"),
    ("resumed", "decoded on", "{}"),
    ("rtfx", "RTFx", "{:.1f}"),
    ("latency_vs_teacher", "latency vs teacher", "{:.2f}"),
    ("tokens_per_s", "tokens/s", "{:.1f}"),
    ("acceptance_rate", "acceptance", "{:.2f}"),
    ("identical_to_teacher", "same as teacher %", "{:.0f}"),
]
PERCENT = {
    "wer",
    "wer_without_worst",
    "substitution_rate",
    "deletion_rate",
    "insertion_rate",
    "identical_to_teacher",
}


def _snr(value) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _count(value) -> int | None:
    """A nullable count as read back (None, NaN through pandas, or a number)."""
    return None if _snr(value) is None else int(value)


def build_cells(rows: Iterable[dict], worst: int = 0) -> list[dict]:
    """Group result rows into cells and compute each cell's metrics (``worst``: how many
    utterances with the most errors each cell names, :func:`~distilray.evaluation.metrics.cell_metrics`)."""
    groups: dict[CellKey, list[Utterance]] = defaultdict(list)
    hypotheses: dict[CellKey, dict[str, str]] = defaultdict(dict)
    for row in rows:
        if row.get("error"):
            continue
        key = (row["dataset"], row["mode"], row["form"], _snr(row["snr_db"]))
        hypotheses[key][row["id"]] = row["hypothesis"] or ""
        groups[key].append(
            Utterance(
                reference=row["reference"],
                hypothesis=row["hypothesis"] or "",
                duration_s=row["duration_s"],
                compute_s=row["compute_s"],
                generated_tokens=row["generated_tokens"],
                drafted=row["drafted"],
                accepted=row["accepted"],
                teacher_passes=row["teacher_passes"],
                id=str(row["id"]),
                unfinished_windows=_count(row.get("unfinished_windows")),
                resumed_windows=_count(row.get("resumed_windows")),
            )
        )
    cells = []
    edits: dict[CellKey, dict[str, WerStats]] = {}
    for key, utterances in sorted(groups.items(), key=_order):
        dataset, mode, form, snr = key
        cell = {"dataset": dataset, "mode": mode, "form": form, "snr_db": snr}
        scored = scored_stats(utterances)
        edits[key] = {u.id: stats for u, stats in scored}
        cell.update(cell_metrics(utterances, worst, scored))
        cells.append(cell)
    teacher = {
        (c["dataset"], c["form"], c["snr_db"]): c["compute_s"]
        for c in cells
        if c["mode"] == "teacher"
    }
    for cell in cells:
        base = teacher.get((cell["dataset"], cell["form"], cell["snr_db"]))
        cell["latency_vs_teacher"] = relative_latency(cell["compute_s"], base)
        cell["identical_to_teacher"] = _identical_share(hypotheses, cell)
        cell.update(_versus_teacher(edits, cell))
    return cells


def _versus_teacher(edits: dict[CellKey, dict[str, WerStats]], cell: dict) -> dict:
    """The cell's WER minus the teacher's on the same utterances and audio, with its
    95 % paired bootstrap interval (all None for the teacher's own cells, or where the
    teacher did not run on that dataset, form and SNR)."""
    none = {"wer_vs_teacher": None, "wer_vs_teacher_low": None, "wer_vs_teacher_high": None}
    if cell["mode"] == "teacher":
        return none
    teacher = edits.get((cell["dataset"], "teacher", cell["form"], cell["snr_db"]))
    own = edits[(cell["dataset"], cell["mode"], cell["form"], cell["snr_db"])]
    difference = paired_difference(own, teacher) if teacher else None
    if difference is None:
        return none
    return {
        "wer_vs_teacher": difference.points,
        "wer_vs_teacher_low": difference.low,
        "wer_vs_teacher_high": difference.high,
    }


def _identical_share(hypotheses: dict[CellKey, dict[str, str]], cell: dict) -> float | None:
    """Share of the cell's utterances whose transcript equals the teacher's on the same audio.

    Speculative decoding must score 1.0; ``None`` when the teacher did not run on that
    (dataset, form, SNR).
    """
    own = hypotheses[(cell["dataset"], cell["mode"], cell["form"], cell["snr_db"])]
    teacher = hypotheses.get((cell["dataset"], "teacher", cell["form"], cell["snr_db"]))
    shared = [i for i in own if teacher and i in teacher]
    if not shared:
        return None
    return sum(own[i] == teacher[i] for i in shared) / len(shared)


def _order(item) -> tuple:
    (dataset, mode, form, snr), _ = item
    modes = ["teacher", "student", "speculative"]
    forms = ["short", "chunked", "sequential"]
    return (dataset, forms.index(form), -math.inf if snr is None else -snr, modes.index(mode))


def markdown_table(cells: list[dict]) -> str:
    """The cells as one Markdown table (rates in percent)."""
    optional = {"wer_without_worst", "resumed"}  # shown where some cell has a figure
    columns = [
        c
        for c in MD_COLUMNS
        if c[0] not in optional or any(cell.get(c[0]) is not None for cell in cells)
    ]
    header = "| " + " | ".join(title for _, title, _ in columns) + " |"
    rule = "|" + "|".join("---" for _ in columns) + "|"
    lines = [header, rule]
    for cell in cells:
        values = []
        for key, _, fmt in columns:
            value = cell.get(key)
            if key == "snr_db" and value is None:
                values.append("clean")
            elif key == "wer_vs_teacher" and value is not None:
                values.append(versus_teacher(cell, "{:+.2f}"))
            elif value is None:
                values.append("–")
            else:
                values.append(fmt.format(100 * value if key in PERCENT else value))
        lines.append("| " + " | ".join(values) + " |")
    return "\n".join(lines) + "\n"


def versus_teacher(cell: dict, number: str = "{:+.1f}") -> str:
    """``+4.0 (+0.7, +7.5)``: the cell's WER points above the teacher's and their 95 %
    interval; ``+1.5 (n < 10)`` where too few utterances give none; ``–`` for no figure."""
    points = cell.get("wer_vs_teacher")
    if points is None:
        return "–"
    low, high = cell.get("wer_vs_teacher_low"), cell.get("wer_vs_teacher_high")
    given = number.format(100 * points)
    if low is None or high is None:
        return f"{given} (n < {MIN_BOOTSTRAP_UTTERANCES})"
    return f"{given} ({number.format(100 * low)}, {number.format(100 * high)})"


def worst_section(cells: list[dict]) -> str:
    """Markdown naming each clean cell's utterances with the most errors ("" if none)."""
    named = [c for c in cells if c["snr_db"] is None and c.get("worst")]
    if not named:
        return ""
    count = max(len(c["worst"]) for c in named)
    lines = [
        f"## The {count} utterances with the most errors (clean audio)",
        "",
        '"WER % w/o worst" above leaves them out; errors / reference words.',
        "",
        "| dataset | mode | form | utterances |",
        "|---|---|---|---|",
    ]
    for c in named:
        worst = ", ".join(f"`{w['id']}` {w['errors']}/{w['ref_words']}" for w in c["worst"])
        lines.append(f"| {c['dataset']} | {c['mode']} | {c['form']} | {worst} |")
    return "\n".join(lines) + "\n"


TRANSCRIPT_FIELDS = (
    "dataset",
    "id",
    "mode",
    "form",
    "snr_db",
    "reference",
    "hypothesis",
    "unfinished_windows",
    "resumed_windows",
)


# what decoded the cells, said above the table: (key of ``extra``, label)
HOW = (("engine", "Engine"), ("decoding", "Decoding"))


def write_report(
    out_dir: str | Path, cells: list[dict], extra: dict, rows: Iterable[dict] = ()
) -> dict[str, Path]:
    """Write ``results.json``, ``results.md``, ``transcripts.jsonl`` (one line per
    utterance and cell, to see *what* a model got wrong) and the plots; return their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {
        "json": out / "results.json",
        "markdown": out / "results.md",
        "transcripts": out / "transcripts.jsonl",
    }
    paths["json"].write_text(json.dumps({"cells": cells, **extra}, indent=2, default=str) + "\n")
    worst = worst_section(cells)
    how = "".join(f"{label}: {extra[key]}.\n" for key, label in HOW if extra.get(key) is not None)
    paths["markdown"].write_text(
        "# Evaluation results\n\n"
        + (f"{how}\n" if how else "")
        + markdown_table(cells)
        + (f"\n{worst}" if worst else "")
    )
    with paths["transcripts"].open("w") as f:
        for row in rows:
            if not row.get("error"):
                line = {k: row.get(k) for k in TRANSCRIPT_FIELDS}
                line["snr_db"] = _snr(line["snr_db"])
                if row.get("words") is not None:
                    line["words"] = row["words"]
                f.write(json.dumps(line) + "\n")
    paths.update(write_plots(out, cells))
    return paths


def write_plots(out: Path, cells: list[dict]) -> dict[str, Path]:
    """WER against SNR (noise robustness) and latency against WER, as PNG files."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    paths = {}
    scored = [c for c in cells if c["wer"] is not None]
    series: dict[tuple, list[tuple[float, float]]] = defaultdict(list)
    for c in scored:
        snr = math.inf if c["snr_db"] is None else c["snr_db"]
        series[(c["dataset"], c["mode"], c["form"])].append((snr, 100 * c["wer"]))
    fig, ax = plt.subplots(figsize=(6, 4))
    for (dataset, mode, form), points in sorted(series.items()):
        points.sort()
        finite = [p for p in points if math.isfinite(p[0])]
        clean = [p for p in points if not math.isfinite(p[0])]
        xs = [p[0] for p in finite] + (
            [max([p[0] for p in finite], default=0) + 10] if clean else []
        )
        ys = [p[1] for p in finite] + [p[1] for p in clean]
        ax.plot(xs, ys, marker="o", label=f"{dataset} {mode} {form}")
    ax.set_xlabel("SNR (dB); rightmost point: clean")
    ax.set_ylabel("WER (%)")
    ax.set_title("Noise robustness")
    ax.legend(fontsize=7)
    paths["wer_vs_snr"] = out / "wer_vs_snr.png"
    fig.tight_layout()
    fig.savefig(paths["wer_vs_snr"], dpi=100)
    plt.close(fig)

    fig, ax = plt.subplots(figsize=(6, 4))
    for c in scored:
        latency = c["latency_vs_teacher"] if c["latency_vs_teacher"] is not None else math.nan
        ax.scatter(latency, 100 * c["wer"])
        snr = "clean" if c["snr_db"] is None else f"{c['snr_db']:g} dB"
        ax.annotate(f"{c['mode']} {c['form']} {snr}", (latency, 100 * c["wer"]), fontsize=7)
    ax.set_xlabel("latency relative to the teacher")
    ax.set_ylabel("WER (%)")
    ax.set_title("Latency vs WER")
    paths["latency_vs_wer"] = out / "latency_vs_wer.png"
    fig.tight_layout()
    fig.savefig(paths["latency_vs_wer"], dpi=100)
    plt.close(fig)
    return paths
