"""The one rule every paired timing is judged by: a seeded bootstrap over alternating rounds (measure.paired)."""

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
