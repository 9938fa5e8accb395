"""Paired timing (measure.paired): alternating blocks driven by a fake clock, and the one rule every paired timing is
judged by, a seeded bootstrap over the rounds."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core.measure.paired import FAILS, HOLDS, INCONCLUSIVE, ratio_bound


def _rounds(ratios, base_ms=4.0):
    fast = base_ms * np.linspace(0.9, 1.1, len(ratios))  # the machine's speed drifts; both sides of a round alike
    return list(fast * np.asarray(ratios)), list(fast)


def test_a_real_2x_gain_holds():
    slow, fast = _rounds([2.05, 1.95, 2.1, 1.98, 2.02])
    bound = ratio_bound(slow, fast)
    assert 1.95 <= bound.low <= bound.ratio <= bound.high <= 2.1
    assert bound.verdict(1.5) == HOLDS and "95% lower bound" in bound.words()


def test_a_noisy_1_1x_is_inconclusive_and_a_steady_1_1x_does_not_hold():
    noisy = ratio_bound(*_rounds([0.7, 1.8, 1.0, 2.1, 1.1, 0.9]))
    assert noisy.low < 1.5 <= noisy.high and noisy.verdict(1.5) == INCONCLUSIVE
    steady = ratio_bound(*_rounds([1.12, 1.08, 1.1, 1.09, 1.11]))
    assert steady.verdict(1.5) == FAILS and steady.verdict(1.05) == HOLDS


def test_one_busy_round_does_not_make_a_cause():
    bound = ratio_bound(*_rounds([1.0, 1.05, 0.95, 1.7, 1.0]))  # a background job during one block
    assert bound.verdict(1.5) == FAILS


def test_deterministic_with_its_seed_and_symmetric():
    slow, fast = _rounds([1.3, 1.9, 1.6, 1.2, 2.2, 1.5])
    first, again, other = ratio_bound(slow, fast), ratio_bound(slow, fast), ratio_bound(slow, fast, seed=3)
    assert first == again and other.seed == 3 and other.ratio == first.ratio
    flipped = ratio_bound(fast, slow)
    assert flipped.ratio == pytest.approx(1 / first.ratio) and flipped.low == pytest.approx(1 / first.high)


def test_resamples_are_bounded_and_bad_input_names_the_fix():
    assert ratio_bound([2.0, 2.0], [1.0, 1.0], resamples=10**9).resamples == 20000
    with pytest.raises(ValueError, match="one time per round"):
        ratio_bound([1.0, 2.0], [1.0])
    with pytest.raises(ValueError, match="<= 0"):
        ratio_bound([1.0], [0.0])


class FakeClock:
    """A clock that moves only when a fake candidate says it ran: timing is exact and deterministic. Candidates take
    whole seconds of this clock, so every sum and every millisecond figure is exact in floating point."""

    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def candidate(self, name: str, seconds, log: list):
        """A call that takes `seconds(n)` on its n-th call (n from 0), recording its name in `log`."""
        count = [0]

        def call():
            log.append(name)
            self.now += seconds(count[0])
            count[0] += 1

        return call


def test_compare_calls_alternates_blocks_discards_cold_calls_and_judges_with_ratio_bound():
    from workbench.core.measure.paired import compare_calls

    clock, log, last = FakeClock(), [], []

    def warm_pool(name: str, base: float):
        """`base` a call, 12 more for the first two calls after the other candidate ran (its pools settle)."""
        state = {"cold": 0}

        def seconds(_):
            if last and last[-1] != name:
                state["cold"] = 2
            last.append(name)
            cold, state["cold"] = state["cold"] > 0, max(0, state["cold"] - 1)
            return base + (12.0 if cold else 0.0)

        return clock.candidate(name, seconds, log)

    calls = {"slow": warm_pool("slow", 6.0), "fast": warm_pool("fast", 2.0)}
    result = compare_calls(calls, rounds=4, round_s=10.0, warm_calls=1, discard=2, min_calls=3, clock=clock)
    blocks = [name for i, name in enumerate(log) if i == 0 or log[i - 1] != name]
    assert blocks == ["slow", "fast", "slow", "fast", "slow", "fast", "slow"]  # warm-up, then blocks reversed in turn
    assert result.rounds_ms == {"slow": [6000.0] * 4, "fast": [2000.0] * 4}  # the cold calls were discarded
    assert result.p50_ms == {"slow": 6000.0, "fast": 2000.0}
    assert result.calls == {"slow": 12, "fast": 20}  # 10 s of timed calls a block, 3 at least
    assert result.round_ratios("slow", "fast") == [3.0] * 4 and result.fastest() == "fast"
    assert result.bound("slow", "fast").verdict(1.5) == HOLDS and result.bound("fast", "slow").verdict(1.5) == FAILS
    assert "4 rounds of alternating blocks" in result.method and "2 untimed calls" in result.method
    interleaved = compare_calls(calls, rounds=4, round_s=0.0, warm_calls=0, discard=0, min_calls=1, clock=clock)
    assert interleaved.p50_ms == {"slow": 18.0e3, "fast": 14.0e3}  # call by call, every call is a cold one


def test_a_machine_that_slows_down_slows_both_sides_of_a_round_and_the_ratio_holds():
    from workbench.core.measure.paired import compare_calls

    clock, log = FakeClock(), []
    slowdown = [1.0, 3.0, 1.5, 2.5, 1.0, 4.0]  # per round: the machine's speed drifts a lot
    per_round = 10  # each candidate's calls per round (a fixed count), so call n belongs to round n // per_round
    calls = {
        "slow": clock.candidate("slow", lambda n: 3.0 * slowdown[n // per_round], log),
        "fast": clock.candidate("fast", lambda n: 2.0 * slowdown[n // per_round], log),
    }
    result = compare_calls(calls, rounds=6, round_s=0.0, warm_calls=0, discard=0, min_calls=per_round, clock=clock)
    assert result.round_ratios("slow", "fast") == [1.5] * 6
    bound = result.bound("slow", "fast")
    assert bound.low == pytest.approx(1.5) and bound.verdict(1.4) == HOLDS and bound.verdict(1.6) == FAILS
    assert result.samples_ms["slow"][:per_round] == [3000.0] * per_round and len(result.samples_ms["fast"]) == 60


def test_rounds_rotate_and_stop_at_the_time_budget():
    from workbench.core.measure.paired import block_order, compare_calls, timed_block

    assert [block_order("abc", i, "rotate") for i in range(4)] == [list("abc"), list("bca"), list("cab"), list("abc")]
    assert [block_order("abc", i) for i in range(2)] == [list("abc"), list("cba")]
    with pytest.raises(ValueError, match="block order"):
        block_order("ab", 0, "shuffle")
    clock, log = FakeClock(), []
    calls = {name: clock.candidate(name, lambda n: 10.0, log) for name in "abc"}
    result = compare_calls(
        calls, rounds=10, round_s=0.0, warm_calls=0, discard=0, min_calls=2, order="rotate", max_s=100, clock=clock
    )
    assert len(result.rounds_ms["a"]) == 2  # 60 s a round: a third would start at 120 s, past the 100 s budget
    assert "".join(log[::2]) == "abcbca" and result.method.startswith("2 rounds")
    times = timed_block(clock.candidate("x", lambda n: 5.0, log), calls=100, until=clock() + 12, clock=clock)
    assert times == [5000.0] * 3  # the call that ended past `until` is the last
    assert timed_block(clock.candidate("y", lambda n: 4.0, log), calls=1, seconds=10, clock=clock) == [4000.0] * 3
