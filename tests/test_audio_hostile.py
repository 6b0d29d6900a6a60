"""Hostile inputs: files that name other files, URLs or sockets are refused.

FFmpeg left to guess a format takes a playlist for a playlist and opens what it
lists. ``decode_audio`` must refuse every such file as one AudioDecodeError,
without reading the planted secret, connecting to the listening TCP port or
binding the UDP port an SDP file names. The corpus is in ``hostile_audio.py``.
"""

from __future__ import annotations

import io
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import av
import numpy as np
import pytest

from distilray import audio as audio_mod
from distilray.audio import SAMPLING_RATE, decode_audio, encode_wav, sniff_container
from distilray.errors import AudioDecodeError
from hostile_audio import CORPUS, Target, ffconcat, mp4_with_external_samples
from test_audio import encode

SECRET = "secret.wav"


@pytest.fixture
def secret_dir(tmp_path, monkeypatch) -> Path:
    """A working directory holding ``secret.wav``: one second of a 440 Hz tone."""
    t = np.arange(SAMPLING_RATE) / SAMPLING_RATE
    (tmp_path / SECRET).write_bytes(encode_wav(0.5 * np.sin(2 * np.pi * 440 * t)))
    monkeypatch.chdir(tmp_path)
    return tmp_path


class TcpListener:
    """A TCP server on 127.0.0.1 that counts the connections it is offered."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.05)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, daemon=True)

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            self.connections += 1
            conn.close()

    def __enter__(self) -> TcpListener:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bound_udp_ports() -> set[int]:
    """Local ports of every UDP socket on this machine (Linux /proc)."""
    ports = set()
    for table in ("/proc/net/udp", "/proc/net/udp6"):
        lines = Path(table).read_text().splitlines()[1:] if Path(table).exists() else []
        ports.update(int(line.split()[1].rsplit(":", 1)[1], 16) for line in lines)
    return ports


@contextmanager
def watch_udp_port(port: int) -> Iterator[list[float]]:
    """Poll, while the block runs, whether anything binds UDP ``port``; yields the sightings.

    FFmpeg's RTP sockets are opened in C, out of reach of a Python socket patch, so
    the kernel's socket table is watched instead.
    """
    seen: list[float] = []
    done = threading.Event()

    def poll() -> None:
        while not done.is_set():
            if port in bound_udp_ports():
                seen.append(time.monotonic())
            done.wait(0.005)

    thread = threading.Thread(target=poll, daemon=True)
    thread.start()
    try:
        yield seen
    finally:
        done.set()
        thread.join()


@pytest.mark.skipif(sys.platform != "linux", reason="watches /proc/net/udp")
def test_hostile_corpus_is_refused_without_reading_files_or_opening_sockets(secret_dir):
    udp_port = free_udp_port()
    with TcpListener() as tcp, watch_udp_port(udp_port) as udp_binds:
        target = Target(secret=SECRET, tcp_port=tcp.port, udp_port=udp_port)
        accepted = {}
        for case, build in CORPUS.items():
            with suppress(AudioDecodeError):
                accepted[case] = decode_audio(build(target)).size
    leaks = {"decoded": accepted, "tcp connections": tcp.connections, "udp binds": len(udp_binds)}
    assert leaks == {"decoded": {}, "tcp connections": 0, "udp binds": 0}


def test_the_playlist_attack_is_real(secret_dir):
    """Guard on the corpus itself: FFmpeg guessing the format does follow the playlist."""
    target = Target(secret=SECRET, tcp_port=9, udp_port=9)
    with av.open(io.BytesIO(ffconcat(target))) as container:
        assert container.format.name == "concat"
        assert sum(1 for _ in container.demux(container.streams.audio[0])) > 0


@pytest.mark.parametrize("name", ["playlist.wav", "playlist.ffconcat", "playlist.m3u8"])
def test_hostile_files_on_disk_are_refused(secret_dir, name):
    """Manifests name local files: the same checks apply to a path as to bytes."""
    path = secret_dir / name
    path.write_bytes(ffconcat(Target(secret=SECRET, tcp_port=9, udp_port=9)))
    with pytest.raises(AudioDecodeError, match="not a supported audio format"):
        decode_audio(path)


def test_protocol_references_as_sources_are_refused(secret_dir):
    """A manifest row naming an FFmpeg protocol is a file name, never a URL for FFmpeg."""
    with TcpListener() as tcp:
        sources = [
            f"concat:{SECRET}|{SECRET}",
            f"subfile,,start,0,end,0,,:{SECRET}",
            f"file:{SECRET}",
            f"http://127.0.0.1:{tcp.port}/{SECRET}",
            f"tcp://127.0.0.1:{tcp.port}",
            "pipe:0",
        ]
        for source in sources:
            with pytest.raises(AudioDecodeError):
                decode_audio(source)
    assert tcp.connections == 0


def test_mp4_data_reference_to_another_file_is_not_followed(secret_dir):
    signal = (0.3 * np.sin(np.arange(3 * SAMPLING_RATE) / 6)).astype(np.float32)
    m4a = encode(signal, "ipod", "aac")
    (secret_dir / "secret.m4a").write_bytes(m4a)
    hostile = mp4_with_external_samples(m4a, "secret.m4a")
    # The file works as an attack: with data references on, FFmpeg plays the secret.
    options = {"enable_drefs": "1"}
    with av.open(io.BytesIO(hostile), format="mov", container_options=options) as container:
        stream = container.streams.audio[0]
        leaked = [f.to_ndarray() for p in container.demux(stream) for f in p.decode()]
    assert leaked and max(np.abs(f).max() for f in leaked) > 0.1
    # Ours does not follow it: the file's own (zeroed) samples are all there is.
    with pytest.raises(AudioDecodeError):
        decode_audio(hostile)


def test_nested_opens_are_refused_even_if_a_playlist_demuxer_were_chosen(secret_dir):
    """Second line of defence: the empty protocol whitelist stops any nested open."""
    data = ffconcat(Target(secret=SECRET, tcp_port=9, udp_port=9))
    options = dict(audio_mod._CONTAINER_OPTIONS)
    with pytest.raises(av.error.FFmpegError):  # noqa: SIM117 - the open itself must fail
        with av.open(io.BytesIO(data), format="concat", container_options=options) as c:
            list(c.demux())


@pytest.mark.parametrize(
    ("head", "demuxer"),
    [
        (b"RIFF\x24\x00\x00\x00WAVEfmt ", "wav"),
        (b"RF64\xff\xff\xff\xffWAVEds64", "wav"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", None),
        (b"fLaC\x00\x00\x00\x22\x10\x00\x10\x00", "flac"),
        (b"OggS\x00\x02\x00\x00\x00\x00\x00\x00", "ogg"),
        (b"\x00\x00\x00\x20ftypM4A \x00\x00", "mov"),
        (b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81\x01\x42\xf7\x81", "matroska"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00\xff\xfb", "mp3"),
        (b"\xff\xfb\x90\x64\x00\x00\x00\x00\x00\x00\x00\x00", "mp3"),  # MPEG-1 layer III
        (b"\xff\xf1\x50\x80\x02\x1f\xfc\x00\x00\x00\x00\x00", None),  # ADTS AAC
        (b"\xff\xfb\xf0\x64\x00\x00\x00\x00\x00\x00\x00\x00", None),  # bad bitrate index
        (b"ffconcat version 1.0", None),
        (b"#EXTM3U\n#EXT-X-", None),
        (b"v=0\no=- 0 0 IN", None),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\x0d", None),
        (b"", None),
    ],
)
def test_sniff_container(head, demuxer):
    assert sniff_container(head) == demuxer


def test_id3_tagged_flac_is_flac(tmp_path):
    t = np.arange(SAMPLING_RATE) / SAMPLING_RATE
    flac = encode((0.3 * np.sin(2 * np.pi * 220 * t)).astype(np.float32), "flac", "flac")
    body = b"TIT2" + (6).to_bytes(4, "big") + b"\x00\x00\x03title"
    tag = b"ID3\x03\x00\x00" + bytes([0, 0, 0, len(body)]) + body
    assert len(decode_audio(tag + flac)) == SAMPLING_RATE
