"""The main job: the whole pipeline, end to end, on the embedded tiny.en teacher.

synthesise train + eval speech (different voices) and gather real recorded speech
from packages → pseudo-label both with the teacher → WER / confidence filter →
student (3 of the teacher's 4 decoder layers) → distil (model selection on real
validation speech) → evaluate teacher / student / speculative on synthetic and real
test speech (optionally the untrained student as a baseline) → serve and transcribe over
HTTP → stop.

Each stage runs from its own YAML config (the same files `distilray <stage>` takes),
so the demo exercises exactly the code a cluster run does. A recipe at another
scale (``configs/tiny/quality.yaml``) reuses those files with dotted overrides.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import Field

from distilray.config import StageConfig, load_config

if TYPE_CHECKING:
    from distilray.labelling.pipeline import LabelRun

logger = logging.getLogger(__name__)


class SynthSection(StageConfig):
    """One synthetic speech set."""

    out: str = Field(description="output folder (holds manifest.jsonl)")
    num_clips: int = Field(ge=1, description="short clips (one sentence each)")
    voices: str | list[str] = Field(
        "split",
        description="engine:voice specs (e.g. flite:slt), or 'split': every installed voice "
        "of this split's speaker pool (train, validation and test pools are disjoint)",
    )
    augment: str = Field(
        "none", description="augmentation preset of `distilray data synth`: none, light, robust"
    )
    split: str = Field("train", description="sentence-bank split: train, validation or test")
    long_form: int = Field(0, ge=0, description="extra 40-90 s recordings (long-form eval)")
    snr_db: float | None = Field(None, description="white noise mixed in; null = clean")
    rate_jitter: float = Field(0.1, ge=0, le=0.5, description="speaking-rate variation")
    seed: int = Field(0, description="synthesis seed")
    repetitions: float = Field(
        0.0,
        ge=0,
        le=1,
        description="share of clips said with a spoken repetition (`data synth --repetitions`)",
    )


class RealSection(StageConfig):
    """Real recorded speech gathered from packages (``distilray data real``)."""

    out: str = Field(description="output folder (train/, validation/, test/ manifests)")
    train_clips: int | None = Field(
        None, ge=1, description="unlabelled training clips to take (null: all)"
    )
    validation_clips: int = Field(
        200, ge=1, description="referenced validation clips to take (model selection)"
    )
    steel_sky_clips: int | None = Field(
        0,
        ge=0,
        description="Beneath a Steel Sky voice lines added to the training clips (another "
        "cast of actors; null: all 3,650; 0: the game is not fetched)",
    )
    steel_sky_test: int | None = Field(
        0,
        ge=0,
        description="Beneath a Steel Sky voice lines with their subtitles as references, in "
        "a test set of their own (<out>/steel-sky-test; null: every line whose subtitle "
        "decodes, 3,340 of at least 0.5 s; not with steel_sky_clips)",
    )


class LabelStep(StageConfig):
    """One labelling run: a config file and dotted overrides on top of it."""

    config: str = Field(description="labelling config file")
    overrides: list[str] = Field(default_factory=list, description="dotted key=value overrides")


class Overrides(StageConfig):
    """Dotted overrides applied on top of each stage's config file (``key=value``)."""

    init_student: list[str] = Field(default_factory=list, description="for init_student")
    distill: list[str] = Field(default_factory=list, description="for distill")
    eval: list[str] = Field(default_factory=list, description="for eval")


class DemoConfig(StageConfig):
    """Which stage configs the demo chains, and the data it synthesises for them."""

    train_data: SynthSection = Field(description="training speech (pseudo-labelled)")
    eval_data: SynthSection = Field(description="held-out speech, other voices and sentences")
    real_data: RealSection | None = Field(
        None, description="real recorded speech for training, validation and test"
    )
    label: list[str | LabelStep] = Field(
        min_length=1,
        description="labelling configs (a path, or {config, overrides}), run in order: "
        "synthetic training speech, real training speech, real validation speech",
    )
    init_student: str = Field(description="student initialisation config")
    distill: str = Field(description="distillation config")
    eval: str = Field(description="evaluation config (its dataset must be eval_data)")
    overrides: Overrides = Field(
        default_factory=Overrides, description="per-stage overrides (other scales, ablations)"
    )
    untrained_baseline: bool = Field(
        False,
        description="also evaluate the untrained student on the clean short clips: the bar "
        "distillation must clear (about a minute on 2 CPUs; its figures stay the same from "
        "run to run while the init and the test sets do)",
    )
    serve_port: int = Field(8765, ge=1024, le=65535, description="port of the demo endpoint")
    summary: str = Field("runs/demo/results.json", description="where the demo's results go")


def _banner(step: int, total: int, title: str) -> float:
    print(f"\n=== [{step}/{total}] {title}", flush=True)
    return time.perf_counter()


def _done(began: float, what: str) -> None:
    print(f"    {what} ({time.perf_counter() - began:.0f} s)", flush=True)


def gather_real(section: RealSection) -> Path:
    from distilray.data.real import RealOptions, build_real_dataset

    options = RealOptions(
        train_clips=section.train_clips,
        validation_clips=section.validation_clips,
        steel_sky_clips=section.steel_sky_clips,
        steel_sky_test=section.steel_sky_test,
    )
    build_real_dataset(section.out, options)
    return Path(section.out)


REQUEST_NAME = "request.json"  # the SynthSection a synthetic set was made from


def synth(section: SynthSection) -> Path:
    """Synthesise ``section`` unless its folder already holds exactly that set."""
    from distilray.data.synth import synthesize_dataset

    out = Path(section.out)
    manifest = out / "manifest.jsonl"
    recorded = out / REQUEST_NAME
    if manifest.is_file() and _made_from(recorded) == section:
        logger.info("reusing %s (made from the same settings)", manifest)
        return manifest
    manifest = synthesize_dataset(
        section.out,
        section.num_clips,
        voices=section.voices,
        split=section.split,
        long_form=section.long_form,
        snr_db=section.snr_db,
        rate_jitter=section.rate_jitter,
        seed=section.seed,
        augment=section.augment,
        repetitions=section.repetitions,
    )
    recorded.write_text(json.dumps(section.model_dump(mode="json"), indent=2) + "\n")
    return manifest


def _made_from(recorded: Path) -> SynthSection | None:
    """The settings a set was made from, or None when unknown. Fields added since it was
    made take their defaults (what the set was made with), so it is still reused."""
    try:
        return SynthSection.model_validate(json.loads(recorded.read_text()))
    except (OSError, ValueError):  # missing, not JSON, or a field that no longer exists
        return None


def _baseline_eval(eval_cfg, student_init: str):
    """The untrained student on the clean short clips: the bar distillation must clear."""
    cfg = eval_cfg.model_copy(deep=True)
    cfg.models.student = student_init
    cfg.modes = ["student"]
    cfg.forms = ["short"]
    # the copied layers babble until the token limit: enough to measure it, cheaper
    cfg.runtime.max_new_tokens = 48
    cfg.noise.snr_db = [None]
    for dataset in cfg.datasets:
        dataset.snr_db = None
    cfg.output_dir = str(Path(eval_cfg.output_dir).with_name("eval-student-init"))
    return cfg


def serve_check(student: str, manifest: Path, port: int) -> dict:
    """Start the endpoint, transcribe one clip over HTTP, compare with its reference."""
    import requests

    from distilray.runtime import verbose
    from distilray.serving.config import ServeArgs
    from distilray.serving.local import local_endpoint
    from distilray.text import wer

    first = json.loads(manifest.read_text().splitlines()[0])
    audio = manifest.parent / first["audio"]
    args = ServeArgs(assistant=student, api_key_env=None)
    with local_endpoint(args, "127.0.0.1", port, quiet=not verbose()) as url:
        began = time.perf_counter()
        with audio.open("rb") as f:
            resp = requests.post(
                f"{url}/v1/audio/transcriptions",
                files={"file": (audio.name, f, "audio/wav")},
                data={"model": "distilray-whisper", "response_format": "json"},
                timeout=120,
            )
        resp.raise_for_status()
        latency_s = time.perf_counter() - began
    text = resp.json()["text"]
    return {
        "url": url,
        "file": str(audio),
        "reference": first["text"],
        "transcript": text,
        "wer": wer(first["text"], text),
        "latency_s": latency_s,
    }


def headline(cells: list[dict], baseline: list[dict]) -> list[dict]:
    """Clean rows of the results table: per dataset, short-form (with the untrained
    student's ``baseline`` cells, if any), then long-form."""
    clean = [c for c in cells if c["snr_db"] is None]
    rows: list[dict] = []
    for dataset in dict.fromkeys(c["dataset"] for c in clean):
        mine = [c for c in clean if c["dataset"] == dataset]
        rows += [c for c in mine if c["form"] == "short"]
        rows += [
            dict(c, mode="student (untrained init)") for c in baseline if c["dataset"] == dataset
        ]
        rows += [c for c in mine if c["form"] != "short"]
    return rows


def _fmt(value, pattern: str = "{}") -> str:
    return "–" if value is None else pattern.format(value)


def format_results(
    rows: list[dict], noisy: list[dict], served: dict | None, decoding: str | None = None
) -> str:
    """The results table of a demo-style run; ``decoding`` says how its models decoded
    (``RuntimeConfig.decoding``). A "decoded on" column appears where the evaluation
    counted windows decoded on after an early end."""
    from distilray.evaluation.report import versus_teacher

    worst = max((len(c.get("worst") or []) for c in rows), default=0)
    resumed = any(c.get("resumed") is not None for c in rows)
    lines = [
        "| data | model | form | WER % | vs teacher (95 % CI) | WER % w/o worst | "
        "5-gram repeats | loops | hit token limit | "
        + ("decoded on | " if resumed else "")
        + "relative latency | RTFx | identical to teacher | acceptance |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|" + ("---|" if resumed else ""),
    ]
    for c in rows:
        same = c.get("identical_to_teacher")
        trimmed = c.get("wer_without_worst")
        lines.append(
            f"| {c['dataset']} | {c['mode']} | {c['form']} | {100 * c['wer']:.1f} | "
            f"{versus_teacher(c)} | "
            f"{_fmt(None if trimmed is None else 100 * trimmed, '{:.1f}')} | "
            f"{_fmt(c.get('repeated_5grams'))} | {_fmt(c.get('loops'))} | "
            f"{_fmt(c.get('unfinished'))} | "
            + (f"{_fmt(c.get('resumed'))} | " if resumed else "")
            + f"{_fmt(c.get('latency_vs_teacher'), '{:.2f}')} | {c['rtfx']:.1f} | "
            f"{'–' if same is None else f'{100 * same:.0f}%'} | "
            f"{_fmt(c.get('acceptance_rate'), '{:.2f}')} |"
        )
    if decoding:
        lines.append(f"\ndecoding: {decoding}")
    if worst:
        lines.append(
            f"\nw/o worst: without the {worst} clips or recordings on which that model made "
            "the most errors (named in the evaluation's results.md)"
        )
    lines.append(
        "vs teacher: the model's WER minus the teacher's in points, with a 95 % interval "
        "from resampling the clips (paired bootstrap; none under 10 clips): an interval "
        "across 0 is no measured difference"
    )
    lines.append(
        "loops: clips or recordings whose transcript says a phrase at least 4 more times in "
        "a row than the reference repeats any phrase, fillers included (the normaliser "
        'hides "um, um, um, …" from WER and the 5-gram count); hit token limit: those '
        "with a window decoded to the token limit without its end of text"
    )
    if noisy:
        lines.append("\nWER % by SNR (short clips):")
        for c in noisy:
            lines.append(
                f"  {c['dataset']:<10} {c['mode']:<12} SNR {c['snr_db']:>5} dB: {100 * c['wer']:.1f}"
            )
    if served:
        lines.append(
            f"\nServe: {served['url']} transcribed {Path(served['file']).name} in "
            f"{served['latency_s']:.2f} s: {served['transcript']!r} "
            f"(WER {100 * (served['wer'] or 0):.0f}%)"
        )
    return "\n".join(lines)


@dataclass(frozen=True)
class Stages:
    """The stage configs a demo-style recipe chains, loaded with its overrides."""

    label: list  # LabelConfig per labelling run
    init_student: object  # StudentInitConfig
    distill: object  # DistillConfig
    eval: object  # EvalConfig

    @classmethod
    def load(cls, cfg: DemoConfig) -> Stages:
        from distilray.distill.config import DistillConfig
        from distilray.evaluation.config import EvalConfig
        from distilray.labelling.config import LabelConfig
        from distilray.student.config import StudentInitConfig

        ov = cfg.overrides
        return cls(
            label=[
                load_config(LabelConfig, step)
                if isinstance(step, str)
                else load_config(LabelConfig, step.config, step.overrides)
                for step in cfg.label
            ],
            init_student=load_config(StudentInitConfig, cfg.init_student, ov.init_student),
            distill=load_config(DistillConfig, cfg.distill, ov.distill),
            eval=load_config(EvalConfig, cfg.eval, ov.eval),
        )


def prepare_data(cfg: DemoConfig) -> tuple[Path, Path]:
    """Synthesise the training and test speech and gather the real speech (idempotent)."""
    train_manifest, eval_manifest = synth(cfg.train_data), synth(cfg.eval_data)
    if cfg.real_data:
        gather_real(cfg.real_data)
    return train_manifest, eval_manifest


def label_all(stages: Stages) -> list[LabelRun]:
    """Run every labelling config (each resumes: labelled inputs are skipped)."""
    from distilray.labelling.pipeline import run_labelling

    return [run_labelling(label_cfg) for label_cfg in stages.label]


def evaluate(cfg: DemoConfig, stages: Stages):
    """The evaluation stage, and the untrained student's cells where the recipe asks for
    them (else none)."""
    from distilray.evaluation.run import run_evaluation

    evaluated = run_evaluation(stages.eval)
    if not cfg.untrained_baseline:
        return evaluated, []
    return evaluated, run_evaluation(_baseline_eval(stages.eval, stages.init_student.out)).cells


def run_demo(cfg: DemoConfig) -> dict:
    """Run every stage in order; print progress and the results table; return the results."""
    from distilray.distill.trainer import run_distillation
    from distilray.student.build import init_student

    stages = Stages.load(cfg)
    total, began_all = 7, time.perf_counter()

    t = _banner(1, total, "synthesise training and evaluation speech; gather real speech")
    train_manifest, eval_manifest = prepare_data(cfg)
    real = f" and real speech in {cfg.real_data.out}" if cfg.real_data else ""
    _done(t, f"{train_manifest}, {eval_manifest}{real}")

    t = _banner(2, total, f"pseudo-label with the teacher ({stages.label[0].teacher})")
    labelled = label_all(stages)
    rows = sum(result.summary.rows for result in labelled)
    _done(t, f"{rows} rows labelled into {', '.join(c.output for c in stages.label)}")

    t = _banner(
        3, total, f"initialise a {stages.init_student.decoder_layers}-layer-decoder student"
    )
    info = init_student(stages.init_student)
    _done(t, f"student at {info.out}: {info.describe()}")

    t = _banner(4, total, f"distil (λ = {stages.distill.data.wer_threshold})")
    outcome = run_distillation(stages.distill)
    _done(t, f"{outcome.steps} steps; validation WER {100 * outcome.eval_wer:.1f}%")

    also = " (and the untrained student)" if cfg.untrained_baseline else ""
    t = _banner(5, total, f"evaluate teacher, student and speculative decoding{also}")
    evaluated, baseline = evaluate(cfg, stages)
    _done(t, f"report in {stages.eval.output_dir}")

    t = _banner(6, total, "serve the teacher with the student as assistant, transcribe over HTTP")
    served = serve_check(outcome.student, eval_manifest, cfg.serve_port)
    _done(t, f"answered by {served['url']}")

    _banner(7, total, "results")
    rows = headline(evaluated.cells, baseline)
    noisy = [c for c in evaluated.cells if c["form"] == "short" and c["snr_db"] is not None]
    decoding = stages.eval.runtime.decoding()
    table = format_results(rows, noisy, served, decoding)
    print(table, flush=True)
    results = {
        "headline": rows,
        "noise": noisy,
        "serve": served,
        "labelling": {
            c.output: r.summary.as_dict() for c, r in zip(stages.label, labelled, strict=True)
        },
        "distill": {
            "steps": outcome.steps,
            "eval_wer": outcome.eval_wer,
            "student": outcome.student,
            "data": outcome.data.describe(stages.distill.data),
        },
        "decoding": decoding,
        "eval_report": evaluated.paths,
        "wall_s": time.perf_counter() - began_all,
    }
    Path(cfg.summary).parent.mkdir(parents=True, exist_ok=True)
    Path(cfg.summary).write_text(json.dumps(results, indent=2, default=str))
    print(f"\nall stages done in {results['wall_s'] / 60:.1f} min; results in {cfg.summary}")
    return results


def add_parser(subparsers) -> None:
    """``distilray demo --config configs/tiny/demo.yaml``."""
    from distilray.cli_common import add_config_arguments

    parser = subparsers.add_parser(
        "demo", help="run the whole pipeline end to end on the embedded teacher (CPU, minutes)"
    )
    add_config_arguments(parser, required=True)
    parser.set_defaults(func=_run)


def _run(args) -> int:
    run_demo(load_config(DemoConfig, args.config, args.overrides))
    return 0
