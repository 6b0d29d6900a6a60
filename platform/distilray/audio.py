"""Audio in and out: decode the common audio containers into 16 kHz mono float32.

Every stage turns audio into model input through :func:`decode_audio`, so a clip
decodes the same way in labelling, training, evaluation and serving. Decoding is
done by PyAV (FFmpeg) in memory; downmixing and resampling by ``av.AudioResampler``
(libswresample). Anything that is not decodable audio raises one exception type,
:class:`~distilray.errors.AudioDecodeError`, so pipelines can drop the row with its
reason instead of failing.

Every input is untrusted (uploads, manifests, buckets), so FFmpeg never guesses the
format: the container is recognised from its first bytes and opened with that one
demuxer from an allow-list (:data:`CONTAINERS`). FFmpeg's guessing would also pick
demuxers that open other files or sockets named inside the input (concat and HLS
playlists, SDP, image sequences), and no protocol may be opened from inside a file.
Headerless PCM has no first bytes to recognise: a local or ``s3://`` file named
``*.raw`` or ``*.pcm`` is read as 16-bit little-endian mono at 16 kHz (the CMU Sphinx
and Kaldi convention); encoded bytes (an upload) never are.
"""

from __future__ import annotations

import io
import logging
import os
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import av
import numpy as np

from distilray import storage
from distilray.errors import AudioDecodeError, AudioTooLongError, DistilrayError

logger = logging.getLogger(__name__)

SAMPLING_RATE = 16000  # Hz: what Whisper's feature extractor expects
MAX_BAD_PACKETS = 100  # undecodable packets skipped before a file counts as broken
MAX_SOURCE_RATE = 768_000  # Hz: the highest rate real recorders produce; above is a broken header

# Output frames of 1 s: fewer, larger frames cut PyAV's per-frame overhead by ~30 %.
_OUT_FRAME_SIZE = SAMPLING_RATE

# The accepted containers: FFmpeg demuxer name -> what users call it. Only these
# demuxers ever see input bytes; none of them opens anything the file names.
CONTAINERS = {
    "wav": "WAV",
    "flac": "FLAC",
    "mp3": "MP3",
    "ogg": "Ogg (Vorbis, Opus)",
    "mov": "MP4/M4A",
    "matroska": "WebM/Matroska",
    "aiff": "AIFF",
    "nistsphere": "NIST SPHERE (TIMIT, WSJ)",
}
# Headerless PCM, known only by its file name: suffix -> the raw demuxer and its format.
RAW_PCM_SUFFIXES = (".raw", ".pcm")
RAW_PCM_DEMUXER = "s16le"
RAW_PCM_OPTIONS = {"sample_rate": str(SAMPLING_RATE), "ch_layout": "mono"}
# Demuxer options for every input. An empty protocol whitelist matches no protocol:
# the input itself comes through a Python file object, which needs none, and a
# reference inside a file (a playlist entry, an MP4 data reference) cannot be opened.
_CONTAINER_OPTIONS = {"protocol_whitelist": ""}
# MP4/MOV may point its samples at other files ("data references"): never follow them.
_MOV_OPTIONS = {"enable_drefs": "0", "use_absolute_path": "0"}
_SNIFF_BYTES = 12  # long enough for every signature in sniff_container
_ID3_HEADER_BYTES = 10  # ID3v2 header (and footer) size
_SPHERE_HEADER_BYTES = 1024  # NIST SPHERE's usual header size (its sample_coding is in it)

# Everything a malformed stream can raise inside PyAV/FFmpeg or its Python glue.
_DECODE_ERRORS = (av.error.FFmpegError, ValueError, EOFError, OSError, IndexError, RuntimeError)

AudioSource = bytes | bytearray | memoryview | str | os.PathLike


def decode_audio(
    source: AudioSource,
    *,
    sampling_rate: int = SAMPLING_RATE,
    max_duration_s: float | None = 3600.0,
) -> np.ndarray:
    """Decode ``source`` (encoded bytes, a local path or an ``s3://`` URI) to mono float32.

    The result has shape ``(num_samples,)`` at ``sampling_rate`` with values in
    ``[-1, 1]``. Raises :class:`AudioDecodeError` for empty, corrupt or non-audio input,
    a container not in :data:`CONTAINERS` (nor a ``*.raw``/``*.pcm`` file of headerless
    PCM), input without an audio stream, and audio
    longer than ``max_duration_s`` (checked while decoding, so an hours-long file costs
    no more than the limit).
    """
    name = _describe(source)
    try:
        with _open_source(source, name) as stream, _open_container(stream, name) as container:
            audio = _decode_stream(container, sampling_rate, max_duration_s, name)
    except _DECODE_ERRORS as exc:
        raise AudioDecodeError(f"cannot decode audio from {name}: {_reason(exc)}") from None
    except MemoryError:
        raise AudioDecodeError(f"cannot decode audio from {name}: out of memory") from None
    if audio.size == 0:
        raise AudioDecodeError(f"no audio samples in {name}")
    return audio


def _describe(source: AudioSource) -> str:
    if isinstance(source, bytes | bytearray | memoryview):
        return f"<{len(source)} bytes>"
    return str(source)


def _reason(exc: BaseException) -> str:
    text = exc.strerror if isinstance(exc, av.error.FFmpegError) else str(exc)
    text = (text or "").strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _open_source(source: AudioSource, name: str) -> BinaryIO:
    """A binary file object over the encoded audio.

    Local files are opened by Python rather than handed to FFmpeg as a string, so
    a path can never be taken for an FFmpeg protocol (``http:``, ``pipe:``, ...).
    """
    if isinstance(source, bytes | bytearray | memoryview):
        if len(source) == 0:
            raise AudioDecodeError("empty audio input (0 bytes)")
        return io.BytesIO(source)
    uri = str(source)
    if storage.is_s3(uri):
        try:
            data = storage.read_bytes(uri)
        except DistilrayError as exc:
            raise AudioDecodeError(str(exc)) from None
        if not data:
            raise AudioDecodeError(f"empty audio file {name}")
        return io.BytesIO(data)
    if "://" in uri and not uri.startswith("file://"):
        raise AudioDecodeError(f"unsupported audio location {uri!r}: use a local path or s3://")
    path = Path(uri.removeprefix("file://")).expanduser()
    try:
        if path.stat().st_size == 0:
            raise AudioDecodeError(f"empty audio file {name}")
        return path.open("rb")
    except OSError as exc:
        raise AudioDecodeError(f"cannot open audio file {name}: {exc.strerror or exc}") from None


def _open_container(stream: BinaryIO, name: str) -> av.container.InputContainer:
    """Open ``stream`` with the one allowed demuxer its first bytes call for."""
    demuxer = _detect_container(stream, name)
    options = {**_CONTAINER_OPTIONS, **(_MOV_OPTIONS if demuxer == "mov" else {})}
    if demuxer == RAW_PCM_DEMUXER:
        options.update(RAW_PCM_OPTIONS)
    # metadata_errors="ignore": broken tags must not fail an otherwise fine file.
    return av.open(
        stream, mode="r", format=demuxer, container_options=options, metadata_errors="ignore"
    )


def _detect_container(stream: BinaryIO, name: str) -> str:
    """The demuxer for ``stream`` (left at its start), or :class:`AudioDecodeError`."""
    head = _peek(stream, 0, _SNIFF_BYTES)
    demuxer = sniff_container(head)
    # FFmpeg skips a leading ID3v2 tag for every demuxer, and FLAC may carry one too.
    if head.startswith(b"ID3") and _peek(stream, _id3v2_size(head), 4) == b"fLaC":
        demuxer = "flac"
    if demuxer == "nistsphere" and b"shorten" in _peek(stream, 0, _SPHERE_HEADER_BYTES):
        raise AudioDecodeError(
            f"cannot decode audio from {name}: NIST SPHERE with shorten compression is not "
            "supported (decompress it first, e.g. with sph2pipe)"
        )
    if demuxer is None and is_raw_pcm_name(name):
        demuxer = RAW_PCM_DEMUXER
    if demuxer is None:
        accepted = ", ".join(CONTAINERS.values())
        if not name.startswith("<"):  # a file, not bytes: its name could mark raw PCM
            accepted += f"; headerless 16 kHz 16-bit mono PCM as {'/'.join(RAW_PCM_SUFFIXES)}"
        raise AudioDecodeError(
            f"cannot decode audio from {name}: not a supported audio format (accepted: {accepted})"
        )
    return demuxer


def is_raw_pcm_name(name: str) -> bool:
    """Whether a file called ``name`` (a path or URI) holds headerless PCM.

    >>> is_raw_pcm_name("s3://bucket/utt1.RAW"), is_raw_pcm_name("<640 bytes>")
    (True, False)
    """
    return name.lower().endswith(RAW_PCM_SUFFIXES)


def sniff_container(head: bytes) -> str | None:
    """The demuxer (a key of :data:`CONTAINERS`) for a file starting with ``head``.

    ``head`` is the first 12 bytes or more; ``None`` when no accepted container
    starts that way.

    >>> sniff_container(b"RIFF\\x24\\x00\\x00\\x00WAVEfmt "), sniff_container(b"ffconcat ver")
    ('wav', None)
    """
    if head[:4] in (b"RIFF", b"RF64", b"BW64") and head[8:12] == b"WAVE":
        return "wav"
    if head.startswith(b"fLaC"):
        return "flac"
    if head.startswith(b"OggS"):
        return "ogg"
    if head[4:8] == b"ftyp":  # ISO base media (MP4, M4A): the first box is the file type
        return "mov"
    if head.startswith(b"\x1a\x45\xdf\xa3"):  # EBML header: Matroska, WebM
        return "matroska"
    if head[:4] == b"FORM" and head[8:12] in (b"AIFF", b"AIFC"):
        return "aiff"
    if head.startswith(b"NIST_1A"):
        return "nistsphere"
    if head.startswith(b"ID3") or _is_mpeg_audio_frame(head):
        return "mp3"
    return None


def _is_mpeg_audio_frame(head: bytes) -> bool:
    """An MPEG audio frame header: 11 sync bits, then a valid layer, bitrate and rate."""
    if len(head) < 3 or head[0] != 0xFF or head[1] & 0xE0 != 0xE0:
        return False
    layer, bitrate, rate = (head[1] >> 1) & 0b11, head[2] >> 4, (head[2] >> 2) & 0b11
    return layer != 0 and bitrate != 0b1111 and rate != 0b11  # layer 0 is ADTS AAC


def _id3v2_size(head: bytes) -> int:
    """Bytes of the ID3v2 tag at the start of ``head``: header, body and footer."""
    if len(head) < _ID3_HEADER_BYTES:
        return len(head)
    body = 0
    for byte in head[6:10]:  # "synchsafe" integer: 7 bits per byte
        body = (body << 7) | (byte & 0x7F)
    footer = _ID3_HEADER_BYTES if head[5] & 0x10 else 0
    return _ID3_HEADER_BYTES + body + footer


def _peek(stream: BinaryIO, offset: int, size: int) -> bytes:
    """``size`` bytes at ``offset``, leaving the stream at its start."""
    stream.seek(offset)
    data = stream.read(size)
    stream.seek(0)
    return data


def _decode_stream(
    container: av.container.InputContainer,
    sampling_rate: int,
    max_duration_s: float | None,
    name: str,
) -> np.ndarray:
    """Decode the first audio stream, resampling as frames arrive."""
    if not container.streams.audio:
        raise AudioDecodeError(f"no audio stream in {name}")
    stream = container.streams.audio[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for this codec
        raise AudioDecodeError(f"unsupported audio codec in {name}")
    _check_rate(stream.codec_context.sample_rate, name)
    max_samples = None if max_duration_s is None else int(max_duration_s * sampling_rate)
    resampler = _Resampler(sampling_rate)
    chunks: list[np.ndarray] = []
    total = 0
    for frame in _frames(container, stream, name):
        _check_rate(frame.sample_rate, name)
        for chunk in resampler.push(frame):
            chunks.append(chunk)
            total += chunk.size
        if max_samples is not None and total > max_samples:
            raise AudioTooLongError(f"{name} is longer than the {max_duration_s:g} s limit")
    chunks.extend(resampler.flush())
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if max_samples is not None and audio.size > max_samples:
        raise AudioTooLongError(f"{name} is longer than the {max_duration_s:g} s limit")
    return np.clip(audio, -1.0, 1.0, out=audio)


def _frames(
    container: av.container.InputContainer, stream: av.AudioStream, name: str
) -> Iterator[av.AudioFrame]:
    """The stream's decoded frames, tolerating damage the way the ``ffmpeg`` CLI does.

    A packet that fails to decode is skipped (up to ``MAX_BAD_PACKETS``); a file cut
    short ends the stream at the cut, keeping what was decoded before it.
    """
    packets = container.demux(stream)
    decoded = bad = 0
    while True:
        try:
            packet = next(packets)
        except StopIteration:
            return
        except _DECODE_ERRORS as exc:
            if not decoded:
                raise
            logger.warning(
                "%s is truncated or damaged; keeping the audio before: %s", name, _reason(exc)
            )
            yield from _flush_decoder(stream)
            return
        try:
            frames = packet.decode()
        except _DECODE_ERRORS as exc:
            bad += 1
            if bad > MAX_BAD_PACKETS:
                raise AudioDecodeError(
                    f"{name}: over {MAX_BAD_PACKETS} damaged packets ({_reason(exc)})"
                ) from None
            continue
        decoded += len(frames)
        yield from frames


def _flush_decoder(stream: av.AudioStream) -> list[av.AudioFrame]:
    """Frames still buffered in the decoder after the input ended early."""
    try:
        return stream.codec_context.decode(None)
    except _DECODE_ERRORS:
        return []


def _check_rate(rate: int | None, name: str) -> None:
    """Reject headers claiming rates no recorder produces (0 means "not known yet")."""
    if rate is not None and not 0 <= rate <= MAX_SOURCE_RATE:
        raise AudioDecodeError(f"implausible sample rate {rate} Hz in {name}")


class _Resampler:
    """``av.AudioResampler`` to packed float mono that follows format changes.

    A chained Ogg or a spliced MP3 can change rate or layout mid-stream; a single
    ``AudioResampler`` rejects such frames, so the current one is flushed and a new
    one built whenever the input signature changes.
    """

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self._signature: tuple | None = None
        self._resampler: av.AudioResampler | None = None

    def push(self, frame: av.AudioFrame) -> list[np.ndarray]:
        signature = (frame.format.name, frame.layout.name, frame.sample_rate)
        out: list[np.ndarray] = []
        if signature != self._signature:
            out = self.flush()
            self._resampler = av.AudioResampler(
                format="flt", layout="mono", rate=self.rate, frame_size=_OUT_FRAME_SIZE
            )
            self._signature = signature
        frame.pts = None  # timestamps of broken streams jump about; we only want samples
        out.extend(_samples(f) for f in self._resampler.resample(frame))
        return out

    def flush(self) -> list[np.ndarray]:
        if self._resampler is None:
            return []
        out = [_samples(f) for f in self._resampler.resample(None)]
        self._resampler = None
        self._signature = None
        return out


def _samples(frame: av.AudioFrame) -> np.ndarray:
    # Packed mono float: plane 0 holds exactly the samples (plus alignment padding).
    return np.frombuffer(frame.planes[0], dtype=np.float32, count=frame.samples).copy()


def encode_wav(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> bytes:
    """16-bit PCM mono WAV bytes of a float waveform in ``[-1, 1]`` (clipped)."""
    samples = np.asarray(audio, dtype=np.float32).reshape(-1)
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).round().astype("<i2")
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(int(sampling_rate))
        out.writeframes(pcm.tobytes())
    return buffer.getvalue()


def add_noise(audio: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """``audio`` plus white Gaussian noise at a signal-to-noise ratio of ``snr_db`` dB.

    The noise power is the signal's mean power divided by ``10 ** (snr_db / 10)``;
    silence gets no noise. The result is clipped to ``[-1, 1]``.
    """
    samples = np.asarray(audio, dtype=np.float32)
    signal_power = float(np.mean(np.square(samples, dtype=np.float64))) if samples.size else 0.0
    noise_std = np.sqrt(signal_power / 10.0 ** (snr_db / 10.0))
    noise = rng.normal(0.0, noise_std, size=samples.shape).astype(np.float32)
    return np.clip(samples + noise, -1.0, 1.0)


def duration_s(audio: np.ndarray, sampling_rate: int = SAMPLING_RATE) -> float:
    """Length of a waveform in seconds."""
    return len(audio) / sampling_rate
