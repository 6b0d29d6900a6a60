"""Text normalisation and word error rate.

The normaliser is Whisper's English normaliser (the one the Distil-Whisper paper
uses for every WER it reports), with its spelling table shipped in ``assets/``.
WER counts come from jiwer; corpus WER sums edits over all utterances rather than
averaging per-utterance rates.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import jiwer
from transformers.models.whisper.english_normalizer import EnglishTextNormalizer


@lru_cache(maxsize=1)
def _normalizer() -> EnglishTextNormalizer:
    mapping = json.loads(
        resources.files("distilray").joinpath("assets/english_normalizer.json").read_text()
    )
    return EnglishTextNormalizer(mapping)


def normalize(text: str | None) -> str:
    """Whisper's English normalisation: lower case, no punctuation, spelled-out forms."""
    if not text:
        return ""
    return _normalizer()(text).strip()


@dataclass(frozen=True)
class WerStats:
    """Edit counts between references and hypotheses (after normalisation)."""

    substitutions: int = 0
    deletions: int = 0
    insertions: int = 0
    hits: int = 0

    @property
    def ref_words(self) -> int:  # N = S + D + H
        return self.substitutions + self.deletions + self.hits

    @property
    def errors(self) -> int:
        return self.substitutions + self.deletions + self.insertions

    @property
    def wer(self) -> float:
        """(S + D + I) / N; 0 for an empty reference with empty hypothesis, 1 per insertion otherwise."""
        if self.ref_words == 0:
            return 0.0 if self.insertions == 0 else float(self.insertions)
        return self.errors / self.ref_words

    def rate(self, kind: str) -> float:
        """Substitution / deletion / insertion rate relative to reference words."""
        n = max(self.ref_words, 1)
        return getattr(self, kind) / n

    def __add__(self, other: WerStats) -> WerStats:
        return WerStats(
            self.substitutions + other.substitutions,
            self.deletions + other.deletions,
            self.insertions + other.insertions,
            self.hits + other.hits,
        )

    def as_dict(self) -> dict[str, float]:
        return {
            "wer": self.wer,
            "substitutions": self.substitutions,
            "deletions": self.deletions,
            "insertions": self.insertions,
            "hits": self.hits,
            "ref_words": self.ref_words,
            "substitution_rate": self.rate("substitutions"),
            "deletion_rate": self.rate("deletions"),
            "insertion_rate": self.rate("insertions"),
        }


def wer_stats(reference: str | None, hypothesis: str | None, normalise: bool = True) -> WerStats:
    """Edit counts for one utterance. Empty references are handled (all insertions)."""
    ref = normalize(reference) if normalise else (reference or "").strip()
    hyp = normalize(hypothesis) if normalise else (hypothesis or "").strip()
    if not ref:
        return WerStats(insertions=len(hyp.split()))
    if not hyp:
        return WerStats(deletions=len(ref.split()))
    out = jiwer.process_words(ref, hyp)
    return WerStats(out.substitutions, out.deletions, out.insertions, out.hits)


def corpus_wer(references: list[str | None], hypotheses: list[str | None]) -> WerStats:
    """Sum of per-utterance edit counts: the corpus-level WER the paper reports."""
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    total = WerStats()
    for ref, hyp in zip(references, hypotheses, strict=True):
        total = total + wer_stats(ref, hyp)
    return total


def wer(reference: str | None, hypothesis: str | None) -> float | None:
    """Normalised WER of one utterance; ``None`` when there is no reference."""
    if reference is None or not normalize(reference):
        return None
    return wer_stats(reference, hypothesis).wer
