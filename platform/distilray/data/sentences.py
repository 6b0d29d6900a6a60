"""A built-in bank of varied English sentences for synthetic speech.

Sentences are composed from templates and word lists with a fixed random seed, so
the bank is the same on every machine. It is cut into fixed, disjoint splits;
within a split, ``offset`` picks a window, so two datasets drawn from different
splits (or from non-overlapping offsets) never share a sentence.
"""

from __future__ import annotations

import logging
import random
from functools import lru_cache

from distilray.errors import DistilrayError

logger = logging.getLogger(__name__)

BANK_SIZE = 5000
_BANK_SEED = 20240917  # fixed: changing it changes every synthetic dataset
# Fractions of the bank each split owns: [start, end).
SPLITS: dict[str, tuple[float, float]] = {
    "train": (0.0, 0.8),  # 4000 sentences
    "validation": (0.8, 0.9),  # 500
    "test": (0.9, 1.0),  # 500
}

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
MAX_WORDS = 15


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


@lru_cache(maxsize=1)
def sentence_bank() -> tuple[str, ...]:
    """``BANK_SIZE`` distinct sentences of at most ``MAX_WORDS`` words, in a fixed order."""
    rng = random.Random(_BANK_SEED)
    templates, weights = zip(*_TEMPLATES, strict=True)
    seen: set[str] = set()
    bank: list[str] = []
    while len(bank) < BANK_SIZE:
        sentence = rng.choices(templates, weights)[0](rng)
        if sentence not in seen and len(sentence.split()) <= MAX_WORDS:
            seen.add(sentence)
            bank.append(sentence)
    return tuple(bank)


def split_sentences(split: str) -> tuple[str, ...]:
    """All bank sentences of one split (``train``, ``validation`` or ``test``)."""
    if split not in SPLITS:
        raise DistilrayError(f"unknown sentence split {split!r}: choose one of {', '.join(SPLITS)}")
    start, end = SPLITS[split]
    bank = sentence_bank()
    return bank[int(start * len(bank)) : int(end * len(bank))]


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
