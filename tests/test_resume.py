"""Decoding on after an early end (inference.resume): the rule's arithmetic, and the
Transcriber on the real tiny.en teacher with a first pass that hears only part of
each window (the early end a distilled student makes, reproduced on purpose)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from distilray.audio import decode_audio
from distilray.inference.resume import (
    ResumeRule,
    resume_point,
    rows_to_resume,
    shift_timestamps,
    text_end,
)
from distilray.inference.shortform import Segment, Word
from distilray.text import wer

SR = 16000


def test_rows_to_resume_counts_only_the_sound_a_row_answers_for():
    # text ends at 8.5 s, sound at 28.4 s, the window answers up to 25 s: resumed
    # text ends at 27 s, sound to 30 s: the last 5 s are the next window's: not resumed
    # no text (silence, or a window left alone): not resumed
    # a gap of 1 s is under the rule's 2 s
    text = [8.5, 27.0, None, 10.0]
    sound = [28.4, 30.0, 20.0, 11.0]
    assert rows_to_resume(text, sound, [25.0] * 4, 2.0) == [0]
    assert rows_to_resume(text, sound, [30.0] * 4, 2.0) == [0, 1]
    assert rows_to_resume(text, sound, [30.0] * 4, 0.5) == [0, 1, 3]


def test_resumed_timestamps_move_onto_the_window_clock():
    begin = 50364  # tiny.en's <|0.00|>
    ids = [begin, 440, 441, begin + 100, begin + 1490]  # <|0.00|> a b <|2.00|> <|29.80|>
    shifted = shift_timestamps(ids, resume_point(8.51), begin)
    assert resume_point(8.51) == pytest.approx(8.52)  # on the 20 ms grid
    assert shifted == [begin + 426, 440, 441, begin + 526, begin + 1500]  # capped at 30 s


def test_text_end_is_the_last_word_or_else_the_last_timestamp():
    words = (Word(1.0, 1.4, " hello", 0.9), Word(1.5, 2.25, " there", 0.9))
    assert text_end([Segment(0.0, 3.0, "hello there", words=words)]) == 2.25
    assert text_end([Segment(0.0, 1.0, "a"), Segment(1.0, 3.0, "b")]) == 3.0
    assert text_end([]) is None


def test_rule_settings_are_checked():
    with pytest.raises(ValueError, match="gap_s"):
        ResumeRule(gap_s=0)
    with pytest.raises(ValueError, match="rounds"):
        ResumeRule(rounds=0)


class HearsFirstPart:
    """The real decoder, except that its first call hears every window only up to
    ``cut_s`` (log-mel frames after it set to the batch's quietest value): the
    transcript ends early there, as a student's sometimes does on real speech."""

    def __init__(self, decoder, cut_s: float):
        self.inner, self.cut_s, self.calls = decoder, cut_s, 0
        self.options = []  # each call's DecodeOptions

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def decode(self, features, **kwargs):
        import torch

        self.calls += 1
        self.options.append(kwargs.get("options"))
        if self.calls == 1:
            features = torch.as_tensor(features).clone()
            features[..., int(self.cut_s * 100) :] = features.min()
        return self.inner.decode(features, **kwargs)


@pytest.fixture(scope="module")
def teacher(tiny_en):
    from distilray.models import load_whisper

    return load_whisper(tiny_en)


@pytest.fixture(scope="module")
def two_sentences(synth_clips):
    """Two sentences with a 1 s pause between them (~7 s), the first's length, and the
    two references."""
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()][:2]
    first, second = (decode_audio(synth_clips.parent / r["audio"]) for r in rows)
    audio = np.concatenate([first, np.zeros(SR, np.float32), second])
    return audio, len(first) / SR, rows[0]["text"], rows[1]["text"]


def _transcriber(teacher, cut_s, resume, ct2=None, **kwargs):
    """The teacher's transcriber, decoding on transformers or (``ct2``: a CTranslate2
    copy of it) on CTranslate2, whose first pass hears each window up to ``cut_s``."""
    from distilray.inference.decoder import make_decoder
    from distilray.inference.engine import Transcriber

    model, processor = teacher
    if ct2 is None:
        inner = make_decoder(model, processor, None)
    else:
        from distilray.engines.ct2_decoder import CT2Decoder

        inner = CT2Decoder(ct2, model, processor)
    decoder = HearsFirstPart(inner, cut_s)
    return Transcriber(model, processor, decoder=decoder, resume=resume, **kwargs)


@pytest.fixture(scope="module")
def engines(tiny_en):
    """Decoding engines by name: transformers (None), CTranslate2 where installed."""
    import importlib.util

    found = {"transformers": None}
    if importlib.util.find_spec("ctranslate2") is not None:
        from distilray.engines.ct2 import CT2Whisper

        found["ctranslate2"] = CT2Whisper.load(str(tiny_en))
    return found


@pytest.mark.parametrize("engine", ["transformers", "ctranslate2"])
def test_a_clip_whose_text_ends_early_is_decoded_on(teacher, two_sentences, engines, engine):
    if engine not in engines:
        pytest.skip("ctranslate2 is not installed")
    ct2 = engines[engine]
    audio, first_s, first, second = two_sentences
    cut = first_s + 0.2
    [alone] = _transcriber(teacher, cut, None, ct2).transcribe([audio])
    both = f"{first} {second}"
    # the first pass ends after the first sentence: the second's words are all missing
    assert wer(first, alone.text) < 0.35 and wer(both, alone.text) > 0.5
    assert alone.resumed_windows is None

    resuming = _transcriber(teacher, cut, ResumeRule(gap_s=2.0), ct2)
    [resumed] = resuming.transcribe([audio])
    assert resumed.resumed_windows == 1
    assert wer(both, resumed.text) < wer(both, alone.text) - 0.3
    # the rest was decoded with what the window said so far as Whisper's previous text
    tokenizer = teacher[1].tokenizer
    prompt = resuming.decoder.options[-1].prompt_ids
    assert prompt[0] == tokenizer.convert_tokens_to_ids("<|startofprev|>")
    assert tokenizer.decode(prompt[1:]).strip() == alone.text
    assert resumed.segments == []  # words were timed for the rule, not asked for

    [timed] = _transcriber(teacher, cut, ResumeRule(gap_s=2.0), ct2).transcribe(
        [audio], return_timestamps=True
    )
    assert wer(both, timed.text) < wer(both, alone.text) - 0.3
    starts = [s.start for s in timed.segments]
    assert starts == sorted(starts)
    # the resumed part's segments sit where the second sentence is, on the clip's clock
    assert first_s - 0.5 <= timed.segments[-1].start and timed.segments[-1].end <= len(audio) / SR


def test_the_rule_leaves_finished_transcripts_alone(teacher, synth_clips):
    """On clips the teacher transcribes to their end, the rule changes nothing."""
    from distilray.inference.engine import Transcriber

    model, processor = teacher
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()][:4]
    audios = [decode_audio(synth_clips.parent / r["audio"]) for r in rows]
    plain = Transcriber(model, processor, batch_size=4).transcribe(audios)
    ruled = Transcriber(model, processor, batch_size=4, resume=ResumeRule()).transcribe(audios)
    assert [r.text for r in ruled] == [r.text for r in plain]
    assert [r.resumed_windows for r in ruled] == [0] * len(audios)


def test_chunked_windows_that_end_early_are_decoded_on(teacher, synth_clips):
    """A 45 s recording whose every window is first heard for 12 s only: decoded on,
    the transcript comes back to what the unhindered teacher gives."""
    from distilray.inference.engine import Transcriber

    model, processor = teacher
    rows = [json.loads(line) for line in synth_clips.read_text().splitlines()]
    parts = []
    for row in rows + rows[::-1]:  # the eight sentences, then again backwards
        parts += [decode_audio(synth_clips.parent / row["audio"]), np.zeros(SR // 2, np.float32)]
    recording = np.concatenate(parts)[: 45 * SR]
    assert len(recording) > 40 * SR
    [full] = Transcriber(model, processor).transcribe([recording], long_form="chunked")
    [cut] = _transcriber(teacher, 12.0, None).transcribe([recording], long_form="chunked")
    [resumed] = _transcriber(teacher, 12.0, ResumeRule()).transcribe(
        [recording], long_form="chunked"
    )
    assert wer(full.text, cut.text) > 0.3  # the hindered first pass loses whole stretches
    assert resumed.resumed_windows >= 2
    assert wer(full.text, resumed.text) < 0.15


def test_a_decoder_that_cannot_time_words_is_refused(teacher):
    from distilray.errors import DistilrayError
    from distilray.inference.decoder import Capabilities, make_decoder
    from distilray.inference.engine import Transcriber

    model, processor = teacher
    decoder = make_decoder(model, processor, None)
    decoder.capabilities = Capabilities(timestamps=True, sequential=False, word_timestamps=False)
    with pytest.raises(DistilrayError, match="resume rule off"):
        Transcriber(model, processor, decoder=decoder, resume=ResumeRule())


def test_the_rule_is_set_from_eval_config_and_transcribe_flag(tmp_path, capsys):
    from pydantic import ValidationError

    from distilray.cli import main
    from distilray.evaluation.config import RuntimeConfig
    from distilray.inference.cli import resume_rule

    assert RuntimeConfig().resume_rule() is None  # the paper's greedy decoding by default
    assert RuntimeConfig(resume_gap_s=1.5).resume_rule() == ResumeRule(gap_s=1.5)
    with pytest.raises(ValidationError, match="resume_gap_s"):
        RuntimeConfig(resume_gap_s=0)
    assert resume_rule(None) is None and resume_rule(3.0) == ResumeRule(gap_s=3.0)

    audio = tmp_path / "a.wav"
    audio.write_bytes(b"")
    for flags, message in (
        (["--resume-gap", "-1"], "--resume-gap must be a number of seconds above 0"),
    ):
        code = main(["transcribe", "--model", "tiny.en", *flags, str(audio)])
        assert code == 2 and message in capsys.readouterr().err


def test_the_report_shows_resumed_windows_only_where_counted():
    from distilray.evaluation.report import markdown_table

    cell = {"dataset": "real", "mode": "student", "form": "short", "snr_db": None, "wer": 0.1}
    assert "decoded on" not in markdown_table([{**cell, "resumed": None}])
    table = markdown_table([{**cell, "resumed": 3}])
    assert "decoded on" in table and "| 3 |" in table
