"""serve_config.yaml: strict keys, resolvable import path, args and deployment names.

``ServeDeploySchema.model_validate`` alone accepts misspelt keys, so these tests
also plant typos and check that :func:`check_serve_config` rejects each of them.
"""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml
from ray.serve.schema import ServeDeploySchema

from distilray.errors import ConfigError
from distilray.serving.config import ServeArgs
from distilray.serving.deploy_config import (
    build_application,
    built_deployments,
    check_serve_config,
    unknown_keys,
)

CONFIG = Path(__file__).resolve().parents[1] / "serve_config.yaml"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load(CONFIG.read_text())


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_header_names_launch_command():
    assert CONFIG.read_text().startswith("# Launch")
    assert "serve deploy serve_config.yaml" in CONFIG.read_text().splitlines()[0]


def test_config_is_valid_and_strict(raw):
    assert unknown_keys(ServeDeploySchema, raw) == []
    config = check_serve_config(CONFIG)
    assert [a.name for a in config.applications] == ["distilray"]


def test_args_validate_against_serve_args(raw):
    args = ServeArgs.model_validate(raw["applications"][0]["args"])
    assert args.batching.max_batch_size >= 2  # dynamic batching is on
    assert args.api_key_env == "DISTILRAY_API_KEY"


def test_deployment_names_match_built_app(raw):
    app_cfg = raw["applications"][0]
    app = build_application(app_cfg["import_path"], app_cfg["args"])
    built = built_deployments(app, app_cfg["name"])
    assert {d["name"] for d in app_cfg["deployments"]} == set(built)


def test_resources_autoscaling_and_threads(raw):
    app_cfg = raw["applications"][0]
    deployments = {d["name"]: d for d in app_cfg["deployments"]}
    model = deployments["WhisperModel"]
    assert model["ray_actor_options"]["num_gpus"] >= 1
    scaling = model["autoscaling_config"]
    assert 1 <= scaling["min_replicas"] <= scaling["max_replicas"]
    assert scaling["target_ongoing_requests"] > 0
    assert "num_replicas" not in model  # Serve rejects it together with autoscaling
    assert model["max_ongoing_requests"] >= app_cfg["args"]["batching"]["max_batch_size"]
    # torch would otherwise run 1 thread on a replica (fractional CPUs) or guess.
    assert app_cfg["args"]["torch_threads"] == model["ray_actor_options"]["num_cpus"]


@pytest.mark.parametrize(
    ("mutate", "needle"),
    [
        (lambda c: c["http_options"].update(prot=8000), "http_options.prot"),
        (lambda c: c["applications"][0].update(import_pth="x"), "import_pth"),
        (lambda c: c["applications"][0]["deployments"][1].update(num_replica=2), "num_replica"),
        (
            lambda c: c["applications"][0]["deployments"][1]["ray_actor_options"].update(num_gpu=1),
            "ray_actor_options.num_gpu",
        ),
        (
            lambda c: c["applications"][0]["deployments"][1]["autoscaling_config"].update(
                max_replica=3
            ),
            "autoscaling_config.max_replica",
        ),
        (lambda c: c["applications"][0]["args"].update(teachr="tiny.en"), "teachr"),
        (
            lambda c: c["applications"][0]["args"]["limits"].update(max_upload=1),
            "limits.max_upload",
        ),
        (
            lambda c: c["applications"][0]["deployments"][0].update(name="Ingres"),
            "no deployment 'Ingres'",
        ),
        (
            lambda c: c["applications"][0].update(import_path="distilray.serving.app:nope"),
            "does not resolve",
        ),
        (
            lambda c: c["applications"][0]["deployments"][1]["autoscaling_config"].update(
                min_replicas=-1
            ),
            "min_replicas",
        ),
        (
            lambda c: c["applications"][0]["deployments"][1].update(max_ongoing_requests=2),
            "batches could never fill",
        ),
    ],
)
def test_typos_and_mismatches_are_rejected(raw, tmp_path, mutate, needle):
    bad = copy.deepcopy(raw)
    mutate(bad)
    with pytest.raises(ConfigError, match=None) as info:
        check_serve_config(_write(tmp_path, bad))
    assert needle in str(info.value)


def test_fallback_ladder_is_on_by_default_and_checked():
    from pydantic import ValidationError

    rule = ServeArgs(teacher="tiny.en").fallback.rule()
    assert rule.temperatures == (0.2, 0.4, 0.6, 0.8, 1.0)
    assert rule.compression_ratio_threshold == 2.4 and rule.logprob_threshold == -1.0
    assert ServeArgs(teacher="tiny.en", fallback={"temperatures": []}).fallback.rule() is None
    with pytest.raises(ValidationError, match=r"each temperature must be in \(0, 1\]"):
        ServeArgs(teacher="tiny.en", fallback={"temperatures": [0.0, 0.5]})


def test_replica_transcriber_gets_the_configured_fallback(tiny_random):
    from distilray.inference.decoder import Fallback
    from distilray.serving.model import load_transcriber

    on = load_transcriber(ServeArgs(teacher=str(tiny_random), device="cpu"))
    assert on.fallback == Fallback()
    off = ServeArgs(teacher=str(tiny_random), device="cpu", fallback={"temperatures": []})
    assert load_transcriber(off).fallback is None


def test_replica_transcriber_gets_the_configured_resume_rule(tiny_random):
    from pydantic import ValidationError

    from distilray.inference.resume import ResumeRule
    from distilray.serving.model import load_transcriber

    assert load_transcriber(ServeArgs(teacher=str(tiny_random), device="cpu")).resume is None
    args = ServeArgs(teacher=str(tiny_random), device="cpu", resume_gap_s=1.5)
    assert load_transcriber(args).resume == ResumeRule(gap_s=1.5)
    with pytest.raises(ValidationError, match="resume_gap_s"):
        ServeArgs(teacher="tiny.en", resume_gap_s=-1)
