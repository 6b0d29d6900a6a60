"""Uploads that try to make FFmpeg open something other than themselves.

Each builder returns the bytes of one hostile "audio" file. ``secret`` is the name
of a real audio file on the server (relative to the decoder's working directory, as
FFmpeg's concat demuxer only follows "safe" relative names by default); ``tcp_port``
and ``udp_port`` are where a network reference points, so a test can listen there.
Used by ``test_audio_hostile.py`` (the decoder) and ``test_serving.py`` (the endpoint).
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Target:
    """What hostile files point at."""

    secret: str  # a planted audio file, by relative name
    tcp_port: int  # 127.0.0.1 port for http:// references
    udp_port: int  # 127.0.0.1 port an SDP file asks to receive RTP on


def ffconcat(t: Target) -> bytes:
    return f"ffconcat version 1.0\nfile {t.secret}\n".encode()


def plain_concat(t: Target) -> bytes:
    return f"file '{t.secret}'\n".encode()


def concat_subfile(t: Target) -> bytes:
    return f"ffconcat version 1.0\nfile subfile,,start,0,end,0,,:{t.secret}\n".encode()


def concat_file_url(t: Target) -> bytes:
    return f"ffconcat version 1.0\nfile file:{t.secret}\n".encode()


def concat_http(t: Target) -> bytes:
    return f"ffconcat version 1.0\nfile http://127.0.0.1:{t.tcp_port}/a.wav\n".encode()


def _hls(entry: str) -> bytes:
    return (
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:10\n#EXT-X-MEDIA-SEQUENCE:0\n"
        f"#EXTINF:3.0,\n{entry}\n#EXT-X-ENDLIST\n"
    ).encode()


def hls_file(t: Target) -> bytes:
    return _hls(f"file:{t.secret}")


def hls_http(t: Target) -> bytes:
    return _hls(f"http://127.0.0.1:{t.tcp_port}/segment.wav")


def m3u(t: Target) -> bytes:
    return f"#EXTM3U\n#EXTINF:3,clip\n{t.secret}\nhttp://127.0.0.1:{t.tcp_port}/a.wav\n".encode()


def sdp(t: Target) -> bytes:
    return (
        "v=0\no=- 0 0 IN IP4 127.0.0.1\ns=hostile\nc=IN IP4 127.0.0.1\nt=0 0\n"
        f"m=audio {t.udp_port} RTP/AVP 0\na=rtpmap:0 PCMU/8000\n"
    ).encode()


def image_pattern(t: Target) -> bytes:
    return b"img%03d.png\n"


def png_image(t: Target) -> bytes:
    """A PNG signature and header: FFmpeg's guess would be an image demuxer."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + struct.pack(">I", len(ihdr)) + b"IHDR" + ihdr + bytes(4)


def text(t: Target) -> bytes:
    return b"id,text\n1,hello world\n" * 20


def id3_then_ffconcat(t: Target) -> bytes:
    """A playlist behind an ID3v2 tag: sniffed as MP3, must not become a playlist."""
    return b"ID3\x04\x00\x00\x00\x00\x00\x00" + ffconcat(t)


def ftyp_then_ffconcat(t: Target) -> bytes:
    """A playlist behind an MP4 file-type box."""
    return struct.pack(">I4s4sI", 16, b"ftyp", b"isom", 0) + ffconcat(t)


CORPUS: dict[str, Callable[[Target], bytes]] = {
    "ffconcat playlist": ffconcat,
    "plain concat playlist": plain_concat,
    "concat with subfile:": concat_subfile,
    "concat with file:": concat_file_url,
    "concat with http://": concat_http,
    "HLS with file:": hls_file,
    "HLS with http://": hls_http,
    "m3u playlist": m3u,
    "SDP": sdp,
    "image2 pattern": image_pattern,
    "PNG image": png_image,
    "text": text,
    "ID3 tag then playlist": id3_then_ffconcat,
    "MP4 header then playlist": ftyp_then_ffconcat,
}


# --- MP4 whose samples live in another file (an alias data reference) -------------


def _boxes(data: bytes) -> Iterator[tuple[bytes, bytes]]:
    pos = 0
    while pos + 8 <= len(data):
        size, kind = struct.unpack(">I4s", data[pos : pos + 8])
        yield kind, data[pos + 8 : pos + size]
        pos += size


def _box(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I4s", 8 + len(payload), kind) + payload


def _replace(data: bytes, path: list[bytes], payload: bytes) -> bytes:
    """``data`` (a run of boxes) with the box at ``path`` given ``payload``; sizes redone."""
    out = b""
    for kind, body in _boxes(data):
        if kind == path[0]:
            body = payload if len(path) == 1 else _replace(body, path[1:], payload)
        out += _box(kind, body)
    return out


def _alias_dref(name: bytes) -> bytes:
    """A ``dref`` box with one Mac alias record naming file ``name`` one level down.

    Layout as FFmpeg's ``mov_read_dref`` reads it: 150 bytes of fixed fields, then
    (type, length, value) records; type 2 is the path, -1 ends the list.
    """
    path = b"/" + name + (b"\0" if len(name) % 2 == 0 else b"")
    record = (
        bytes(10)
        + bytes(1 + 27)  # volume name: none
        + bytes(12)
        + bytes([len(name)])
        + name.ljust(63, b"\0")
        + bytes(16)
        + struct.pack(">HH", 1, 1)  # levels up from the alias / down to the target
        + bytes(16)
        + struct.pack(">HH", 2, len(name) + 1)
        + path
        + struct.pack(">hH", -1, 0)
    )
    entry = _box(b"alis", bytes(4) + record)
    return bytes(4) + struct.pack(">I", 1) + entry


def mp4_with_external_samples(m4a: bytes, secret: str) -> bytes:
    """``m4a`` with its own samples zeroed and its track's data in file ``secret``.

    ``secret`` being a copy of ``m4a``, FFmpeg with data references enabled decodes
    the secret's audio through this file.
    """
    kinds = [kind for kind, _ in _boxes(m4a)]
    assert kinds.index(b"mdat") < kinds.index(b"moov"), "moov must follow the samples"
    dref = _alias_dref(secret.encode())
    hostile = _replace(m4a, [b"moov", b"trak", b"mdia", b"minf", b"dinf", b"dref"], dref)
    return b"".join(
        _box(kind, bytes(len(body)) if kind == b"mdat" else body) for kind, body in _boxes(hostile)
    )
