"""Augmentation: each transform on signals whose answer is known (tones, noise spectra,
SNRs), the config and presets, determinism, and augmented synthesis end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from distilray.audio import SAMPLING_RATE, encode_wav
from distilray.data.augment import (
    PEAK,
    AugmentConfig,
    Augmenter,
    add_at_snr,
    apply_gain,
    band_limit,
    change_speed,
    codec_round_trip,
    colored_noise,
    preset,
    reverberate,
    synthetic_rir,
)
from distilray.data.synth import SUMMARY_NAME, synthesize_dataset
from distilray.errors import DistilrayError

ALL_ON = AugmentConfig(
    pitch_prob=1, speed_prob=1, reverb_prob=1, noise_prob=1, bandlimit_prob=1,
    codec_prob=1, gain_prob=1,
)  # fmt: skip


def tone(hz: float, seconds: float = 1.0, amplitude: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * SAMPLING_RATE)) / SAMPLING_RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype(np.float32)


def power_at(audio: np.ndarray, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SAMPLING_RATE)
    return float(spectrum[np.argmin(np.abs(freqs - hz))])


def dominant_hz(audio: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(audio.size, 1 / SAMPLING_RATE)[np.argmax(spectrum)])


def band_power(audio: np.ndarray, low: float, high: float) -> float:
    spectrum = np.abs(np.fft.rfft(audio)) ** 2
    freqs = np.fft.rfftfreq(audio.size, 1 / SAMPLING_RATE)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum())


def test_noise_colours_tilt_towards_low_frequencies():
    rng = np.random.default_rng(0)
    tilt = {}
    for kind in ("white", "pink", "brown"):
        noise = colored_noise(4 * SAMPLING_RATE, kind, rng)
        assert np.sqrt(np.mean(noise**2)) == pytest.approx(1.0, rel=1e-3)
        tilt[kind] = band_power(noise, 50, 500) / band_power(noise, 4000, 7500)
    assert tilt["white"] < 0.2  # 450 Hz vs 3500 Hz of flat spectrum: ~0.13
    assert tilt["white"] < tilt["pink"] < tilt["brown"]


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 25.0])
def test_noise_is_mixed_at_the_asked_snr(snr_db):
    clean = tone(440)
    noise = colored_noise(clean.size // 3, "pink", np.random.default_rng(1))  # looped
    noisy = add_at_snr(clean, noise, snr_db)
    measured = 10 * np.log10(np.mean(clean**2) / np.mean((noisy - clean) ** 2))
    assert noisy.size == clean.size and measured == pytest.approx(snr_db, abs=0.1)


def test_synthetic_room_decays_by_60_db_in_rt60():
    rir = synthetic_rir(0.5, np.random.default_rng(2))
    assert rir[0] == np.max(np.abs(rir))  # the direct path comes first and loudest
    early = np.mean(rir[100:800] ** 2)
    late = np.mean(rir[int(0.45 * SAMPLING_RATE) :] ** 2)
    assert 10 * np.log10(early / late) > 40
    wet = reverberate(tone(300), rir)
    assert wet.size == SAMPLING_RATE
    assert np.sqrt(np.mean(wet**2)) == pytest.approx(np.sqrt(np.mean(tone(300) ** 2)), rel=1e-3)


def test_telephone_band_keeps_speech_frequencies_only():
    mix = tone(100) + tone(1000) + tone(6000)
    narrow = band_limit(mix, 300, 3400)
    assert power_at(narrow, 1000) > 100 * power_at(narrow, 100)
    assert power_at(narrow, 1000) > 100 * power_at(narrow, 6000)


@pytest.mark.parametrize(("codec", "kbps"), [("mp3", 16), ("mp3", 32), ("opus", 8), ("opus", 16)])
def test_codec_round_trip_keeps_length_and_content(codec, kbps):
    clean = tone(440, seconds=2.0)
    coded = codec_round_trip(clean, codec, kbps)
    assert coded.size == clean.size and coded.dtype == np.float32
    assert not np.array_equal(coded, clean)  # really lossy
    assert dominant_hz(coded) == pytest.approx(440, abs=2)


def test_gain_never_clips():
    loud = tone(440, amplitude=0.8)
    assert np.max(np.abs(apply_gain(loud, 12.0))) == pytest.approx(PEAK, abs=1e-6)
    quiet = apply_gain(loud, -20.0)
    assert np.max(np.abs(quiet)) == pytest.approx(0.08, rel=1e-3)


def test_speed_changes_tempo_and_pitch_together():
    faster = change_speed(tone(400), 1.25)
    assert faster.size == pytest.approx(SAMPLING_RATE / 1.25, abs=2)
    assert dominant_hz(faster) == pytest.approx(500, abs=3)


def test_nothing_happens_by_default():
    audio = tone(440)
    out, applied = Augmenter(AugmentConfig())(audio, np.random.default_rng(0))
    assert applied == [] and np.array_equal(out, audio)
    assert not AugmentConfig().active and preset("robust").active


def test_augmenter_is_deterministic_and_records_what_it_did():
    audio = tone(220, seconds=2.0)
    talkers = lambda n: [tone(150 + 50 * i, 1.5) for i in range(n)]  # noqa: E731
    augmenter = Augmenter(ALL_ON)
    first = augmenter(audio, np.random.default_rng(5), talkers)
    again = augmenter(audio, np.random.default_rng(5), talkers)
    other = augmenter(audio, np.random.default_rng(6), talkers)
    assert first[1] == again[1] and np.array_equal(first[0], again[0])
    assert first[1] != other[1]
    kinds = [a.split(":")[0].split("=")[0] for a in first[1]]
    assert kinds == ["speed", "reverb", "noise", "band", "codec", "gain"]
    assert np.max(np.abs(first[0])) <= PEAK + 1e-6
    assert augmenter.pitch(np.random.default_rng(0)) != 0.0


def test_one_augmentation_does_not_reshuffle_the_others():
    audio = tone(330)
    only_noise = AugmentConfig(noise_prob=1, noise_kinds={"white": 1})
    noise_and_gain = only_noise.model_copy(update={"gain_prob": 1.0})
    a = Augmenter(only_noise)(audio, np.random.default_rng(9))[1]
    b = Augmenter(noise_and_gain)(audio, np.random.default_rng(9))[1]
    assert b[: len(a)] == a and b[-1].startswith("gain=")


def test_recorded_noise_and_rooms_from_folders(tmp_path):
    (tmp_path / "noise").mkdir()
    (tmp_path / "rooms").mkdir()
    (tmp_path / "noise" / "hum.wav").write_bytes(encode_wav(tone(50, seconds=3.0)))
    rir = synthetic_rir(0.3, np.random.default_rng(0))
    (tmp_path / "rooms" / "hall.wav").write_bytes(encode_wav(rir / np.max(np.abs(rir))))
    config = AugmentConfig(
        noise_prob=1, noise_kinds={"recorded": 1}, noise_dir=str(tmp_path / "noise"),
        reverb_prob=1, rir_dir=str(tmp_path / "rooms"),
    )  # fmt: skip
    out, applied = Augmenter(config)(tone(1000), np.random.default_rng(0))
    assert applied[0] == "reverb:rir0" and applied[1].startswith("noise:recorded@")
    assert power_at(out, 50) > 0
    (tmp_path / "empty").mkdir()
    with pytest.raises(DistilrayError, match="no audio files"):
        Augmenter(AugmentConfig(noise_dir=str(tmp_path / "empty")))
    with pytest.raises(DistilrayError, match="does not exist"):
        Augmenter(AugmentConfig(rir_dir=str(tmp_path / "missing")))


def test_babble_needs_other_clips():
    config = AugmentConfig(noise_prob=1, noise_kinds={"babble": 1})
    out, applied = Augmenter(config)(tone(440), np.random.default_rng(0), talkers=None)
    assert applied == []  # no other clips: no babble rather than some other noise
    _, applied = Augmenter(config)(tone(440), np.random.default_rng(0), lambda n: [tone(200)] * n)
    assert applied[0].startswith("noise:babble@")


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"snr_db": (30, 5)}, "snr_db: the low end 30.0 is above the high end 5.0"),
        ({"noise_kinds": {"traffic": 1}}, "unknown \\['traffic'\\]"),
        ({"codec_prob": 1.5}, "less than or equal to 1"),
        ({"speed_range": (0, 1.1)}, "must be positive"),
        ({"reverb": 1}, "Extra inputs"),
    ],
)
def test_config_errors(fields, message):
    with pytest.raises(ValidationError, match=message):
        AugmentConfig(**fields)


def test_presets():
    assert preset("none") == AugmentConfig()
    assert preset("light").noise_prob < preset("robust").noise_prob
    with pytest.raises(DistilrayError, match="unknown augmentation preset 'heavy'"):
        preset("heavy")


def rows_of(manifest: Path) -> list[dict]:
    return [json.loads(line) for line in manifest.read_text().splitlines()]


def test_augmented_synthesis_is_recorded_and_reproducible(tmp_path):
    voices = ["espeak-ng:en-us", "espeak-ng:en-gb+f2"]
    first = synthesize_dataset(tmp_path / "a", 4, voices=voices, seed=2, augment=ALL_ON)
    again = synthesize_dataset(tmp_path / "b", 4, voices=voices, seed=2, augment=ALL_ON)
    rows = rows_of(first)
    assert rows == rows_of(again)
    for row in rows:
        assert row["augment"][0].startswith("pitch=")
        assert any(a.startswith("noise:") for a in row["augment"])
        assert (first.parent / row["audio"]).read_bytes() == (
            again.parent / row["audio"]
        ).read_bytes()
    summary = json.loads((first.parent / SUMMARY_NAME).read_text())
    assert summary["augment_counts"]["codec"] == 4 and summary["augment"]["codec_prob"] == 1


def test_cli_augment_preset(tmp_path, capsys):
    from distilray.cli import main

    out = tmp_path / "cli"
    argv = ["data", "synth", "--out", str(out), "--num", "2", "--voices", "espeak-ng:en-us"]
    assert main([*argv, "--augment", "robust", "--seed", "3"]) == 0
    rows = rows_of(out / "manifest.jsonl")
    assert len(rows) == 2 and all("augment" in r for r in rows)
    assert main([*argv, "--noise-dir", str(tmp_path / "none")]) == 2
    assert "does not exist" in capsys.readouterr().err
