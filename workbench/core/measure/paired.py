"""How sure a ratio measured in alternating blocks is: a seeded bootstrap over the blocks.

Two candidates timed in alternating blocks (A, B, B, A, A, B, ...) give one ratio per round (A's block median over
B's); a machine that slows down for a while slows both blocks of a round alike, so the per-round ratios agree on a
quiet machine and spread on a busy one. `ratio_bound` resamples the rounds with replacement (seeded, a bounded
number of resamples) and reads the one-sided bounds of their median ratio: a claim such as "A is 1.5x slower than
B" holds only where the lower bound is at or above 1.5x. The speed doctor, the speed lab and the bench's paired
checks all judge with this one rule (`RatioBound.verdict`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

CONFIDENCE = 0.95  # one-sided: the lower bound is exceeded with this confidence (and the upper bound likewise)
RESAMPLES = 2000
MAX_RESAMPLES = 20000  # keeps a call under a few milliseconds whatever the caller asks
HOLDS, INCONCLUSIVE, FAILS = "holds", "inconclusive", "does not hold"


@dataclass(frozen=True)
class RatioBound:
    """The median per-round ratio slow / fast, its one-sided bounds, and what they rest on."""

    ratio: float
    low: float
    high: float
    rounds: tuple[float, ...]
    confidence: float = CONFIDENCE
    resamples: int = RESAMPLES
    seed: int = 0

    def verdict(self, threshold: float) -> str:
        """HOLDS where the lower bound is at or above `threshold` ("slow is at least threshold x fast"), FAILS where
        the upper bound is below it, else INCONCLUSIVE (the rounds disagree too much to say)."""
        if self.low >= threshold:
            return HOLDS
        if self.high < threshold:
            return FAILS
        return INCONCLUSIVE

    @property
    def spread(self) -> tuple[float, float]:
        return (min(self.rounds), max(self.rounds)) if self.rounds else (self.ratio, self.ratio)

    def words(self) -> str:
        """The figures in one phrase: median ratio, bound, rounds and their spread."""
        lo, hi = self.spread
        return (
            f"{self.ratio:.2f}x median of {len(self.rounds)} rounds (each {lo:.2f}x to {hi:.2f}x), "
            f"{self.confidence:.0%} lower bound {self.low:.2f}x"
        )

    def as_dict(self) -> dict:
        return {
            "ratio": round(self.ratio, 3),
            "low": round(self.low, 3),
            "high": round(self.high, 3),
            "round_ratios": [round(r, 3) for r in self.rounds],
            "confidence": self.confidence,
            "resamples": self.resamples,
            "seed": self.seed,
            "statistic": "median of per-round ratios; bounds: seeded bootstrap over rounds, one-sided",
        }


def ratio_bound(
    slow_ms: Sequence[float],
    fast_ms: Sequence[float],
    *,
    confidence: float = CONFIDENCE,
    resamples: int = RESAMPLES,
    seed: int = 0,
) -> RatioBound:
    """The per-round ratios slow / fast (round i of each, timed side by side) and the bootstrap bounds of their median.

    Computed on log ratios, so `ratio_bound(b, a)` is the reciprocal of `ratio_bound(a, b)` (bounds swapped).

    Raises:
        ValueError: the two lists differ in length, are empty, hold a time that is not positive, or `confidence`
            is not in (0.5, 1).
    """
    slow, fast = np.asarray(slow_ms, float), np.asarray(fast_ms, float)
    if slow.shape != fast.shape or slow.size == 0:
        raise ValueError(
            f"ratio_bound needs one time per round for each side, got {slow.size} and {fast.size}: "
            "pass the block medians of the same rounds (Comparison.rounds_ms)"
        )
    if not (np.all(slow > 0) and np.all(fast > 0)):
        raise ValueError("ratio_bound got a time <= 0 ms: pass measured block medians in milliseconds")
    if not 0.5 < confidence < 1:
        raise ValueError(f"confidence {confidence} is not in (0.5, 1): pass e.g. 0.95")
    logs = np.log(slow / fast)
    resamples = int(min(max(resamples, 1), MAX_RESAMPLES))
    draws = np.random.default_rng(seed).integers(0, logs.size, (resamples, logs.size))
    medians = np.median(logs[draws], axis=1)
    low, high = np.quantile(medians, [1 - confidence, confidence])
    return RatioBound(
        float(np.exp(np.median(logs))),
        float(np.exp(low)),
        float(np.exp(high)),
        tuple(float(r) for r in np.exp(logs)),
        confidence,
        resamples,
        seed,
    )
