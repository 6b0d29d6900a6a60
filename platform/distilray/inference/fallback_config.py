"""Whisper's temperature fallback as a stage configures it (evaluation, serving)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydantic import Field, field_validator

from distilray.config import StageConfig

if TYPE_CHECKING:  # the decoder (and torch) only where a model decodes
    from distilray.inference.decoder import Fallback


class FallbackConfig(StageConfig):
    """Windows decoded at temperature 0 that loop or are too unsure are decoded again,
    sampled at each temperature in turn, until one passes (openai/whisper ``transcribe``)."""

    temperatures: list[float] = Field(
        default_factory=lambda: [0.2, 0.4, 0.6, 0.8, 1.0],
        description="the ladder, each in (0, 1]; [] turns the fallback off (plain greedy)",
    )
    compression_ratio_threshold: float | None = Field(
        2.4, gt=0, description="a window whose text compresses more than this is a loop"
    )
    logprob_threshold: float | None = Field(
        -1.0, le=0, description="a window whose average log-probability is below this is unsure"
    )
    seed: int = Field(
        0,
        description="sampling seed of every window: a window gets the same text in every "
        "call, whatever it is batched with",
    )

    @field_validator("temperatures")
    @classmethod
    def _in_range(cls, value: list[float]) -> list[float]:
        if any(not 0 < t <= 1 for t in value):
            raise ValueError(f"each temperature must be in (0, 1]; got {value}")
        return value

    def rule(self) -> Fallback | None:
        """The decoder's :class:`Fallback`, or None when the ladder is empty."""
        from distilray.inference.decoder import Fallback

        if not self.temperatures:
            return None
        return Fallback(
            tuple(self.temperatures),
            self.compression_ratio_threshold,
            self.logprob_threshold,
            self.seed,
        )
