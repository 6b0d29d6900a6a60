"""What a labelled dataset holds: counts, audio hours, WER shares, errors."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

WER_THRESHOLDS = (0.05, 0.10, 0.20, 0.40)  # shares of scored rows above each are reported
ERROR_EXAMPLES = 5  # failed rows listed in the summary


@dataclass(frozen=True)
class LabelSummary:
    """What a labelled output holds, over every run so far (``_manifest.json``'s summary)."""

    rows: int  # output rows (packed rows count once)
    inputs: int  # input clips in those rows
    labelled: int  # rows with a pseudo-label
    errors: int  # rows that failed (with their reason)
    audio_hours: float  # audio of the labelled rows
    scored: int  # labelled rows with a reference, so a WER
    wer_mean: float | None  # over the scored rows; None when none is scored
    wer_median: float | None
    share_wer_above: dict[str, float | None]  # "10%": share of scored rows above 10 % WER
    error_examples: list[dict[str, str]]  # the first few failed rows: {"id", "error"}

    def as_dict(self) -> dict:
        return asdict(self)


def summarize(table: pa.Table) -> LabelSummary:
    """Summary of the state columns of every labelled row (see ``schema.STATE_COLUMNS``)."""
    failed = pc.is_valid(table["error"])
    ok = table.filter(pc.invert(failed))
    scores = ok["wer"].drop_null().to_numpy() if ok.num_rows else np.zeros(0)
    seconds = pc.sum(ok["duration_s"]).as_py() or 0.0
    errors = table.filter(failed).slice(0, ERROR_EXAMPLES)
    return LabelSummary(
        rows=table.num_rows,
        inputs=int(pc.sum(pc.list_value_length(table["source_ids"])).as_py() or 0),
        labelled=ok.num_rows,
        errors=table.num_rows - ok.num_rows,
        audio_hours=round(seconds / 3600, 4),
        scored=int(scores.size),
        wer_mean=round(float(scores.mean()), 4) if scores.size else None,
        wer_median=round(float(np.median(scores)), 4) if scores.size else None,
        share_wer_above={
            f"{round(t * 100)}%": round(float((scores > t).mean()), 4) if scores.size else None
            for t in WER_THRESHOLDS
        },
        error_examples=[
            {"id": i, "error": e}
            for i, e in zip(errors["id"].to_pylist(), errors["error"].to_pylist(), strict=True)
        ],
    )


def format_summary(summary: LabelSummary, run: dict, output: str) -> str:
    """The end-of-run report printed by the CLI."""
    shares = ", ".join(
        f"> {k}: {'-' if v is None else f'{v:.1%}'}" for k, v in summary.share_wer_above.items()
    )
    mean = summary.wer_mean
    lines = [
        f"this run: {run['inputs_labelled']} inputs in {run['rows_written']} rows, "
        f"{run['audio_s'] / 3600:.2f} h audio in {run['elapsed_s']:.1f} s "
        f"({run['audio_s_per_s']:.1f} audio-s/s), {run['errors']} errors, "
        f"{run['inputs_skipped']} inputs skipped as already labelled",
        f"dataset: {summary.rows} rows ({summary.inputs} inputs), "
        f"{summary.labelled} labelled, {summary.errors} errors, "
        f"{summary.audio_hours:.2f} h audio",
        f"WER vs reference on {summary.scored} rows: mean "
        f"{'-' if mean is None else f'{mean:.1%}'}; share {shares}",
    ]
    lines += [f"  error {e['id']}: {e['error']}" for e in summary.error_examples]
    lines.append(f"output: {output}")
    return "\n".join(lines)
