"""Augmentation aimed at the gap between synthetic speech and real recordings.

Synthesisers speak in a dead-quiet studio at one level through a perfect channel;
real speech arrives through rooms, noise, telephones and lossy codecs at any level.
A student trained on clean synthetic speech learns that studio. Each function here
imitates one part of the real path, and :func:`augment_clip` chains them in the order
sound meets them: speaker (speed) -> room (reverberation) -> background (noise) ->
channel (band limiting, codec) -> recorder (gain).

Everything is numpy plus PyAV (for codecs and resampling); every random choice comes
from the ``numpy.random.Generator`` a caller passes, so one seed per clip reproduces it.
"""

from __future__ import annotations

import io
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Literal

import av
import numpy as np
from pydantic import Field, model_validator

from distilray.audio import SAMPLING_RATE, decode_audio, encode_wav
from distilray.config import StageConfig
from distilray.errors import DistilrayError

NOISE_KINDS = ("white", "pink", "brown", "babble", "recorded")
CODECS = {  # name -> (container, encoder)
    "mp3": ("mp3", "libmp3lame"),
    "opus": ("ogg", "libopus"),
}
AUDIO_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
PEAK = 0.99  # gain never pushes a sample above this: a real recorder's headroom
MAX_RIR_S = 1.5  # real room responses are cut here; the tail beyond is inaudible
BABBLE_TALKERS = (3, 6)  # overlapping background voices in babble noise
EDGE_HZ = 100.0  # width of the cosine roll-off at each band edge

Range = tuple[float, float]


class AugmentConfig(StageConfig):
    """Which augmentations a clip may get, each with its own probability.

    Probabilities are per clip and independent; ranges are sampled uniformly.
    All zeros (the default) leaves clips exactly as synthesised.
    """

    pitch_prob: float = Field(0.0, ge=0, le=1, description="chance of a pitch shift (at synthesis)")
    pitch_semitones: float = Field(2.0, ge=0, le=12, description="pitch shift within +- this")
    speed_prob: float = Field(0.0, ge=0, le=1, description="chance of speed perturbation")
    speed_range: Range = Field((0.9, 1.1), description="tempo and pitch factor (Kaldi-style)")
    reverb_prob: float = Field(0.0, ge=0, le=1, description="chance of room reverberation")
    rt60_s: Range = Field((0.2, 0.8), description="synthetic room decay time (s)")
    rir_dir: str | None = Field(None, description="folder of real room impulse responses")
    noise_prob: float = Field(0.0, ge=0, le=1, description="chance of background noise")
    snr_db: Range = Field((5.0, 30.0), description="signal-to-noise ratio (dB)")
    noise_kinds: dict[str, float] = Field(
        default_factory=lambda: {
            "white": 1.0,
            "pink": 1.0,
            "brown": 1.0,
            "babble": 2.0,
            "recorded": 2.0,
        },
        description="relative weight of each noise kind (recorded needs noise_dir)",
    )
    noise_dir: str | None = Field(None, description="folder of recorded background noise")
    bandlimit_prob: float = Field(0.0, ge=0, le=1, description="chance of a telephone band")
    band_hz: Range = Field((300.0, 3400.0), description="pass band (Hz)")
    codec_prob: float = Field(0.0, ge=0, le=1, description="chance of a lossy codec round trip")
    mp3_kbps: Range = Field((16.0, 32.0), description="mp3 bitrate (kbit/s)")
    opus_kbps: Range = Field((8.0, 16.0), description="opus bitrate (kbit/s)")
    gain_prob: float = Field(0.0, ge=0, le=1, description="chance of a level change")
    gain_db: Range = Field((-20.0, 6.0), description="level change (dB), clipping-protected")

    @model_validator(mode="after")
    def _check(self) -> AugmentConfig:
        for name in (
            "speed_range",
            "rt60_s",
            "snr_db",
            "band_hz",
            "mp3_kbps",
            "opus_kbps",
            "gain_db",
        ):
            low, high = getattr(self, name)
            if low > high:
                raise ValueError(f"{name}: the low end {low} is above the high end {high}")
        unknown = set(self.noise_kinds) - set(NOISE_KINDS)
        if unknown:
            raise ValueError(f"noise_kinds: unknown {sorted(unknown)}; choose from {NOISE_KINDS}")
        if self.speed_range[0] <= 0 or self.rt60_s[0] <= 0:
            raise ValueError("speed_range and rt60_s must be positive")
        return self

    @property
    def active(self) -> bool:
        """Whether any augmentation can happen (the pitch shift counts)."""
        return any(getattr(self, f) > 0 for f in type(self).model_fields if f.endswith("_prob"))


PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    # Mild: most clips stay close to clean; for validation sets that should still vary.
    "light": AugmentConfig(
        pitch_prob=0.5, speed_prob=0.3, reverb_prob=0.2, noise_prob=0.3,
        snr_db=(15.0, 35.0), codec_prob=0.1, gain_prob=0.5, gain_db=(-10.0, 3.0),
    ),
    # For training a student that must hear real speech: most clips get several.
    "robust": AugmentConfig(
        pitch_prob=0.7, pitch_semitones=3.0, speed_prob=0.5, speed_range=(0.85, 1.15),
        reverb_prob=0.4, noise_prob=0.6, snr_db=(5.0, 30.0), bandlimit_prob=0.15,
        codec_prob=0.3, gain_prob=0.7,
    ),
}  # fmt: skip


def preset(name: str) -> AugmentConfig:
    """A named configuration: ``none``, ``light`` or ``robust``."""
    if name not in PRESETS:
        raise DistilrayError(f"unknown augmentation preset {name!r}: choose {', '.join(PRESETS)}")
    return PRESETS[name].model_copy()


def change_speed(audio: np.ndarray, factor: float) -> np.ndarray:
    """Play ``audio`` ``factor`` times faster: tempo and pitch both scale by ``factor``.

    Resamples with FFmpeg's resampler: the samples are labelled as recorded at
    ``factor * SAMPLING_RATE`` and converted back to ``SAMPLING_RATE``.
    """
    rate = int(round(SAMPLING_RATE * factor))
    return decode_audio(encode_wav(audio, sampling_rate=rate), max_duration_s=None)


def colored_noise(num: int, kind: str, rng: np.random.Generator) -> np.ndarray:
    """Unit-RMS noise: ``white`` (flat), ``pink`` (1/f power) or ``brown`` (1/f^2 power)."""
    white = rng.standard_normal(num)
    if kind != "white":
        exponent = {"pink": 0.5, "brown": 1.0}[kind]
        spectrum = np.fft.rfft(white)
        freqs = np.fft.rfftfreq(num, 1.0 / SAMPLING_RATE)
        spectrum /= np.maximum(freqs, 20.0) ** exponent  # flat below 20 Hz: no DC drift
        white = np.fft.irfft(spectrum, n=num)
    return (white / (np.sqrt(np.mean(white**2)) + 1e-12)).astype(np.float32)


def babble(num: int, talkers: Sequence[np.ndarray], rng: np.random.Generator) -> np.ndarray:
    """Several other utterances overlapping at random offsets, looped to ``num`` samples."""
    mix = np.zeros(num, np.float32)
    for speech in talkers:
        looped = np.resize(speech, num + speech.size)  # repeat to cover the clip
        start = int(rng.integers(0, speech.size))
        mix += looped[start : start + num] * rng.uniform(0.5, 1.0)
    return mix / (np.sqrt(np.mean(mix**2)) + 1e-12)


def add_at_snr(audio: np.ndarray, noise: np.ndarray, snr_db: float) -> np.ndarray:
    """``audio`` plus ``noise`` (looped or cut to length) at ``snr_db`` dB."""
    noise = np.resize(noise, audio.size).astype(np.float32)
    signal_power = float(np.mean(audio.astype(np.float64) ** 2))
    noise_power = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-20
    scale = np.sqrt(signal_power / noise_power / 10.0 ** (snr_db / 10.0))
    return (audio + scale * noise).astype(np.float32)


def synthetic_rir(rt60_s: float, rng: np.random.Generator) -> np.ndarray:
    """A room impulse response: a direct path, then noise decaying 60 dB in ``rt60_s``.

    The classic statistical room model (Schroeder): late reverberation is dense and
    random with an exponential envelope; early reflections are not modelled.
    """
    num = int(rt60_s * SAMPLING_RATE)
    t = np.arange(num) / SAMPLING_RATE
    tail = rng.standard_normal(num) * np.exp(-6.9 * t / rt60_s)  # ln(1000) = 6.9: -60 dB
    delay = int(rng.uniform(0.002, 0.01) * SAMPLING_RATE)  # first reflections arrive later
    rir = np.concatenate([[1.0], np.zeros(delay), 0.3 * tail])
    return (rir / np.sqrt(np.sum(rir**2))).astype(np.float32)


def reverberate(audio: np.ndarray, rir: np.ndarray) -> np.ndarray:
    """Convolve with ``rir`` (FFT), keep the original length and loudness."""
    size = audio.size + rir.size - 1
    n = 1 << (size - 1).bit_length()
    wet = np.fft.irfft(np.fft.rfft(audio, n) * np.fft.rfft(rir, n), n)[: audio.size]
    return _match_rms(wet, audio)


def band_limit(audio: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """Keep ``low_hz``-``high_hz`` (a telephone channel is 300-3400 Hz), cosine edges."""
    spectrum = np.fft.rfft(audio)
    freqs = np.fft.rfftfreq(audio.size, 1.0 / SAMPLING_RATE)
    rise = np.clip((freqs - (low_hz - EDGE_HZ)) / EDGE_HZ, 0.0, 1.0)
    fall = np.clip(((high_hz + EDGE_HZ) - freqs) / EDGE_HZ, 0.0, 1.0)
    mask = np.sin(0.5 * np.pi * rise) ** 2 * np.sin(0.5 * np.pi * fall) ** 2
    return _match_rms(np.fft.irfft(spectrum * mask, n=audio.size), audio)


def codec_round_trip(audio: np.ndarray, codec: str, kbps: float) -> np.ndarray:
    """Encode with a lossy codec at ``kbps`` kbit/s and decode back (PyAV/FFmpeg)."""
    container, encoder = CODECS[codec]
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(encoder, rate=SAMPLING_RATE, layout="mono")
        stream.bit_rate = int(kbps * 1000)
        frame = av.AudioFrame.from_ndarray(
            np.clip(audio, -1.0, 1.0).astype(np.float32)[None, :], format="flt", layout="mono"
        )
        frame.sample_rate = SAMPLING_RATE
        for packet in [*stream.encode(frame), *stream.encode(None)]:
            out.mux(packet)
    decoded = decode_audio(buffer.getvalue(), max_duration_s=None)[: audio.size]
    return np.pad(decoded, (0, audio.size - decoded.size))  # same length as the input


def apply_gain(audio: np.ndarray, gain_db: float) -> np.ndarray:
    """Scale by ``gain_db``; if that would clip, scale only up to the recorder's peak."""
    scaled = audio * np.float32(10.0 ** (gain_db / 20.0))
    peak = float(np.max(np.abs(scaled))) if scaled.size else 0.0
    return scaled * np.float32(PEAK / peak) if peak > PEAK else scaled


def _match_rms(audio: np.ndarray, reference: np.ndarray) -> np.ndarray:
    rms = np.sqrt(np.mean(audio**2)) + 1e-12
    return (audio * (np.sqrt(np.mean(reference**2)) / rms)).astype(np.float32)


def load_folder(folder: str | None) -> list[np.ndarray]:
    """Every audio file in ``folder`` (recursively), decoded; empty when ``folder`` is None."""
    if folder is None:
        return []
    root = Path(folder)
    if not root.is_dir():
        raise DistilrayError(f"augmentation folder {root} does not exist")
    paths = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_SUFFIXES)
    if not paths:
        raise DistilrayError(f"no audio files ({', '.join(AUDIO_SUFFIXES)}) in {root}")
    return [decode_audio(p, max_duration_s=None) for p in paths]


Talkers = Callable[[int], list[np.ndarray]]  # n -> n other utterances of this dataset


class Augmenter:
    """Applies an :class:`AugmentConfig`; holds the recorded noise and room responses."""

    def __init__(self, config: AugmentConfig) -> None:
        self.config = config
        self.noises = load_folder(config.noise_dir)
        self.rirs = [r[: int(MAX_RIR_S * SAMPLING_RATE)] for r in load_folder(config.rir_dir)]

    def pitch(self, rng: np.random.Generator) -> float:
        """The pitch shift (semitones) the synthesiser should apply; 0 when none."""
        c = self.config
        if rng.uniform() >= c.pitch_prob:
            return 0.0
        return round(float(rng.uniform(-c.pitch_semitones, c.pitch_semitones)), 2)

    def __call__(
        self,
        audio: np.ndarray,
        rng: np.random.Generator,
        talkers: Talkers | None = None,
        *,
        speed: bool = True,
    ) -> tuple[np.ndarray, list[str]]:
        """The augmented clip and what was done, e.g. ``["reverb:rt60=0.43", "noise:pink@12dB"]``.

        Every step draws its random numbers whether or not it applies, so enabling one
        augmentation does not change what the others do to the same clip. ``talkers``
        supplies other utterances for babble noise; ``speed=False`` keeps the duration.
        """
        applied: list[str] = []
        for step in (self._speed, self._reverb, self._noise, self._band, self._codec, self._gain):
            step_rng = np.random.default_rng(rng.integers(2**63))
            if step != self._speed or speed:
                audio = step(audio, step_rng, applied, talkers)
        return audio.astype(np.float32), applied

    def _speed(self, audio, rng, applied, talkers):
        c = self.config
        factor = rng.uniform(*c.speed_range)
        if rng.uniform() >= c.speed_prob:
            return audio
        applied.append(f"speed={factor:.3f}")
        return change_speed(audio, factor)

    def _reverb(self, audio, rng, applied, talkers):
        c = self.config
        if rng.uniform() >= c.reverb_prob:
            return audio
        if self.rirs:
            index = int(rng.integers(len(self.rirs)))
            applied.append(f"reverb:rir{index}")
            return reverberate(audio, self.rirs[index])
        rt60 = rng.uniform(*c.rt60_s)
        applied.append(f"reverb:rt60={rt60:.2f}")
        return reverberate(audio, synthetic_rir(rt60, rng))

    def _noise(self, audio, rng, applied, talkers):
        c = self.config
        snr = rng.uniform(*c.snr_db)
        if rng.uniform() >= c.noise_prob:
            return audio
        kind = self._noise_kind(rng, talkers is not None)
        if kind is None:
            return audio
        if kind == "babble":
            noise = babble(
                audio.size, talkers(int(rng.integers(*BABBLE_TALKERS, endpoint=True))), rng
            )
        elif kind == "recorded":
            noise = self.noises[int(rng.integers(len(self.noises)))]
            start = int(rng.integers(max(1, noise.size - audio.size)))
            noise = noise[start:]
        else:
            noise = colored_noise(audio.size, kind, rng)
        applied.append(f"noise:{kind}@{snr:.0f}dB")
        return add_at_snr(audio, noise, snr)

    def _noise_kind(self, rng: np.random.Generator, have_talkers: bool) -> str | None:
        """A weighted draw among the noise kinds that are possible for this clip."""
        weights = dict(self.config.noise_kinds)
        if not self.noises:
            weights.pop("recorded", None)
        if not have_talkers:
            weights.pop("babble", None)
        kinds = [k for k, w in weights.items() if w > 0]
        if not kinds:
            return None
        p = np.array([weights[k] for k in kinds], dtype=np.float64)
        return kinds[int(rng.choice(len(kinds), p=p / p.sum()))]

    def _band(self, audio, rng, applied, talkers):
        c = self.config
        if rng.uniform() >= c.bandlimit_prob:
            return audio
        applied.append(f"band:{c.band_hz[0]:.0f}-{c.band_hz[1]:.0f}Hz")
        return band_limit(audio, *c.band_hz)

    def _codec(self, audio, rng, applied, talkers):
        c = self.config
        codec: Literal["mp3", "opus"] = "mp3" if rng.uniform() < 0.5 else "opus"
        kbps = rng.uniform(*(c.mp3_kbps if codec == "mp3" else c.opus_kbps))
        if rng.uniform() >= c.codec_prob:
            return audio
        applied.append(f"codec:{codec}@{kbps:.0f}k")
        return codec_round_trip(audio, codec, kbps)

    def _gain(self, audio, rng, applied, talkers):
        c = self.config
        gain = rng.uniform(*c.gain_db)
        if rng.uniform() >= c.gain_prob:
            return apply_gain(audio, 0.0)  # noise or reverb may have pushed peaks over
        applied.append(f"gain={gain:+.1f}dB")
        return apply_gain(audio, gain)
