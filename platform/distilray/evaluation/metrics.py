"""Metrics of one evaluation cell: pure functions of transcripts and timings.

WER and its error rates follow the Distil-Whisper paper: corpus-level (edits
summed over utterances) after Whisper's English normaliser. Hallucination is
measured, as in the paper, by repeated 5-gram duplicates and the insertion error
rate, and by loops counted on the raw transcript (:func:`is_loop`: Whisper's
normaliser drops fillers, so "um, um, um, …" escapes the first two); speed by RTFx
(audio seconds per compute second) and tokens per second. A model's WER difference
from the teacher's comes with a paired bootstrap interval (:func:`paired_difference`):
on a few dozen utterances a difference of several points can be chance.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from distilray.text import WerStats, normalize, wer_stats


def repeated_ngrams(text: str | None, n: int = 5) -> int:
    """Word n-grams of ``text`` (normalised) that repeat an earlier n-gram of it.

    "a b c d e a b c d e" has six 5-grams, five distinct: one repeat. A looping
    hallucination adds one repeat per extra word.
    """
    words = normalize(text).split()
    grams = Counter(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return sum(count - 1 for count in grams.values())


def corpus_repeated_ngrams(texts: Sequence[str | None], n: int = 5) -> int:
    """Word n-grams repeated anywhere in the corpus: every utterance's n-grams in one count.

    Per-utterance counts (:func:`repeated_ngrams`) miss a model that emits the same
    stock phrase for many clips; counted over the corpus, those repeats add up too.
    N-grams do not cross utterance boundaries.

    >>> corpus_repeated_ngrams(["a b c d e", "a b c d e f"])
    1
    """
    grams: Counter[tuple[str, ...]] = Counter()
    for text in texts:
        words = normalize(text).split()
        grams.update(tuple(words[i : i + n]) for i in range(len(words) - n + 1))
    return sum(count - 1 for count in grams.values())


LOOP_EXCESS = 4  # a loop repeats a phrase this many more times in a row than its reference
LOOP_PHRASE_WORDS = 4  # the longest phrase whose back-to-back repeats are counted


def raw_words(text: str | None) -> list[str]:
    """``text`` lower-cased, split on anything but letters, digits and apostrophes:
    fillers ("um", "uh") and hyphenated pieces stay words, unlike after the normaliser."""
    return re.findall(r"[a-z0-9']+", (text or "").lower())


def longest_run(words: Sequence[str], max_phrase: int = LOOP_PHRASE_WORDS) -> int:
    """The most times any phrase of 1 to ``max_phrase`` words is said back to back
    (1 for words without a repeat, 0 for none).

    >>> longest_run("so um um um um ok".split())
    4
    >>> longest_run("in re in re in re".split())
    3
    """
    best = 1 if words else 0
    for size in range(1, max_phrase + 1):
        stretch = 0  # positions i where words[i] == words[i + size], in a row
        for i in range(len(words) - size):
            stretch = stretch + 1 if words[i] == words[i + size] else 0
            best = max(best, stretch // size + 1)
    return best


PUNCTUATION_LOOP_CHARS = 16  # a stretch of text without a letter or digit this long


def longest_punctuation(text: str | None) -> int:
    """The most punctuation characters ``text`` has in a row with no letter or digit
    of any script between them (whitespace not counted).

    >>> longest_punctuation("Montreal... ... ...... forced")
    12
    >>> longest_punctuation("Привет, как дела?")
    1
    """
    stretches = re.split(r"[^\W_]+", text or "")
    return max((len(re.sub(r"\s+", "", s)) for s in stretches), default=0)


def is_loop(hypothesis: str | None, reference: str | None = None) -> bool:
    """Whether ``hypothesis`` repeats a phrase of up to four words at least
    ``LOOP_EXCESS`` more times in a row than ``reference`` repeats any phrase (without
    a reference: at least ``LOOP_EXCESS + 1`` times), or runs on with punctuation and
    no word (``PUNCTUATION_LOOP_CHARS`` or more in a row: "... ... ......"). Fillers
    count: a student that says "um" 51 times where the speaker said it once loops,
    although Whisper's normaliser hides it from WER and the 5-gram count; a speaker
    who says "word" five times, transcribed six times, does not. A punctuation loop
    is invisible to both too (the normaliser drops punctuation).

    >>> is_loop("montreal forced um um um um um um aligner", "montreal forced um aligner")
    True
    >>> is_loop("word word word word word word", "word word word word word")
    False
    >>> is_loop("Montreal... " + "... " * 6, "montreal forced aligner")
    True
    """
    if longest_punctuation(hypothesis) >= PUNCTUATION_LOOP_CHARS:
        return True
    excess = longest_run(raw_words(hypothesis)) - max(longest_run(raw_words(reference)), 1)
    return excess >= LOOP_EXCESS


def rtfx(audio_s: float, compute_s: float) -> float | None:
    """Inverse real-time factor: seconds of audio transcribed per second of compute."""
    return audio_s / compute_s if compute_s > 0 else None


@dataclass(frozen=True)
class Utterance:
    """One transcribed utterance of a cell."""

    reference: str | None
    hypothesis: str
    duration_s: float  # audio length
    compute_s: float  # decoding time attributed to it
    generated_tokens: int  # tokens decoded
    drafted: int = 0  # speculative: drafts checked by the teacher
    accepted: int = 0  # speculative: drafts accepted
    teacher_passes: int = 0  # speculative: teacher forward passes
    id: str = ""  # the manifest row's id, to name the utterances with most errors
    unfinished_windows: int | None = None  # windows that hit the token limit (None: untracked)
    resumed_windows: int | None = None  # windows decoded on after an early end (None: untracked)


TRIM_MIN = 5  # the WER without the worst N is given for cells of at least TRIM_MIN * N


def worst_utterances(stats: Sequence[WerStats], count: int) -> list[int]:
    """Indices of the ``count`` utterances with the most errors (ties: the earlier first;
    none without errors).

    >>> worst_utterances([WerStats(1), WerStats(3), WerStats(2), WerStats()], 2)
    [1, 2]
    """
    order = sorted(range(len(stats)), key=lambda i: (-stats[i].errors, i))
    return [i for i in order[:count] if stats[i].errors > 0]


def scored_stats(utterances: Sequence[Utterance]) -> list[tuple[Utterance, WerStats]]:
    """The utterances with a (non-empty after normalising) reference, with their edits."""
    scored = [u for u in utterances if u.reference is not None and normalize(u.reference)]
    return [(u, wer_stats(u.reference, u.hypothesis)) for u in scored]


@dataclass(frozen=True)
class Difference:
    """One model's corpus WER minus another's on the same utterances, as fractions."""

    points: float  # the difference itself
    low: float | None  # its bootstrap interval (None: too few utterances for one)
    high: float | None
    utterances: int  # how many utterances both have


BOOTSTRAP_RESAMPLES = 2000
# Below this many utterances a resampling interval says nothing (one long recording
# would get the interval "from x to x"): the difference is given without one.
MIN_BOOTSTRAP_UTTERANCES = 10


def paired_difference(
    ours: dict[str, WerStats],
    theirs: dict[str, WerStats],
    *,
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> Difference | None:
    """Corpus WER of ``ours`` minus that of ``theirs`` over the utterance ids both
    have, with a paired bootstrap percentile interval at ``level``.

    Each resample draws utterances with replacement and scores both models on the
    same draw, so what varies between utterances (some are hard for every model)
    cancels out. ``None`` when they share no utterance with reference words; no
    interval (``low``, ``high`` None) under :data:`MIN_BOOTSTRAP_UTTERANCES`.

    >>> ours = {f"u{i}": WerStats(1, hits=9) for i in range(10)}
    >>> d = paired_difference(ours, {f"u{i}": WerStats(hits=10) for i in range(10)})
    >>> round(d.points, 2), round(d.low, 2), round(d.high, 2)
    (0.1, 0.1, 0.1)
    >>> paired_difference({"a": WerStats(1, hits=9)}, {"a": WerStats(hits=10)}).low is None
    True
    """
    shared = sorted(set(ours) & set(theirs))
    words = np.array([theirs[i].ref_words for i in shared], dtype=np.float64)
    if not shared or words.sum() == 0:
        return None
    diff = np.array([ours[i].errors - theirs[i].errors for i in shared], dtype=np.float64)
    points = float(diff.sum() / words.sum())
    if len(shared) < MIN_BOOTSTRAP_UTTERANCES:
        return Difference(points, None, None, len(shared))
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(shared), size=(resamples, len(shared)))
    totals = words[draws].sum(axis=1)
    valid = totals > 0
    sampled = diff[draws].sum(axis=1)[valid] / totals[valid]
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(sampled, [tail, 100 - tail])
    return Difference(points, float(low), float(high), len(shared))


def cell_metrics(
    utterances: Sequence[Utterance],
    worst: int = 0,
    scored: Sequence[tuple[Utterance, WerStats]] | None = None,
) -> dict[str, float | int | None | list]:
    """Every metric of one (model, form, noise) cell over its utterances.

    ``worst`` > 0 also names the ``worst`` utterances with the most errors (``worst``:
    id, errors, reference words) and gives the WER of the others
    (``wer_without_worst``): a model that loops on one or two recordings shows up
    there, and the WER of the rest says how it does on everything else. Only cells of
    at least ``TRIM_MIN * worst`` scored utterances get that WER (four long-form
    recordings without their worst three would be one recording's WER). ``scored``:
    :func:`scored_stats` of ``utterances`` where the caller has it already.
    """
    pairs = scored_stats(utterances) if scored is None else scored
    scored = [u for u, _ in pairs]
    per_utterance = [s for _, s in pairs]
    stats: WerStats = sum(per_utterance, WerStats())
    picked = worst_utterances(per_utterance, worst) if worst else []
    rest = sum((s for i, s in enumerate(per_utterance) if i not in picked), WerStats())
    audio = sum(u.duration_s for u in utterances)
    compute = sum(u.compute_s for u in utterances)
    tokens = sum(u.generated_tokens for u in utterances)
    drafted = sum(u.drafted for u in utterances)
    tracked = [u.unfinished_windows for u in utterances if u.unfinished_windows is not None]
    resumed = [u.resumed_windows for u in utterances if u.resumed_windows is not None]
    return {
        "utterances": len(utterances),
        "scored": len(scored),
        "wer": stats.wer if scored else None,
        "substitution_rate": stats.rate("substitutions") if scored else None,
        "deletion_rate": stats.rate("deletions") if scored else None,
        "insertion_rate": stats.rate("insertions") if scored else None,
        "ref_words": stats.ref_words,
        "wer_without_worst": rest.wer if worst and len(scored) >= TRIM_MIN * worst else None,
        "worst": [
            {
                "id": scored[i].id,
                "errors": per_utterance[i].errors,
                "ref_words": per_utterance[i].ref_words,
            }
            for i in picked
        ],
        "repeated_5grams": sum(repeated_ngrams(u.hypothesis) for u in utterances),
        "repeated_5grams_corpus": corpus_repeated_ngrams([u.hypothesis for u in utterances]),
        # utterances whose transcript loops (is_loop: fillers included)
        "loops": sum(1 for u in utterances if is_loop(u.hypothesis, u.reference)),
        # utterances with a window that ran to the token limit: a loop to the limit
        # counts here even where the normaliser hides it from WER and 5-grams (fillers)
        "unfinished": sum(1 for n in tracked if n > 0) if tracked else None,
        # utterances with a window decoded on after its text ended early (resume rule)
        "resumed": sum(1 for n in resumed if n > 0) if resumed else None,
        "audio_s": audio,
        "compute_s": compute,
        "rtfx": rtfx(audio, compute),
        "tokens_per_s": tokens / compute if compute > 0 else None,
        "acceptance_rate": sum(u.accepted for u in utterances) / drafted if drafted else None,
        "teacher_passes": sum(u.teacher_passes for u in utterances) if drafted else None,
    }


def relative_latency(compute_s: float, teacher_compute_s: float | None) -> float | None:
    """Compute time relative to the teacher's on the same audio (teacher = 1.0)."""
    if not teacher_compute_s:
        return None
    return compute_s / teacher_compute_s
