"""Audio decoding: every common container/codec in, 16 kHz mono float32 out;
anything broken out as one AudioDecodeError, quickly."""

from __future__ import annotations

import io
import struct
import time
from contextlib import contextmanager

import av
import numpy as np
import pytest

from distilray import audio as audio_mod
from distilray.audio import (
    SAMPLING_RATE,
    add_noise,
    decode_audio,
    duration_s,
    encode_wav,
)
from distilray.errors import AudioDecodeError

CLIP_S = 3.0


@pytest.fixture(scope="module")
def signal() -> np.ndarray:
    """3 s of a speech-like signal at 16 kHz: a gliding harmonic tone with a syllable-rate envelope."""
    t = np.arange(int(CLIP_S * SAMPLING_RATE)) / SAMPLING_RATE
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    phase = 2 * np.pi * np.cumsum(f0) / SAMPLING_RATE
    voiced = sum(np.sin(k * phase) / k for k in range(1, 8))
    envelope = 0.5 + 0.5 * np.sin(2 * np.pi * 4 * t) ** 2
    return (0.3 * voiced * envelope).astype(np.float32)


def encode(
    samples: np.ndarray,
    container: str,
    codec: str,
    rate: int = SAMPLING_RATE,
    layout: str = "mono",
    options: dict | None = None,
) -> bytes:
    """Encode a 16 kHz mono waveform with PyAV into ``container``/``codec`` at ``rate``/``layout``."""
    buffer = io.BytesIO()
    with av.open(buffer, "w", format=container) as out:
        stream = out.add_stream(codec, rate=rate, layout=layout)
        if options:
            stream.options = options
        channels = 2 if layout == "stereo" else 1
        frame = av.AudioFrame.from_ndarray(
            np.tile(samples[None, :], (channels, 1)), format="fltp", layout=layout
        )
        frame.sample_rate = SAMPLING_RATE
        resampler = av.AudioResampler(
            format=stream.codec_context.format.name, layout=layout, rate=rate
        )
        for chunk in resampler.resample(frame) + resampler.resample(None):
            for packet in stream.encode(chunk):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


def best_correlation(decoded: np.ndarray, original: np.ndarray, max_lag: int = 4000) -> float:
    """Peak normalised cross-correlation within ±max_lag samples (codecs add delay)."""
    n = min(len(decoded), len(original))
    a, b = decoded[:n].astype(np.float64), original[:n].astype(np.float64)
    size = 2 * n
    corr = np.fft.irfft(np.fft.rfft(a, size) * np.conj(np.fft.rfft(b, size)), size)
    window = np.concatenate([corr[-max_lag:], corr[: max_lag + 1]])
    return float(window.max() / np.sqrt((a**2).sum() * (b**2).sum()))


# A guard against hangs (e.g. a decoder spinning on an absurd header), not a speed
# target: speed is measured by benchmarks, and a loaded CI machine must not fail this.
HANG_GUARD_S = 20.0


@contextmanager
def within(seconds: float):
    seconds = max(seconds, HANG_GUARD_S)
    start = time.perf_counter()
    yield
    elapsed = time.perf_counter() - start
    assert elapsed < seconds, f"took {elapsed:.2f} s"


FORMATS = {
    "wav": ("wav", "pcm_s16le", SAMPLING_RATE, "mono", None),
    "flac": ("flac", "flac", SAMPLING_RATE, "mono", None),
    "mp3": ("mp3", "libmp3lame", SAMPLING_RATE, "mono", None),
    "ogg-vorbis": ("ogg", "vorbis", 44100, "stereo", {"strict": "experimental"}),
    "ogg-opus": ("ogg", "libopus", 48000, "mono", None),
    "webm-opus": ("webm", "libopus", 48000, "mono", None),
    "m4a-aac": ("ipod", "aac", SAMPLING_RATE, "mono", None),
    "wav-44k-stereo": ("wav", "pcm_s16le", 44100, "stereo", None),
    "flac-48k-stereo": ("flac", "flac", 48000, "stereo", None),
    "aiff-22k-stereo": ("aiff", "pcm_s16be", 22050, "stereo", None),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
def test_decodes_every_format(fmt, signal):
    container, codec, rate, layout, options = FORMATS[fmt]
    data = encode(signal, container, codec, rate, layout, options)
    with within(1.0):
        decoded = decode_audio(data)
    assert decoded.dtype == np.float32 and decoded.ndim == 1
    # Lossy codecs pad a little (AAC adds priming samples): allow 0.15 s.
    assert abs(len(decoded) - len(signal)) <= 0.15 * SAMPLING_RATE
    assert np.abs(decoded).max() <= 1.0
    assert best_correlation(decoded, signal) > 0.9


def sphere(samples: np.ndarray, coding: str = "pcm") -> bytes:
    """NIST SPHERE (TIMIT, WSJ): a 1,024-byte text header, then 16-bit little-endian PCM."""
    pcm = (samples * 32767).astype("<i2").tobytes()
    header = (
        f"NIST_1A\n   1024\nsample_count -i {samples.size}\nsample_n_bytes -i 2\n"
        f"channel_count -i 1\nsample_byte_format -s2 01\nsample_rate -i {SAMPLING_RATE}\n"
        f"sample_coding -s{len(coding)} {coding}\nend_head\n"
    ).encode()
    return header.ljust(1024) + pcm


def test_nist_sphere_decodes_and_shorten_compression_is_named(signal):
    decoded = decode_audio(sphere(signal))
    np.testing.assert_allclose(decoded, signal, atol=1 / 16384)
    with pytest.raises(AudioDecodeError, match="shorten compression is not supported"):
        decode_audio(sphere(signal, "pcm,embedded-shorten-v2.00"))


def test_headerless_pcm_by_file_name_only(tmp_path, signal):
    """``*.raw``/``*.pcm`` files are 16 kHz 16-bit mono PCM; the same bytes uploaded
    (no name) or under another name are not audio."""
    pcm = (signal * 32767).astype("<i2").tobytes()
    for name in ("utt.raw", "UTT2.PCM"):
        (tmp_path / name).write_bytes(pcm)
        np.testing.assert_allclose(decode_audio(tmp_path / name), signal, atol=1 / 16384)
    # resampled like any other input when another rate is asked for
    assert decode_audio(tmp_path / "utt.raw", sampling_rate=8000).size == signal.size // 2
    with pytest.raises(AudioDecodeError, match="not a supported audio format"):
        decode_audio(pcm)
    (tmp_path / "utt.bin").write_bytes(pcm)
    with pytest.raises(AudioDecodeError, match=r"headerless 16 kHz 16-bit mono PCM as \.raw/\.pcm"):
        decode_audio(tmp_path / "utt.bin")
    # a file that does have a header is read by its header whatever its name
    (tmp_path / "wav.raw").write_bytes(encode_wav(signal))
    np.testing.assert_allclose(decode_audio(tmp_path / "wav.raw"), signal, atol=1 / 16384)


def test_paths_and_bytes_decode_alike(tmp_path, signal):
    data = encode(signal, "flac", "flac")
    path = tmp_path / "clip.flac"
    path.write_bytes(data)
    from_bytes = decode_audio(data)
    for source in (path, str(path), f"file://{path}"):
        np.testing.assert_array_equal(decode_audio(source), from_bytes)


def test_s3_sources_are_read_through_storage(monkeypatch, signal):
    data = encode(signal, "wav", "pcm_s16le")
    seen = []
    monkeypatch.setattr(audio_mod.storage, "read_bytes", lambda uri: seen.append(uri) or data)
    decoded = decode_audio("s3://bucket/clip.wav")
    assert seen == ["s3://bucket/clip.wav"]
    assert len(decoded) == len(signal)


def test_resamples_to_requested_rate(signal):
    decoded = decode_audio(encode(signal, "wav", "pcm_s16le"), sampling_rate=8000)
    assert abs(len(decoded) - len(signal) // 2) <= 8


def test_wav_claiming_a_huge_size_decodes_what_is_there():
    # espeak-ng --stdout and other streaming writers put 0x7ffff000-ish sizes in the header.
    pcm = (np.sin(np.arange(16000) / 5) * 10000).astype("<i2").tobytes()
    header = wav_header(SAMPLING_RATE, data_size=0xFFFFFFF0, riff_size=0xFFFFFFF0)
    with within(1.0):
        decoded = decode_audio(header + pcm)
    assert len(decoded) == 16000


def wav_header(rate: int, data_size: int, riff_size: int = 36) -> bytes:
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, rate, rate * 2, 2, 16)
    return (
        b"RIFF"
        + struct.pack("<I", riff_size)
        + b"WAVE"
        + b"fmt "
        + fmt
        + b"data"
        + struct.pack("<I", data_size)
    )


def video_without_audio() -> bytes:
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="matroska") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((64, 64, 3), np.uint8), format="rgb24")
            for packet in stream.encode(frame):
                out.mux(packet)
        for packet in stream.encode(None):
            out.mux(packet)
    return buffer.getvalue()


BROKEN = {
    "zero bytes": lambda: b"",
    "random bytes": lambda: np.random.default_rng(0).bytes(20000),
    "text": lambda: b"id,text\n1,hello world\n" * 50,
    "all zeros": lambda: bytes(4096),
    "1 MHz wav header, no data": lambda: wav_header(1_000_000, data_size=0),
    "1 MHz wav header, huge size": lambda: wav_header(1_000_000, data_size=0xFFFFFFF0),
    "16 kHz wav header, no data": lambda: wav_header(SAMPLING_RATE, data_size=0),
    "video without audio": video_without_audio,
}


@pytest.mark.parametrize("case", list(BROKEN))
def test_broken_input_raises_audio_decode_error(case):
    data = BROKEN[case]()
    with within(1.0), pytest.raises(AudioDecodeError):
        decode_audio(data)


@pytest.mark.parametrize("fmt", ["mp3", "flac", "ogg-opus", "m4a-aac"])
def test_truncated_files_decode_what_is_there_or_raise(fmt, signal):
    container, codec, rate, layout, options = FORMATS[fmt]
    data = encode(signal, container, codec, rate, layout, options)
    for cut in (len(data) // 2, 200, 30):
        with within(1.0):
            try:
                decoded = decode_audio(data[:cut])
            except AudioDecodeError:
                continue
        assert decoded.dtype == np.float32
        assert len(decoded) <= len(signal) + 0.15 * SAMPLING_RATE


def test_bad_files_and_locations(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("this is not audio\n" * 100)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    for source in (text, empty, tmp_path / "missing.wav", tmp_path, "http://example.com/a.wav"):
        with within(1.0), pytest.raises(AudioDecodeError):
            decode_audio(source)


def test_max_duration_is_enforced_while_decoding(signal):
    long_clip = encode(np.tile(signal, 20), "flac", "flac")  # 60 s
    with within(1.0), pytest.raises(AudioDecodeError, match="longer than"):
        decode_audio(long_clip, max_duration_s=2.0)
    assert len(decode_audio(long_clip, max_duration_s=None)) == 20 * len(signal)
    assert len(decode_audio(long_clip, max_duration_s=60.0)) == 20 * len(signal)


def test_encode_wav_round_trip_and_clipping(signal):
    loud = signal.copy()
    loud[:10] = 1.7
    decoded = decode_audio(encode_wav(loud))
    assert len(decoded) == len(loud)
    np.testing.assert_allclose(decoded[10:], loud[10:], atol=1 / 16000)
    assert np.all(decoded[:10] > 0.999)


def test_add_noise_hits_the_requested_snr(signal):
    for snr_db in (0.0, 10.0, 20.0):
        noisy = add_noise(signal, snr_db, np.random.default_rng(1))
        noise = noisy - signal
        measured = 10 * np.log10(np.mean(signal**2) / np.mean(noise**2))
        assert measured == pytest.approx(snr_db, abs=0.3)
    again = add_noise(signal, 10.0, np.random.default_rng(1))
    np.testing.assert_array_equal(again, add_noise(signal, 10.0, np.random.default_rng(1)))
    silence = np.zeros(1000, np.float32)
    np.testing.assert_array_equal(add_noise(silence, 10.0, np.random.default_rng(0)), silence)


def test_duration(signal):
    assert duration_s(signal) == pytest.approx(CLIP_S)
    assert duration_s(np.zeros(8000), sampling_rate=8000) == 1.0
