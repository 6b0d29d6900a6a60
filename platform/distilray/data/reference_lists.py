"""Reference transcripts that corpora keep in one list file per folder, not per clip.

A folder of audio files (:func:`distilray.data.manifest.folder_table`) takes each
clip's reference from a same-stem ``.txt`` file first; corpora laid out otherwise are
read too:

* **LibriSpeech** ``*.trans.txt``: one ``<utterance id> <TEXT>`` line per clip of the
  folder the list sits in (``1089-134686-0000 HE HOPED THERE WOULD BE STEW``);
* **CMU Sphinx** ``*.transcription``: ``<s> text </s> (<utterance id>)`` lines, for
  clips anywhere below the manifest folder (sphinxtrain keeps them in ``etc/``, away
  from the audio). Sentence markers (``<s>``, ``</s>``, ``<sil>``) and fillers
  (``++NOISE++``, ``[noise]``) are dropped.

An utterance id is the audio file's name without its extension.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterator, Mapping

from distilray.errors import DataError

LIBRISPEECH_SUFFIX = ".trans.txt"
SPHINX_SUFFIX = ".transcription"
LIST_SUFFIXES = (LIBRISPEECH_SUFFIX, SPHINX_SUFFIX)

_SPHINX_LINE = re.compile(r"^(?P<text>.*?)\s*\((?P<id>[^()\s]+)\)\s*$")
_SPHINX_MARKUP = re.compile(r"<[^>]*>|\+\+[^+]*\+\+|\[[^\]]*\]")


def is_reference_list(uri: str) -> bool:
    """Whether ``uri`` is a list of references (LibriSpeech or CMU Sphinx)."""
    return uri.endswith(LIST_SUFFIXES)


def keyed_lines(content: str, source: str) -> Iterator[tuple[str, str, str, str]]:
    """``(where, line, key, rest)`` of each non-blank line of a list whose lines start
    with a key (an utterance or recording id) and a space: ``where`` is
    ``source:number`` for messages, ``rest`` what follows the key, stripped.

    >>> list(keyed_lines("a HELLO \\n\\nb\\n", "t"))
    [('t:1', 'a HELLO ', 'a', 'HELLO'), ('t:3', 'b', 'b', '')]
    """
    for number, line in enumerate(content.splitlines(), 1):
        if line.strip():
            key, _, rest = line.strip().partition(" ")
            yield f"{source}:{number}", line, key, rest.strip()


def parse_librispeech(content: str, source: str) -> dict[str, str]:
    """``{utterance id: text}`` of a LibriSpeech ``*.trans.txt``.

    >>> parse_librispeech("1-2-0000 HELLO THERE\\n\\n1-2-0001 GOOD BYE\\n", "x.trans.txt")
    {'1-2-0000': 'HELLO THERE', '1-2-0001': 'GOOD BYE'}
    """
    texts: dict[str, str] = {}
    for where, line, utterance, text in keyed_lines(content, source):
        if not text:
            raise DataError(f"{where}: expected '<utterance id> <text>', got {line!r}")
        _add(texts, utterance, text, where)
    return texts


def parse_sphinx(content: str, source: str) -> dict[str, str]:
    """``{utterance id: text}`` of a CMU Sphinx ``*.transcription``.

    >>> parse_sphinx("<s> go forward ++NOISE++ ten meters </s> (goforward)\\n", "t")
    {'goforward': 'go forward ten meters'}
    """
    texts: dict[str, str] = {}
    for number, line in enumerate(content.splitlines(), 1):
        if not line.strip():
            continue
        match = _SPHINX_LINE.match(line.strip())
        if match is None:
            raise DataError(
                f"{source}:{number}: expected '<s> text </s> (utterance id)', got {line!r}"
            )
        text = " ".join(_SPHINX_MARKUP.sub(" ", match["text"]).split())
        _add(texts, match["id"], text, f"{source}:{number}")
    return texts


def _add(texts: dict[str, str], utterance: str, text: str, where: str) -> None:
    if utterance in texts and texts[utterance] != text:
        raise DataError(f"{where}: utterance {utterance!r} is listed twice with different texts")
    texts[utterance] = text


class ReferenceLists:
    """The references that a folder's list files give its audio files."""

    def __init__(self, lists: Mapping[str, str]) -> None:
        """``lists``: ``{list file's path or URI: its content}``."""
        self._by_folder: dict[tuple[str, str], str] = {}  # LibriSpeech: (folder, id) -> text
        self._anywhere: dict[str, str] = {}  # Sphinx: id -> text
        self._source: dict[str, str] = {}  # Sphinx id -> the list that gave it
        for uri, content in lists.items():
            if uri.endswith(LIBRISPEECH_SUFFIX):
                folder = posixpath.dirname(uri)
                for utterance, text in parse_librispeech(content, uri).items():
                    self._by_folder[(folder, utterance)] = text
            else:
                for utterance, text in parse_sphinx(content, uri).items():
                    if self._anywhere.get(utterance, text) != text:
                        raise DataError(
                            f"utterance {utterance!r} has different texts in "
                            f"{self._source[utterance]} and {uri}"
                        )
                    self._anywhere[utterance] = text
                    self._source.setdefault(utterance, uri)

    def __len__(self) -> int:
        return len(self._by_folder) + len(self._anywhere)

    def reference(self, audio: str) -> str | None:
        """The listed reference of the audio file ``audio`` (a path or URI), if any."""
        folder, name = posixpath.split(audio)
        utterance = posixpath.splitext(name)[0]
        text = self._by_folder.get((folder, utterance))
        return text if text is not None else self._anywhere.get(utterance)
