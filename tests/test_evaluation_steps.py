"""The evaluation actor without Ray: typed config in, result rows (with word timings) out."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

from distilray.evaluation.config import EvalConfig
from distilray.evaluation.report import build_cells, write_report
from distilray.evaluation.steps import EvalWorker, decode_rows


@pytest.fixture(scope="module")
def student_dir(tiny_en, tmp_path_factory):
    from distilray.models import load_whisper
    from distilray.student import build_student

    teacher, processor = load_whisper(tiny_en)
    out = tmp_path_factory.mktemp("student")
    build_student(teacher, [0, 3]).save_pretrained(out)
    processor.save_pretrained(out)
    return out


def _clips(synth_clips, count: int) -> pa.Table:
    """The first ``count`` synthetic clips as manifest rows of the dataset ``synth``."""
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()][:count]
    return pa.table(
        {
            "dataset": ["synth"] * count,
            "id": [r["id"] for r in rows],
            "text": [r["text"] for r in rows],
            "audio_bytes": pa.array([None] * count, pa.binary()),
            "audio_path": [str(synth_clips.parent / r["audio"]) for r in rows],
        }
    )


@pytest.fixture(scope="module")
def decoded(synth_clips) -> pa.Table:
    """Two clean clips as ``decode_rows`` hands them to the actor."""
    return decode_rows(_clips(synth_clips, 2), [None], seed=0)


def _config(tiny_en, student_dir, tmp_path, runtime=None, **extra) -> EvalConfig:
    return EvalConfig.model_validate(
        {
            "models": {"teacher": str(tiny_en), "student": str(student_dir)},
            "datasets": [{"name": "synth", "manifest": "unused.jsonl"}],
            "modes": ["teacher", "student"],
            "forms": ["short"],
            "runtime": {"batch_size": 2, "max_new_tokens": 40, **(runtime or {})},
            "output_dir": str(tmp_path),
            **extra,
        }
    )


def _transcripts(rows: list[dict], out) -> list[dict]:
    write_report(out, build_cells(rows), {}, rows)
    return [json.loads(line) for line in (out / "transcripts.jsonl").read_text().splitlines()]


def test_transcripts_carry_word_timings_only_when_asked(tiny_en, student_dir, decoded, tmp_path):
    assert _config(tiny_en, student_dir, tmp_path).word_timestamps is False  # the default
    worker = EvalWorker(_config(tiny_en, student_dir, tmp_path, word_timestamps=True))
    lines = _transcripts(worker(decoded).to_pylist(), tmp_path / "words")
    assert sorted(line["mode"] for line in lines) == ["student"] * 2 + ["teacher"] * 2
    for line in lines:
        words = line["words"]
        assert words, line
        assert "".join(w["word"] for w in words).strip() == line["hypothesis"].strip()
        starts = [w["start"] for w in words]
        assert starts == sorted(starts)
        assert all(0 <= w["start"] <= w["end"] <= 30 and 0 <= w["probability"] <= 1 for w in words)
    teacher = [line for line in lines if line["mode"] == "teacher"]
    assert all(line["words"][-1]["end"] > 1.0 for line in teacher)  # sentences last seconds
    # every short clip says whether its window ran to the token limit (the teacher's end)
    assert all(line["unfinished_windows"] in (0, 1) for line in lines)
    assert [line["unfinished_windows"] for line in teacher] == [0, 0]

    worker.word_timestamps = False  # as a config without word_timestamps builds it
    plain = _transcripts(worker(decoded).to_pylist(), tmp_path / "plain")
    assert len(plain) == 4 and all("words" not in line and line["hypothesis"] for line in plain)


def test_evaluation_rows_reach_the_actors_in_blocks_of_a_batch():
    """One block per batch: results (and the progress lines) come back as batches
    finish, and several actors can share the rows, not one actor all of them."""
    import pyarrow as pa

    from distilray.evaluation.run import row_blocks

    table = pa.table({"id": [f"c{i}" for i in range(19)]})
    blocks = row_blocks(table, 8)
    assert [b.num_rows for b in blocks] == [8, 8, 3]
    assert pa.concat_tables(blocks).equals(table)
    assert [b.num_rows for b in row_blocks(table.slice(0, 0), 8)] == [0]


def test_noisy_copies_go_only_to_the_noise_modes(tiny_en, student_dir, synth_clips, tmp_path):
    noisy = decode_rows(_clips(synth_clips, 1), [None, 10.0], seed=0)  # clean and at 10 dB
    config = _config(
        tiny_en,
        student_dir,
        tmp_path,
        modes=["teacher", "student", "speculative"],
        noise={"snr_db": [None, 10.0], "modes": ["teacher", "student"]},
    )
    assert config.noisy_modes() == ["teacher", "student"]
    cells = {(r["mode"], r["snr_db"] == r["snr_db"]) for r in EvalWorker(config)(noisy).to_pylist()}
    # (mode, noisy): speculative decoding runs on the clean clip only
    assert cells == {
        ("teacher", False),
        ("teacher", True),
        ("student", False),
        ("student", True),
        ("speculative", False),
    }


def test_noise_modes_narrow_the_evaluated_modes_only(tiny_en, student_dir, tmp_path):
    assert _config(tiny_en, student_dir, tmp_path).noisy_modes() == ["teacher", "student"]
    # a config that names speculative for noise still evaluates only its own modes
    narrowed = _config(tiny_en, student_dir, tmp_path, noise={"modes": ["speculative", "student"]})
    assert narrowed.noisy_modes() == ["student"]


def test_the_ctranslate2_engine_gives_the_transformers_cells(
    tiny_en, student_dir, decoded, tmp_path
):
    """``runtime.engine: ctranslate2`` decodes teacher and student on CTranslate2 copies
    of the two models: at float32 every transcript is the transformers engine's, and the
    report says which engine ran; int8 runs the same cells."""
    pytest.importorskip("ctranslate2")
    reference = EvalWorker(_config(tiny_en, student_dir, tmp_path))(decoded).to_pylist()
    cfg = _config(tiny_en, student_dir, tmp_path, runtime={"engine": "ctranslate2"})
    assert cfg.runtime.engine_name() == "CTranslate2 float32"
    worker = EvalWorker(cfg)
    assert {type(t).__name__ for t in worker.transcribers.values()} == {"CT2Transcriber"}
    rows = worker(decoded).to_pylist()

    def cells(rows):
        return sorted((r["mode"], r["id"], r["hypothesis"]) for r in rows)

    assert cells(rows) == cells(reference)
    assert all(r["hypothesis"] and r["error"] is None for r in rows)
    extra = {"engine": cfg.runtime.engine_name(), "decoding": cfg.runtime.decoding()}
    write_report(tmp_path / "ct2", build_cells(rows), extra, rows)
    markdown = (tmp_path / "ct2" / "results.md").read_text()
    assert "Engine: CTranslate2 float32." in markdown
    assert "Decoding: greedy, as the paper evaluates." in markdown

    runtime = {"engine": "ctranslate2", "compute_type": "int8"}
    quantized = EvalWorker(_config(tiny_en, student_dir, tmp_path, runtime=runtime))
    assert {r["mode"] for r in quantized(decoded).to_pylist()} == {"teacher", "student"}


def test_the_config_refuses_what_ctranslate2_cannot_decode(tiny_en, student_dir, tmp_path):
    """Speculative decoding and sequential long-form stay transformers'; a compute type
    without the CTranslate2 engine is a mistake. All refused before any model loads."""
    from pydantic import ValidationError

    ct2 = {"engine": "ctranslate2"}
    refused = {
        "speculative decoding runs on transformers": {
            "modes": ["teacher", "speculative"],
            "runtime": ct2,
        },
        "decodes long-form chunked": {"forms": ["short", "sequential"], "runtime": ct2},
        "compute_type is CTranslate2's": {"runtime": {"compute_type": "int8"}},
        "compute_type": {"runtime": {**ct2, "compute_type": "int4"}},
    }
    for message, extra in refused.items():
        with pytest.raises(ValidationError, match=message):
            _config(tiny_en, student_dir, tmp_path, **extra)
    cfg = _config(tiny_en, student_dir, tmp_path, forms=["short", "chunked"], runtime=ct2)
    assert cfg.runtime.engine_name() == "CTranslate2 float32"
    assert _config(tiny_en, student_dir, tmp_path).runtime.engine_name() == "transformers"
