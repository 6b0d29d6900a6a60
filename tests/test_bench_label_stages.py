"""bench/label_stages.py: where a labelling actor's time goes, per packing setting."""

from __future__ import annotations

import json

import pytest

from bench_scripts import bench_module


@pytest.fixture(scope="module")
def stages():
    with bench_module("label_stages.py") as module:
        yield module


def test_stages_add_up_and_packing_changes_the_rows_not_the_clips(
    stages, synth_clips, tiny_en, tmp_path, capsys
):
    config = tmp_path / "label.yaml"
    config.write_text(
        f"input: {synth_clips}\noutput: {tmp_path / 'labels'}\nteacher: {tiny_en}\n"
        "batch_size: 4\nprepare_batch_size: 8\ncpus_per_actor: 1\nconcatenate_audio: true\n"
        f"max_label_length: 96\nencoder_cache_dir: {tmp_path / 'never-written'}\n"
    )
    out = tmp_path / "stages.json"
    argv = ["--config", str(config), "--limit", "6", "--out", str(out)]
    variants = ["--variant", "pack_fraction=0", "--variant", "pack_fraction=1 pack_gap_s=[0,0]"]
    assert stages.main([*argv, *variants]) == 0
    single, packed = json.loads(out.read_text())
    assert single["variant"] == "pack_fraction=0" and single["clips"] == packed["clips"] == 6
    assert single["rows"] == single["single_rows"] == 6  # one encoder pass per clip
    assert packed["rows"] == 1 and packed["single_rows"] == 0  # 18 s of clips: one window
    assert abs(single["audio_s"] - packed["audio_s"]) < 0.01  # no pauses: the same speech
    for result in (single, packed):
        seconds = result["seconds"]
        assert result["errors"] == 0 and result["tokens"] > 6
        assert seconds["encode"] > 0 and seconds["decode"] > 0 and seconds["store"] >= 0
        assert sum(seconds.values()) <= result["total_s"] + 0.05
    assert single["seconds"]["encode"] > packed["seconds"]["encode"]  # more windows
    assert not (tmp_path / "never-written").exists()  # the store wrote to a temporary folder
    assert "| pack_fraction=0 | 6 | 6 (6) |" in capsys.readouterr().out


def test_a_bad_override_is_one_line(stages, synth_clips, tmp_path, capsys):
    config = tmp_path / "label.yaml"
    config.write_text(f"input: {synth_clips}\noutput: {tmp_path / 'labels'}\n")
    argv = ["--config", str(config), "--variant", "pack_fraction=2", "--out", str(tmp_path / "o")]
    assert stages.main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error:") and "pack_fraction" in err and "Traceback" not in err
