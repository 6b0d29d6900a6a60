"""Spoken repetitions in synthetic speech (``data synth --repetitions``)."""

from __future__ import annotations

import json
import random
import re

import pytest

from distilray.cli import main
from distilray.data.repetitions import INTERJECTIONS, add_repetitions
from distilray.data.sentences import split_sentences, take_sentences
from distilray.data.synth import SUMMARY_NAME, synthesize_dataset
from distilray.errors import DistilrayError
from distilray.text import normalize


def _words(text: str) -> list[str]:
    return re.findall(r"[\w'$%]+", text.lower())


def _says_a_phrase_twice(words: list[str]) -> bool:
    """Some phrase of one to three words is said again right after itself."""
    return any(
        words[i : i + k] == words[i + k : i + 2 * k]
        for k in (1, 2, 3)
        for i in range(len(words) - 2 * k + 1)
    )


@pytest.mark.parametrize("seed", range(40))
def test_a_repetition_keeps_the_sentence_and_repeats_words_of_it(seed):
    sentence = take_sentences(split_sentences("train"), seed, 1)[0]
    said = add_repetitions(sentence, random.Random(seed))
    original, rewritten = _words(sentence), _words(said)
    assert len(rewritten) > len(original)
    # every word of the sentence is still said, in order
    it = iter(rewritten)
    assert all(word in it for word in original)
    extra = list(rewritten)
    for word in original:
        extra.remove(word)
    repeated = set(original) | {w for i in INTERJECTIONS for w in _words(i)}
    assert set(extra) <= repeated, (sentence, said)
    assert _says_a_phrase_twice(rewritten), said  # right away, as speakers repeat
    assert len(normalize(said).split()) > len(normalize(sentence).split())  # and scored so
    assert said == add_repetitions(sentence, random.Random(seed))  # seeded


def test_every_kind_of_repetition_occurs():
    sentence = "My sister painted the kitchen walls."
    said = {add_repetitions(sentence, random.Random(s)) for s in range(60)}
    assert any(s.startswith("My sister, my sister painted") for s in said)  # restart
    assert any(re.search(r"\b(\w+) \1\b", s) for s in said)  # a word said twice in place
    assert any(s.endswith(", walls.") or s.endswith(", kitchen.") for s in said)  # a long run
    assert any(_words(s)[0] not in ("my", "sister") for s in said)  # an interjection first
    assert add_repetitions("Hello.", random.Random(0)) == "Hello."  # one word: unchanged


def test_synthesised_share_of_repetitions(tmp_path):
    voices = ["espeak-ng:en-us"]
    plain = synthesize_dataset(tmp_path / "plain", 8, voices=voices, seed=2)
    mixed = synthesize_dataset(tmp_path / "mixed", 8, voices=voices, seed=2, repetitions=0.5)
    rows = lambda m: [json.loads(line) for line in m.read_text().splitlines()]  # noqa: E731
    repeated = [r for r in rows(mixed) if "repetition" in r["augment"]]
    assert 1 <= len(repeated) <= 7
    for before, after in zip(rows(plain), rows(mixed), strict=True):
        assert before["id"] == after["id"]  # the same bank positions
        if "repetition" in after["augment"]:
            assert len(_words(after["text"])) > len(_words(before["text"]))
            assert after["duration_s"] > before["duration_s"]  # the voice said it
        else:
            assert after == before
    summary = json.loads((mixed.parent / SUMMARY_NAME).read_text())
    assert summary["repetitions"] == 0.5 and summary["next_offset"] == 8
    assert summary["augment_counts"]["repetition"] == len(repeated)
    with pytest.raises(DistilrayError, match="repetitions must be in"):
        synthesize_dataset(tmp_path / "bad", 1, voices=voices, repetitions=1.5)


def test_cli_synth_repetitions(tmp_path, capsys):
    out = tmp_path / "cli"
    argv = ["data", "synth", "--out", str(out), "--num", "2", "--voices", "flite:slt"]
    assert main([*argv, "--repetitions", "1"]) == 0
    rows = [json.loads(line) for line in (out / "manifest.jsonl").read_text().splitlines()]
    assert all("repetition" in r["augment"] for r in rows)
    assert main([*argv, "--repetitions", "2"]) == 2
    assert "repetitions must be in [0, 1]" in capsys.readouterr().err


def test_demo_remakes_its_synthetic_set_only_when_repetitions_change(tmp_path, monkeypatch):
    from distilray.demo import REQUEST_NAME, SynthSection, synth

    section = SynthSection(out=str(tmp_path), num_clips=1, voices=["espeak-ng:en-us"])
    manifest = synth(section)
    # sets made before the field existed recorded no such key: they are still reused
    request = tmp_path / REQUEST_NAME
    old = {k: v for k, v in json.loads(request.read_text()).items() if k != "repetitions"}
    request.write_text(json.dumps(old))
    made = []
    monkeypatch.setattr(
        "distilray.data.synth.synthesize_dataset", lambda *a, **k: made.append(k) or manifest
    )
    assert synth(section) == manifest and not made
    synth(section.model_copy(update={"repetitions": 0.5}))
    assert [k["repetitions"] for k in made] == [0.5]
