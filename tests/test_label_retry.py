"""``retry_errors``: errored label rows whose error may be transient are labelled again
on resume, and the old rows leave the output, so every id is there exactly once."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from distilray.labelling.schema import OUTPUT_SCHEMA
from distilray.labelling.shards import (
    is_transient,
    list_shards,
    prune_superseded,
    scan_output,
    superseded_rows,
)


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        ("cannot open audio file /d/a.wav: No such file or directory", True),
        ("cannot open audio file /d/a.wav: Permission denied", True),
        ("cannot read s3://b/a.wav: When reading information for key 'a.wav': AWS Error", True),
        ("teacher failed: OutOfMemoryError: CUDA out of memory", True),
        ("MemoryError: ", True),  # labelling.prepare.decode_row's catch-all
        ("cannot decode audio from /d/a.wav: InvalidDataError: Invalid data", False),
        ("empty audio file /d/a.wav", False),
        ("no audio samples in /d/a.wav", False),
        ("/d/a.wav is longer than the 30 s limit", False),
        ("row has neither audio bytes nor an audio path", False),
        ("unsupported audio location 'http://x/a.wav': use a local path or s3://", False),
    ],
)
def test_error_kinds(error, transient):
    assert is_transient(error) is transient


def write_shard(path: Path, rows: list[tuple[list[str], str | None]]) -> None:
    """A labelled shard with rows ``(source_ids, error)``."""
    table = pa.Table.from_pylist(
        [
            {"id": "+".join(ids), "source_ids": ids, "teacher": "t", "error": error}
            | (
                {"audio": {"bytes": b"wav", "path": "x.wav"}, "duration_s": 1.0}
                if error is None
                else {}
            )
            for ids, error in rows
        ],
        schema=OUTPUT_SCHEMA,
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(table, path, row_group_size=2)


def test_prune_drops_only_errored_rows_a_later_run_relabelled(tmp_path):
    missing = "cannot open audio file /a: No such file or directory"
    old = tmp_path / "run-20250101T000000Z-aaaaaa"
    write_shard(old / "0.parquet", [(["a"], None), (["b"], missing), (["c"], missing)])
    write_shard(old / "1.parquet", [(["d"], missing)])
    write_shard(old / "2.parquet", [(["e"], None), (["f"], "empty audio file /f")])
    new = tmp_path / "run-20250102T000000Z-bbbbbb"
    write_shard(new / "0.parquet", [(["b", "d"], None), (["c"], missing)])

    state = scan_output(str(tmp_path))
    masks = superseded_rows(state)
    assert {Path(u).name: m.tolist() for u, m in masks.items()} == {
        "0.parquet": [False, True, True],  # b and c were labelled again (c failed again)
        "1.parquet": [True],
    }
    assert prune_superseded(state) == 3
    assert not (old / "1.parquet").exists()  # emptied: deleted
    assert [p.name for p in tmp_path.rglob(".*")] == []  # no temp file left behind
    rows = pa.concat_tables(pq.read_table(f) for f in list_shards(str(tmp_path))).to_pylist()
    ids = sorted(i for r in rows for i in r["source_ids"])
    assert ids == ["a", "b", "c", "d", "e", "f"]
    kept = next(r for r in rows if r["id"] == "a")
    assert kept["audio"]["bytes"] == b"wav" and kept["duration_s"] == 1.0  # other columns intact
    assert prune_superseded(scan_output(str(tmp_path))) == 0  # idempotent


def test_done_ids_leave_out_retried_errors(tmp_path):
    write_shard(
        tmp_path / "run-1" / "0.parquet",
        [(["a"], None), (["b"], "cannot open audio file /b: gone"), (["c"], "empty audio file")],
    )
    state = scan_output(str(tmp_path))
    assert sorted(state.done_ids().to_pylist()) == ["a", "b", "c"]
    assert sorted(state.done_ids(True).to_pylist()) == ["a", "c"]
    assert sorted(state.done_ids("all").to_pylist()) == ["a"]
    assert state.retry_ids(False).to_pylist() == []


@pytest.mark.ray
def test_missing_file_is_labelled_on_a_retrying_resume(ray_local, tiny_random, tmp_path):
    from distilray.audio import encode_wav
    from distilray.labelling.config import LabelConfig
    from distilray.labelling.pipeline import run_labelling

    rng = np.random.default_rng(0)
    clips = {f"c{i}": (0.1 * rng.standard_normal(16000)).astype(np.float32) for i in range(3)}
    for name in ("c0", "c1"):
        (tmp_path / f"{name}.wav").write_bytes(encode_wav(clips[name]))
    manifest = tmp_path / "manifest.jsonl"
    manifest.write_text("".join(json.dumps({"id": n, "audio": f"{n}.wav"}) + "\n" for n in clips))
    out = tmp_path / "out"
    settings = {
        "input": str(manifest),
        "output": str(out),
        "teacher": str(tiny_random),
        "max_label_length": 4,
        "concatenate_audio": False,
        "return_timestamps": False,
    }

    first = run_labelling(LabelConfig.model_validate(settings))
    assert first.summary.errors == 1
    (tmp_path / "c2.wav").write_bytes(encode_wav(clips["c2"]))  # the file turns up

    plain = run_labelling(LabelConfig.model_validate(settings))  # default: errors stay
    assert plain.run["rows_written"] == 0 and plain.summary.errors == 1

    retried = run_labelling(LabelConfig.model_validate({**settings, "retry_errors": True}))
    assert retried.run["errors_retried"] == 1 and retried.run["inputs_labelled"] == 1
    rows = pa.concat_tables(pq.read_table(f) for f in list_shards(str(out))).to_pylist()
    assert sorted(r["id"] for r in rows) == ["c0", "c1", "c2"]  # each id exactly once
    assert all(r["error"] is None and r["pseudo_label_ids"] for r in rows)
    assert retried.summary.errors == 0 and retried.summary.rows == 3
