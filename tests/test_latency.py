"""The latency harness with an injected fake clock: exact statistics, warm-up, run sizing, stability windows."""

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


ONE_WINDOW = {"windows": 1, "max_windows": 1}


def test_first_call_and_warmup_are_kept_apart_from_the_samples():
    durations = [0.5] + [0.1] * 3 + [0.010, 0.020, 0.030, 0.040, 0.050]
    clock = FakeClock(durations)
    config = LatencyConfig(warmup_runs=3, warmup_s=0, min_runs=5, min_time_s=0, **ONE_WINDOW)
    stats = time_calls(clock.work, config, clock=clock)
    assert stats.first_ms == pytest.approx(500)
    assert stats.warmup_runs == 3 and stats.runs == 5
    assert stats.samples_ms == pytest.approx([10, 20, 30, 40, 50])
    assert stats.p50_ms == pytest.approx(30) and stats.min_ms == pytest.approx(10) and stats.max_ms == pytest.approx(50)
    assert stats.mean_ms == pytest.approx(30) and stats.std_ms == pytest.approx(np.std([10, 20, 30, 40, 50], ddof=1))
    assert stats.p90_ms == pytest.approx(np.percentile([10, 20, 30, 40, 50], 90))
    assert stats.p50_ms <= stats.p90_ms <= stats.p99_ms <= stats.max_ms


def test_runs_continue_until_both_count_and_time_suffice():
    clock = FakeClock([1 / 16])  # binary-exact durations keep the arithmetic exact
    config = LatencyConfig(warmup_runs=0, warmup_s=0, min_runs=2, min_time_s=0.5, **ONE_WINDOW)
    assert time_calls(clock.work, config, clock=clock).runs == 8  # 2 runs would be only 1/8 s
    clock = FakeClock([0.5])
    config = LatencyConfig(warmup_runs=0, warmup_s=0, min_runs=5, min_time_s=0.2, **ONE_WINDOW)
    assert time_calls(clock.work, config, clock=clock).runs == 5  # time reached after one run, count after five


def test_warmup_lasts_at_least_its_time():
    clock = FakeClock([0.25])
    config = LatencyConfig(warmup_runs=1, warmup_s=1.0, min_runs=1, min_time_s=0, **ONE_WINDOW)
    assert time_calls(clock.work, config, clock=clock).warmup_runs == 4


def test_max_time_caps_a_slow_function():
    clock = FakeClock([10.0])
    config = LatencyConfig(warmup_runs=0, warmup_s=0, min_runs=100, min_time_s=0, max_time_s=25, **ONE_WINDOW)
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
    with pytest.raises(ConfigError):
        LatencyConfig(windows=4, max_windows=3)
    with pytest.raises(ConfigError):
        LatencyConfig(tolerance=0)


WINDOWS = LatencyConfig(warmup_runs=0, warmup_s=0, min_runs=3, min_time_s=0, windows=3, tolerance=0.1, max_windows=6)


def test_steady_windows_stop_after_the_first_three_and_say_they_agreed():
    clock = FakeClock([0.010])
    stats = time_calls(clock.work, WINDOWS, clock=clock)
    assert (
        stats.stable and stats.spread == pytest.approx(0, abs=1e-9) and stats.window_p50_ms == pytest.approx([10] * 3)
    )
    assert stats.runs == 3 and clock.calls == 1 + 3  # the first call, then one run per window


def test_a_drifting_machine_is_measured_until_its_windows_agree():
    # windows of 1 call: 10, 20, 30 ms (far apart), then the machine settles at 30 ms
    clock = FakeClock([0.010, 0.010, 0.020, 0.030, 0.030, 0.030])
    stats = time_calls(clock.work, WINDOWS, clock=clock)
    assert stats.stable and stats.window_p50_ms == pytest.approx([10, 20, 30, 30, 30])
    assert stats.samples_ms == pytest.approx([30, 30, 30]) and stats.p50_ms == pytest.approx(30)


def test_windows_that_never_agree_are_reported_with_their_spread():
    clock = FakeClock([0.010] + [0.010, 0.030] * 10)  # alternates: 10, 30, 10, 30 ... ms
    stats = time_calls(clock.work, WINDOWS, clock=clock)
    assert not stats.stable and len(stats.window_p50_ms) == WINDOWS.max_windows
    assert stats.spread == pytest.approx((30 - 10) / 30)  # the last three windows: 30, 10, 30
