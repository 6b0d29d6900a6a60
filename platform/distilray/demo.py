"""The main job: the whole pipeline, end to end, on the embedded tiny.en teacher.

synthesise train + eval speech (different voices) → pseudo-label with the teacher →
WER filter → 2-layer student → distil → evaluate teacher / student / speculative
(and the untrained student as a baseline) → serve and transcribe over HTTP → stop.

Each stage runs from its own YAML config (the same files `distilray <stage>` takes),
so the demo exercises exactly the code a cluster run does.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from pydantic import Field

from distilray.config import StageConfig, load_config

logger = logging.getLogger(__name__)


class SynthSection(StageConfig):
    """One synthetic speech set."""

    out: str = Field(description="output folder (holds manifest.jsonl)")
    num_clips: int = Field(ge=1, description="short clips (one sentence each)")
    voices: list[str] = Field(min_length=1, description="engine:voice specs, e.g. flite:slt")
    split: str = Field("train", description="sentence-bank split: train, validation or test")
    long_form: int = Field(0, ge=0, description="extra 40-90 s recordings (long-form eval)")
    snr_db: float | None = Field(None, description="white noise mixed in; null = clean")
    rate_jitter: float = Field(0.1, ge=0, le=0.5, description="speaking-rate variation")
    seed: int = Field(0, description="synthesis seed")


class DemoConfig(StageConfig):
    """Which stage configs the demo chains, and the data it synthesises for them."""

    train_data: SynthSection = Field(description="training speech (pseudo-labelled)")
    eval_data: SynthSection = Field(description="held-out speech, other voices and sentences")
    label: str = Field(description="labelling config (its input must be train_data)")
    init_student: str = Field(description="student initialisation config")
    distill: str = Field(description="distillation config")
    eval: str = Field(description="evaluation config (its dataset must be eval_data)")
    serve_port: int = Field(8765, ge=1024, le=65535, description="port of the demo endpoint")
    summary: str = Field("runs/demo/results.json", description="where the demo's results go")


def _banner(step: int, total: int, title: str) -> float:
    print(f"\n=== [{step}/{total}] {title}", flush=True)
    return time.perf_counter()


def _done(began: float, what: str) -> None:
    print(f"    {what} ({time.perf_counter() - began:.0f} s)", flush=True)


def synth(section: SynthSection) -> Path:
    from distilray.data.synth import synthesize_dataset

    return synthesize_dataset(
        section.out,
        section.num_clips,
        voices=section.voices,
        split=section.split,
        long_form=section.long_form,
        snr_db=section.snr_db,
        rate_jitter=section.rate_jitter,
        seed=section.seed,
    )


def _baseline_eval(eval_cfg, student_init: str):
    """The untrained student on the clean short clips: the bar distillation must clear."""
    cfg = eval_cfg.model_copy(deep=True)
    cfg.models.student = student_init
    cfg.modes = ["student"]
    cfg.forms = ["short"]
    cfg.noise.snr_db = [None]
    cfg.output_dir = str(Path(eval_cfg.output_dir).with_name("eval-student-init"))
    return cfg


def serve_check(student: str, manifest: Path, port: int) -> dict:
    """Start the endpoint, transcribe one clip over HTTP, compare with its reference."""
    import requests
    from ray import serve

    from distilray.serving.config import ServeArgs
    from distilray.serving.local import start_local
    from distilray.text import wer

    first = json.loads(manifest.read_text().splitlines()[0])
    audio = manifest.parent / first["audio"]
    url = start_local(ServeArgs(assistant=student, api_key_env=None), "127.0.0.1", port)
    try:
        began = time.perf_counter()
        with audio.open("rb") as f:
            resp = requests.post(
                f"{url}/v1/audio/transcriptions",
                files={"file": (audio.name, f, "audio/wav")},
                data={"model": "distilray-whisper", "response_format": "json"},
                timeout=120,
            )
        resp.raise_for_status()
        text = resp.json()["text"]
        return {
            "url": url,
            "file": str(audio),
            "reference": first["text"],
            "transcript": text,
            "wer": wer(first["text"], text),
            "latency_s": time.perf_counter() - began,
        }
    finally:
        serve.shutdown()


def headline(cells: list[dict], baseline: list[dict]) -> list[dict]:
    """Clean rows of the results table (short-form, then long-form), plus the untrained student."""
    clean = [c for c in cells if c["snr_db"] is None]
    rows = [c for c in clean if c["form"] == "short"]
    rows += [dict(c, mode="student (untrained init)") for c in baseline]
    rows += [c for c in clean if c["form"] != "short"]
    return rows


def format_results(rows: list[dict], noisy: list[dict], served: dict) -> str:
    lines = [
        "| model | form | WER % | relative latency | RTFx | identical to teacher |",
        "|---|---|---|---|---|---|",
    ]
    for c in rows:
        same = c.get("identical_to_teacher")
        lines.append(
            f"| {c['mode']} | {c['form']} | {100 * c['wer']:.1f} | "
            f"{'–' if c.get('latency_vs_teacher') is None else round(c['latency_vs_teacher'], 2)} | "
            f"{c['rtfx']:.1f} | {'–' if same is None else f'{100 * same:.0f}%'} |"
        )
    if noisy:
        lines.append("\nWER % by SNR (short clips):")
        for c in noisy:
            lines.append(f"  {c['mode']:<12} SNR {c['snr_db']:>5} dB: {100 * c['wer']:.1f}")
    lines.append(
        f"\nServe: {served['url']} transcribed {Path(served['file']).name} in "
        f"{served['latency_s']:.2f} s: {served['transcript']!r} (WER {100 * (served['wer'] or 0):.0f}%)"
    )
    return "\n".join(lines)


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage in order; print progress and the results table; return the results."""
    from distilray.distill.config import DistillConfig
    from distilray.distill.trainer import run_distillation
    from distilray.evaluation.config import EvalConfig
    from distilray.evaluation.run import run_evaluation
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling
    from distilray.student import StudentInitConfig, init_student

    label_cfg = load_config(LabelConfig, cfg.label)
    init_cfg = load_config(StudentInitConfig, cfg.init_student)
    distill_cfg = load_config(DistillConfig, cfg.distill)
    eval_cfg = load_config(EvalConfig, cfg.eval)
    total, began_all = 7, time.perf_counter()

    t = _banner(1, total, "synthesise training and evaluation speech")
    train_manifest, eval_manifest = synth(cfg.train_data), synth(cfg.eval_data)
    _done(t, f"{train_manifest} and {eval_manifest}")

    t = _banner(2, total, f"pseudo-label with the teacher ({label_cfg.teacher})")
    labelled = run_labelling(label_cfg)
    _done(t, f"{labelled['summary'].get('rows', '?')} rows labelled into {label_cfg.output}")

    t = _banner(3, total, f"initialise a {init_cfg.decoder_layers}-layer-decoder student")
    info = init_student(init_cfg)
    _done(t, f"student at {init_cfg.out}: {info}")

    t = _banner(4, total, f"distil (λ = {distill_cfg.data.wer_threshold})")
    outcome = run_distillation(distill_cfg)
    _done(t, f"{outcome.steps} steps; held-out WER {100 * outcome.eval_wer:.1f}%")

    t = _banner(5, total, "evaluate teacher, student and speculative decoding")
    evaluated = run_evaluation(eval_cfg)
    baseline = run_evaluation(_baseline_eval(eval_cfg, init_cfg.out))
    _done(t, f"report in {eval_cfg.output_dir}")

    t = _banner(6, total, "serve the teacher with the student as assistant, transcribe over HTTP")
    served = serve_check(outcome.student, eval_manifest, cfg.serve_port)
    _done(t, f"answered by {served['url']}")

    _banner(7, total, "results")
    rows = headline(evaluated["cells"], baseline["cells"])
    noisy = [c for c in evaluated["cells"] if c["form"] == "short" and c["snr_db"] is not None]
    table = format_results(rows, noisy, served)
    print(table, flush=True)
    results = {
        "headline": rows,
        "noise": noisy,
        "serve": served,
        "labelling": labelled["summary"],
        "distill": {"steps": outcome.steps, "eval_wer": outcome.eval_wer, "student": outcome.student},
        "eval_report": evaluated["paths"],
        "wall_s": time.perf_counter() - began_all,
    }
    Path(cfg.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.summary).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nall stages done in {results['wall_s'] / 60:.1f} min; results in {cfg.summary}")
    return results


def add_parser(subparsers) -> None:
    """``distilray demo --config configs/tiny/demo.yaml``."""
    from distilray.cli import add_config_arguments

    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline end to end on the embedded teacher (CPU, minutes)"
    )
    add_config_arguments(parser, required=True)
    parser.set_defaults(func=_run)


def _run(args) -> int:
    run_demo(load_config(DemoConfig, args.config, args.overrides))
    return 0
