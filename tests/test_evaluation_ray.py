"""``distilray eval`` end to end on the local Ray: 3 clips (one corrupt), 3 modes, 2 SNRs."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.ray, pytest.mark.slow]


@pytest.fixture(scope="module")
def eval_manifest(synth_clips, tmp_path_factory):
    """Three good clips from the synthetic set plus one file that is not audio."""
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()][:3]
    out = tmp_path_factory.mktemp("eval_data")
    bad = out / "broken.wav"
    bad.write_bytes(b"RIFF but not really")
    lines = [
        {"id": r["id"], "audio": str(synth_clips.parent / r["audio"]), "text": r["text"]}
        for r in rows
    ]
    lines.append({"id": "broken", "audio": str(bad), "text": "nothing"})
    manifest = out / "manifest.jsonl"
    manifest.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return manifest


@pytest.fixture(scope="module")
def student_dir(tiny_en, tmp_path_factory):
    from distilray.models import load_whisper
    from distilray.student import build_student

    teacher, processor = load_whisper(tiny_en)
    out = tmp_path_factory.mktemp("student")
    build_student(teacher, [0, 3]).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def test_eval_command_writes_json_markdown_and_plots(
    ray_local, tiny_en, student_dir, eval_manifest, tmp_path, capsys, caplog
):
    from distilray.cli import main

    config = tmp_path / "eval.yaml"
    config.write_text(
        f"""
models: {{teacher: {tiny_en}, student: {student_dir}}}
datasets: [{{name: synth, manifest: {eval_manifest}}}]
modes: [teacher, student, speculative]
forms: [short]
noise: {{snr_db: [null, 5], seed: 0}}
runtime: {{num_actors: 1, rows_per_batch: 4, batch_size: 4, max_new_tokens: 64}}
output_dir: {tmp_path / "out"}
"""
    )
    with caplog.at_level("INFO", logger="distilray.evaluation.run"):
        assert main(["eval", "--config", str(config)]) == 0
    printed = capsys.readouterr().out
    assert "| synth | speculative | short | clean | 3 |" in printed
    assert "evaluated 4 recordings in" in caplog.text  # 3 clips and the broken one

    result = json.loads((tmp_path / "out" / "results.json").read_text())
    cells = {(c["mode"], c["snr_db"]): c for c in result["cells"]}
    assert set(cells) == {
        (m, s) for m in ("teacher", "student", "speculative") for s in (None, 5.0)
    }
    clean = cells[("teacher", None)]
    assert clean["utterances"] == 3 and clean["wer"] < 0.4
    assert clean["latency_vs_teacher"] == 1.0 and clean["rtfx"] > 0
    # speculative decoding returns the teacher's words, so the same WER
    assert cells[("speculative", None)]["wer"] == pytest.approx(clean["wer"])
    assert cells[("speculative", None)]["acceptance_rate"] > 0
    assert cells[("speculative", None)]["identical_to_teacher"] == 1.0
    assert cells[("speculative", 5.0)]["identical_to_teacher"] == 1.0
    assert cells[("teacher", 5.0)]["wer"] >= clean["wer"] - 0.05
    assert [e["id"] for e in result["errors"]] == ["broken", "broken"]  # once per SNR
    for name in ("results.md", "wer_vs_snr.png", "latency_vs_wer.png"):
        assert (tmp_path / "out" / name).stat().st_size > 0


def test_eval_with_a_missing_student_fails_before_starting_actors(
    tiny_en, eval_manifest, tmp_path, capsys
):
    from distilray.cli import main

    config = tmp_path / "eval.yaml"
    config.write_text(
        f"""
models: {{teacher: {tiny_en}, student: {tmp_path / "no-such-student"}}}
datasets: [{{name: synth, manifest: {eval_manifest}}}]
modes: [speculative]
output_dir: {tmp_path / "out"}
"""
    )
    assert main(["eval", "--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert "no-such-student" in err and "does not exist" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()
