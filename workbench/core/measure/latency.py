"""The latency harness: first call apart, warm-up, timed windows repeated until they agree, async throughput.

Like Triton's perf_analyzer, the measured calls come in windows; measuring goes on until the p50 of the last
`windows` windows agree within `tolerance` (relative), or until `max_windows`, in which case the result says it is
not stable and carries its spread. Timing takes any callable and an injectable clock, so tests can drive it with a
fake clock and assert exact statistics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ConfigError

Clock = Callable[[], float]


@dataclass(frozen=True)
class LatencyConfig:
    """How long to warm up and to measure.

    Warm-up ends when both its run count and its time are reached. The measured part is split into `windows`
    windows of min_runs / windows calls and min_time_s / windows seconds each; more windows follow while the last
    `windows` windows' p50s differ by more than `tolerance` of their median, up to `max_windows`.
    """

    warmup_runs: int = 5
    warmup_s: float = 1.0
    min_runs: int = 20
    min_time_s: float = 3.0
    windows: int = 3
    tolerance: float = 0.1
    max_windows: int = 10
    max_runs: int = 100_000
    max_time_s: float = 120.0

    def __post_init__(self):
        if self.min_runs < 1 or self.max_runs < self.min_runs:
            raise ConfigError(
                f"need 1 <= min_runs <= max_runs, got {self.min_runs}, {self.max_runs}", "use e.g. min_runs=20"
            )
        if self.warmup_runs < 0 or self.warmup_s < 0 or self.min_time_s < 0:
            raise ConfigError("warm-up and minimum time cannot be negative", "use 0 to skip them")
        if self.windows < 1 or self.max_windows < self.windows:
            raise ConfigError(
                f"need 1 <= windows <= max_windows, got {self.windows}, {self.max_windows}", "use e.g. windows=3"
            )
        if not 0 < self.tolerance < 1:
            raise ConfigError(f"tolerance is a relative spread in (0, 1), got {self.tolerance}", "use e.g. 0.1")

    @property
    def window_runs(self) -> int:
        return math.ceil(self.min_runs / self.windows)

    @property
    def window_s(self) -> float:
        return self.min_time_s / self.windows


@dataclass(frozen=True)
class LatencyStats:
    """Steady-state statistics in milliseconds over the final windows; `first_ms` is the first call, apart.

    `stable` says whether the final windows' p50s agreed within `tolerance`; `spread` is how far apart they were
    ((max - min) / median), `window_p50_ms` the p50 of every window measured.
    """

    runs: int
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    first_ms: float
    warmup_runs: int
    stable: bool = True
    spread: float = 0.0
    tolerance: float = 0.1
    window_p50_ms: list[float] = field(default_factory=list)
    samples_ms: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def from_samples(cls, samples_ms: list[float], first_ms: float, warmup_runs: int, **stability) -> LatencyStats:
        s = np.asarray(samples_ms, dtype=float)
        p50, p90, p99 = np.percentile(s, [50, 90, 99])
        return cls(
            runs=len(s),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            mean_ms=float(s.mean()),
            std_ms=float(s.std(ddof=1)) if len(s) > 1 else 0.0,
            min_ms=float(s.min()),
            max_ms=float(s.max()),
            first_ms=first_ms,
            warmup_runs=warmup_runs,
            samples_ms=[float(v) for v in s],
            **stability,
        )

    def summary(self) -> dict:
        """Everything but the raw samples."""
        return {k: v for k, v in asdict(self).items() if k != "samples_ms"}


def spread(values: list[float]) -> float:
    """(max - min) / median: how far apart repeated p50s are, relative to their middle."""
    middle = float(np.median(values))
    return (max(values) - min(values)) / middle if middle > 0 else 0.0


def time_calls(
    fn: Callable[[], object], config: LatencyConfig = LatencyConfig(), *, clock: Clock = time.perf_counter
) -> LatencyStats:
    """Time `fn()`: one first call, warm-up, then windows of measured calls until the last ones agree."""
    start = clock()
    fn()
    first_ms = (clock() - start) * 1000
    warm = _warm_up(fn, config, clock)
    windows: list[list[float]] = []
    begin, total, stable = clock(), 0, False
    while True:
        windows.append(_window(fn, config, clock))
        total += len(windows[-1])
        recent = [float(np.median(w)) for w in windows[-config.windows :]]
        if len(windows) >= config.windows and spread(recent) <= config.tolerance:
            stable = True
            break
        out_of_budget = total >= config.max_runs or clock() - begin >= config.max_time_s
        if len(windows) >= config.max_windows or out_of_budget:
            stable = len(windows) >= config.windows and spread(recent) <= config.tolerance
            break
    final = [v for w in windows[-config.windows :] for v in w]
    p50s = [float(np.median(w)) for w in windows]
    return LatencyStats.from_samples(
        final,
        first_ms,
        warm,
        stable=stable,
        spread=spread(p50s[-config.windows :]),
        tolerance=config.tolerance,
        window_p50_ms=p50s,
    )


def _warm_up(fn, config: LatencyConfig, clock: Clock) -> int:
    warm, warm_start = 0, clock()
    while warm < config.warmup_runs or (clock() - warm_start) < config.warmup_s:
        fn()
        warm += 1
        if warm >= config.max_runs:
            break
    return warm


def _window(fn, config: LatencyConfig, clock: Clock) -> list[float]:
    samples: list[float] = []
    begin = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1000)
        if len(samples) >= config.window_runs and t1 - begin >= config.window_s:
            return samples
        if len(samples) >= config.max_runs or t1 - begin >= config.max_time_s:
            return samples


@dataclass(frozen=True)
class ThroughputStats:
    """Asynchronous throughput: `jobs` requests in flight, images per second over the measured window."""

    jobs: int
    images: int
    seconds: float
    fps: float
    mode: str  # "openvino-async-queue" or "thread-pool"


def measure_throughput(
    runner, batch: np.ndarray, *, jobs: int = 2, seconds: float = 3.0, clock: Clock = time.perf_counter
) -> ThroughputStats:
    """Images per second with `jobs` inferences in flight: OpenVINO's AsyncInferQueue, else a thread pool."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}", "use e.g. 2")
    per_call = batch.shape[0]
    if runner.queues:
        queue = runner.async_queue(jobs)
        for _ in range(jobs):  # warm every request once
            queue.start_async({0: batch})
        queue.wait_all()
        done, start = 0, clock()
        while clock() - start < seconds:
            queue.start_async({0: batch})
            done += 1
        queue.wait_all()
        mode = "openvino-async-queue"
    else:
        with ThreadPoolExecutor(jobs) as pool:
            list(pool.map(lambda _: runner(batch), range(jobs)))
            done, start = 0, clock()
            while clock() - start < seconds:
                list(pool.map(lambda _: runner(batch), range(jobs)))
                done += jobs
        mode = "thread-pool"
    elapsed = clock() - start
    return ThroughputStats(jobs, done * per_call, elapsed, done * per_call / elapsed if elapsed else 0.0, mode)
