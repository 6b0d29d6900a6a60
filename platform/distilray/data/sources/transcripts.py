"""Parsers for the transcript formats the packages ship, and their clean-up to plain English.

WER is scored after Whisper's English normaliser, so a reference must be what a
listener would write: annotation tokens (``[laughter]``, ``<VOCNOISE>``, ``{CG}``) are
removed, and a clip whose reference marks cut-off or hesitated words (which a
transcriber would spell arbitrarily) is dropped rather than scored against a guess.
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass

_MARKUP = re.compile(r"\[[^\]]*\]|<[^>]*>|\{[^}]*\}")
_UNSCORABLE = re.compile(r"<(cutoff|hes)-[^>]*>|<unk>", re.IGNORECASE)


def strip_markup(text: str) -> str:
    """``text`` without bracketed annotations, whitespace collapsed.

    >>> strip_markup("[laughter] montreal  forced <VOCNOISE> aligner {CG}")
    'montreal forced aligner'
    """
    return " ".join(_MARKUP.sub(" ", text).split())


def clean_reference(text: str | None) -> str | None:
    """A scorable reference, or None (empty, only annotations, or unscorable words).

    >>> clean_reference("montreal <hes-forced> aligner") is None
    True
    >>> clean_reference("dot [.]")
    'dot'
    """
    if text is None or _UNSCORABLE.search(text):
        return None
    cleaned = strip_markup(text)
    return cleaned if re.search(r"[A-Za-z0-9]", cleaned) else None


def parse_asterisk_index(content: str) -> dict[str, str]:
    """``core-sounds-en.txt``: ``name: Text.`` lines (``;`` comments) -> {name: raw text}.

    >>> parse_asterisk_index("; comment\\n\\ndigits/1: one\\nbeep: [a tone]\\n")
    {'digits/1': 'one', 'beep': '[a tone]'}
    """
    index: dict[str, str] = {}
    for line in content.splitlines():
        if not line.strip() or line.lstrip().startswith(";"):
            continue
        name, sep, text = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            index[name.strip()] = text.strip()
    return index


def parse_mfa_conftest(source: str, function: str = "reference_transcripts") -> dict[str, str]:
    """The dict literal returned by ``function`` in MFA's ``tests/conftest.py``.

    Parsed with :mod:`ast`, never imported: importing would run pytest fixtures and
    pull in MFA itself.
    """
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.FunctionDef) and node.name == function:
            for statement in node.body:
                if isinstance(statement, ast.Return) and isinstance(statement.value, ast.Dict):
                    return ast.literal_eval(statement.value)
    raise ValueError(f"no `def {function}(): return {{...}}` in the conftest source")


@dataclass(frozen=True)
class StmSegment:
    """One line of a NIST STM file."""

    speaker: str
    start_s: float
    end_s: float
    text: str


def parse_stm(content: str) -> list[StmSegment]:
    """``file channel speaker start end text...`` lines, sorted by start time.

    >>> [s.text for s in parse_stm("a 1 B 2.0 3.0 world\\na 1 A 0.5 1.5 Hello?\\n")]
    ['Hello?', 'world']
    """
    segments = []
    for line in content.splitlines():
        parts = line.split(maxsplit=5)
        if len(parts) < 5 or line.startswith(";;"):
            continue
        text = parts[5] if len(parts) == 6 else ""
        segments.append(StmSegment(parts[2], float(parts[3]), float(parts[4]), text.strip()))
    return sorted(segments, key=lambda s: s.start_s)
