"""Labelling pieces without a cluster: config, packing, prompts, resume state, summary.

The Ray pipeline itself is exercised in ``test_labelling_ray.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from transformers import GenerationConfig

from distilray.audio import encode_wav
from distilray.config import load_config
from distilray.data.manifest import ManifestColumns
from distilray.errors import ConfigError, DataError
from distilray.hashing import stable_id
from distilray.inference.prompt import full_sequence, prompt_ids
from distilray.labelling.config import LabelConfig
from distilray.labelling.prepare import (
    Clip,
    decode_row,
    is_packed,
    mix_packed,
    pack,
)
from distilray.labelling.progress import ProgressCounter, batch_counts, progress_line
from distilray.labelling.readers import input_ids, keep_rows
from distilray.labelling.schema import OUTPUT_SCHEMA
from distilray.labelling.shards import PARTIAL_SUFFIX, list_shards, scan_output
from distilray.labelling.summary import format_summary, summarize
from distilray.labelling.teacher import check_options
from distilray.levels import speech_end_s

ROOT = Path(__file__).resolve().parents[1]
SOT, EOT, NO_TS = 50257, 50256, 50362  # tiny.en's special tokens


def tone(seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * 16000)) / 16000
    return (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)


@pytest.mark.parametrize("name", ["tiny", "large-v3"])
def test_shipped_configs_load(name):
    path = ROOT / "configs" / name / "label.yaml"
    assert path.read_text().startswith("# "), "config must name its launch command"
    cfg = load_config(LabelConfig, path)
    assert cfg.resume and cfg.max_duration_s <= 30


def test_every_config_field_is_described():
    missing = [n for n, f in LabelConfig.model_fields.items() if not f.description]
    assert not missing


def test_config_rejects_bad_values(tmp_path):
    base = ["input=in.jsonl", "output=out"]
    with pytest.raises(ConfigError, match="min_actors"):
        load_config(LabelConfig, None, [*base, "min_actors=3", "max_actors=2"])
    with pytest.raises(ConfigError, match="max_duration_s"):
        load_config(LabelConfig, None, [*base, "max_duration_s=45"])
    with pytest.raises(ConfigError, match="unknown key"):
        load_config(LabelConfig, None, [*base, "batchsize=4"])
    with pytest.raises(ConfigError, match="inside it"):
        load_config(LabelConfig, None, ["input=s3://b/data/", "output=s3://b/data/labels"])
    with pytest.raises(ConfigError, match="pack_gap_s"):
        load_config(LabelConfig, None, [*base, "pack_gap_s=[2.0, 1.0]"])
    with pytest.raises(ConfigError, match="pack_gap_s"):
        load_config(LabelConfig, None, [*base, "max_chunk_s=10", "pack_gap_s=[0, 10]"])


@pytest.mark.parametrize(
    ("inp", "out"),
    [
        ("data", "{tmp}/data/labels"),  # relative input, absolute output under it
        ("{tmp}/data", "data/labels"),  # and the other way round
        ("data/", "./data"),
        ("data", "data/../data/x/.."),
        ("file://{tmp}/data", "data/labels"),
        ("link", "data/labels"),  # a symlink to the input folder
        ("s3://b/data", "s3://b//data/./labels/"),
        ("s3://b/data/", "s3://b/other/../data"),
    ],
)
def test_output_inside_input_is_refused_after_resolving(tmp_path, monkeypatch, inp, out):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "data")
    fields = [f"input={inp.format(tmp=tmp_path)}", f"output={out.format(tmp=tmp_path)}"]
    with pytest.raises(ConfigError, match="inside it"):
        load_config(LabelConfig, None, fields)


@pytest.mark.parametrize(
    ("inp", "out"),
    [
        ("data", "{tmp}/data-labels"),  # a sibling sharing the name's start
        ("data/manifest.jsonl", "data/labels"),  # a manifest file: its folder is fine
        ("s3://b/data", "s3://b/data2"),
        ("s3://b/data", "{tmp}/data"),  # different filesystems
    ],
)
def test_output_beside_input_is_accepted(tmp_path, monkeypatch, inp, out):
    monkeypatch.chdir(tmp_path)
    fields = [f"input={inp.format(tmp=tmp_path)}", f"output={out.format(tmp=tmp_path)}"]
    assert load_config(LabelConfig, None, fields).output == out.format(tmp=tmp_path)


def test_cli_and_job_report_config_errors_in_one_line(tmp_path, capsys):
    import runpy

    from distilray.cli import main

    bad = tmp_path / "bad.yaml"
    bad.write_text("input: a.jsonl\noutput: out\nbatch_size: 0\n")
    assert main(["label", "--config", str(bad)]) == 2
    assert "batch_size" in capsys.readouterr().err
    job = runpy.run_path(str(ROOT / "jobs" / "label.py"))
    assert job["main"](["--config", str(bad), "teacher=tiny.en"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


def clip(name: str, seconds: float, text: str | None = "word") -> Clip:
    return Clip([name], text, tone(seconds))


def test_pack_joins_consecutive_clips_up_to_the_limit():
    broken = Clip(["bad"], "x", None, error="corrupt")
    clips = [clip("a", 4), clip("b", 4), broken, clip("c", 4, None), clip("d", 9)]
    packed = pack(clips, max_chunk_s=10)
    by_id = {"+".join(c.ids): c for c in packed}
    assert sorted(by_id) == ["a+b", "bad", "c", "d"]  # failed rows pass through unpacked
    assert by_id["a+b"].text == "word word" and by_id["a+b"].audio.size == 8 * 16000
    assert by_id["bad"].error == "corrupt" and by_id["c"].text is None
    # A chunk of a labelled and an unlabelled clip has no reference.
    assert pack([clip("a", 2), clip("c", 2, None)], 10)[0].text is None


def test_packed_clips_are_separated_by_pauses_of_silence_or_room_noise():
    """Pauses go between the parts (never before the first), count towards the limit,
    add no words, and are the same in every run."""
    room = np.random.default_rng(0).standard_normal(16000).astype(np.float32) * 0.01
    speech = np.concatenate([room, tone(2)])  # quiet room, then a loud sentence
    clips = [Clip([f"c{i:02d}"], f"w{i}", speech.copy()) for i in range(30)]
    packed = pack(clips, max_chunk_s=30, gap_s=(1.0, 2.0))
    again = pack(clips, max_chunk_s=30, gap_s=(1.0, 2.0))
    assert all(np.array_equal(a.audio, b.audio) for a, b in zip(packed, again, strict=True))
    assert sorted(i for c in packed for i in c.ids) == [c.ids[0] for c in clips]  # each once
    kinds = set()
    for chunk in packed:
        assert chunk.text == " ".join(f"w{i[1:].lstrip('0') or '0'}" for i in chunk.ids)
        assert chunk.audio.size <= 30 * 16000
        assert chunk.audio[: speech.size].tolist() == speech.tolist()  # starts with a part
        pauses = (chunk.audio.size - len(chunk.ids) * speech.size) / 16000
        assert 1.0 * (len(chunk.ids) - 1) - 1e-3 <= pauses <= 2.0 * (len(chunk.ids) - 1) + 1e-3
        start = speech.size
        for _ in chunk.ids[1:]:  # each pause: digital silence or the previous part's floor
            rest = chunk.audio[start:]
            length = next(
                n for n in range(16000, 32001) if rest[n : n + 16].tolist() == speech[:16].tolist()
            )
            pause = rest[:length]
            if not pause.any():
                kinds.add("silence")
            else:
                kinds.add("noise")
                assert 0.005 < float(np.sqrt((pause**2).mean())) < 0.02  # the room, not the voice
            start += length + speech.size
    assert kinds == {"silence", "noise"}
    # Without a pause range the parts are joined end to end, as before.
    assert pack(clips[:2], 30)[0].audio.size == 2 * speech.size


def test_pack_mix_packs_a_share_and_keeps_the_rest_single():
    clips = [clip(f"c{i:02d}", 3) for i in range(40)]
    mixed = mix_packed(clips, max_chunk_s=30, fraction=0.5)
    packed = [c for c in mixed if len(c.ids) > 1]
    single = [c for c in mixed if len(c.ids) == 1]
    chosen = {c.ids[0] for c in clips if is_packed(c.ids[0], 0.5)}
    assert 10 < len(chosen) < 30  # about half
    assert {i for c in packed for i in c.ids} | {
        c.ids[0] for c in single if c.ids[0] in chosen
    } == chosen
    assert not {c.ids[0] for c in single} & {i for c in packed for i in c.ids}
    assert sorted(i for c in mixed for i in c.ids) == sorted(c.ids[0] for c in clips)  # each once
    assert all(c.audio.size <= 30 * 16000 for c in mixed)
    assert packed and max(c.audio.size for c in packed) > 20 * 16000  # full windows
    assert all(len(c.ids) == 1 for c in mix_packed(clips, 30, 0.0))
    assert len(mix_packed(clips, 30, 1.0)) == len(pack(clips, 30))


def test_speech_end_is_where_the_last_sound_stops():
    room = np.random.default_rng(1).standard_normal(16000).astype(np.float32) * 0.003
    quiet_word = tone(0.5) * 0.1  # 20 dB below the sentence: still a word
    audio = np.concatenate([room, tone(2), room[:8000], quiet_word, room])
    assert speech_end_s(audio) == pytest.approx(4.0, abs=0.021)  # not the room after it
    assert speech_end_s(np.concatenate([tone(1.5), np.zeros(16000, np.float32)])) == 1.5
    assert speech_end_s(np.zeros(16000, np.float32)) == 0.0
    assert speech_end_s(room) == 0.0  # steady room noise alone is no sound
    assert speech_end_s(np.zeros(0, np.float32)) == 0.0


def test_decode_row_records_errors_instead_of_raising(tmp_path):
    good = decode_row(
        {"id": "g", "audio_bytes": encode_wav(tone(1)), "audio_path": None, "text": "t"},
        max_duration_s=30,
    )
    assert good.error is None and good.audio.size == 16000
    corrupt = decode_row(
        {"id": "c", "audio_bytes": b"not audio at all", "audio_path": None, "text": "t"},
        max_duration_s=30,
    )
    assert corrupt.audio is None and "cannot decode" in corrupt.error
    missing = decode_row(
        {"id": "m", "audio_bytes": None, "audio_path": str(tmp_path / "no.wav"), "text": None},
        max_duration_s=30,
    )
    assert missing.audio is None and missing.error
    too_long = decode_row(
        {"id": "l", "audio_bytes": encode_wav(tone(3)), "audio_path": None, "text": None},
        max_duration_s=2,
    )
    assert too_long.audio is None and "limit" in too_long.error


def english_only() -> GenerationConfig:
    return GenerationConfig(
        decoder_start_token_id=SOT,
        no_timestamps_token_id=NO_TS,
        eos_token_id=EOT,
        is_multilingual=False,
    )


def multilingual() -> GenerationConfig:
    return GenerationConfig(
        decoder_start_token_id=50258,
        no_timestamps_token_id=50364,
        is_multilingual=True,
        lang_to_id={"<|en|>": 50259, "<|de|>": 50261},
        task_to_id={"transcribe": 50360, "translate": 50359},
    )


def test_prompt_is_the_forced_decoder_prefix():
    assert prompt_ids(english_only(), None, None, return_timestamps=False) == [SOT, NO_TS]
    assert prompt_ids(english_only(), None, None, return_timestamps=True) == [SOT]
    assert prompt_ids(multilingual(), "german", "translate", False) == [50258, 50261, 50359, 50364]
    assert prompt_ids(multilingual(), "en", None, True) == [50258, 50259, 50360]


def test_label_sequence_ends_with_eot_unless_cut():
    assert full_sequence([SOT, NO_TS], [1, 2], EOT, max_new=5) == [SOT, NO_TS, 1, 2, EOT]
    assert full_sequence([SOT, NO_TS], [1, 2, 3], EOT, max_new=3) == [SOT, NO_TS, 1, 2, 3]


def test_language_options_are_checked_against_the_teacher():
    check_options(english_only(), None, None)
    check_options(multilingual(), "en", "transcribe")
    with pytest.raises(ConfigError, match="English-only"):
        check_options(english_only(), "en", None)
    with pytest.raises(ConfigError, match="set language"):
        check_options(multilingual(), None, None)
    with pytest.raises(ConfigError, match="klingon"):
        check_options(multilingual(), "klingon", None)


def test_keep_rows_skips_done_ids_and_honours_limit():
    batch = pa.table({"id": ["a", "b", "c", "d"]})
    done = pa.array(["b"])
    assert keep_rows(batch, done, None)["id"].to_pylist() == ["a", "c", "d"]
    assert keep_rows(batch, done, pa.array(["a", "b"]))["id"].to_pylist() == ["a"]
    assert keep_rows(batch, None, None).num_rows == 4


def shard(rows: list[dict]) -> pa.Table:
    full = [
        {
            "audio": None,
            "duration_s": 1.0,
            "text": None,
            "pseudo_label": "x",
            "pseudo_label_ids": [SOT],
            "wer": None,
            "teacher": "tiny.en",
            "error": None,
            **r,
        }
        for r in rows
    ]
    return pa.Table.from_pylist(full, schema=OUTPUT_SCHEMA)


def test_scan_output_sets_aside_unfinished_shards(tmp_path):
    run = tmp_path / "out" / "run-1"
    run.mkdir(parents=True)
    pq.write_table(
        shard([{"id": "a+b", "source_ids": ["a", "b"]}, {"id": "c", "source_ids": ["c"]}]),
        run / "one.parquet",
    )
    pq.write_table(shard([{"id": "d", "source_ids": ["d"]}]), run / "two.parquet")
    data = (run / "two.parquet").read_bytes()
    (run / "two.parquet").write_bytes(data[: len(data) // 2])  # a writer killed mid-file
    (tmp_path / "out" / "_manifest.json").write_text("{}")
    state = scan_output(str(tmp_path / "out"))
    assert sorted(state.done_ids().to_pylist()) == ["a", "b", "c"]
    assert state.partial == [str(run / "two.parquet")]
    assert (run / ("two.parquet" + PARTIAL_SUFFIX)).exists()
    assert list_shards(str(tmp_path / "out")) == [str(run / "one.parquet")]
    assert scan_output(str(tmp_path / "missing")).table.num_rows == 0


def test_summary_counts_errors_hours_and_wer_shares():
    rows = [
        {"id": str(i), "source_ids": [str(i)], "wer": w, "duration_s": 1800.0}
        for i, w in enumerate([0.0, 0.07, 0.15, 0.5])
    ]
    rows += [
        {"id": "u", "source_ids": ["u"], "wer": None, "duration_s": 1800.0},
        {
            "id": "e",
            "source_ids": ["e"],
            "error": "corrupt",
            "duration_s": None,
            "pseudo_label": None,
        },
    ]
    summary = summarize(
        shard(rows).select(["id", "source_ids", "duration_s", "wer", "teacher", "error"])
    )
    assert summary.rows == 6 and summary.errors == 1 and summary.labelled == 5
    assert summary.audio_hours == 2.5 and summary.scored == 4
    assert summary.share_wer_above == {"5%": 0.75, "10%": 0.5, "20%": 0.25, "40%": 0.25}
    assert summary.error_examples == [{"id": "e", "error": "corrupt"}]
    run = {
        "inputs_labelled": 6,
        "rows_written": 6,
        "audio_s": 9000.0,
        "elapsed_s": 10.0,
        "audio_s_per_s": 900.0,
        "errors": 1,
        "inputs_skipped": 0,
    }
    text = format_summary(summary, run, "out")
    assert "> 10%: 50.0%" in text and "error e: corrupt" in text and "output: out" in text


def test_progress_counts_inputs_audio_and_errors():
    table = shard(
        [
            {"id": "a+b", "source_ids": ["a", "b"], "duration_s": 20.0},
            {"id": "c", "source_ids": ["c"], "duration_s": None, "error": "corrupt"},
        ]
    )
    counts = batch_counts(table)
    assert counts == {"rows": 2, "inputs": 3, "audio_s": 20.0, "errors": 1}
    counter = ProgressCounter()
    counter.add(**counts)
    counter.add(**counts)
    line = progress_line(counter.snapshot(), inputs_total=10, elapsed_s=4.0)
    assert line.startswith("labelled 6/10 inputs in 4 rows") and "10.0 audio-s/s" in line
    assert line.endswith("2 errors")


def test_input_ids_of_every_manifest_layout(tmp_path):
    wav = encode_wav(tone(0.2))
    folder = tmp_path / "folder"
    (folder / "spk").mkdir(parents=True)
    for name in ("a", "spk/b"):
        (folder / f"{name}.wav").write_bytes(wav)
    assert sorted(input_ids(str(folder)).to_pylist()) == ["a", "spk/b"]

    (tmp_path / "m.jsonl").write_text(
        '{"id": 1, "audio": "x.wav"}\n{"id": "two", "audio": "y.wav"}\n'
    )
    assert input_ids(str(tmp_path / "m.jsonl")).to_pylist() == ["1", "two"]

    parquet = tmp_path / "pq"
    parquet.mkdir()
    pq.write_table(pa.table({"id": [1, 2], "audio": ["a.wav", "b.wav"]}), parquet / "0.parquet")
    pq.write_table(pa.table({"id": [2], "audio": ["c.wav"]}), parquet / "1.parquet")
    with pytest.raises(DataError, match="duplicate ids: '2'"):
        input_ids(str(parquet))
    pq.write_table(pa.table({"key": [3], "audio": ["c.wav"]}), parquet / "1.parquet")
    with pytest.raises(DataError, match="no column 'id' for the id .* key, audio"):
        input_ids(str(parquet), ManifestColumns(id="id"))
    # Without an id column (and none named), ids are hashes of the audio path.
    assert input_ids(str(parquet)).to_pylist() == ["1", "2", stable_id("c.wav")]
