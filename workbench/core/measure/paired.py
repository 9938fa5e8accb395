"""Paired timing: candidates timed side by side in alternating blocks, and how sure their ratio is.

`compare_calls` gives each candidate one contiguous block per round, the blocks alternating round after round (the
order reversed every other round, or rotated), the first calls of each block discarded: a candidate is timed as it
runs alone (its thread pools settled, the last candidate's quiet) while a machine that slows down for a while (other
users, thermal limits) slows every candidate of a round alike. Its clock is injectable, so a fake clock drives it
deterministically in tests.

Two candidates timed this way give one ratio per round (A's block median over B's); the per-round ratios agree on a
quiet machine and spread on a busy one. `ratio_bound` resamples the rounds with replacement (seeded, a bounded
number of resamples) and reads the one-sided bounds of their median ratio: a claim such as "A is 1.5x slower than
B" holds only where the lower bound is at or above 1.5x. The speed doctor, the speed lab and the bench's paired
checks all time with `compare_calls` and judge with this one rule (`RatioBound.verdict`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np

CONFIDENCE = 0.95  # one-sided: the lower bound is exceeded with this confidence (and the upper bound likewise)
RESAMPLES = 2000
MAX_RESAMPLES = 20000  # keeps a call under a few milliseconds whatever the caller asks
HOLDS, INCONCLUSIVE, FAILS = "holds", "inconclusive", "does not hold"
ROUNDS = 5  # alternating rounds per comparison: enough for `ratio_bound` to see whether the rounds agree
ORDERS = {"reverse": "order reversed every other round", "rotate": "order rotated each round"}

Clock = Callable[[], float]


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


@dataclass(frozen=True)
class Comparison:
    """Per-call milliseconds of candidates timed side by side: pooled medians, each block's median, every sample."""

    p50_ms: dict[str, float]
    rounds_ms: dict[str, list[float]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    method: str = ""
    samples_ms: dict[str, list[float]] = field(default_factory=dict, repr=False)

    def ratio(self, slow: str, fast: str) -> float:
        """How many times faster `fast` is than `slow` (pooled medians)."""
        return self.p50_ms[slow] / self.p50_ms[fast] if self.p50_ms[fast] > 0 else 1.0

    def round_ratios(self, slow: str, fast: str) -> list[float]:
        """slow / fast in each round (block medians of the same round)."""
        return [s / f for s, f in zip(self.rounds_ms[slow], self.rounds_ms[fast], strict=True)]

    def bound(self, slow: str, fast: str) -> RatioBound:
        """The per-round ratios slow / fast and their seeded bootstrap bounds (`ratio_bound`)."""
        return ratio_bound(self.rounds_ms[slow], self.rounds_ms[fast])

    def fastest(self, among: Sequence[str] | None = None) -> str:
        names = list(among or self.p50_ms)
        return min(names, key=lambda n: self.p50_ms[n])

    def evidence(self) -> dict:
        return {
            "p50_ms": {k: round(v, 3) for k, v in self.p50_ms.items()},
            "rounds_p50_ms": {k: [round(v, 3) for v in r] for k, r in self.rounds_ms.items()},
            "calls": self.calls,
            "method": self.method,
        }


def block_order(names: Sequence[str], index: int, order: str = "reverse") -> list[str]:
    """The order of the blocks in round `index`: as given in even rounds and reversed in odd ones ("reverse"), or
    shifted by one each round so every candidate leads in turn ("rotate")."""
    if order not in ORDERS:
        raise ValueError(f"unknown block order {order!r}: choose one of {', '.join(ORDERS)}")
    names = list(names)
    if order == "reverse":
        return names if index % 2 == 0 else names[::-1]
    shift = index % len(names) if names else 0
    return names[shift:] + names[:shift]


def timed_block(
    fn: Callable[[], object],
    *,
    calls: int = 1,
    seconds: float = 0.0,
    until: float | None = None,
    clock: Clock = time.perf_counter,
) -> list[float]:
    """Milliseconds of each call of `fn()`: at least `calls` calls, more until `seconds` have passed since the block
    began; a call that ends after the clock reading `until` ends the block (one call at least)."""
    got: list[float] = []
    begin = clock()
    while len(got) < calls or clock() - begin < seconds:
        start = clock()
        fn()
        end = clock()
        got.append((end - start) * 1000)
        if until is not None and end > until:
            break
    return got


def compare_calls(
    candidates: Mapping[str, Callable[[], object]],
    *,
    rounds: int = ROUNDS,
    round_s: float = 0.15,
    warm_calls: int = 2,
    discard: int = 2,
    min_calls: int = 3,
    order: str = "reverse",
    max_s: float | None = None,
    clock: Clock = time.perf_counter,
    note: str = "",
) -> Comparison:
    """Time each no-argument call in alternating blocks: every round gives each candidate one contiguous block,
    its first `discard` calls untimed (the pools of the candidate before settle), then `round_s` seconds of timed
    calls (at least `min_calls`; `round_s=0` times exactly `min_calls`); `order` says how the blocks alternate
    (`block_order`). Each candidate is called `warm_calls` times first. Rounds stop after `rounds`, or once `max_s`
    seconds have passed since the first (one round at least). The medians pool the timed calls of every block;
    `note` is added to the method's words (how the calls were run)."""
    if order not in ORDERS:
        raise ValueError(f"unknown block order {order!r}: choose one of {', '.join(ORDERS)}")
    for fn in candidates.values():
        for _ in range(warm_calls):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in candidates}
    per_round: dict[str, list[float]] = {name: [] for name in candidates}
    begin = clock()
    for index in range(rounds):
        if index and max_s is not None and clock() - begin > max_s:
            break
        for name in block_order(list(candidates), index, order):
            for _ in range(discard):
                candidates[name]()
            got = timed_block(candidates[name], calls=min_calls, seconds=round_s, clock=clock)
            samples[name] += got
            per_round[name].append(float(np.median(got)))
    ran = len(next(iter(per_round.values()), []))
    method = (
        f"{ran} rounds of alternating blocks, one per candidate ({ORDERS[order]}): "
        f"{discard} untimed calls, then {round_s:g} s of timed calls (at least {min_calls}); medians of the "
        "timed calls" + (f", {note}" if note else "")
    )
    return Comparison(
        {name: float(np.median(s)) for name, s in samples.items()},
        per_round,
        {name: len(s) for name, s in samples.items()},
        method,
        samples,
    )
