"""The bank of English sentences that synthetic speech reads, and its splits.

Sources (see :mod:`distilray.data.texts`): template sentences composed from word
lists; generated numbers, prices, times, percentages, dates, names, questions, rare
words, punctuation, short and long sentences; and real prose from Debian's
``fortunes`` quotations when installed (templates and generated sentences alone, with
a warning, when not). Generated parts use fixed seeds, so the bank is the same on
every machine with the same packages.

Splits are decided per sentence by a stable hash of its normalised text (lower case,
letters and digits), not by position: train, validation and test never share a
sentence, even as sources are added or differ between machines. The bank is ordered
by a second hash, so every window of a split mixes all sources; within a split,
``offset`` picks a window, and two non-overlapping windows share no sentence.
"""

from __future__ import annotations

import hashlib
import logging
import random
import re
from collections import Counter
from functools import lru_cache

from distilray.data.texts import (
    MAX_WORDS,
    MIN_WORDS,
    clean_sentence,
    fortune_sentences,
    generated_sentences,
)
from distilray.errors import DistilrayError

logger = logging.getLogger(__name__)

TEMPLATE_COUNT = 5000  # template sentences in the bank
BANK_SIZE = TEMPLATE_COUNT  # the bank's size before other sources joined (kept for callers)
_BANK_SEED = 20240917  # fixed: changing it changes every synthetic dataset
# Share of the hash space each split owns: [start, end).
SPLITS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8),
    "validation": (0.8, 0.9),
    "test": (0.9, 1.0),
}
__all__ = ["MAX_WORDS", "MIN_WORDS", "SPLITS", "sentence_bank", "split_sentences", "take_sentences"]

SUBJECTS = [
    "my sister",
    "the new teacher",
    "our neighbour",
    "the young doctor",
    "a tired traveller",
    "the small team",
    "my grandfather",
    "the delivery driver",
    "our manager",
    "the museum guide",
    "a local farmer",
    "the city council",
    "my best friend",
    "the quiet student",
    "the head chef",
    "her younger brother",
    "the night nurse",
    "the bus driver",
    "an old fisherman",
    "the school librarian",
    "his aunt",
    "the village baker",
    "our landlord",
    "the football coach",
]
# (base form, past tense, object)
ACTIONS = [
    ("paint", "painted", "the kitchen walls"),
    ("repair", "repaired", "the broken fence"),
    ("cook", "cooked", "a large pot of soup"),
    ("buy", "bought", "some fresh bread"),
    ("find", "found", "a lost wallet"),
    ("write", "wrote", "a long letter"),
    ("plant", "planted", "a row of tomatoes"),
    ("clean", "cleaned", "all the windows"),
    ("read", "read", "the morning paper"),
    ("carry", "carried", "the heavy boxes"),
    ("open", "opened", "a small bakery"),
    ("fix", "fixed", "the old bicycle"),
    ("book", "booked", "a table for dinner"),
    ("lose", "lost", "the car keys"),
    ("sell", "sold", "the old piano"),
    ("visit", "visited", "the science museum"),
    ("walk", "walked", "the neighbour's dog"),
    ("call", "called", "the insurance company"),
    ("order", "ordered", "a cup of coffee"),
    ("watch", "watched", "the football match"),
    ("move", "moved", "the living room furniture"),
    ("pack", "packed", "the suitcases"),
    ("bake", "baked", "a chocolate cake"),
    ("miss", "missed", "the last train home"),
    ("check", "checked", "the weather forecast"),
    ("borrow", "borrowed", "a ladder"),
    ("sign", "signed", "the new contract"),
    ("return", "returned", "the library books"),
    ("feed", "fed", "the hungry ducks"),
    ("paint", "painted", "a picture of the sea"),
    ("wash", "washed", "the muddy boots"),
    ("build", "built", "a wooden shed"),
]
PLACES = [
    "in the garden",
    "at the station",
    "near the river",
    "behind the house",
    "in the city centre",
    "at the office",
    "on the farm",
    "by the harbour",
    "at the market",
    "in the village hall",
    "at the hospital",
    "on the top floor",
    "outside the school",
    "in the back yard",
    "at the corner shop",
]
TIMES = [
    "last weekend",
    "yesterday morning",
    "before lunch",
    "after the storm",
    "on Monday",
    "late at night",
    "during the holidays",
    "early this morning",
    "last summer",
    "after work",
    "on Friday afternoon",
    "two days ago",
    "before the guests arrived",
    "in the spring",
    "this evening",
]
FUTURE_TIMES = [
    "tomorrow morning",
    "before the meeting",
    "this afternoon",
    "by Friday",
    "next week",
    "after lunch",
    "before it gets dark",
    "on Saturday",
]
REQUEST_OPENERS = ["Could you", "Would you please", "Can you", "Do you think you could"]
MODAL_OPENERS = [
    "I think",
    "She said",
    "We hope",
    "They told me",
    "Everyone agreed that",
    "I doubt",
]
MODALS = ["should", "will", "might", "could", "would"]
QUESTION_WORDS = ["Why did", "When did", "Where did", "How often did"]
# Things and the comparatives that suit them.
COMPARABLES = {
    "the weather": ["much colder", "much warmer", "a lot windier", "far wetter"],
    "the train": ["far busier", "much slower", "a little later", "less crowded"],
    "the hotel": ["more expensive", "a lot quieter", "much smaller", "far cleaner"],
    "the concert": ["much louder", "slightly longer", "more interesting", "far shorter"],
    "the meeting": ["much longer", "a lot calmer", "more useful", "far shorter"],
    "the river": ["much deeper", "a lot colder", "far wider", "more dangerous"],
    "the film": ["more exciting", "slightly longer", "much funnier", "a lot sadder"],
    "the restaurant": ["more expensive", "less crowded", "much noisier", "far better"],
    "the journey": ["much longer", "a lot easier", "more tiring", "far quicker"],
}
COMPARISONS = [
    "we expected",
    "it was last year",
    "anyone had predicted",
    "the guide book said",
    "it usually is",
    "my friends had told me",
]
TEMPLATE_MAX_WORDS = 15


def _cap(text: str) -> str:
    return text[0].upper() + text[1:]


def _statement(rng: random.Random) -> str:
    _, past, obj = rng.choice(ACTIONS)
    return f"{_cap(rng.choice(SUBJECTS))} {past} {obj} {rng.choice(PLACES)} {rng.choice(TIMES)}."


def _time_first(rng: random.Random) -> str:
    _, past, obj = rng.choice(ACTIONS)
    return f"{_cap(rng.choice(TIMES))}, {rng.choice(SUBJECTS)} {past} {obj} {rng.choice(PLACES)}."


def _request(rng: random.Random) -> str:
    base, _, obj = rng.choice(ACTIONS)
    return f"{rng.choice(REQUEST_OPENERS)} {base} {obj} {rng.choice(FUTURE_TIMES)}?"


def _opinion(rng: random.Random) -> str:
    base, _, obj = rng.choice(ACTIONS)
    subject, modal, when = rng.choice(SUBJECTS), rng.choice(MODALS), rng.choice(FUTURE_TIMES)
    return f"{rng.choice(MODAL_OPENERS)} {subject} {modal} {base} {obj} {when}."


def _question(rng: random.Random) -> str:
    base, _, obj = rng.choice(ACTIONS)
    return f"{rng.choice(QUESTION_WORDS)} {rng.choice(SUBJECTS)} {base} {obj} {rng.choice(PLACES)}?"


def _comparison(rng: random.Random) -> str:
    thing = rng.choice(list(COMPARABLES))
    more, than = rng.choice(COMPARABLES[thing]), rng.choice(COMPARISONS)
    return f"{_cap(thing)} was {more} than {than}."


# (template, weight): statements dominate, as in read speech corpora.
_TEMPLATES = [
    (_statement, 4),
    (_time_first, 2),
    (_request, 1),
    (_opinion, 2),
    (_question, 1),
    (_comparison, 1),
]


def _template_sentences() -> list[str]:
    """``TEMPLATE_COUNT`` distinct template sentences, in a fixed order."""
    rng = random.Random(_BANK_SEED)
    templates, weights = zip(*_TEMPLATES, strict=True)
    seen: set[str] = set()
    bank: list[str] = []
    while len(bank) < TEMPLATE_COUNT:
        sentence = rng.choices(templates, weights)[0](rng)
        if sentence not in seen and len(sentence.split()) <= TEMPLATE_MAX_WORDS:
            seen.add(sentence)
            bank.append(sentence)
    return bank


def sentence_key(sentence: str) -> str:
    """What makes two sentences the same: lower-case letters and digits, single spaces."""
    return " ".join(re.sub(r"[^a-z0-9]+", " ", sentence.lower()).split())


def _digest(key: str, purpose: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8, person=purpose).digest())


def sentence_split(sentence: str) -> str:
    """The split that owns ``sentence``, from a stable hash of its normalised text."""
    position = _digest(sentence_key(sentence), b"split") / 2**64
    return next(name for name, (start, end) in SPLITS.items() if start <= position < end)


@lru_cache(maxsize=1)
def _bank() -> tuple[tuple[str, str], ...]:
    """(sentence, source) for every distinct speakable sentence, in hash order."""
    candidates = [("template", s) for s in _template_sentences()]
    candidates += list(generated_sentences(_BANK_SEED))
    candidates += [("fortunes", s) for s in fortune_sentences()]
    chosen: dict[str, tuple[str, str]] = {}
    for source, sentence in candidates:
        cleaned = clean_sentence(sentence)
        key = sentence_key(cleaned) if cleaned else ""
        if key and key not in chosen:
            chosen[key] = (cleaned, source)
    ordered = sorted(chosen.items(), key=lambda item: (_digest(item[0], b"order"), item[0]))
    bank = tuple(entry for _, entry in ordered)
    logger.debug("sentence bank: %s", dict(Counter(source for _, source in bank)))
    return bank


def sentence_bank() -> tuple[str, ...]:
    """Every bank sentence (``MIN_WORDS``-``MAX_WORDS`` words, distinct), in a fixed order."""
    return tuple(sentence for sentence, _ in _bank())


def bank_sources() -> dict[str, int]:
    """How many bank sentences each source gave (``template``, ``date``, ``fortunes``, ...)."""
    return dict(Counter(source for _, source in _bank()))


@lru_cache(maxsize=len(SPLITS))
def split_sentences(split: str) -> tuple[str, ...]:
    """All bank sentences of one split (``train``, ``validation`` or ``test``), in bank order."""
    if split not in SPLITS:
        raise DistilrayError(f"unknown sentence split {split!r}: choose one of {', '.join(SPLITS)}")
    return tuple(s for s in sentence_bank() if sentence_split(s) == split)


def take_sentences(pool: tuple[str, ...] | list[str], offset: int, count: int) -> list[str]:
    """``count`` sentences from ``pool`` starting at ``offset``, wrapping around (with a warning)."""
    if not pool:
        raise DistilrayError("no sentences to synthesise")
    if offset < 0:
        raise DistilrayError(f"sentence offset must be >= 0, got {offset}")
    if offset + count > len(pool):
        logger.warning(
            "asked for sentences %d..%d of a pool of %d: sentences will repeat",
            offset,
            offset + count,
            len(pool),
        )
    return [pool[(offset + i) % len(pool)] for i in range(count)]
