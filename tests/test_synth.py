"""Synthetic speech: the sentence bank, voices and their split pools, synthesis with
every engine, noise, long-form clips, determinism, and the ``distilray data synth`` and
``data voices`` commands. Augmentation itself is tested in test_augment.py."""

from __future__ import annotations

import json
import time
import wave
from pathlib import Path

import numpy as np
import pytest

from distilray.audio import decode_audio
from distilray.cli import main
from distilray.data import sentences as sentences_module
from distilray.data import texts
from distilray.data.manifest import read_manifest
from distilray.data.sentences import (
    MAX_WORDS,
    MIN_WORDS,
    SPLITS,
    bank_sources,
    sentence_bank,
    sentence_split,
    split_sentences,
    take_sentences,
)
from distilray.data.synth import SUMMARY_NAME, synthesize_dataset
from distilray.data.texts import clean_sentence, split_prose
from distilray.data.tts import plain_text
from distilray.data.voices import (
    TEST_SPEAKERS,
    VALIDATION_SPEAKERS,
    Voice,
    installed_voices,
    mix_voices,
    resolve_voices,
    split_voices,
)
from distilray.errors import DistilrayError

TWO_VOICES = ["espeak-ng:en-us", "flite:slt"]


def rows_of(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_sentence_bank_is_varied_and_split_disjointly():
    bank = sentence_bank()
    assert len(set(bank)) == len(bank) >= 10000
    lengths = [len(s.split()) for s in bank]
    assert min(lengths) >= MIN_WORDS and max(lengths) <= MAX_WORDS
    assert len({s.split()[0] for s in bank}) > 30  # many different openings
    splits = {name: set(split_sentences(name)) for name in SPLITS}
    assert not splits["train"] & splits["test"]
    assert not splits["train"] & splits["validation"]
    assert not splits["validation"] & splits["test"]
    assert sum(len(s) for s in splits.values()) == len(bank)
    with pytest.raises(DistilrayError, match="unknown sentence split"):
        split_sentences("dev")


def test_take_sentences_offsets_and_wrapping(caplog):
    pool = split_sentences("test")
    first, second = take_sentences(pool, 0, 50), take_sentences(pool, 50, 50)
    assert not set(first) & set(second)
    wrapped = take_sentences(pool, len(pool) - 2, 4)
    assert wrapped == [pool[-2], pool[-1], pool[0], pool[1]]
    assert "will repeat" in caplog.text


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("synth_small")
    return synthesize_dataset(out, 6, voices=TWO_VOICES, seed=3, rate_jitter=0.1)


def test_synthesised_clips_match_their_manifest(small_set):
    rows = rows_of(small_set)
    assert [r["id"] for r in rows] == [f"train-{i:06d}" for i in range(6)]
    assert [r["text"] for r in rows] == take_sentences(split_sentences("train"), 0, 6)
    assert [r["voice"] for r in rows] == TWO_VOICES * 3
    for row in rows:
        path = small_set.parent / row["audio"]
        with wave.open(str(path)) as wav:
            assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (16000, 1, 2)
            assert wav.getnframes() / 16000 == pytest.approx(row["duration_s"], abs=1e-3)
        audio = decode_audio(path)
        assert 1.5 < row["duration_s"] < 8.0
        assert np.sqrt(np.mean(audio**2)) > 0.02  # speech, not silence
    summary = json.loads((small_set.parent / SUMMARY_NAME).read_text())
    assert summary["clips"] == 6 and summary["next_offset"] == 6
    assert summary["hours"] == pytest.approx(sum(r["duration_s"] for r in rows) / 3600, abs=1e-4)


def test_synthesised_set_reads_as_a_manifest(small_set):
    table = read_manifest(small_set.parent)
    assert table.num_rows == 6
    assert all(Path(p).is_file() for p in table["audio_path"].to_pylist())


def test_synthesis_is_deterministic_given_the_seed(tmp_path, small_set):
    again = synthesize_dataset(tmp_path / "a", 2, voices=TWO_VOICES, seed=3, rate_jitter=0.1)
    other = synthesize_dataset(tmp_path / "b", 2, voices=TWO_VOICES, seed=4, rate_jitter=0.1)
    for row, reference in zip(rows_of(again), rows_of(small_set), strict=False):
        assert row == reference
        assert (again.parent / row["audio"]).read_bytes() == (
            small_set.parent / reference["audio"]
        ).read_bytes()
    # another seed: same sentences, different speaking rates
    assert [r["text"] for r in rows_of(other)] == [r["text"] for r in rows_of(again)]
    assert [r["duration_s"] for r in rows_of(other)] != [r["duration_s"] for r in rows_of(again)]


def test_offsets_and_splits_give_disjoint_sentences(tmp_path):
    voices = ["espeak-ng:en-us"]
    a = rows_of(synthesize_dataset(tmp_path / "a", 3, voices=voices))
    b = rows_of(synthesize_dataset(tmp_path / "b", 3, voices=voices, offset=3))
    c = rows_of(synthesize_dataset(tmp_path / "c", 3, voices=voices, split="test"))
    texts = [{r["text"] for r in rows} for rows in (a, b, c)]
    assert len(texts[0] | texts[1] | texts[2]) == 9
    assert len({r["id"] for r in a + b + c}) == 9


def test_noise_is_added_at_the_requested_snr(tmp_path):
    voices = ["flite:slt"]
    clean = rows_of(synthesize_dataset(tmp_path / "clean", 1, voices=voices))[0]
    noisy = rows_of(synthesize_dataset(tmp_path / "noisy", 1, voices=voices, snr_db=5.0))[0]
    x = decode_audio(tmp_path / "clean" / clean["audio"])
    y = decode_audio(tmp_path / "noisy" / noisy["audio"])
    assert len(x) == len(y)
    snr = 10 * np.log10(np.mean(x**2) / np.mean((y - x) ** 2))
    assert snr == pytest.approx(5.0, abs=0.5)


def test_long_form_clips_join_sentences_into_40_to_90_seconds(tmp_path):
    manifest = synthesize_dataset(tmp_path, 1, voices=["espeak-ng:en-gb"], long_form=1)
    short, long = rows_of(manifest)
    assert long["id"] == "train-long-000001"
    assert 40.0 <= long["duration_s"] <= 90.0
    sentences = take_sentences(split_sentences("train"), 1, 40)
    assert any(long["text"] == " ".join(sentences[:k]) for k in range(2, 40))
    audio = decode_audio(tmp_path / long["audio"], max_duration_s=None)
    assert len(audio) / 16000 == pytest.approx(long["duration_s"], abs=1e-3)


def test_custom_sentences(tmp_path):
    manifest = synthesize_dataset(
        tmp_path, 2, voices=["espeak-ng:en-us"], sentences=["Hello there.", "Good night."]
    )
    rows = rows_of(manifest)
    assert [r["text"] for r in rows] == ["Hello there.", "Good night."]
    assert [r["id"] for r in rows] == ["custom-000000", "custom-000001"]


def test_forty_clips_take_seconds(tmp_path):
    start = time.perf_counter()
    manifest = synthesize_dataset(tmp_path, 40)
    elapsed = time.perf_counter() - start
    rows = rows_of(manifest)
    assert len(rows) == 40 and len({r["voice"] for r in rows}) == 8
    assert elapsed < 20.0, f"40 clips took {elapsed:.1f} s"


@pytest.mark.parametrize(
    ("voices", "message"),
    [
        (["mary:kal"], "bad voice 'mary:kal': write ENGINE:VOICE"),
        (["espeak-ng"], "bad voice 'espeak-ng'"),
        (["espeak-ng:en-gb+nobody"], "espeak-ng has no variant 'nobody'"),
        (["espeak-ng:mb-zz9"], "espeak-ng has no voice 'mb-zz9': .*apt-get install mbrola"),
        (["festival:kal"], "festival (has no voice 'kal'|is not installed)"),
        (["piper:nobody"], "piper (has no voice 'nobody'|is not installed).*distilray\\[tts\\]"),
        (["all", "flite:slt"], "stand alone"),
        (["flite:nobody"], "flite has no voice 'nobody'; installed: .*slt"),
        (["espeak-ng:xx-nowhere"], "espeak-ng has no voice 'xx-nowhere'"),
        ([], "no voices given"),
    ],
)
def test_bad_voices(tmp_path, voices, message):
    with pytest.raises(DistilrayError, match=message):
        synthesize_dataset(tmp_path, 1, voices=voices)


def test_missing_engine_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DistilrayError, match="apt-get install espeak-ng flite"):
        synthesize_dataset(tmp_path, 1, voices=["espeak-ng:en-us"])


def test_cli_synth(tmp_path, capsys):
    out = tmp_path / "cli"
    code = main(
        ["data", "synth", "--out", str(out), "--num", "2", "--voices", "flite:slt", "--seed", "1"]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "wrote 2 clips" in printed and "--split train --offset 2" in printed
    assert len(rows_of(out / "manifest.jsonl")) == 2
    assert main(["data", "synth", "--out", str(out), "--voices", "flite:nobody"]) == 2
    assert "error: flite has no voice" in capsys.readouterr().err


# --- the text bank -------------------------------------------------------------------


def test_bank_mixes_sources_numbers_and_questions():
    bank = sentence_bank()
    sources = bank_sources()
    assert sources["template"] == 5000 and sum(sources.values()) == len(bank)
    for source in ("price", "date", "name", "question", "rare", "punctuation", "short", "long"):
        assert sources[source] > 0, source
    assert sum(any(c.isdigit() for c in s) for s in bank) > 2000  # the normaliser's work
    assert sum(s.endswith("?") for s in bank) > 1000
    assert any(len(s.split()) <= 4 for s in bank) and any(len(s.split()) >= 25 for s in bank)
    first = split_sentences("train")[:200]
    assert len({sentences_module._bank()[bank.index(s)][1] for s in first}) >= 5  # windows mix


def test_sentence_splits_follow_the_text_not_the_position():
    for split in SPLITS:
        assert all(sentence_split(s) == split for s in split_sentences(split)[:500])
    # the same sentence, however written, always lands in the same split
    assert sentence_split("Hello, World!") == sentence_split("hello world")
    counts = {split: len(split_sentences(split)) / len(sentence_bank()) for split in SPLITS}
    assert counts["train"] == pytest.approx(0.8, abs=0.03)
    assert counts["test"] == pytest.approx(0.1, abs=0.03)


@pytest.fixture
def fresh_bank():
    """Rebuild the bank around a test (it is cached per process)."""
    sentences_module._bank.cache_clear()
    sentences_module.split_sentences.cache_clear()
    yield
    sentences_module._bank.cache_clear()
    sentences_module.split_sentences.cache_clear()


def test_bank_without_quotations_warns_and_keeps_the_rest(
    fresh_bank, monkeypatch, caplog, tmp_path
):
    with_prose = set(sentence_bank())
    monkeypatch.setattr(texts, "FORTUNE_DIRS", (tmp_path / "nothing",))
    sentences_module._bank.cache_clear()
    sentences_module.split_sentences.cache_clear()
    without = set(sentence_bank())
    assert "no fortunes quotations installed" in caplog.text
    assert "fortunes" not in bank_sources() and len(without) >= 10000
    assert without <= with_prose  # adding a source moves no sentence between splits


def test_prose_from_quotations(tmp_path, monkeypatch):
    (tmp_path / "wisdom").write_text(
        "A stitch in time saves nine.  Mr. Smith agreed\nwith that.\n\t\t-- Proverb\n%\n"
        "Q: Why?\nA: Because.\n%\nSee http://example.com for more!\n%\n"
    )
    monkeypatch.setattr(texts, "FORTUNE_DIRS", (tmp_path,))
    assert texts.fortune_sentences() == [
        "A stitch in time saves nine.",
        "Mr. Smith agreed with that.",
    ]


@pytest.mark.parametrize(
    ("raw", "cleaned"),
    [
        ("  The \u201cbest\u201d\tday \u2014 ever", 'The "best" day - ever.'),
        ("It costs $4.50 (tax included).", "It costs $4.50 (tax included)."),
        ("Two words", None),
        ("NASA and the FBI met.", None),
        ("Email me at a@b.com today.", None),
        ("an unbalanced ( bracket here.", None),
        ("lower case start is a fragment.", None),
        (" ".join(["word"] * 41), None),
    ],
)
def test_clean_sentence(raw, cleaned):
    assert clean_sentence(raw) == cleaned


def test_plain_text_for_engines_that_crash_on_punctuation():
    assert plain_text('He said, "That\'s it." ...') == "He said, That's it."
    assert plain_text("Costs (about) $5 & 10% - fine?") == "Costs about $5 & 10% - fine?"


def test_split_prose_keeps_abbreviations():
    assert split_prose("Dr. Who left. Then e.g. Mrs. Hudson came! Why?") == [
        "Dr. Who left.",
        "Then e.g. Mrs. Hudson came!",
        "Why?",
    ]


# --- voices ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "family", "speaker", "split"),
    [
        ("espeak-ng:en-gb-scotland+f2", "espeak-ng", "espeak-f2", "validation"),
        ("espeak-ng:en-us", "espeak-ng", "espeak-default", "train"),
        ("espeak-ng:en+m3", "espeak-ng", "espeak-m3", "test"),
        ("espeak-ng:mb-us1", "mbrola", "mbrola-us1", "train"),
        ("festival:us1_mbrola", "mbrola", "mbrola-us1", "train"),
        ("espeak-ng:mb-de1-en", "mbrola", "mbrola-de1", "train"),
        ("flite:kal16", "flite", "kal", "test"),
        ("festival:kal_diphone", "festival", "kal", "test"),
        ("festival:cmu_us_slt_arctic_hts", "festival", "slt", "train"),
        ("flite:awb_time", "flite", "awb", "test"),
        ("piper:en_US-joe-medium", "piper", "joe", "train"),
    ],
)
def test_voice_grammar_and_speakers(spec, family, speaker, split):
    voice = Voice.parse(spec)
    assert str(voice) == spec
    assert (voice.family, voice.speaker, voice.split) == (family, speaker, split)


def test_espeak_variant_parts():
    voice = Voice.parse("espeak-ng:en-gb-x-rp+klatt3")
    assert (voice.base, voice.variant) == ("en-gb-x-rp", "klatt3")
    assert Voice.parse("flite:slt").variant is None


def test_held_out_speaker_lists_are_disjoint():
    assert not VALIDATION_SPEAKERS & TEST_SPEAKERS
    assert {"awb", "kal", "espeak-f3", "espeak-m3"} <= TEST_SPEAKERS  # bench/demo held-outs


def test_installed_voices_split_into_disjoint_speaker_pools():
    voices = installed_voices()
    assert len(voices) > 100  # espeak-ng alone: accents x variants
    assert {"espeak-ng", "flite"} <= {v.family for v in voices}
    assert "espeak-ng:en-gb-scotland+f2" in {str(v) for v in voices}
    assert not any(v.variant in ("Demonic", "whisper") for v in voices)
    assert "flite:awb_time" not in {str(v) for v in voices}
    pools = {split: split_voices(split, voices) for split in SPLITS}
    speakers = {split: {v.speaker for v in pool} for split, pool in pools.items()}
    assert all(speakers.values())
    assert not speakers["train"] & speakers["test"]
    assert not speakers["train"] & speakers["validation"]
    assert not speakers["validation"] & speakers["test"]
    assert sum(len(p) for p in pools.values()) == len(voices)


def test_mixed_voices_give_every_family_a_turn():
    voices = installed_voices()
    families = {v.family for v in voices}
    mixed = mix_voices(voices, seed=0)
    assert {v.family for v in mixed[: len(families)]} == families
    assert set(mixed) == set(voices)
    assert mix_voices(voices, seed=0) == mixed and mix_voices(voices, seed=1) != mixed


def test_split_voices_resolve_to_the_split_pool():
    test_voices = resolve_voices("split", "test")
    assert test_voices and all(v.split == "test" for v in test_voices)
    assert resolve_voices(["espeak-ng:en-us", "flite:slt"], "test") == [
        Voice("espeak-ng", "en-us"),
        Voice("flite", "slt"),
    ]
    with pytest.raises(DistilrayError, match="unknown split"):
        split_voices("dev")


def test_split_voice_synthesis_keeps_to_the_pool(tmp_path):
    rows = rows_of(synthesize_dataset(tmp_path, 3, voices="split", split="validation"))
    assert all(Voice.parse(r["voice"]).split == "validation" for r in rows)
    assert all(r["speaker"] in VALIDATION_SPEAKERS for r in rows)
    summary = json.loads((tmp_path / SUMMARY_NAME).read_text())
    assert summary["speakers"] == len({v.speaker for v in split_voices("validation")})


OPTIONAL_VOICES = {  # voice -> how to get it; each test skips where it is not installed
    "espeak-ng:mb-us1": "MBROLA us1 (make system-deps)",
    "festival:kal_diphone": "festival kal_diphone (make system-deps)",
    "piper:en_US-joe-medium": "pip install 'distilray[tts]'",
}


@pytest.mark.parametrize("voice", list(OPTIONAL_VOICES))
def test_optional_engines_speak(tmp_path, voice):
    if voice not in {str(v) for v in installed_voices()}:
        pytest.skip(f"{voice} is not installed: {OPTIONAL_VOICES[voice]}")
    manifest = synthesize_dataset(
        tmp_path, 1, voices=[voice], sentences=["The 3 boxes cost $12 on May 4th."],
        rate_jitter=0.1, augment="light",
    )  # fmt: skip
    row = rows_of(manifest)[0]
    audio = decode_audio(tmp_path / row["audio"])
    assert row["voice"] == voice and 1.0 < row["duration_s"] < 8.0
    assert np.sqrt(np.mean(audio**2)) > 0.005


def test_cli_voices(capsys):
    assert main(["data", "voices", "--split", "test", "--engine", "espeak-ng"]) == 0
    lines = capsys.readouterr().out.splitlines()
    listed = [line.split("\t") for line in lines if "\t" in line]
    assert listed and all(split == "test" for _, _, split, _ in listed)
    assert any(line.startswith(f"{len(listed)} voices") for line in lines)
    assert main(["data", "voices", "--summary"]) == 0
    assert "family espeak-ng" in capsys.readouterr().out
