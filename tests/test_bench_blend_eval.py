"""bench/blend_eval.py: which blends a command line asks for."""

from __future__ import annotations

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def blend_eval():
    with bench_module("blend_eval.py") as module:
        yield module


def test_shares_and_soup_become_weighted_model_lists(blend_eval):
    args = blend_eval.parse_args(
        [
            "--student",
            "s",
            "--initial",
            "i",
            "--shares",
            "0",
            "0.15",
            "--soup",
            "a",
            "b",
            "--out",
            "o",
        ]
    )
    assert blend_eval.plans(args) == {
        "share-0": [("s", 1.0)],  # the student as it is: the same run's baseline
        "share-0.15": [("s", 0.85), ("i", 0.15)],
        "soup": [("a", 1.0), ("b", 1.0)],
    }


@pytest.mark.parametrize(
    "argv",
    [["--out", "o"], ["--student", "s", "--out", "o"], ["--soup", "a", "--out", "o"]],
)
def test_incomplete_requests_are_refused(blend_eval, argv, capsys):
    with pytest.raises(SystemExit) as exc:
        blend_eval.parse_args(argv)
    assert exc.value.code == 2 and "error:" in capsys.readouterr().err


def test_a_share_of_one_is_refused(blend_eval):
    args = blend_eval.parse_args(
        ["--student", "s", "--initial", "i", "--shares", "1", "--out", "o"]
    )
    with pytest.raises(SystemExit, match=r"\[0, 1\)"):
        blend_eval.plans(args)
