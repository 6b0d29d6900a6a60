"""Repeated words in synthetic speech: how spontaneous speakers repeat themselves.

Read sentences are fluent; people talking are not. They say a word twice ("the the"),
restart a phrase ("my sister, my sister painted ..."), repeat an interjection ("no no
no", "hello? hello?") or count the same thing out loud. A student that never hears
a repeated word has not learnt when a repetition in the audio ends, and on such
speech it keeps repeating to the token limit. :func:`add_repetitions` rewrites a
sentence with one such repetition; the rewritten text is what the voice reads and the
clip's reference, so the teacher's label is checked against it as usual.
"""

from __future__ import annotations

import random

KINDS = ("word", "restart", "interjection", "run")
# Said on their own, repeated: spoken agreement, doubt, greeting, laughter, urgency.
INTERJECTIONS = (
    "yes", "no", "okay", "right", "well", "so", "oh", "hey", "hello", "wait", "come on",
    "go", "stop", "sorry", "please", "ha", "now", "again", "look", "thanks",
)  # fmt: skip
_CLOSERS = ".?!,"


def add_repetitions(sentence: str, rng: random.Random) -> str:
    """``sentence`` with one spoken repetition of a kind drawn from :data:`KINDS`.

    - ``word``: one word said two or three times in place ("to the the shop");
    - ``restart``: the first two or three words said, then the sentence from the start;
    - ``interjection``: an interjection said two to five times before the sentence;
    - ``run``: one of the sentence's words said four to eight times after it, as when
      a speaker lists or counts the same word.

    >>> add_repetitions("My sister painted the kitchen walls.", random.Random(0))
    'My sister painted the kitchen walls. Kitchen, kitchen, kitchen, kitchen.'
    >>> add_repetitions("My sister painted the kitchen walls.", random.Random(1))
    'My sister, my sister painted the kitchen walls.'
    """
    words = sentence.split()
    if len(words) < 2:
        return sentence
    kind = rng.choice(KINDS)
    if kind == "word":
        # a spoken word, not the last: the sentence's final punctuation stays at the end
        spoken = [i for i, w in enumerate(words[:-1]) if any(c.isalnum() for c in w)]
        if not spoken:
            return sentence
        i = rng.choice(spoken)
        bare = words[i].rstrip(_CLOSERS)
        return " ".join([*words[:i], *[bare] * rng.randint(1, 2), *words[i:]])
    if kind == "restart":
        head = [w.rstrip(_CLOSERS) for w in words[: min(rng.randint(2, 3), len(words) - 1)]]
        return f"{' '.join(head)}, {_continued(sentence)}"
    if kind == "interjection":
        said = rng.choice(INTERJECTIONS)
        mark = rng.choice([",", "?", "!"])
        run = [f"{said.capitalize()}{mark}"] + [f"{said}{mark}"] * rng.randint(1, 4)
        return f"{' '.join(run)} {_continued(sentence)}"
    candidates = [w.strip(_CLOSERS + "\"'()") for w in words]
    candidates = [w for w in candidates if w.isalpha() and len(w) > 2] or ["again"]
    said = rng.choice(candidates).lower()
    run = [said.capitalize()] + [said] * rng.randint(3, 7)
    ending = sentence if sentence[-1] in ".?!" else f"{sentence}."
    return f"{ending} {', '.join(run)}."


def _continued(sentence: str) -> str:
    """``sentence`` as the continuation of a sentence already begun (no capital, but "I")."""
    first = sentence.split()[0]
    if first == "I" or first.startswith("I'") or not first[:1].isupper() or first.isupper():
        return sentence
    return sentence[0].lower() + sentence[1:]
