"""The labelling pipeline on a local Ray: corrupt and unlabelled inputs, resume after
a crashed run, packing, and S3 in and out through the CLI with the real tiny.en teacher."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distilray.audio import decode_audio
from distilray.labelling.config import LabelConfig
from distilray.labelling.pipeline import run_labelling
from distilray.labelling.schema import OUTPUT_SCHEMA
from distilray.labelling.shards import PARTIAL_SUFFIX, list_shards

ROOT = Path(__file__).resolve().parents[1]
SOT, EOT, NO_TS = 50257, 50256, 50362  # tiny.en's special tokens (the random model shares them)


def manifest_rows(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def mixed_input(synth_clips, tmp_path_factory) -> Path:
    """A two-file Parquet manifest in the Hugging Face layout (``audio`` a ``{bytes, path}``
    struct): the synthetic clips embedded, a corrupt clip, and two clips given by relative
    path without reference."""
    folder = tmp_path_factory.mktemp("mixed")
    (folder / "clips").mkdir()
    audio = pa.struct([("bytes", pa.binary()), ("path", pa.string())])
    rows = [
        {
            "id": r["id"],
            "audio": {"bytes": (synth_clips.parent / r["audio"]).read_bytes(), "path": r["audio"]},
            "text": r["text"],
        }
        for r in manifest_rows(synth_clips)
    ]
    schema = pa.schema([("id", pa.string()), ("audio", audio), ("text", pa.string())])
    pq.write_table(pa.Table.from_pylist(rows, schema=schema), folder / "part-0.parquet")
    extra = [
        {
            "id": "corrupt",
            "audio": {"bytes": b"RIFF....WAVEfmt not audio", "path": None},
            "text": "never heard",
        }
    ]
    for i, row in enumerate(manifest_rows(synth_clips)[:2]):
        (folder / "clips" / f"u{i}.wav").write_bytes(
            (synth_clips.parent / row["audio"]).read_bytes()
        )
        extra.append(
            {
                "id": f"unlabelled-{i}",
                "audio": {"bytes": None, "path": f"clips/u{i}.wav"},
                "text": None,
            }
        )
    pq.write_table(pa.Table.from_pylist(extra, schema=schema), folder / "part-1.parquet")
    return folder


def input_clips(folder: Path) -> dict[str, dict]:
    """id → {text, seconds} of the mixed input (corrupt clip: seconds None)."""
    out = {}
    for row in pa.concat_tables(
        [pq.read_table(p) for p in sorted(folder.glob("*.parquet"))]
    ).to_pylist():
        data = row["audio"]["bytes"] or (folder / row["audio"]["path"]).read_bytes()
        try:
            seconds = decode_audio(data).size / 16000
        except Exception:  # noqa: BLE001 - the corrupt clip
            seconds = None
        out[row["id"]] = {"text": row["text"], "seconds": seconds}
    return out


def config(input_uri, output, teacher, **overrides) -> LabelConfig:
    settings = {
        "input": str(input_uri),
        "output": str(output),
        "teacher": str(teacher),
        "batch_size": 4,
        "prepare_batch_size": 4,
        "max_label_length": 12,  # a random teacher never stops early: keep it short
        "progress_every_s": 1,
        "shard_rows": 6,
        "concatenate_audio": False,  # one row per input clip: the tests follow ids
        "return_timestamps": False,
        **overrides,
    }
    return LabelConfig.model_validate(settings)


def read_output(output) -> pa.Table:
    tables = [pq.read_table(f) for f in list_shards(str(output))]
    return pa.concat_tables(tables)


@pytest.mark.ray
def test_corrupt_and_unlabelled_rows(ray_local, tiny_random, mixed_input, tmp_path):
    inputs = input_clips(mixed_input)
    result = run_labelling(config(mixed_input, tmp_path / "out", tiny_random))
    table = read_output(tmp_path / "out")
    assert table.schema == OUTPUT_SCHEMA
    rows = {r["id"]: r for r in table.to_pylist()}
    assert sorted(rows) == sorted(inputs)  # nothing dropped, no duplicates

    bad = rows.pop("corrupt")
    assert "cannot decode" in bad["error"]
    assert bad["audio"] is bad["pseudo_label"] is bad["pseudo_label_ids"] is bad["wer"] is None
    assert bad["avg_logprob"] is bad["compression_ratio"] is bad["no_speech_prob"] is None
    assert bad["speech_end_s"] is None
    for row in rows.values():
        assert row["error"] is None and row["teacher"] == str(tiny_random)
        assert row["text"] == inputs[row["id"]]["text"] and row["pseudo_label"] is not None
        assert (row["wer"] is None) == (row["text"] is None)  # unlabelled input: no WER
        assert row["pseudo_label_ids"][:2] == [SOT, NO_TS] and len(row["pseudo_label_ids"]) <= 15
        assert row["avg_logprob"] <= 0 and 0 <= row["no_speech_prob"] <= 1
        assert row["compression_ratio"] > 0
        stored = (
            decode_audio(row["audio"]["bytes"]).size / 16000
        )  # the stored WAV is the clip at 16 kHz
        assert abs(stored - row["duration_s"]) < 1e-3
        assert abs(row["duration_s"] - inputs[row["id"]]["seconds"]) < 0.01
        assert 0 < row["speech_end_s"] <= row["duration_s"]  # where the sound ends

    summary = result.summary
    assert (summary.rows, summary.errors, summary.scored) == (len(inputs), 1, 8)
    assert result.run["rows_written"] == len(inputs) and result.run["errors"] == 1
    manifest = json.loads((tmp_path / "out" / "_manifest.json").read_text())
    assert manifest["summary"] == summary.as_dict() and manifest["teacher"] == str(tiny_random)
    assert len(manifest["runs"]) == 1 and manifest["config"]["batch_size"] == 4


def plant_unfinished_shard(output: Path, ids: list[str]) -> Path:
    """What a writer killed mid-file leaves: a Parquet file cut before its footer."""
    rows = [
        {
            "id": i,
            "source_ids": [i],
            "audio": {"bytes": b"", "path": f"{i}.wav"},
            "duration_s": 1.0,
            "text": None,
            "pseudo_label": "lost",
            "pseudo_label_ids": [SOT],
            "wer": None,
            "teacher": "t",
            "error": None,
        }
        for i in ids
    ]
    path = output / "run-crashed" / "part-0.parquet"
    path.parent.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist(rows, schema=OUTPUT_SCHEMA), path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 20])
    return path


@pytest.mark.ray
def test_resume_after_a_crashed_run_has_no_duplicates_or_gaps(
    ray_local, tiny_random, synth_clips, tmp_path
):
    from distilray.errors import DataError

    ids = [r["id"] for r in manifest_rows(synth_clips)]
    out = tmp_path / "out"
    # A first run that stopped after 3 inputs, and a shard its killed writer left half-written.
    first = run_labelling(config(synth_clips, out, tiny_random, limit=3))
    assert first.run["inputs_labelled"] == 3
    planted = plant_unfinished_shard(out, ids[3:5])

    # The rerun finishes the job; it also packs clips, so resume must read source_ids.
    second = run_labelling(
        config(synth_clips, out, tiny_random, concatenate_audio=True, max_chunk_s=9)
    )
    assert second.run["inputs_skipped"] == 3 and second.run["inputs_labelled"] == 5
    assert second.run["partial_files_set_aside"] == [str(planted)]
    assert Path(str(planted) + PARTIAL_SUFFIX).exists()

    table = read_output(out)
    sources = [i for row in table["source_ids"].to_pylist() for i in row]
    assert sorted(sources) == sorted(ids)  # every input exactly once
    packed = [r for r in table.to_pylist() if len(r["source_ids"]) > 1]
    assert packed, "short clips should have been packed"
    texts = {r["id"]: r["text"] for r in manifest_rows(synth_clips)}
    for row in packed:
        assert row["id"] == "+".join(row["source_ids"]) and row["duration_s"] <= 9
        assert row["text"] == " ".join(texts[i] for i in row["source_ids"])

    third = run_labelling(config(synth_clips, out, tiny_random))  # nothing left to do
    assert third.run["rows_written"] == 0 and third.run["inputs_skipped"] == len(ids)
    assert len(json.loads((out / "_manifest.json").read_text())["runs"]) == 3
    with pytest.raises(DataError, match="resume=true"):
        run_labelling(config(synth_clips, out, tiny_random, resume=False))


@pytest.mark.s3
@pytest.mark.slow
def test_s3_in_and_out_through_the_cli_with_the_real_teacher(s3_server, synth_clips, tiny_en):
    """``distilray label`` in a fresh process (its own embedded Ray) reading and writing S3."""
    import boto3

    from distilray import storage

    bucket = f"label-{uuid.uuid4().hex[:8]}"
    boto3.client("s3", endpoint_url=s3_server).create_bucket(Bucket=bucket)
    storage.copy_tree(synth_clips.parent, f"s3://{bucket}/synth")
    output = f"s3://{bucket}/labels"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    command = [
        sys.executable, "-m", "distilray.cli", "label",
        "--config", str(ROOT / "configs" / "tiny" / "label.yaml"),
        f"input=s3://{bucket}/synth/manifest.jsonl", f"output={output}", "progress_every_s=2",
        "concatenate_audio=false", "encoder_cache_dir=null",  # a row per clip; no local cache
    ]  # fmt: skip
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"output: {output}" in done.stdout

    manifest = json.loads(storage.read_bytes(f"{output}/_manifest.json"))
    summary = manifest["summary"]
    assert summary["rows"] == summary["labelled"] == summary["scored"] == 8
    # The real teacher on clean synthetic speech: mostly right (a random one scores > 100 %).
    assert summary["wer_mean"] < 0.3 and summary["share_wer_above"]["40%"] <= 0.25
    shards = list_shards(output)
    assert shards and all(s.startswith(f"{output}/run-") for s in shards)
