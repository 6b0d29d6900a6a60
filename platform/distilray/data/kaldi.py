"""Kaldi data directories as manifests: ``wav.scp`` and ``text``.

A folder holding a ``wav.scp`` (or that file named directly) is read as a Kaldi data
directory (``data/train`` of a Kaldi or ESPnet recipe):

* ``wav.scp``: one ``<recording id> <audio file>`` line per row; the id is the row's
  id, the file is read as any other input audio (WAV, FLAC, NIST SPHERE, ...; local
  or ``s3://``), a relative path resolved against the data directory;
* ``text`` (optional): ``<utterance id> <transcript>`` lines give the references
  (an utterance listed with no words has an empty reference; one not listed has none).

A command that only decodes one file, as LibriSpeech's and the LDC corpora's recipes
write them (``flac -c -d -s FILE |``, ``sph2pipe -f wav [-p] FILE |``), is read as that
file: the same audio, which the input decoder reads itself. Any other command (one that
changes the audio, such as ``sox x.flac -t wav - remix 1 |`` or ``sph2pipe -c 2``) and
archive offsets (``raw.ark:1234``) are refused with their line, as is a ``segments`` file
(utterances cut out of longer recordings): write such audio out as files first
(Kaldi's ``wav-copy``, ``extract-segments``) and list those.
"""

from __future__ import annotations

import posixpath
import re

import pyarrow as pa

from distilray.data.reference_lists import keyed_lines
from distilray.errors import DataError
from distilray.storage import exists, read_text

WAV_SCP = "wav.scp"
TEXT = "text"
SEGMENTS = "segments"

_ARCHIVE_OFFSET = re.compile(r"\.(ark|scp):\d+$")


def is_kaldi_scp(uri: str) -> bool:
    """Whether ``uri`` names a Kaldi ``wav.scp``."""
    return posixpath.basename(uri) == WAV_SCP


def parse_wav_scp(content: str, source: str) -> dict[str, str]:
    """``{recording id: audio file}`` of a ``wav.scp``, in file order.

    >>> parse_wav_scp("utt1 /data/a.wav\\nutt2 b/c.flac\\n", "wav.scp")
    {'utt1': '/data/a.wav', 'utt2': 'b/c.flac'}
    """
    files: dict[str, str] = {}
    for where, line, recording, target in keyed_lines(content, source):
        if not target:
            raise DataError(f"{where}: expected '<recording id> <audio file>', got {line!r}")
        if target.endswith("|"):
            decoded = decoded_file(target)
            if decoded is not None:
                files[recording] = _check_new(files, recording, decoded, where)
                continue
            raise DataError(
                f"{where}: {recording!r} is read by running a command ({target!r}); "
                "distilray reads audio files: write the command's output to a file and "
                "list that file"
            )
        if _ARCHIVE_OFFSET.search(target):
            raise DataError(
                f"{where}: {recording!r} is an offset into a Kaldi archive ({target!r}); "
                "write the audio out as files (wav-copy) and list those"
            )
        files[recording] = _check_new(files, recording, target, where)
    if not files:
        raise DataError(f"{source} lists no recordings")
    return files


def _check_new(files: dict[str, str], recording: str, target: str, where: str) -> str:
    if recording in files:
        raise DataError(f"{where}: recording {recording!r} is listed twice")
    return target


# the decoders' flags that change nothing but where the decoded audio goes and how much
# the tool prints
_FLAC_FLAGS = {"-c", "-d", "-s", "-cds", "-dcs", "--decode", "--stdout", "--silent"}
_SPH2PIPE_FLAGS = {"-p"}


def decoded_file(command: str) -> str | None:
    """The one file a ``wav.scp`` command only decodes (``flac -c -d -s FILE |``,
    ``sph2pipe -f wav [-p] FILE |``), or None for any other command.

    >>> decoded_file("flac -c -d -s /c/1089-134686-0000.flac |")
    '/c/1089-134686-0000.flac'
    >>> decoded_file("/opt/kaldi/tools/sph2pipe -f wav -p /ldc/wsj/a.wv1 |")
    '/ldc/wsj/a.wv1'
    >>> decoded_file("sph2pipe -f wav -p -c 2 /ldc/swb/sw02001.sph |") is None
    True
    """
    import shlex

    try:
        words = shlex.split(command.rstrip().removesuffix("|"))
    except ValueError:
        return None
    if not words:
        return None
    tool, args = posixpath.basename(words[0]), words[1:]
    if tool == "sph2pipe" and args[:2] == ["-f", "wav"]:
        args, flags = args[2:], _SPH2PIPE_FLAGS
    elif tool == "flac" and {"-d", "--decode", "-cds", "-dcs"} & set(args):
        flags = _FLAC_FLAGS
    else:
        return None
    files = [a for a in args if not a.startswith("-")]
    if len(files) != 1 or any(a not in flags for a in args if a.startswith("-")):
        return None
    return files[0]


def parse_text(content: str, source: str) -> dict[str, str]:
    """``{utterance id: transcript}`` of a Kaldi ``text`` file (empty transcripts kept).

    >>> parse_text("utt1 HELLO THERE\\nutt2\\n", "text")
    {'utt1': 'HELLO THERE', 'utt2': ''}
    """
    texts: dict[str, str] = {}
    for where, _, utterance, text in keyed_lines(content, source):
        if utterance in texts:
            raise DataError(f"{where}: utterance {utterance!r} is listed twice")
        texts[utterance] = " ".join(text.split())
    return texts


def kaldi_table(scp_uri: str) -> pa.Table:
    """The data directory of ``scp_uri`` (local or ``s3://``) as ``id``, ``audio_path``
    (absolute) and ``text`` columns, in ``wav.scp`` order."""
    from distilray.data.manifest import resolve_audio_path

    folder = posixpath.dirname(scp_uri)
    segments = posixpath.join(folder, SEGMENTS)
    if exists(segments):
        raise DataError(
            f"{segments}: utterances cut out of longer recordings are not read; write each "
            "segment out as an audio file (Kaldi's extract-segments) and list those in "
            "wav.scp, or make a JSONL manifest of the cut files"
        )
    files = parse_wav_scp(read_text(scp_uri), scp_uri)
    text_uri = posixpath.join(folder, TEXT)
    texts = parse_text(read_text(text_uri), text_uri) if exists(text_uri) else {}
    ids = list(files)
    paths = [resolve_audio_path(files[i], folder, scp_uri) for i in ids]
    return pa.table(
        {
            "id": pa.array(ids, pa.string()),
            "audio_path": pa.array(paths, pa.string()),
            "text": pa.array([texts.get(i) for i in ids], pa.string()),
        }
    )
