"""Progress while labelling: teacher actors report to a counter actor, the driver logs."""

from __future__ import annotations

import logging
import threading
import time

import pyarrow as pa
import pyarrow.compute as pc

logger = logging.getLogger("distilray.labelling")


class ProgressCounter:
    """Running totals (run as a zero-CPU Ray actor; see :func:`start_counter`)."""

    def __init__(self) -> None:
        self.totals = {"rows": 0, "inputs": 0, "audio_s": 0.0, "errors": 0}
        self.timing: dict[str, float] = {}  # first/last batch (epoch seconds), first's audio

    def add(self, rows: int, inputs: int, audio_s: float, errors: int) -> None:
        new = {"rows": rows, "inputs": inputs, "audio_s": audio_s, "errors": errors}
        for key, value in new.items():
            self.totals[key] += value
        now = time.time()
        if not self.timing:
            self.timing = {"first_at": now, "first_audio_s": audio_s}
        self.timing["last_at"] = now

    def snapshot(self) -> dict:
        return dict(self.totals)

    def timings(self) -> dict:
        return dict(self.timing)


def startup_and_steady(timing: dict, started_at: float, audio_s: float) -> dict:
    """Start-up (run start to the first labelled batch: actors, model loads, the first
    decode) apart from the steady rate (audio after the first batch over the time after it).

    >>> startup_and_steady({"first_at": 14.0, "first_audio_s": 20.0, "last_at": 24.0}, 10.0, 120.0)
    {'startup_s': 4.0, 'steady_audio_s_per_s': 10.0}
    """
    if not timing or timing["last_at"] <= timing["first_at"]:
        return {"startup_s": None, "steady_audio_s_per_s": None}
    steady = (audio_s - timing["first_audio_s"]) / (timing["last_at"] - timing["first_at"])
    return {
        "startup_s": round(timing["first_at"] - started_at, 3),
        "steady_audio_s_per_s": round(steady, 3),
    }


def batch_counts(table: pa.Table) -> dict:
    """Rows, input clips, audio seconds and errors in a labelled table."""
    seconds = pc.sum(table["duration_s"]).as_py() or 0.0
    return {
        "rows": table.num_rows,
        "inputs": pc.sum(pc.list_value_length(table["source_ids"])).as_py() or 0,
        "audio_s": float(seconds),
        "errors": table.num_rows - pc.count(table["error"], mode="only_null").as_py(),
    }


def start_counter():
    """A :class:`ProgressCounter` actor that takes no CPU from the pipeline."""
    import ray

    return ray.remote(num_cpus=0)(ProgressCounter).remote()


def progress_line(totals: dict, inputs_total: int, elapsed_s: float) -> str:
    """``labelled 120/400 inputs (0.31 h audio, 42.0 audio-s/s), 2 errors``."""
    rate = totals["audio_s"] / elapsed_s if elapsed_s > 0 else 0.0
    return (
        f"labelled {totals['inputs']}/{inputs_total} inputs in {totals['rows']} rows "
        f"({totals['audio_s'] / 3600:.2f} h audio, {rate:.1f} audio-s/s, "
        f"{elapsed_s:.0f} s), {totals['errors']} errors"
    )


class ProgressReporter:
    """Logs a progress line every ``every_s`` seconds from a background thread."""

    def __init__(self, counter, inputs_total: int, every_s: float) -> None:
        self.counter = counter
        self.inputs_total = inputs_total
        self.every_s = every_s
        self.started = time.perf_counter()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="label-progress", daemon=True)

    def __enter__(self) -> ProgressReporter:
        self.started = time.perf_counter()
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def totals(self) -> dict:
        import ray

        return ray.get(self.counter.snapshot.remote(), timeout=30)

    def _loop(self) -> None:
        while not self._stop.wait(self.every_s):
            try:
                totals = self.totals()
            except Exception as exc:  # noqa: BLE001 - progress must never break the job
                logger.debug("progress unavailable: %s", exc)
                continue
            logger.info(progress_line(totals, self.inputs_total, self.elapsed_s()))

    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started
