"""`distilray transcribe`: results stream out per batch, files in whisper's formats,
and no library warnings on a clean run."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from distilray.errors import AudioDecodeError, DistilrayError
from distilray.inference.cli import Batcher, file_outputs, render_file, transcribe_files
from distilray.inference.shortform import Segment

WINDOW = 10  # samples: a toy 30 s window for the batching tests


@dataclass
class FakeResult:
    text: str
    duration_s: float = 2.5
    segments: list[Segment] = field(default_factory=list)


def clip(n: int) -> np.ndarray:
    return np.zeros(n, dtype=np.float32)


def test_results_stream_out_batch_by_batch_in_input_order():
    """Each batch is transcribed before the next file is decoded; a long file is its
    own batch; an undecodable file is reported and skipped."""
    files = {"a": clip(5), "b": clip(5), "long": clip(50), "bad": None, "c": clip(5)}
    events: list[str] = []

    def decode(path: str) -> np.ndarray:
        events.append(f"decode {path}")
        if files[path] is None:
            raise AudioDecodeError("not audio")
        return files[path]

    def transcribe(audios: list) -> list:
        events.append(f"transcribe {len(audios)}")
        return [FakeResult(str(len(a))) for a in audios]

    errors: list[str] = []
    stream = transcribe_files(
        transcribe, files, Batcher(2, WINDOW), lambda p, e: errors.append(p), decode
    )
    done = []
    for path, result in stream:
        events.append(f"result {path}")
        done.append((path, result.text))
    assert done == [("a", "5"), ("b", "5"), ("long", "50"), ("c", "5")]
    assert errors == ["bad"]
    assert events == [
        "decode a", "decode b", "transcribe 2", "result a", "result b",
        "decode long", "transcribe 1", "result long",
        "decode bad", "decode c", "transcribe 1", "result c",
    ]  # fmt: skip


def test_a_long_file_flushes_the_short_ones_before_it():
    batcher = Batcher(4, WINDOW)
    assert list(batcher.add("a", clip(5))) == []
    batches = list(batcher.add("long", clip(50)))
    assert [[p for p, _ in b] for b in batches] == [["a"], ["long"]]
    assert list(batcher.flush()) == []


def test_file_formats_render_like_whisper():
    result = FakeResult("Hello there.", 2.5, [Segment(0.0, 1.25, "Hello there.")])
    assert render_file(result, "txt") == "Hello there.\n"
    assert render_file(result, "srt") == "1\n00:00:00,000 --> 00:00:01,250\nHello there.\n"
    assert render_file(result, "vtt").startswith("WEBVTT\n\n00:00:00.000 --> 00:00:01.250\n")
    body = json.loads(render_file(result, "json"))
    assert body["text"] == "Hello there." and body["segments"][0]["end"] == 1.25


def test_output_files_are_planned_before_any_work(tmp_path):
    outputs = file_outputs("all", str(tmp_path / "out"), ["x/a.wav", "y/b.mp3"])
    assert outputs.timestamped and (tmp_path / "out").is_dir()
    assert [p.name for p in outputs.paths("x/a.wav")] == ["a.txt", "a.srt", "a.vtt", "a.json"]
    assert not file_outputs("txt", str(tmp_path), ["a.wav"]).timestamped
    with pytest.raises(DistilrayError, match="would both be written as a"):
        file_outputs("txt", str(tmp_path), ["x/a.wav", "y/a.flac"])
    with pytest.raises(DistilrayError, match="--output-dir needs --output-format"):
        file_outputs(None, str(tmp_path), ["a.wav"])


# --- the command itself, on real speech and the embedded teacher ----------------------

WARNING_MARKERS = ("warn", "deprecated", "attention mask")


@pytest.fixture(scope="module")
def spoken(tmp_path_factory) -> list[Path]:
    """Two short espeak-ng clips."""
    from distilray.data.synth import synthesize_dataset

    out = tmp_path_factory.mktemp("spoken")
    manifest = synthesize_dataset(out, 2, voices=["espeak-ng:en-us"], seed=1)
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    return [manifest.parent / row["audio"] for row in rows]


def test_transcribe_writes_files_and_prints_no_library_warnings(spoken, tiny_en, tmp_path):
    argv = [sys.executable, "-m", "distilray.cli", "transcribe", "-m", str(tiny_en)]
    argv += ["--batch-size", "1", "-f", "all", "-o", str(tmp_path), *map(str, spoken)]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert [line.split("\t")[0] for line in lines] == [str(p) for p in spoken]
    assert all(line.split("\t")[1].strip() for line in lines)
    noisy = [
        line for line in done.stderr.splitlines() if any(m in line.lower() for m in WARNING_MARKERS)
    ]
    assert not noisy, done.stderr
    for path in spoken:
        assert (tmp_path / f"{path.stem}.srt").read_text().startswith("1\n00:00:00,000 --> ")
        assert json.loads((tmp_path / f"{path.stem}.json").read_text())["text"]


def test_decoding_flags_set_every_files_options(spoken, tiny_en, capsys):
    """--prompt, --temperature and --no-fallback become the call's DecodeOptions (the
    fallback on by default, as served); a prompted transcript is what the engine gives
    with that prompt; bad flags are refused before the model loads."""
    from distilray.audio import decode_audio
    from distilray.cli import build_parser, main
    from distilray.inference.cli import decode_options
    from distilray.inference.decoder import DecodeOptions, Fallback
    from distilray.inference.engine import Transcriber
    from distilray.inference.prompt import text_prompt_ids

    transcriber = Transcriber.load(str(tiny_en))
    tokenizer = transcriber.processor.tokenizer

    def options(*flags: str) -> DecodeOptions:
        args = build_parser().parse_args(["transcribe", "-m", "tiny.en", *flags, "a.wav"])
        return decode_options(args, tokenizer)

    assert options() == DecodeOptions(fallback=Fallback())
    assert options("--no-fallback") == DecodeOptions()
    sampled = options("--temperature", "0.6", "--prompt", "Quilter, Hessian")
    assert sampled.temperature == 0.6
    assert sampled.prompt_ids == text_prompt_ids(tokenizer, "Quilter, Hessian") != ()

    prompt = "Names: Zyx Quorble."
    assert main(["transcribe", "-m", str(tiny_en), "--prompt", prompt, str(spoken[0])]) == 0
    printed = capsys.readouterr().out.split("\t")[1].strip()
    want = transcriber.transcribe([decode_audio(spoken[0])], options=options("--prompt", prompt))[
        0
    ].text
    assert printed == want
    for wrong, message in (
        (["--temperature", "-0.5"], "--temperature must be 0 or more"),
        (["--prompt", "x", "--long-form", "sequential"], "--prompt and --temperature work"),
        (["--temperature", "0.5", "--long-form", "sequential"], "own temperature ladder"),
    ):
        assert main(["transcribe", "-m", "no/such-model", *wrong, str(spoken[0])]) == 2
        assert message in capsys.readouterr().err
