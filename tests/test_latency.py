"""The latency harness with an injected fake clock: exact statistics, warm-up and run sizing."""

import numpy as np
import pytest

from workbench.core.errors import ConfigError
from workbench.core.measure.latency import LatencyConfig, LatencyStats, time_calls


class FakeClock:
    """Time moves only when the timed function runs: each call takes the next duration (seconds)."""

    def __init__(self, durations):
        self.now, self.durations, self.calls = 0.0, list(durations), 0

    def __call__(self):
        return self.now

    def work(self):
        self.now += self.durations[min(self.calls, len(self.durations) - 1)]
        self.calls += 1


def test_first_call_and_warmup_are_kept_apart_from_the_samples():
    durations = [0.5] + [0.1] * 3 + [0.010, 0.020, 0.030, 0.040, 0.050]
    clock = FakeClock(durations)
    stats = time_calls(clock.work, LatencyConfig(warmup_runs=3, warmup_s=0, min_runs=5, min_time_s=0), clock=clock)
    assert stats.first_ms == pytest.approx(500)
    assert stats.warmup_runs == 3 and stats.runs == 5
    assert stats.samples_ms == pytest.approx([10, 20, 30, 40, 50])
    assert stats.p50_ms == pytest.approx(30) and stats.min_ms == pytest.approx(10) and stats.max_ms == pytest.approx(50)
    assert stats.mean_ms == pytest.approx(30) and stats.std_ms == pytest.approx(np.std([10, 20, 30, 40, 50], ddof=1))
    assert stats.p90_ms == pytest.approx(np.percentile([10, 20, 30, 40, 50], 90))
    assert stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


def test_runs_continue_until_both_count_and_time_suffice():
    clock = FakeClock([1 / 16])  # binary-exact durations keep the arithmetic exact
    stats = time_calls(clock.work, LatencyConfig(warmup_runs=0, warmup_s=0, min_runs=2, min_time_s=0.5), clock=clock)
    assert stats.runs == 8  # 2 runs would be only 1/8 s
    clock = FakeClock([0.5])
    stats = time_calls(clock.work, LatencyConfig(warmup_runs=0, warmup_s=0, min_runs=5, min_time_s=0.2), clock=clock)
    assert stats.runs == 5  # time reached after one run, count after five


def test_warmup_lasts_at_least_its_time():
    clock = FakeClock([0.25])
    stats = time_calls(clock.work, LatencyConfig(warmup_runs=1, warmup_s=1.0, min_runs=1, min_time_s=0), clock=clock)
    assert stats.warmup_runs == 4


def test_max_time_caps_a_slow_function():
    clock = FakeClock([10.0])
    config = LatencyConfig(warmup_runs=0, warmup_s=0, min_runs=100, min_time_s=0, max_time_s=25)
    assert time_calls(clock.work, config, clock=clock).runs == 3


def test_single_sample_has_zero_spread():
    stats = LatencyStats.from_samples([7.0], first_ms=9.0, warmup_runs=0)
    assert stats.std_ms == 0 and stats.p99_ms == 7.0


def test_bad_configs_are_refused():
    with pytest.raises(ConfigError):
        LatencyConfig(min_runs=0)
    with pytest.raises(ConfigError):
        LatencyConfig(min_runs=10, max_runs=5)
    with pytest.raises(ConfigError):
        LatencyConfig(warmup_s=-1)
