"""bench/recipe_ablation.py: its variants and results table (no training here)."""

from __future__ import annotations

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def ablation():
    with bench_module("recipe_ablation.py") as module:
        yield module


def _cells(mode, wer, loops, unfinished=0):
    return [
        {
            "dataset": "real-test",
            "form": form,
            "mode": mode,
            "wer": wer,
            "wer_without_worst": None,
            "worst": [],
            "insertion_rate": 0.01,
            "repeated_5grams": 3,
            "repeated_5grams_corpus": 3,
            "unfinished": unfinished,
            "loops": loops,
        }
        for form in ("short", "chunked")
    ]


def test_table_sums_loops_and_token_limit_hits_over_the_cells(ablation):
    teacher = ablation.summarize_cells(_cells("teacher", 0.2, loops=0))
    row = {
        "variant": "repetition",
        "changes": ablation.VARIANTS["repetition"][0],
        "validation_wer": 0.1,
        "results": ablation.summarize_cells(_cells("student", 0.25, loops=1, unfinished=1)),
    }
    old = {**row, "variant": "old", "results": {k: {**v} for k, v in row["results"].items()}}
    for cell in old["results"].values():  # results written before loops were counted
        del cell["loops"]
    lines = ablation.markdown(teacher, [row, old]).splitlines()
    assert lines[0].endswith("| 5-gram repeats | loops | hit token limit | validation WER % |")
    assert len(lines[1].split("|")) == len(lines[0].split("|"))
    assert lines[2] == "| teacher | tiny.en | 20.0 | 20.0 | 6 | 0 | 0 | – |"
    assert lines[3].endswith("| 25.0 | 25.0 | 6 | 2 | 2 | 10.0 |")
    assert lines[4].endswith("| 25.0 | 25.0 | 6 | – | 2 | 10.0 |")


def test_repetition_variant_turns_on_the_unlikelihood_term_with_rollouts(ablation):
    from distilray.config import load_config
    from distilray.distill.config import DistillConfig

    def loss(variant):
        changes = ablation.VARIANTS[variant][1]
        return load_config(DistillConfig, "configs/tiny/distill.yaml", changes).loss

    assert loss("repetition").repetition_weight > 0 and loss("repetition").on_policy_weight == 0
    assert loss("repetition").on_policy_rows is None  # every row, whatever the recipe says
    assert loss("repetition-light").on_policy_rows == 2
    assert loss("repetition-light").on_policy_pick == "first"
    assert loss("repetition-short").on_policy_pick == "shortest"
    assert loss("repetition-short").on_policy_rows == 2
    synthetic = loss("repetition-synthetic")
    assert synthetic.repetition_source == "synthetic" and synthetic.on_policy_every == 1
    assert loss("repetition-short").repetition_source == "rollout"
    seeded = load_config(DistillConfig, "configs/tiny/distill.yaml", ablation.VARIANTS["seed-1"][1])
    assert seeded.train.seed == 1 and seeded.loss == loss("recipe")
    at_end = loss("repetition-synthetic-end")
    assert at_end.repetition_source == "synthetic" and at_end.repetition_loops_at == "end"
    assert synthetic.repetition_loops_at == "anywhere"
    assert loss("no-repetition").repetition_weight == 0


def test_every_variant_is_a_valid_change_of_the_demo_recipe(ablation):
    """The recipe's own settings (its repetition term included) never make a variant's
    change invalid: each one loads on top of the demo's distill config."""
    from distilray.config import load_config
    from distilray.distill.config import DistillConfig

    fields = {
        "train_synth": "a",
        "train_real": "b",
        "train_steel_sky": "c",
        "train_steel_sky_packed": "d",
        "steps2": 520,
    }
    for name, (_, changes) in ablation.VARIANTS.items():
        config = load_config(
            DistillConfig, "configs/tiny/distill.yaml", [c.format(**fields) for c in changes]
        )
        assert config.run.name, name
