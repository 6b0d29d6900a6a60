"""Sentence sources beyond the templates: numbers, dates, names, questions, rare words,
punctuation, short and long sentences, and real English prose from installed quotations.

Template sentences teach a student the templates. Real speech has numbers said as
words but written as digits, names, questions, one-word answers and long rambling
sentences, and the text normaliser must cope with all of them in references. Each
generator here takes a seeded ``random.Random`` and returns one sentence; the prose
source reads Debian's ``fortunes`` quotations (literature, wisdom, science, ...) when
installed. :func:`clean_sentence` decides once what a TTS engine may be asked to read.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Callable, Iterator
from pathlib import Path

logger = logging.getLogger(__name__)

MIN_WORDS, MAX_WORDS = 3, 40  # shorter is not a sentence; longer outlasts a 30 s window
FORTUNE_DIRS = (Path("/usr/share/games/fortunes"), Path("/usr/share/fortunes"))
# Quotation files of plain English prose. Left out: code and shell jokes (computers,
# linux, perl, debian), pictures (ascii-art), verse (songs-poems), dialogue and Q&A
# formats (riddles, knghtbrd, startrek, zippy) and files full of slurs (ethnic, men-women).
FORTUNE_FILES = (
    "fortunes", "literature", "wisdom", "science", "education", "art", "food", "pets",
    "people", "platitudes", "sports", "love", "humorists", "work", "medicine", "kids",
    "magic", "miscellaneous", "law", "politics", "news", "tao", "paradoxum", "goedel",
)  # fmt: skip
_ALLOWED = re.compile(r"[A-Za-z0-9 .,;:'\"?!$%&()/-]+")
_TRANSLATE = str.maketrans({"\u2018": "'", "\u2019": "'", "\u201c": '"', "\u201d": '"',
                            "\u2013": "-", "\u2014": " - ", "\t": " ", "`": "'"})  # fmt: skip
_ABBREVIATIONS = (
    "Mr.",
    "Mrs.",
    "Ms.",
    "Dr.",
    "St.",
    "Prof.",
    "Jr.",
    "Sr.",
    "vs.",
    "e.g.",
    "i.e.",
    "etc.",
)
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')]?\s+(?=[\"'(]?[A-Z0-9])")


def clean_sentence(text: str) -> str | None:
    """``text`` tidied for a speech synthesiser, or None when it is not speakable.

    Kept: letters, digits and punctuation a reader voices or the normaliser handles
    ($ % & / ( ) - ' "). Rejected: other symbols, URLs, shouting, fewer than
    ``MIN_WORDS`` or more than ``MAX_WORDS`` words, and unbalanced brackets or quotes.
    """
    text = " ".join(text.translate(_TRANSLATE).split())
    text = text.replace('""', '"').strip()
    text = re.sub(r"([.!?][\"')]?)\s*\.\.\.$", r"\1", text)  # dangling ellipsis after the end
    words = text.split()
    if not MIN_WORDS <= len(words) <= MAX_WORDS or not _ALLOWED.fullmatch(text):
        return None
    if "//" in text or text.count('"') % 2 or text.count("(") != text.count(")"):
        return None
    if sum(w.isupper() and len(w) > 1 for w in words) > 1 or not re.search(r"[a-z]", text):
        return None  # shouting and acronym soup read badly
    if not text[0].isupper() and text[0] not in "\"'(" and not text[0].isdigit():
        return None
    return text if text[-1] in ".!?\"')" else text + "."


def fortune_sentences() -> list[str]:
    """Sentences from the installed ``fortunes`` files; empty (with a warning) if none."""
    folder = next((d for d in FORTUNE_DIRS if d.is_dir()), None)
    if folder is None:
        logger.warning(
            "no fortunes quotations installed: the sentence bank uses templates only "
            "(apt-get install fortunes, or make system-deps)"
        )
        return []
    sentences: list[str] = []
    for name in FORTUNE_FILES:
        path = folder / name
        if path.is_file():
            for entry in _fortune_entries(path.read_text(encoding="utf-8", errors="replace")):
                sentences.extend(s for s in map(clean_sentence, split_prose(entry)) if s)
    return sentences


def _fortune_entries(text: str) -> Iterator[str]:
    """The prose of each quotation: attributions, dialogue and verse dropped."""
    for entry in re.split(r"\n%\n", text):
        lines = entry.splitlines()
        body: list[str] = []
        for line in lines:
            if line.strip().startswith("--"):
                break  # "-- Mark Twain": the attribution and what follows it
            body.append(line)
        if any(re.match(r"\s*[A-Z][\w .']{0,20}:\s", line) for line in body):
            continue  # "Q: ... A: ..." and play dialogue
        if sum(1 for line in body if line.startswith(("\t\t", "    "))) > 1:
            continue  # indented verse or layout
        yield " ".join(line.strip() for line in body)


def split_prose(text: str) -> list[str]:
    """Split running text into sentences, not at ``Mr.``, ``e.g.`` and the like."""
    protected = text
    for abbreviation in _ABBREVIATIONS:
        protected = protected.replace(abbreviation, abbreviation.replace(".", "\0"))
    return [s.replace("\0", ".").strip() for s in _SENTENCE_END.split(protected) if s.strip()]


# --- generated sentences ------------------------------------------------------------

FIRST_NAMES = [
    "Olivia", "Liam", "Amara", "Noah", "Priya", "Mateo", "Chloe", "Kwame", "Siobhan",
    "Hiroshi", "Fatima", "Declan", "Ingrid", "Rafael", "Mei", "Tobias", "Aaliyah",
    "Bartholomew", "Niamh", "Oluwaseun", "Giovanni", "Freya", "Dmitri", "Esperanza",
    "Rory", "Yusuf", "Margot", "Anand", "Colette", "Thaddeus", "Beatrix", "Jamal",
]  # fmt: skip
LAST_NAMES = [
    "Okafor", "Fitzgerald", "Nakamura", "Schmidt", "Delacroix", "Patel", "McAllister",
    "Kowalski", "Abernathy", "Lindqvist", "Ramirez", "O'Sullivan", "Thistlewood",
    "Achterberg", "Mbeki", "Gallagher", "Featherstonehaugh", "Nguyen", "Castellano",
    "Van der Berg", "Wojciechowski", "Higginbotham", "Ashworth", "Papadopoulos",
]  # fmt: skip
PLACES = [
    "Edinburgh", "Leicester", "Worcestershire", "Poughkeepsie", "Albuquerque", "Aberystwyth",
    "Saskatoon", "Wollongong", "Mississauga", "Gloucester", "Tucson", "Dundee", "Auckland",
    "Kalamazoo", "Loughborough", "Narragansett", "Cirencester", "Schenectady",
]  # fmt: skip
RARE_WORDS = [
    "quixotic", "obsequious", "perspicacious", "sesquipedalian", "defenestration",
    "antediluvian", "borborygmus", "callipygian", "crepuscular", "effervescent",
    "floccinaucinihilipilification", "gobbledygook", "hullabaloo", "ineffable",
    "juxtaposition", "kerfuffle", "lugubrious", "mellifluous", "nefarious", "onomatopoeia",
    "pusillanimous", "quintessential", "rambunctious", "serendipity", "tintinnabulation",
    "ubiquitous", "vicissitude", "wherewithal", "xylophone", "zeitgeist", "archipelago",
    "bureaucracy", "cacophony", "diphthong", "ephemeral", "fastidious", "garrulous",
    "halcyon", "idiosyncrasy", "jurisprudence", "kaleidoscope", "labyrinthine",
    "magnanimous", "nonchalant", "obfuscate", "palimpsest", "quagmire", "recalcitrant",
    "sycophant", "taciturn", "umbrage", "verisimilitude", "wanderlust", "zephyr",
    "chrysanthemum", "rhododendron", "pterodactyl", "psoriasis", "mnemonic", "gnocchi",
    "bourgeoisie", "connoisseur", "entrepreneur", "rendezvous", "silhouette", "epitome",
    "hyperbole", "colonel", "worcestershire", "otorhinolaryngology", "photosynthesis",
]  # fmt: skip
NOUNS = [
    "tickets", "apples", "chairs", "books", "invoices", "parcels", "bicycles", "lamps",
    "students", "volunteers", "boxes", "emails", "trees", "patients", "bottles", "seats",
]  # fmt: skip
ITEMS = ["a coffee", "the repair", "a new coat", "two tickets", "the taxi", "a sandwich",
         "the guidebook", "a haircut", "the parking fine", "a bunch of flowers"]  # fmt: skip
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]  # fmt: skip
WEEKDAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]
SHORT = [
    "Yes, of course.", "Not today, thanks.", "Turn left here.", "Call me tomorrow.",
    "That sounds great.", "Please sit down.", "I have no idea.", "Wait for me!",
    "Is it raining?", "See you soon.", "Close the door.", "Absolutely not.",
    "Where are my keys?", "Happy birthday, Sam!", "Keep the change.", "Thanks a lot.",
    "What time is it?", "Good luck tomorrow.", "It is broken again.", "Let me think.",
]  # fmt: skip
CLAUSES = [
    "the meeting ran late because nobody had read the report",
    "we took the long road through the hills",
    "the children were still asleep when the storm began",
    "she finally finished the novel she had started years ago",
    "the old bridge was closed for repairs all summer",
    "nobody remembered to bring the spare batteries",
    "the bakery on the corner sold out of bread by nine",
    "my uncle insisted on telling the same story again",
    "the train stopped for twenty minutes outside the station",
    "the garden looked wonderful after a week of rain",
    "the printer jammed just before the deadline",
    "we argued for an hour about where to have lunch",
]  # fmt: skip
CONNECTIVES = ["and then", "although", "because", "so", "but", "while", "even though"]


def _person(rng: random.Random) -> str:
    return f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"


def _price(rng: random.Random) -> str:
    amount = rng.choice(
        [
            f"${rng.randint(1, 99)}.{rng.randint(0, 99):02d}",
            f"${rng.randint(2, 500)}",
            f"${rng.randint(1, 20) * 1000:,}",
        ]
    )
    return f"{rng.choice(FIRST_NAMES)} paid {amount} for {rng.choice(ITEMS)}."


def _count(rng: random.Random) -> str:
    number = rng.choice([rng.randint(2, 19), rng.randint(20, 999), rng.randint(1000, 99999)])
    return f"There were {number:,} {rng.choice(NOUNS)} in the hall by {rng.randint(1, 12)} o'clock."


def _percentage(rng: random.Random) -> str:
    value = rng.choice([f"{rng.randint(1, 99)}%", f"{rng.randint(1, 99)}.{rng.randint(1, 9)}%"])
    return f"Prices went {rng.choice(['up', 'down'])} by {value} in {rng.randint(1950, 2029)}."


def _clock(rng: random.Random) -> str:
    time = (
        f"{rng.randint(1, 12)}:{rng.choice(['00', '15', '30', '45', f'{rng.randint(1, 59):02d}'])}"
    )
    part = rng.choice(["a.m", "p.m", "in the morning", "in the evening", ""])
    return (
        f"The {rng.choice(['bus', 'ferry', 'flight', 'class'])} leaves at {time} {part}".strip()
        + "."
    )


def _ordinal(n: int) -> str:
    suffix = "th" if 11 <= n % 100 <= 13 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _date(rng: random.Random) -> str:
    day, month, year = rng.randint(1, 28), rng.choice(MONTHS), rng.randint(1066, 2031)
    form = rng.choice(
        [
            f"{month} {day}, {year}",
            f"the {_ordinal(day)} of {month}",
            f"{rng.choice(WEEKDAYS)} {day} {month}",
            f"{day}/{rng.randint(1, 12)}/{year}",
        ]
    )
    opener = rng.choice(
        [
            "The wedding is on",
            "She was born on",
            "We moved house on",
            "The letter was dated",
            "The shop reopens on",
        ]
    )
    return f"{opener} {form}."


def _name(rng: random.Random) -> str:
    frames = [
        "{p} moved from {c} to {c2} last spring.",
        "Please ask for {p} at the front desk.",
        "Dr. {l} will see you now, {f}.",
        "Have you met {p} from the {c} office?",
        "{f} and {f2} are driving up to {c} on Sunday.",
        "Mrs. {l} teaches music in {c}.",
    ]
    return rng.choice(frames).format(
        p=_person(rng),
        f=rng.choice(FIRST_NAMES),
        f2=rng.choice(FIRST_NAMES),
        l=rng.choice(LAST_NAMES),
        c=rng.choice(PLACES),
        c2=rng.choice(PLACES),
    )


def _question(rng: random.Random) -> str:
    frames = [
        "Did {f} ever call you back about the {n}?",
        "How many {n} do we still need?",
        "Is it true that {f} lives in {c} now?",
        "Why would anyone leave the {n} outside?",
        "Who is going to tell {f} the news?",
        "Are you sure the {n} arrived on {d}?",
        "What did {f} say when you mentioned {c}?",
        "Could you spell {r} for me, please?",
    ]
    return rng.choice(frames).format(
        f=rng.choice(FIRST_NAMES),
        n=rng.choice(NOUNS),
        c=rng.choice(PLACES),
        d=rng.choice(WEEKDAYS),
        r=rng.choice(RARE_WORDS),
    )


def _rare(rng: random.Random) -> str:
    frames = [
        "The word {r} appeared twice in the crossword.",
        "Her speech was, frankly, rather {r}.",
        "He looked up {r} in the dictionary.",
        "Nobody in the room could pronounce {r} correctly.",
        "The teacher wrote {r} and {r2} on the board.",
    ]
    return rng.choice(frames).format(r=rng.choice(RARE_WORDS), r2=rng.choice(RARE_WORDS))


def _punctuated(rng: random.Random) -> str:
    frames = [
        '"I\'m not sure," said {f}, "but I think it\'s {c}."',
        "Bring the following: bread, cheese, apples (green ones), and {n}.",
        "Well... I suppose we could try again; it can't hurt.",
        "It's a well-known, long-standing rule - no {n} in the library!",
        "Mr. {l}'s dog, a ten-year-old terrier, won first prize.",
        "The sign said: closed for the holidays, back on {d}.",
        "Wait - did you say {f}'s flight was cancelled?",
        "Rock & roll isn't dead; it's just tired.",
    ]
    return rng.choice(frames).format(
        f=rng.choice(FIRST_NAMES),
        l=rng.choice(LAST_NAMES),
        c=rng.choice(PLACES),
        n=rng.choice(NOUNS),
        d=rng.choice(WEEKDAYS),
    )


def _short(rng: random.Random) -> str:
    return rng.choice(
        SHORT + [f"{rng.choice(FIRST_NAMES)}, come here!", f"Not {rng.choice(WEEKDAYS)}."]
    )


def _long(rng: random.Random) -> str:
    parts = rng.sample(CLAUSES, rng.randint(2, 3))
    joined = parts[0]
    for clause in parts[1:]:
        joined += f", {rng.choice(CONNECTIVES)} {clause}"
    return joined[0].upper() + joined[1:] + "."


# (generator, distinct sentences wanted); a generator that cannot make that many
# distinct sentences gives what it finds within MAX_TRIES_PER_SENTENCE * wanted draws.
GENERATED: dict[str, tuple[Callable[[random.Random], str], int]] = {
    "price": (_price, 600),
    "count": (_count, 600),
    "percentage": (_percentage, 400),
    "clock": (_clock, 400),
    "date": (_date, 800),
    "name": (_name, 800),
    "question": (_question, 800),
    "rare": (_rare, 500),
    "punctuation": (_punctuated, 400),
    "short": (_short, 60),
    "long": (_long, 500),
}
MAX_TRIES_PER_SENTENCE = 20


def generated_sentences(seed: int) -> Iterator[tuple[str, str]]:
    """(source, sentence) pairs from every generator, each with its own fixed stream."""
    for index, (source, (make, wanted)) in enumerate(GENERATED.items()):
        rng = random.Random(seed * 1000 + index)
        seen: set[str] = set()
        for _ in range(wanted * MAX_TRIES_PER_SENTENCE):
            sentence = clean_sentence(make(rng))
            if sentence and sentence not in seen:
                seen.add(sentence)
                yield source, sentence
                if len(seen) == wanted:
                    break
