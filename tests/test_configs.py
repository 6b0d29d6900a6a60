"""Every shipped config loads into its stage's model and names its own launch command."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from distilray.config import load_config

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = sorted((ROOT / "configs").rglob("*.yaml"))
# stage name as a launch command spells it (CLI sub-command or jobs/ script) → config model
STAGES = {
    "label": "distilray.labelling.config:LabelConfig",
    "init-student": "distilray.student:StudentInitConfig",
    "init_student": "distilray.student:StudentInitConfig",
    "distill": "distilray.distill.config:DistillConfig",
    "eval": "distilray.evaluation.config:EvalConfig",
    "evaluate": "distilray.evaluation.config:EvalConfig",
    "demo": "distilray.demo:DemoConfig",
}
LAUNCH = re.compile(
    r"^# (?:distilray (?P<cmd>[\w-]+)|.*python jobs/(?P<job>\w+)\.py) .*--config (?P<path>\S+)"
)


def _model(spec: str):
    import importlib

    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def test_both_config_sets_exist():
    assert {p.parent.name for p in CONFIGS} >= {"tiny", "large-v3"}
    tiny = {p.stem for p in CONFIGS if p.parent.name == "tiny"}
    large = {p.stem for p in CONFIGS if p.parent.name == "large-v3"}
    assert {"label", "init_student", "distill", "eval"} <= tiny & large


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads_and_names_its_launch_command(path):
    match = LAUNCH.match(path.read_text().splitlines()[0])
    assert match, f"{path}: first line must be '# <launch command> --config {path}'"
    assert match["path"] == str(path.relative_to(ROOT))
    stage = match["cmd"] or match["job"]
    cfg = load_config(_model(STAGES[stage]), path)
    assert cfg.model_dump()


def test_demo_chains_the_tiny_configs_consistently():
    from distilray.demo import DemoConfig
    from distilray.distill.config import DistillConfig
    from distilray.evaluation.config import EvalConfig
    from distilray.labelling.config import LabelConfig
    from distilray.student import StudentInitConfig

    demo = load_config(DemoConfig, ROOT / "configs/tiny/demo.yaml")
    synth, real, val = (load_config(LabelConfig, ROOT / path) for path in demo.label)
    init = load_config(StudentInitConfig, ROOT / demo.init_student)
    distill = load_config(DistillConfig, ROOT / demo.distill)
    evaluation = load_config(EvalConfig, ROOT / demo.eval)
    assert synth.input == f"{demo.train_data.out}/manifest.jsonl"
    assert real.input == f"{demo.real_data.out}/train/manifest.jsonl"
    assert val.input == f"{demo.real_data.out}/validation/manifest.jsonl"
    assert distill.data.train == [synth.output, real.output]
    assert distill.data.eval == val.output  # model selection on real, held-out speech
    assert distill.model.student == init.out
    assert evaluation.models.student == distill.run.export_to
    manifests = {d.name: d.manifest for d in evaluation.datasets}
    assert manifests == {
        "synth-test": f"{demo.eval_data.out}/manifest.jsonl",
        "real-test": f"{demo.real_data.out}/test/manifest.jsonl",
    }
    assert demo.train_data.split != demo.eval_data.split
    assert demo.train_data.voices == "split"  # the train speaker pool: no test speaker
