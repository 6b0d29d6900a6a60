"""The `distilray` command: every stage listed, user mistakes end in one error line."""

from __future__ import annotations

import pytest

from distilray.cli import build_parser, main

STAGES = ["data", "convert-teacher", "transcribe", "label", "init-student", "distill", "eval", "serve", "demo"]


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
