"""The Transcriber on the real tiny.en teacher: short-form, chunked and sequential long-form,
timestamps, speculative decoding, and the ``transcribe`` command."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distilray.audio import decode_audio, encode_wav
from distilray.text import corpus_wer, wer

MAX_NEW = 96


def _rows(manifest):
    return [json.loads(line) for line in manifest.read_text().splitlines()]


@pytest.fixture(scope="module")
def models(tiny_en):
    from distilray.models import load_whisper
    from distilray.student import build_student

    teacher, processor = load_whisper(tiny_en)
    return teacher, processor, build_student(teacher, [0, 3])


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """One 40-90 s synthetic recording made of several sentences, and its reference."""
    from distilray.data.synth import synthesize_dataset

    manifest = synthesize_dataset(
        tmp_path_factory.mktemp("long"), 0, long_form=1, voices=["espeak-ng:en-us"], seed=3
    )
    row = _rows(manifest)[0]
    return decode_audio(manifest.parent / row["audio"]), row["text"]


@pytest.fixture(scope="module")
def short_clips(synth_clips):
    rows = _rows(synth_clips)
    return [decode_audio(synth_clips.parent / r["audio"]) for r in rows], [r["text"] for r in rows]


def test_short_form_text_and_timestamps(models, short_clips):
    from distilray.inference.engine import Transcriber

    teacher, processor, _ = models
    audios, refs = short_clips
    transcriber = Transcriber(teacher, processor, batch_size=4, max_new_tokens=MAX_NEW)
    plain = transcriber.transcribe(audios)
    assert [r.form for r in plain] == ["short"] * len(audios)
    assert corpus_wer(refs, [r.text for r in plain]).wer < 0.35
    timed = transcriber.transcribe(audios[:4], return_timestamps=True)
    for result, audio in zip(timed, audios, strict=False):
        assert result.segments, "timestamps on: at least one segment"
        starts = [s.start for s in result.segments]
        assert starts == sorted(starts)
        assert all(0 <= s.start <= s.end <= len(audio) / 16000 + 0.5 for s in result.segments)
        joined = " ".join(s.text for s in result.segments)
        assert wer(result.text, joined) < 0.2  # same words with or without timestamps
    assert all(r.compute_s > 0 and r.generated_tokens > 0 for r in plain)


def test_speculative_engine_gives_the_teacher_text(models, short_clips, long_clip):
    from distilray.inference.engine import Transcriber

    teacher, processor, student = models
    audios = short_clips[0][:2] + [long_clip[0]]
    alone = Transcriber(teacher, processor, batch_size=4, max_new_tokens=MAX_NEW)
    helped = Transcriber(
        teacher,
        processor,
        student,
        batch_size=4,
        max_new_tokens=MAX_NEW,
        draft_schedule="heuristic",
    )
    want, got = alone.transcribe(audios), helped.transcribe(audios)
    assert [r.text for r in got] == [r.text for r in want]
    assert all(r.speculative is not None and r.speculative.drafted > 0 for r in got)
    assert got[-1].form == "chunked" and got[-1].speculative.accepted > 0


def test_chunked_long_form_close_to_sentence_wer(models, long_clip, short_clips):
    from distilray.inference.engine import Transcriber

    teacher, processor, _ = models
    audio, reference = long_clip
    assert len(audio) > 35 * 16000
    transcriber = Transcriber(teacher, processor, batch_size=4)
    [chunked] = transcriber.transcribe([audio], long_form="chunked", return_timestamps=True)
    sentence_wer = corpus_wer(
        short_clips[1], [r.text for r in transcriber.transcribe(short_clips[0])]
    ).wer
    assert chunked.form == "chunked"
    assert wer(reference, chunked.text) < sentence_wer + 0.15
    ends = [s.end for s in chunked.segments]
    assert ends == sorted(ends) and ends[-1] > 30  # segments on the recording's clock


def test_sequential_long_form(models, long_clip):
    import torch

    from distilray.inference.engine import Transcriber
    from distilray.inference.longform import SequentialOptions

    teacher, processor, _ = models
    audio, reference = long_clip
    torch.manual_seed(0)  # temperature fallback samples
    options = SequentialOptions(condition_on_prev_tokens=True)
    transcriber = Transcriber(teacher, processor, sequential=options)
    [result] = transcriber.transcribe([audio], long_form="sequential", return_timestamps=True)
    assert result.form == "sequential"
    assert wer(reference, result.text) < 0.35
    assert result.segments[-1].end > 30


def test_bad_settings_are_user_errors(models):
    from distilray.errors import DistilrayError
    from distilray.inference.engine import Transcriber

    teacher, processor, _ = models
    with pytest.raises(DistilrayError, match="stride_s"):
        Transcriber(teacher, processor, chunk_length_s=10, stride_s=5)
    with pytest.raises(DistilrayError, match="long_form"):
        Transcriber(teacher, processor).transcribe([np.zeros(100, np.float32)], long_form="x")


def test_transcribe_command(tiny_en, short_clips, tmp_path, capsys):
    from distilray.cli import main

    good = tmp_path / "good.wav"
    good.write_bytes(encode_wav(short_clips[0][0]))
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"not audio at all")
    code = main(["transcribe", "--model", str(tiny_en), str(bad), str(good)])
    out, err = capsys.readouterr()
    assert code == 2
    assert f"error: {bad}:" in err and "Traceback" not in err
    [line] = out.splitlines()
    path, text = line.split("\t")
    assert path == str(good) and wer(short_clips[1][0], text) < 0.5

    code = main(["transcribe", "--model", str(tiny_en), "--timestamps", str(good)])
    out, _ = capsys.readouterr()
    assert code == 0 and out.split("\t")[1].startswith("[0.")


def test_windows_decoded_to_the_token_limit_are_counted(models, short_clips, long_clip):
    """A window that fills ``max_new_tokens`` without its end of text (a loop, or a cut
    transcript) is counted per clip and per recording."""
    from distilray.inference.engine import Transcriber
    from distilray.inference.longform import split_windows

    teacher, processor, _ = models
    audios = short_clips[0][:3]
    recording = long_clip[0]
    ample = Transcriber(teacher, processor, batch_size=4, max_new_tokens=MAX_NEW)
    assert [r.unfinished_windows for r in ample.transcribe(audios)] == [0, 0, 0]
    [chunked] = ample.transcribe([recording], long_form="chunked")
    assert chunked.form == "chunked" and chunked.unfinished_windows == 0

    cut = Transcriber(teacher, processor, batch_size=4, max_new_tokens=3)
    results = cut.transcribe(audios)
    assert [r.unfinished_windows for r in results] == [1, 1, 1]
    assert all(r.generated_tokens == 3 for r in results)
    windows, _ = split_windows([recording], cut.chunk_length_s, cut.stride_s)
    [chunked] = cut.transcribe([recording], long_form="chunked")
    assert len(windows) > 1 and chunked.unfinished_windows == len(windows)
    assert chunked.as_dict()["unfinished_windows"] == len(windows)
