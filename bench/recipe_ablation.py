"""What each ingredient of the distillation recipe does to the student on real speech.

Takes a demo-style recipe (``configs/tiny/demo.yaml`` or ``configs/tiny/quality.yaml``),
prepares its data and labels once (the recipe's own steps; reruns resume), then
distils one student per variant (the recipe's distill config plus the variant's
dotted overrides) and evaluates each on the recipe's test sets: the student alone,
short-form and chunked long-form, clean audio. The teacher is evaluated once on the
same clips. Prints a Markdown table and writes JSON.

    python bench/recipe_ablation.py --config configs/tiny/demo.yaml                # all variants
    python bench/recipe_ablation.py --config configs/tiny/demo.yaml --only recipe lambda-0.05

Variants whose labels the recipe does not produce (another synthetic set, another
packing) take their labelling configs from ``LABEL_VARIANTS`` and are labelled once.
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

logger = logging.getLogger("bench.recipe_ablation")

# the repetition term on rollouts: what replaces the demo's loops made from the labels
ROLLOUTS = ["loss.repetition_source=rollout", "loss.repetition_loops_at=anywhere"]


def rollout_repetition(rows: str, pick: str) -> list[str]:
    """The repetition term on the student's own greedy transcripts of ``rows`` rows
    (``null``: all) of every 2nd batch, the ``pick`` ones (first or shortest)."""
    return [
        "loss.repetition_weight=1.0",
        "loss.on_policy_every=2",
        f"loss.on_policy_rows={rows}",
        f"loss.on_policy_pick={pick}",
        *ROLLOUTS,
    ]


# the repetition term on loops made from the labels of the 4 shortest rows of every batch
SYNTHETIC_LOOPS = [
    "loss.repetition_weight=1.0",
    "loss.repetition_source=synthetic",
    "loss.on_policy_every=1",
    "loss.on_policy_rows=4",
    "loss.on_policy_pick=shortest",
]
# name -> (what it changes, distill overrides). `{train_synth}` / `{train_real}` are the
# recipe's two training label folders.
# the recipe's training labels plus Beneath a Steel Sky's lines (`data real
# --steel-sky-clips all`), labelled with the recipe's real-speech config
STEEL_SKY = "data.train=[{train_synth},{train_real},{train_steel_sky}]"
# the same three label folders with the `speech_end_s` column that `distilray label` now
# writes (labels made before it: the column computed from their stored audio, into
# sibling folders named `<folder>-t`), and unscored rows whose label stops more than
# 1 s before the sound dropped
LABEL_ENDS = [
    "data.train=[{train_synth}-t,{train_real}-t,{train_steel_sky}-t]",
    "data.max_speech_after_label_s=1.0",
]

VARIANTS: dict[str, tuple[str, list[str]]] = {
    "recipe": ("the recipe as configured", []),
    "no-repetition": (
        "without the repetition term (the demo recipe of rows 32-51)",
        ["loss.repetition_weight=0", *ROLLOUTS],
    ),
    "seed-1": (
        "the recipe with another training seed (the shuffle order, which labels keep "
        "their timestamps, augmentation draws): the spread of a single run",
        ["train.seed=1"],
    ),
    "seed-2": ("the recipe with a third training seed", ["train.seed=2"]),
    "seed-3-as-trained": (
        "the recipe with a fourth training seed, exported as trained (no blend back toward "
        "the initial student: bench/blend_eval.py blends it)",
        ["train.seed=3", "run.export_init_share=0"],
    ),
    "steel-sky": (
        "+ Beneath a Steel Sky's 3,650 voice lines as more real unlabelled speech (another "
        "cast; `data real --steel-sky-clips all`, labelled into labels-steelsky)",
        [STEEL_SKY],
    ),
    "steel-sky-ends": (
        "+ Beneath a Steel Sky's voice lines, without the labels that stop before the "
        "sound does (`data.max_speech_after_label_s=1`)",
        LABEL_ENDS,
    ),
    "steel-sky-ends-seed-3": (
        "+ Beneath a Steel Sky's voice lines, without the labels that stop before the "
        "sound does, training seed 3",
        [*LABEL_ENDS, "train.seed=3"],
    ),
    "steel-sky-ends-seed-2": (
        "+ Beneath a Steel Sky's voice lines, without the labels that stop before the "
        "sound does, training seed 2",
        [*LABEL_ENDS, "train.seed=2"],
    ),
    "steel-sky-ends-seed-1": (
        "+ Beneath a Steel Sky's voice lines, without the labels that stop before the "
        "sound does, training seed 1",
        [*LABEL_ENDS, "train.seed=1"],
    ),
    "steel-sky-seed-1": (
        "+ Beneath a Steel Sky's voice lines, training seed 1",
        [STEEL_SKY, "train.seed=1"],
    ),
    "steel-sky-seed-2": (
        "+ Beneath a Steel Sky's voice lines, training seed 2",
        [STEEL_SKY, "train.seed=2"],
    ),
    "steel-sky-seed-3": (
        "+ Beneath a Steel Sky's voice lines, training seed 3",
        [STEEL_SKY, "train.seed=3"],
    ),
    "steel-sky-packed": (
        "+ Beneath a Steel Sky's voice lines, every one inside a packed window (labelled "
        "with pack_fraction=1.0 into labels-steelsky-packed)",
        ["data.train=[{train_synth},{train_real},{train_steel_sky_packed}]"],
    ),
    "slips": (
        "+ the teacher's KL on labels with slips (loss.deviation_weight=1: 4 rows of every "
        "batch with 5 % of their label tokens replaced, scored from the first slip on)",
        ["loss.deviation_weight=1.0"],
    ),
    "slips-seed-2": (
        "+ the teacher's KL on labels with slips, training seed 2 (its student lost "
        "`pyannote-sample` without them: README ablation rows 108-109)",
        ["loss.deviation_weight=1.0", "train.seed=2"],
    ),
    "slips-seed-3": (
        "+ the teacher's KL on labels with slips, training seed 3 (README ablation rows "
        "112-113 without them)",
        ["loss.deviation_weight=1.0", "train.seed=3"],
    ),
    "no-average": (
        "the last step's weights instead of the running average (train.average off)",
        ["train.average.decay=null"],
    ),
    "no-real-audio": ("synthetic speech only", ["data.train=[{train_synth}]"]),
    "real-audio-only": ("real unlabelled speech only", ["data.train=[{train_real}]"]),
    "no-frozen-embeddings": (
        "token embeddings train too",
        ["model.freeze_embed_tokens=false"],
    ),
    "no-timestamps": ("no timestamped labels", ["train.timestamp_probability=0"]),
    "timestamps-0.5": (
        "half the labels timestamped (the paper)",
        ["train.timestamp_probability=0.5"],
    ),
    "local-shuffle": ("a 256-row shuffle buffer, not a global shuffle", ["train.shuffle=local"]),
    "lambda-0.05": ("λ = 0.05", ["data.wer_threshold=0.05"]),
    "lambda-0.2": ("λ = 0.2", ["data.wer_threshold=0.2"]),
    "no-filter": ("no WER filter", ["data.wer_threshold=null"]),
    "double-steps": ("twice the steps", ["train.max_steps={steps2}"]),
    "lr-1e-4": ("learning rate 1e-4", ["optim.learning_rate=1e-4"]),
    "kl-only": ("KL term only (no pseudo-label CE)", ["loss.pl_weight=0"]),
    "kl-x2": (
        "twice the KL weight (1.6): closer to the teacher's whole distribution",
        ["loss.kl_weight=1.6"],
    ),
    **{
        f"anchor-{d}": (
            f"decay toward the student's initial (teacher-copied) weights, L2-SP "
            f"(optim.anchor_decay={d})",
            [f"optim.anchor_decay={d}"],
        )
        for d in (10, 30, 100)
    },
    **{
        f"anchor-{d}-seed-1": (
            f"decay toward the initial weights (optim.anchor_decay={d}), another training seed",
            [f"optim.anchor_decay={d}", "train.seed=1"],
        )
        for d in (10, 30)
    },
    "hidden-1": ("+ hidden-state alignment (weight 1)", ["loss.hidden_weight=1.0"]),
    "hidden-4": ("+ hidden-state alignment (weight 4)", ["loss.hidden_weight=4.0"]),
    "dropout-0.1": ("decoder dropout 0.1 while training", ["model.decoder_dropout=0.1"]),
    "no-dropout": ("no decoder dropout", ["model.decoder_dropout=0"]),
    "on-policy": (
        "on-policy KL on the student's own greedy transcripts (weight 1, every 2nd step) "
        "instead of the recipe's repetition term",
        [
            "loss.on_policy_weight=1.0",
            "loss.on_policy_every=2",
            "loss.repetition_weight=0",
            "loss.on_policy_rows=null",
            "loss.on_policy_pick=first",
            *ROLLOUTS,
        ],
    ),
    "repetition": (
        "the repetition term on the student's own greedy transcripts (every row, every "
        "2nd step) instead of loops made from the labels",
        rollout_repetition("null", "first"),
    ),
    "repetition-light": (
        "the repetition term on the student's own greedy transcripts of 2 rows of every "
        "2nd batch instead of loops made from the labels",
        rollout_repetition("2", "first"),
    ),
    "repetition-short": (
        "the repetition term on the student's own greedy transcripts of the 2 rows with "
        "the shortest labels of every 2nd batch (the quality recipe's until ablation row 58)",
        rollout_repetition("2", "shortest"),
    ),
    "repetition-synthetic": (
        "+ the repetition term on loops made from the labels of the 4 rows with the "
        "shortest labels of every batch (no rollout)",
        [*SYNTHETIC_LOOPS, "loss.repetition_loops_at=anywhere"],
    ),
    "repetition-synthetic-end": (
        "+ the repetition term on loops made from the labels, all starting where the label ends",
        [*SYNTHETIC_LOOPS, "loss.repetition_loops_at=end"],
    ),
    "repetition-synthetic-seed-1": (
        "loops made from the labels anywhere in them, with another training seed",
        [*SYNTHETIC_LOOPS, "loss.repetition_loops_at=anywhere", "train.seed=1"],
    ),
    "frozen-cross-kv": (
        "the student's cross-attention keys and values frozen, read from the teacher's pass",
        ["model.freeze_cross_attention_kv=true"],
    ),
    "frozen-cross-kv-seed-1": (
        "the student's cross-attention keys and values frozen, with another training seed",
        ["model.freeze_cross_attention_kv=true", "train.seed=1"],
    ),
    "attention-1": (
        "+ cross-attention alignment to the copied teacher layers (weight 1)",
        ["loss.attention_weight=1.0"],
    ),
    "augment-0.5": (
        "+ consistent augmentation of half the rows (mel warp ±10 %, 2 band and 2 time masks)",
        ["train.augment.probability=0.5"],
    ),
    "augment-0.5-double-steps": (
        "+ consistent augmentation of half the rows, twice the steps",
        ["train.augment.probability=0.5", "train.max_steps={steps2}"],
    ),
    "decoder-2": ("a 2-layer decoder (teacher layers 0, 3: the product's rule)", []),
    "decoder-3": ("a 3-layer decoder (teacher layers 0, 1, 3)", []),
    "decoder-4": ("all 4 decoder layers: the teacher distilled into its own copy", []),
    "layers-0-1": ("2 decoder layers, the teacher's first two (0, 1)", []),
    "layers-0-2": ("2 decoder layers, the teacher's 0 and 2", []),
    "layers-0-2-3": ("3 decoder layers, the teacher's 0, 2 and 3 (not 0, 1, 3)", []),
    "shrink-3-to-2": (
        "2 decoder layers taken from the distilled 3-layer student (its first and last), "
        "distilled again from tiny.en",
        [],
    ),
    "assistant-3": (
        "2 decoder layers (teacher 0, 3) distilled from the distilled 3-layer student "
        "(a teacher assistant) instead of tiny.en",
        [],
    ),
    "shrink-3-to-2-assistant": (
        "2 decoder layers taken from the distilled 3-layer student, distilled from it",
        [],
    ),
}
# variants with their own student: name -> how many decoder layers (maximally spaced),
# or which teacher decoder layers, the student copies
INIT_VARIANTS: dict[str, int | list[int]] = {
    "decoder-2": 2,
    "decoder-3": 3,
    "decoder-4": 4,
    "layers-0-1": [0, 1],
    "layers-0-2": [0, 2],
    "layers-0-2-3": [0, 2, 3],
}
# variants built on another variant's distilled student (run first when it is missing):
# name -> (that variant, shrink it to 2 layers, use it as the distillation teacher)
STAGED_VARIANTS: dict[str, tuple[str, bool, bool]] = {
    "shrink-3-to-2": ("decoder-3", True, False),
    "assistant-3": ("decoder-3", False, True),
    "shrink-3-to-2-assistant": ("decoder-3", True, True),
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="configs/tiny/demo.yaml", help="demo-style recipe")
    parser.add_argument("--only", nargs="*", help=f"variants to run (of: {', '.join(VARIANTS)})")
    parser.add_argument("--workdir", default=None, help="default: next to the recipe's labels")
    parser.add_argument("--out", default=None, help="JSON results (default: WORKDIR/ablation.json)")
    parser.add_argument("--skip-prepare", action="store_true", help="labels exist already")
    return parser.parse_args(argv)


def variant_overrides(name: str, stages, workdir: Path) -> list[str]:
    """The distill overrides of one variant: its own run, export folder and changes."""
    train = stages.distill.data.train
    train = [train] if isinstance(train, str) else list(train)
    fields = {
        "train_synth": train[0],
        "train_real": train[-1],
        # labels of `data real --steel-sky-clips all`'s Beneath a Steel Sky lines, labelled
        # with the recipe's real-speech labelling config into this sibling folder
        "train_steel_sky": str(Path(train[-1]).with_name("labels-steelsky")),
        "train_steel_sky_packed": str(Path(train[-1]).with_name("labels-steelsky-packed")),
        "steps2": 2 * stages.distill.train.max_steps,
    }
    changes = [o.format(**fields) for o in VARIANTS[name][1]]
    return [
        f"run.name=ablation-{name}",
        f"run.storage={workdir / 'train'}",
        f"run.export_to={workdir / 'students' / name}",
        # every variant encodes the same rows: the first one pays for the encoder (none
        # does when the recipe's labelling already left the outputs in its own folder)
        f"train.encoder_cache_dir={stages.distill.train.encoder_cache_dir or workdir / 'encoder-cache'}",
        *changes,
    ]


def eval_config(stages, student: str | None, modes: list[str], out: Path):
    """The recipe's eval config cut to clean audio, short + chunked, the given modes."""
    cfg = stages.eval.model_copy(deep=True)
    cfg.models.student = student
    cfg.modes = modes
    cfg.forms = ["short", "chunked"]
    cfg.noise.snr_db = [None]
    for dataset in cfg.datasets:
        dataset.snr_db = None
    cfg.output_dir = str(out)
    return cfg


def summarize_cells(cells: list[dict]) -> dict[str, dict]:
    """``dataset/form`` -> WER, insertion rate and repeated 5-grams of one model."""
    return {
        f"{c['dataset']}/{c['form']}": {
            "wer": c["wer"],
            "wer_without_worst": c.get("wer_without_worst"),
            "worst": [w["id"] for w in c.get("worst") or []],
            "insertion_rate": c["insertion_rate"],
            "repeated_5grams": c["repeated_5grams"],
            "repeated_5grams_corpus": c.get("repeated_5grams_corpus"),
            "unfinished": c.get("unfinished"),
            "loops": c.get("loops"),
        }
        for c in cells
    }


def teacher_cells(stages, out: Path) -> list[dict]:
    """The teacher's cells on the recipe's test sets (evaluated once per workdir)."""
    from distilray.evaluation.run import run_evaluation

    saved = out / "results.json"
    if saved.is_file():
        return json.loads(saved.read_text())["cells"]
    return run_evaluation(eval_config(stages, None, ["teacher"], out)).cells


def variant_student(name: str, stages, workdir: Path) -> list[str]:
    """A variant with its own student (``INIT_VARIANTS``): initialise it, point to it."""
    from distilray.student import init_student

    if name not in INIT_VARIANTS:
        return []
    layers = INIT_VARIANTS[name]
    explicit = isinstance(layers, list)
    cfg = stages.init_student.model_copy(
        update={
            "decoder_layers": len(layers) if explicit else layers,
            "decoder_layer_ids": layers if explicit else None,
            "out": str(workdir / "students-init" / name),
        }
    )
    init_student(cfg)
    return [f"model.student={cfg.out}"]


def staged_student(name: str, recipe, stages, workdir: Path) -> list[str]:
    """A ``STAGED_VARIANTS`` student: shrunk from and/or taught by a distilled student."""
    from distilray.student import init_student

    if name not in STAGED_VARIANTS:
        return []
    base, shrink, assistant = STAGED_VARIANTS[name]
    source = workdir / "students" / base
    if not (source / "config.json").is_file():
        logger.info("%s needs the %s student first", name, base)
        run_variant(base, recipe, stages, workdir)
    out = workdir / "students-init" / name
    update = {"decoder_layers": 2, "out": str(out)}
    if shrink:
        update["teacher"] = str(source)
    init_student(stages.init_student.model_copy(update=update))
    # the layer alignment terms pair each student layer with a layer of the distillation
    # teacher: tiny.en's layers when tiny.en teaches a shrunk student, the source's own
    # when the source teaches a student built from tiny.en (otherwise already right)
    if shrink != assistant:
        chain = json.loads((source / "config.json").read_text())["teacher_layer_ids"]
        config_file = out / "config.json"
        config = json.loads(config_file.read_text())
        ids = config["teacher_layer_ids"]
        config["teacher_layer_ids"] = (
            [chain[i] for i in ids] if shrink else [chain.index(i) for i in ids]
        )
        config_file.write_text(json.dumps(config, indent=2) + "\n")
    teacher = [f"model.teacher={source}"] if assistant else []
    return [*teacher, f"model.student={out}"]


def run_variant(name: str, recipe, stages, workdir: Path) -> dict:
    from distilray.config import load_config
    from distilray.distill.config import DistillConfig
    from distilray.distill.trainer import run_distillation
    from distilray.evaluation.run import run_evaluation

    began = time.perf_counter()
    overrides = [
        *recipe.overrides.distill,
        *variant_overrides(name, stages, workdir),
        *variant_student(name, stages, workdir),
        *staged_student(name, recipe, stages, workdir),
    ]
    outcome = run_distillation(load_config(DistillConfig, recipe.distill, overrides))
    cells = run_evaluation(
        eval_config(stages, outcome.student, ["student"], workdir / "eval" / name)
    ).cells
    return {
        "variant": name,
        "changes": VARIANTS[name][0],
        "validation_wer": outcome.eval_wer,
        "kept_rows": outcome.data.kept,
        "exported_step": outcome.exported_step,
        "results": summarize_cells(cells),
        "wall_s": round(time.perf_counter() - began, 1),
    }


def markdown(teacher: dict, rows: list[dict]) -> str:
    keys = list(teacher)
    head = "| variant | changes | " + " | ".join(f"{k} WER % (w/o worst)" for k in keys)
    head += " | 5-gram repeats | loops | hit token limit | validation WER % |"
    lines = [head, "|" + "---|" * (len(keys) + 6)]

    def cell(result: dict) -> str:
        if result.get("wer") is None:
            return "–"
        trimmed = result.get("wer_without_worst")
        return f"{100 * result['wer']:.1f}" + ("" if trimmed is None else f" ({100 * trimmed:.1f})")

    def cells(results: dict) -> str:
        return " | ".join(cell(results.get(k, {})) for k in keys)

    def counted(results: dict, key: str) -> str:
        """A count summed over the cells (– where results predate it)."""
        values = [v.get(key) for v in results.values() if v.get(key) is not None]
        return str(sum(values)) if values else "–"

    def loops(results: dict) -> str:
        """Repeated 5-grams, looping transcripts and clips decoded to the token limit."""
        repeats = sum(v["repeated_5grams"] for v in results.values())
        return f"{repeats} | {counted(results, 'loops')} | {counted(results, 'unfinished')}"

    lines.append(f"| teacher | tiny.en | {cells(teacher)} | {loops(teacher)} | – |")
    for row in rows:
        lines.append(
            f"| {row['variant']} | {row['changes']} | {cells(row['results'])} | "
            f"{loops(row['results'])} | {100 * row['validation_wer']:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    from distilray.config import load_config
    from distilray.demo import DemoConfig, Stages, label_all, prepare_data
    from distilray.student import init_student

    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    args = parse_args(argv)
    recipe = load_config(DemoConfig, args.config)
    stages = Stages.load(recipe)
    workdir = Path(args.workdir or Path(stages.distill.run.storage).parent / "ablation")
    names = args.only or list(VARIANTS)
    unknown = [n for n in names if n not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variant(s) {unknown}: choose from {', '.join(VARIANTS)}")
    if not args.skip_prepare:
        prepare_data(recipe)
        label_all(stages)
    init_student(stages.init_student)
    teacher = summarize_cells(teacher_cells(stages, workdir / "eval/teacher"))
    out = Path(args.out or workdir / "ablation.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in names:
        rows.append(run_variant(name, recipe, stages, workdir))
        out.write_text(json.dumps({"teacher": teacher, "variants": rows}, indent=2))
        print(markdown(teacher, rows), flush=True)
    print(f"\nresults in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
