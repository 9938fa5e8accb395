"""What the service records of its requests: Prometheus metrics, a snapshot for the live panel (`scrape` reads the
same from a running server's /metrics), drift checks fed from a worker thread, and opt-in payload sampling with
retention limits.

`Metrics` keeps its own `CollectorRegistry` (never the global one: tests and several servers in one process would
collide), so its /metrics holds only this service's series:

- `wb_requests_total{action,status,variant}`, `wb_request_latency_seconds{stage,variant}` (histograms, 1 ms - 2 s),
  `wb_in_flight`, `wb_variant_info{variant}`;
- `wb_drift_statistic{feature,variant}`, `wb_drift_threshold{...}`, `wb_drift_drifted{...}` of the latest window,
  `wb_drift_windows_total`, `wb_drift_alerts_total`, `wb_sampled_total`, `wb_monitor_errors_total`,
  `wb_monitor_dropped_total`.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ConfigError
from .drift import DriftMonitor, DriftReport, detection_arrays

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

QUEUE = 16  # payloads (decoded images) waiting for the drift worker; beyond it they are dropped (and counted)
LATENCY_BUCKETS = (0.001, 0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0)
log = logging.getLogger(__name__)


class Metrics:
    """What the app reports per request, as Prometheus series and as a snapshot; thread-safe.

    Args:
        variant: the variant served (its name or id), a label of every series.
        registry: a `prometheus_client.CollectorRegistry`; None: a new one of its own.
        drift: a `DriftMonitor` fed with each request's image and detections; None: no drift check.
        sampler: a `Sampler` offered each request's image; None (the default): no payload is kept.
        workspace, variant_id: where a drifted window is recorded (`DriftMonitor.record_alert`); None: nowhere.
        on_drift: called with each completed window's `DriftReport` (a notebook's alert, a test's probe).
        window_s: the recent window of the snapshot's rate and quantiles.
        ring: the most recent requests the snapshot keeps (bounded memory).
        background: feed drift and sampling from a worker thread through a bounded queue (a request pays a queue
            put; when the queue is full the payload is dropped and counted), not on the request's own thread.
            The image is read later: the caller must not modify it after `observe`.
        clock: seconds, monotonic (tests pass a fake).
    """

    def __init__(
        self,
        variant: str,
        registry=None,
        *,
        drift: DriftMonitor | None = None,
        sampler: Sampler | None = None,
        workspace: Workspace | None = None,
        variant_id: int | None = None,
        on_drift: Callable[[DriftReport], object] | None = None,
        window_s: float = 60.0,
        ring: int = 4096,
        background: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ):
        from prometheus_client import CollectorRegistry

        if window_s <= 0 or ring < 1:
            raise ConfigError(f"window_s must be > 0 and ring >= 1, got {window_s} and {ring}", "pass positive sizes")
        self.registry = registry if registry is not None else CollectorRegistry()
        self.drift, self.sampler, self.on_drift = drift, sampler, on_drift
        self.workspace, self.variant_id = workspace, variant_id
        self.window_s, self._clock = window_s, clock
        self._lock = threading.Lock()
        self._ring: deque[tuple[float, float]] = deque(maxlen=ring)
        self._by_status: Counter = Counter()
        self._total = 0
        self._in_flight = 0
        self._started = clock()
        self._queue: queue.Queue | None = queue.Queue(maxsize=QUEUE) if background else None
        self._worker: threading.Thread | None = None
        self._series()
        self.set_variant(variant, drift=drift, variant_id=variant_id)

    def _series(self) -> None:
        from prometheus_client import Counter as PromCounter
        from prometheus_client import Gauge, Histogram, Info

        r = self.registry
        self._requests = PromCounter("wb_requests", "Requests", ["action", "status", "variant"], registry=r)
        self._latency = Histogram(
            "wb_request_latency_seconds", "Latency by stage", ["stage", "variant"], buckets=LATENCY_BUCKETS, registry=r
        )
        self._in_flight_gauge = Gauge("wb_in_flight", "Requests being served", registry=r)
        self._info = Info("wb_variant", "The variant served", registry=r)
        labels = ["feature", "variant"]
        self._drift_value = Gauge("wb_drift_statistic", "Latest window's drift statistic", labels, registry=r)
        self._drift_threshold = Gauge("wb_drift_threshold", "Its threshold", labels, registry=r)
        self._drift_flag = Gauge("wb_drift_drifted", "1 when the feature drifted", labels, registry=r)
        self._windows = PromCounter("wb_drift_windows", "Drift windows checked", ["variant"], registry=r)
        self._alerts = PromCounter("wb_drift_alerts", "Drift alerts recorded", ["variant"], registry=r)
        self._sampled = PromCounter("wb_sampled", "Payloads sampled", ["variant"], registry=r)
        self._errors = PromCounter("wb_monitor_errors", "Monitoring failures (never the request's)", registry=r)
        self._dropped = PromCounter("wb_monitor_dropped", "Payloads not watched: the drift queue was full", registry=r)

    def set_variant(self, variant: str, *, drift: DriftMonitor | None = None, variant_id: int | None = None) -> None:
        """Serve another variant from now on, with its own drift reference and ledger id: None for either means none
        (a variant loaded without a reference is not checked against the previous variant's)."""
        with self._lock:
            self.variant = str(variant)
            self.drift, self.variant_id = drift, variant_id
        self._info.info({"variant": self.variant})

    def observe(
        self,
        action: str,
        status,
        stage_timings: Mapping[str, float],
        in_flight: int,
        *,
        variant: str | None = None,
        image: np.ndarray | None = None,
        detections=None,
        **extra,
    ) -> None:
        """Count one finished request: its action and status, milliseconds per stage ("infer" or "infer_ms"; "total"
        among them, else their sum), the requests in flight; its decoded BGR image and detections feed drift and
        sampling. Cheap (about 10 us): drift and sampling run on the worker thread unless `background=False`."""
        with self._lock:  # one variant's name, reference and ledger id, even while a switch happens
            name, drift, variant_id = str(variant or self.variant), self.drift, self.variant_id
        code = str(status)
        self._requests.labels(str(action), code, name).inc()
        stages = {str(stage).removesuffix("_ms"): float(ms) for stage, ms in stage_timings.items()}  # "infer_ms" too
        for stage, ms in stages.items():
            self._latency.labels(stage, name).observe(max(0.0, ms) / 1000)
        total = stages["total"] if "total" in stages else sum(stages.values())
        self._in_flight_gauge.set(in_flight)
        with self._lock:
            self._ring.append((self._clock(), total))
            self._by_status[code] += 1
            self._total += 1
            self._in_flight = int(in_flight)
        watched = drift is not None or self.sampler is not None
        if watched and (image is not None or detections is not None):
            self._enqueue((image, detections, name, extra, drift, variant_id))

    def _enqueue(self, item: tuple) -> None:
        if self._queue is None:
            self._watch(*item)
            return
        with self._lock:
            if self._worker is None or not self._worker.is_alive():
                self._worker = threading.Thread(target=self._drain, daemon=True, name=f"monitor {self.variant}")
                self._worker.start()
        try:
            self._queue.put_nowait(item)
        except queue.Full:
            self._dropped.inc()

    def _drain(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                self._watch(*item)
            finally:
                self._queue.task_done()

    def flush(self) -> None:
        """Wait until every queued payload has been watched (tests, and before reading the latest drift)."""
        if self._queue is not None:
            self._queue.join()

    def close(self) -> None:
        """Watch what is queued, then stop the worker thread (the server's shutdown)."""
        if self._queue is not None and self._worker is not None and self._worker.is_alive():
            self._queue.put(None)
            self._worker.join()

    def _watch(self, image, detections, variant: str, extra: dict, drift, variant_id) -> None:
        try:  # monitoring never fails the request it watches
            if self.sampler is not None and image is not None:
                if self.sampler.offer(image, detections, variant=variant, **_plain_meta(extra)) is not None:
                    self._sampled.labels(variant).inc()
            if drift is not None:
                report = drift.update(image, detections)
                if report is not None:
                    self._publish(report, variant, drift, variant_id)
        except Exception:  # noqa: BLE001 - logged and counted; the request was served
            self._errors.inc()
            log.warning("monitoring a request failed", exc_info=True)

    def _publish(self, report: DriftReport, variant: str, drift: DriftMonitor, variant_id: int | None) -> None:
        self._windows.labels(variant).inc()
        for name, feature in report.features.items():
            self._drift_value.labels(name, variant).set(feature.value)
            self._drift_threshold.labels(name, variant).set(feature.threshold)
            self._drift_flag.labels(name, variant).set(1.0 if feature.drifted else 0.0)
        if report.drifted and self.workspace is not None and variant_id is not None:
            if drift.record_alert(self.workspace, variant_id, report) is not None:
                self._alerts.labels(variant).inc()
        if self.on_drift is not None:
            self.on_drift(report)

    def exposition(self) -> tuple[bytes, str]:
        """The body and content type of the app's `GET /metrics`."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def snapshot(self) -> dict:
        """What the live panel shows: requests/s and p50/p99 of total latency over the last `window_s`, the counts
        by status since the start, the requests in flight and the latest drift check."""
        with self._lock:
            now = self._clock()
            cutoff = now - self.window_s
            recent = [ms for t, ms in self._ring if t >= cutoff]
            span = min(self.window_s, max(now - self._started, 1.0))
            if len(self._ring) == self._ring.maxlen and self._ring[0][0] >= cutoff:
                span = max(now - self._ring[0][0], 1e-3)  # the ring holds less than the window: rate over what it holds
            by_status, total, in_flight = dict(self._by_status), self._total, self._in_flight
        p50, p99 = np.percentile(recent, [50, 99]).tolist() if recent else (None, None)
        latest = self.drift.latest if self.drift is not None else None
        return {
            "variant": self.variant,
            "time": now,
            "requests": total,
            "requests_per_s": len(recent) / span,
            "p50_ms": p50,
            "p99_ms": p99,
            "in_flight": in_flight,
            "by_status": by_status,
            "drift": drift_summary(latest) if latest is not None else None,
        }


def drift_summary(report: DriftReport) -> dict:
    """The panel's view of a drift check: per feature its statistic, threshold and verdict."""
    return {
        "window": report.window,
        "drifted": report.drifted,
        "looks_like": report.looks_like,
        "features": {
            name: {"value": f.value, "threshold": f.threshold, "drifted": f.drifted, "looks_like": f.looks_like}
            for name, f in report.features.items()
        },
    }


def _plain_meta(extra: dict) -> dict:
    return {k: v for k, v in extra.items() if isinstance(v, str | int | float | bool) or v is None}


class Sampler:
    """Opt-in payload sampling: keeps a random `rate` of the served images (JPEG) with their detections (JSON), at
    most `max_files` of them and none older than `max_age_s`; thread-safe.

    The images are the users' data: the folder is created private (0700), and nothing is kept unless a sampler
    is given to `Metrics`.
    """

    def __init__(
        self,
        folder: Path | str,
        rate: float,
        max_files: int = 1000,
        max_age_s: float = 7 * 86400,
        *,
        quality: int = 90,
        seed: int | None = None,
        clock: Callable[[], float] = time.time,
    ):
        if not 0 <= rate <= 1 or max_files < 1 or max_age_s <= 0:
            raise ConfigError(
                f"rate must lie in 0..1, max_files >= 1 and max_age_s > 0; got {rate}, {max_files}, {max_age_s}",
                "pass a sampling rate such as 0.01 and positive retention limits",
            )
        self.folder, self.rate, self.max_files, self.max_age_s = Path(folder), rate, max_files, max_age_s
        self.quality, self._clock = quality, clock
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._seq = 0
        self.folder.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.prune()

    def offer(self, image: np.ndarray, detections=None, **meta) -> Path | None:
        """Keep this image with probability `rate`; returns the JPEG's path when kept."""
        with self._lock:
            if self.rate <= 0 or self._rng.random() >= self.rate:
                return None
            self._seq += 1
            stamp = self._clock()
            stem = f"{int(stamp * 1000):015d}-{self._seq:06d}"
        import cv2

        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
        if not ok:
            return None
        scores, classes = detection_arrays(detections)
        boxes = _boxes(detections, len(scores))
        record = {"time": stamp, **meta, "boxes": boxes, "scores": scores.tolist(), "classes": classes.tolist()}
        path = self.folder / f"{stem}.jpg"
        _write_atomic(self.folder / f"{stem}.json", json.dumps(record).encode())
        _write_atomic(path, jpeg.tobytes())
        self.prune()
        return path

    def files(self) -> list[Path]:
        """The kept images, oldest first."""
        return sorted(self.folder.glob("*.jpg"))

    def prune(self) -> int:
        """Delete the samples beyond the retention limits (age, then count); returns how many were deleted."""
        with self._lock:
            kept = self.files()
            oldest = (self._clock() - self.max_age_s) * 1000
            expired = [p for p in kept if _stamp(p) < oldest]
            fresh = [p for p in kept if _stamp(p) >= oldest]
            doomed = expired + fresh[: max(0, len(fresh) - self.max_files)]
            for path in doomed:
                path.unlink(missing_ok=True)
                path.with_suffix(".json").unlink(missing_ok=True)
            return len(doomed)


def _stamp(path: Path) -> float:
    try:
        return float(path.stem.split("-")[0])
    except ValueError:
        return 0.0  # not one of ours: the oldest, so it goes first


def _boxes(detections, n: int) -> list:
    if detections is None or n == 0:
        return []
    boxes = detections.get("boxes") if isinstance(detections, Mapping) else getattr(detections, "boxes", None)
    if boxes is None:
        boxes = np.asarray(detections, np.float64).reshape(-1, 6)[:, :4]
    return np.asarray(boxes, np.float64).reshape(-1, 4).round(2).tolist()


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
