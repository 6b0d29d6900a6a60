"""The `distilray` command: every stage listed, user mistakes end in one error line."""

from __future__ import annotations

import pytest

from distilray.cli import build_parser, main

STAGES = [
    "data",
    "convert-teacher",
    "transcribe",
    "label",
    "init-student",
    "distill",
    "eval",
    "serve",
    "demo",
]


def test_help_lists_every_stage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    for stage in STAGES:
        assert stage in out


@pytest.mark.parametrize("stage", STAGES)
def test_each_stage_has_help(stage, capsys):
    parser = build_parser()
    with pytest.raises(SystemExit) as exc:
        parser.parse_args([stage, "--help"])
    assert exc.value.code == 0
    assert "usage:" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["label", "--config", "does/not/exist.yaml"], "config file not found"),
        (["distill", "--config", "configs/tiny/distill.yaml", "train.max_stepz=3"], "unknown key"),
        (["eval", "--config", "configs/tiny/eval.yaml", "modes=[oracle]"], "modes"),
        (["transcribe", "--model", "no/such/folder/", "x.wav"], "error"),
    ],
)
def test_user_mistakes_exit_2_without_traceback(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["label", "--config", "configs/tiny/label.yaml", "limit=5"], "limit: 5\n"),
        (["distill", "--config", "configs/tiny/distill.yaml", "train.max_steps=3"], "max_steps: 3"),
        (
            [
                "eval",
                "--out",
                "/tmp/elsewhere",
                "--config",
                "configs/tiny/eval.yaml",
                "datasets.0.limit=3",
            ],
            "output_dir: /tmp/elsewhere",
        ),
        (
            ["init-student", "--teacher", "tiny.en", "--out", "s", "--decoder-layers", "3"],
            "decoder_layers: 3",
        ),
        (["serve", "limits.max_audio_s=60"], "max_audio_s: 60"),
        (["demo", "--config", "configs/tiny/demo.yaml"], "train_data:"),
    ],
)
def test_print_config_shows_the_resolved_config_and_runs_nothing(argv, expected, capsys):
    import yaml

    assert main([*argv, "--print-config"]) == 0
    out = capsys.readouterr().out
    assert expected in out
    assert isinstance(yaml.safe_load(out), dict)


def test_print_config_still_reports_config_mistakes(capsys):
    argv = ["label", "--config", "configs/tiny/label.yaml", "limitt=5", "--print-config"]
    assert main(argv) == 2
    assert "limitt: unknown key" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["-v", "label", "--config", "c.yaml"],
        ["label", "-v", "--config", "c.yaml"],
        ["label", "--config", "c.yaml", "limit=3", "--verbose"],
        ["data", "synth", "--out", "x", "-v"],
    ],
)
def test_verbose_is_accepted_anywhere(argv):
    assert build_parser().parse_args(argv).verbose is True


def test_verbose_defaults_off_for_sub_commands():
    assert build_parser().parse_args(["label", "--config", "c.yaml"]).verbose is False


def _labelled(labelled: int):
    from distilray.labelling.pipeline import LabelRun
    from distilray.labelling.summary import LabelSummary

    run = {
        "inputs_labelled": 2,
        "rows_written": 2,
        "audio_s": 0.0,
        "elapsed_s": 1.0,
        "audio_s_per_s": 0.0,
        "errors": 2 - labelled,
        "inputs_skipped": 0,
    }
    summary = LabelSummary(
        rows=2,
        inputs=2,
        labelled=labelled,
        errors=2 - labelled,
        audio_hours=0.0,
        scored=0,
        wer_mean=None,
        wer_median=None,
        share_wer_above={},
        error_examples=[],
    )
    return LabelRun(run=run, summary=summary, manifest="out/_manifest.json")


@pytest.mark.parametrize(("labelled", "status"), [(0, 3), (1, 0)])
def test_label_exits_3_when_no_row_was_labelled(monkeypatch, capsys, labelled, status):
    import distilray.labelling.pipeline as pipeline

    monkeypatch.setattr(pipeline, "run_labelling", lambda cfg: _labelled(labelled))
    assert main(["label", "--config", "configs/tiny/label.yaml"]) == status
    err = capsys.readouterr().err
    assert ("error: no usable labels" in err) == (status == 3)


@pytest.mark.parametrize(("cells", "status"), [([], 3), ([{"wer": 0.1}], 0)])
def test_eval_exits_3_without_a_scored_cell(monkeypatch, capsys, cells, status):
    import distilray.evaluation.report as report
    import distilray.evaluation.run as run

    result = run.EvalRun(cells=cells, errors=[{"id": "a"}], paths={"json": "out/results.json"})
    monkeypatch.setattr(run, "run_evaluation", lambda cfg: result)
    monkeypatch.setattr(report, "markdown_table", lambda cells: "")
    assert main(["eval", "--config", "configs/tiny/eval.yaml"]) == status
    assert ("error: no scored cell" in capsys.readouterr().err) == (status == 3)
