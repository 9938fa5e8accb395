"""The latency harness: first call apart, warm-up, runs sized by time, percentiles, async throughput.

Timing takes any callable and an injectable clock, so tests can drive it with a fake clock and assert exact
statistics.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from ..errors import ConfigError

Clock = Callable[[], float]


@dataclass(frozen=True)
class LatencyConfig:
    """How long to warm up and to measure; both end only when their run count *and* time are reached."""

    warmup_runs: int = 5
    warmup_s: float = 1.0
    min_runs: int = 20
    min_time_s: float = 3.0
    max_runs: int = 100_000
    max_time_s: float = 120.0

    def __post_init__(self):
        if self.min_runs < 1 or self.max_runs < self.min_runs:
            raise ConfigError(f"need 1 <= min_runs <= max_runs, got {self.min_runs}, {self.max_runs}",
                              "use e.g. min_runs=20")
        if self.warmup_runs < 0 or self.warmup_s < 0 or self.min_time_s < 0:
            raise ConfigError("warm-up and minimum time cannot be negative", "use 0 to skip them")


@dataclass(frozen=True)
class LatencyStats:
    """Steady-state statistics in milliseconds; `first_ms` is the first call, apart (lazy init, allocation)."""

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
    samples_ms: list[float] = field(default_factory=list, repr=False)

    @classmethod
    def from_samples(cls, samples_ms: list[float], first_ms: float, warmup_runs: int) -> LatencyStats:
        s = np.asarray(samples_ms, dtype=float)
        p50, p90, p99 = np.percentile(s, [50, 90, 99])
        return cls(runs=len(s), p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99), mean_ms=float(s.mean()),
                   std_ms=float(s.std(ddof=1)) if len(s) > 1 else 0.0, min_ms=float(s.min()), max_ms=float(s.max()),
                   first_ms=first_ms, warmup_runs=warmup_runs, samples_ms=[float(v) for v in s])

    def summary(self) -> dict:
        """Everything but the raw samples."""
        return {k: v for k, v in asdict(self).items() if k != "samples_ms"}


def time_calls(fn: Callable[[], object], config: LatencyConfig = LatencyConfig(), *,
               clock: Clock = time.perf_counter) -> LatencyStats:
    """Time `fn()`: one first call, then warm-up, then measured calls until runs and time both suffice."""
    start = clock()
    fn()
    first_ms = (clock() - start) * 1000
    warm, warm_start = 0, clock()
    while warm < config.warmup_runs or (clock() - warm_start) < config.warmup_s:
        fn()
        warm += 1
        if warm >= config.max_runs:
            break
    samples: list[float] = []
    begin = clock()
    while True:
        t0 = clock()
        fn()
        t1 = clock()
        samples.append((t1 - t0) * 1000)
        elapsed = t1 - begin
        if len(samples) >= config.max_runs or elapsed >= config.max_time_s:
            break
        if len(samples) >= config.min_runs and elapsed >= config.min_time_s:
            break
    return LatencyStats.from_samples(samples, first_ms, warm)


@dataclass(frozen=True)
class ThroughputStats:
    """Asynchronous throughput: `jobs` requests in flight, images per second over the measured window."""

    jobs: int
    images: int
    seconds: float
    fps: float
    mode: str  # "openvino-async-queue" or "thread-pool"


def measure_throughput(runner, batch: np.ndarray, *, jobs: int = 2, seconds: float = 3.0,
                       clock: Clock = time.perf_counter) -> ThroughputStats:
    """Images per second with `jobs` inferences in flight: OpenVINO's AsyncInferQueue, else a thread pool."""
    if jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}", "use e.g. 2")
    per_call = batch.shape[0]
    if runner._async is not None:
        queue = runner._async(jobs)
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
