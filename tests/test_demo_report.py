"""The demo's closing results table, from evaluation cells (no pipeline run)."""

from __future__ import annotations

from distilray.demo import format_results, headline


def _cell(mode, form="short", snr=None, wer=0.2, latency=1.0, same=None, dataset="synth"):
    return {
        "dataset": dataset,
        "mode": mode,
        "form": form,
        "snr_db": snr,
        "wer": wer,
        "latency_vs_teacher": latency,
        "rtfx": 4.0,
        "identical_to_teacher": same,
        "repeated_5grams": 0,
        "unfinished": 1 if mode == "student" else 0,
        "loops": 2 if mode == "student" else 0,
        "acceptance_rate": 0.8 if mode == "speculative" else None,
    }


def test_headline_orders_clean_rows_per_dataset_and_adds_the_untrained_baseline():
    cells = [
        _cell("teacher", same=1.0),
        _cell("student", wer=0.3, latency=0.6, same=0.25),
        _cell("speculative", latency=1.3, same=1.0),
        _cell("teacher", snr=10.0, wer=0.4),
        _cell("teacher", form="chunked", same=1.0),
        _cell("teacher", dataset="real", wer=0.05),
        _cell("student", dataset="real", wer=0.07),
    ]
    baseline = [_cell("student", wer=1.2, latency=None), _cell("student", dataset="real")]
    rows = headline(cells, baseline)
    assert [(r["dataset"], r["mode"], r["form"]) for r in rows] == [
        ("synth", "teacher", "short"),
        ("synth", "student", "short"),
        ("synth", "speculative", "short"),
        ("synth", "student (untrained init)", "short"),
        ("synth", "teacher", "chunked"),
        ("real", "teacher", "short"),
        ("real", "student", "short"),
        ("real", "student (untrained init)", "short"),
    ]
    noisy = [c for c in cells if c["snr_db"] is not None]
    served = {
        "url": "http://127.0.0.1:8765",
        "file": "runs/demo/synth-test/clip.wav",
        "latency_s": 0.5,
        "transcript": "hello",
        "wer": 0.0,
    }
    table = format_results(rows, noisy, served)
    assert (
        "| synth | speculative | short | 20.0 | – | – | 0 | 0 | 0 | 1.30 | 4.0 | 100% | 0.80 |"
        in table
    )
    assert (
        "| synth | student (untrained init) | short | 120.0 | – | – | 0 | 2 | 1 | – | 4.0 | – | – |"
        in table
    )
    assert "w/o worst:" not in table  # the evaluation named none
    rows[1] |= {"wer_without_worst": 0.25, "worst": [{"id": "a", "errors": 9, "ref_words": 3}]}
    rows[1] |= {"wer_vs_teacher": 0.1, "wer_vs_teacher_low": -0.02, "wer_vs_teacher_high": 0.2}
    table = format_results(rows, noisy, served)
    assert (
        "| synth | student | short | 30.0 | +10.0 (-2.0, +20.0) | 25.0 | 0 | 2 | 1 | 0.60 |"
        in table
    )
    assert "an interval across 0 is no measured difference" in table
    rows[1] |= {"wer_vs_teacher_low": None, "wer_vs_teacher_high": None}  # under 10 clips
    assert "| synth | student | short | 30.0 | +10.0 (n < 10) | 25.0 |" in format_results(
        rows, noisy, served
    )
    assert "without the 1 clips or recordings on which that model made the most errors" in table
    assert "synth      teacher      SNR  10.0 dB: 40.0" in table
    assert "transcribed clip.wav in 0.50 s: 'hello'" in table
    assert "decoding:" not in table and "decoded on" not in table


def test_the_table_says_how_its_models_decoded():
    """A recipe that decodes on after early ends and falls back like Whisper says so, and
    counts the windows decoded on per cell; the paper's greedy decoding is named too."""
    from distilray.evaluation.config import RuntimeConfig

    rows = [_cell("teacher", same=1.0) | {"resumed": 1}, _cell("student") | {"resumed": 0}]
    served_as = RuntimeConfig(fallback={"temperatures": [0.2, 0.4, 1.0]}, resume_gap_s=2)
    table = format_results(rows, [], None, served_as.decoding())
    assert "| hit token limit | decoded on | relative latency |" in table
    assert "| synth | teacher | short | 20.0 | – | – | 0 | 0 | 0 | 1 | 1.00 | 4.0 | 100% |" in table
    assert "| synth | student | short | 20.0 | – | – | 0 | 2 | 1 | 0 | 1.00 | 4.0 | – |" in table
    assert (
        "\ndecoding: greedy, then Whisper's temperature fallback (0.2-1) and decoded on where "
        "the text ends more than 2 s before the sound, for every model alike\n"
    ) in table
    assert RuntimeConfig().decoding() == "greedy, as the paper evaluates"
    assert RuntimeConfig(fallback={"temperatures": []}).decoding() == (
        "greedy, as the paper evaluates"
    )


def test_the_untrained_baseline_is_evaluated_only_when_the_recipe_asks(monkeypatch):
    """It costs a minute of a 20-minute demo: off by default, on with
    `untrained_baseline=true`, and then it scores the init on clean short clips only."""
    from pathlib import Path

    from distilray import demo
    from distilray.config import load_config
    from distilray.evaluation import run as evaluation_run

    root = Path(__file__).resolve().parents[1]
    ran = []

    class Result:
        def __init__(self, cfg):
            self.cells = [{"mode": "student", "model": cfg.models.student}]

    def fake_run(cfg):
        ran.append(cfg)
        return Result(cfg)

    monkeypatch.setattr(evaluation_run, "run_evaluation", fake_run)
    cfg = load_config(demo.DemoConfig, root / "configs/tiny/demo.yaml")
    assert cfg.untrained_baseline is False
    stages = demo.Stages.load(cfg)
    evaluated, baseline = demo.evaluate(cfg, stages)
    assert baseline == [] and ran == [stages.eval]

    ran.clear()
    cfg = load_config(demo.DemoConfig, root / "configs/tiny/demo.yaml", ["untrained_baseline=true"])
    evaluated, baseline = demo.evaluate(cfg, stages)
    assert ran[0] is stages.eval
    init = ran[1]
    assert init.models.student == stages.init_student.out
    assert init.modes == ["student"] and init.forms == ["short"]
    assert init.noise.snr_db == [None] and all(d.snr_db is None for d in init.datasets)
    assert init.output_dir != stages.eval.output_dir
    assert baseline == [{"mode": "student", "model": stages.init_student.out}]
