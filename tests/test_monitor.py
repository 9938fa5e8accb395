"""Monitoring of the service: Prometheus metrics, the panel's snapshot, payload sampling, drift and its ledger alert,
and the live panel."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from workbench.core.errors import ConfigError
from workbench.core.serve.monitoring.drift import DriftMonitor, reference_stats
from workbench.core.serve.monitoring.metrics import LATENCY_BUCKETS, Metrics, Sampler
from workbench.core.serve.monitoring.scrape import Scraper, histogram_quantile

SHIFTS = ("dark", "bright", "blur", "noisy", "bgr_swap", "lowres")


class Clock:
    def __init__(self, t: float = 0.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def samples(metrics: Metrics) -> dict:
    """{(sample name, sorted labels): value} of the exposition, read with prometheus_client's own parser."""
    body, content_type = metrics.exposition()
    assert content_type.startswith("text/plain")
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(body.decode())
        for s in family.samples
    }


def test_requests_are_counted_and_latency_lands_in_its_buckets():
    metrics = Metrics("yolo-int8", background=False)
    for status, total in [(200, 0.5), (200, 3.0), (200, 40.0), (429, 1500.0)]:
        metrics.observe("infer", status, {"infer": total / 2, "total": total}, in_flight=2)
    metrics.observe("metadata", 401, {"guard_ms": 0.1, "total_ms": 0.2}, in_flight=1, variant="other", later=True)
    got = samples(metrics)
    count = lambda action, status, variant="yolo-int8": got[  # noqa: E731
        ("wb_requests_total", (("action", action), ("status", status), ("variant", variant)))
    ]
    assert count("infer", "200") == 3 and count("infer", "429") == 1 and count("metadata", "401", "other") == 1
    bucket = lambda le: got[  # noqa: E731
        ("wb_request_latency_seconds_bucket", (("le", le), ("stage", "total"), ("variant", "yolo-int8")))
    ]
    assert [bucket("0.001"), bucket("0.005"), bucket("0.05"), bucket("1.0"), bucket("2.0"), bucket("+Inf")] == [
        *(1, 2, 3, 3, 4, 4)
    ]
    bounds = sorted(float(dict(k[1])["le"]) for k in got if k[0] == "wb_request_latency_seconds_bucket")
    assert sorted(set(bounds)) == [*LATENCY_BUCKETS, float("inf")]
    assert got[("wb_in_flight", ())] == 1
    assert got[("wb_variant_info", (("variant", "yolo-int8"),))] == 1
    assert ("wb_request_latency_seconds_count", (("stage", "infer"), ("variant", "yolo-int8"))) in got
    assert got[("wb_request_latency_seconds_count", (("stage", "total"), ("variant", "other")))] == 1  # "total_ms"


def test_each_metrics_has_its_own_registry():
    a, b = Metrics("a", background=False), Metrics("b", background=False)
    a.observe("infer", 200, {"total": 1.0}, 0)
    assert ("wb_requests_total", (("action", "infer"), ("status", "200"), ("variant", "a"))) in samples(a)
    assert not any(name == "wb_requests_total" for name, _ in samples(b))


def test_snapshot_rate_and_quantiles_over_the_recent_window():
    clock = Clock()
    metrics = Metrics("v", window_s=60, clock=clock, background=False)
    for i in range(100):
        clock.t = 0.5 * i
        metrics.observe("infer", 200 if i % 10 else 500, {"total": float(i + 1)}, 1)
    clock.t = 50.0
    snap = metrics.snapshot()
    assert snap["requests_per_s"] == pytest.approx(2.0)
    assert snap["p50_ms"] == pytest.approx(50.5) and snap["p99_ms"] == pytest.approx(99.01)
    assert snap["by_status"] == {"200": 90, "500": 10} and snap["requests"] == 100 and snap["drift"] is None
    clock.t = 200.0  # all of them older than the window
    later = metrics.snapshot()
    assert later["requests_per_s"] == 0 and later["p50_ms"] is None and later["requests"] == 100


def test_snapshot_memory_is_bounded_by_the_ring():
    clock = Clock(10.0)
    metrics = Metrics("v", ring=10, clock=clock, background=False)
    for i in range(50):
        clock.t = 10.0 + i * 0.1
        metrics.observe("infer", 200, {"total": float(i)}, 0)
    snap = metrics.snapshot()
    assert snap["p50_ms"] == pytest.approx(44.5) and snap["requests"] == 50
    assert snap["requests_per_s"] == pytest.approx(10 / 0.9)  # 10 requests over the 0.9 s the ring spans


def test_a_scraper_reads_rates_and_quantiles_back_from_the_exposition():
    clock = Clock()
    metrics = Metrics("v", background=False)
    scrape = Scraper(lambda: metrics.exposition()[0].decode(), clock=clock)
    for _ in range(10):
        metrics.observe("infer", 200, {"total": 1.5}, 3)
    first = scrape()
    assert first["requests"] == 10 and first["requests_per_s"] is None and first["variant"] == "v"
    assert 1.0 <= first["p50_ms"] <= 2.0 and first["in_flight"] == 3
    for _ in range(20):
        metrics.observe("infer", 503, {"total": 80.0}, 0)
    clock.t = 4.0
    second = scrape()
    assert second["requests_per_s"] == pytest.approx(5.0) and second["by_status"] == {"200": 10, "503": 20}
    assert 75.0 <= second["p50_ms"] <= 100.0  # only the requests since the last scrape


def test_histogram_quantile_interpolates_like_prometheus():
    buckets = {0.01: 50.0, 0.02: 100.0, float("inf"): 100.0}
    assert histogram_quantile(0.5, buckets) == pytest.approx(0.01)
    assert histogram_quantile(0.99, buckets) == pytest.approx(0.0198)
    assert histogram_quantile(0.5, {0.01: 0.0, float("inf"): 0.0}) is None
    assert histogram_quantile(0.99, {0.01: 1.0, float("inf"): 10.0}) == pytest.approx(0.01)  # beyond the last bound


def _image(value: int = 120, size: int = 48) -> np.ndarray:
    return np.full((size, size, 3), value, np.uint8)


def test_the_sampler_keeps_at_most_max_files_and_nothing_older_than_max_age(tmp_path):
    clock = Clock(1_000_000.0)
    sampler = Sampler(tmp_path / "samples", rate=1.0, max_files=3, max_age_s=60, clock=clock)
    detections = {"boxes": [[1, 2, 3, 4]], "scores": [0.9], "classes": [2]}
    for i in range(5):
        clock.t += 1
        assert sampler.offer(_image(i * 10), detections, variant="v") is not None
    kept = sampler.files()
    assert len(kept) == 3 and len(list((tmp_path / "samples").glob("*.json"))) == 3
    record = json.loads(kept[-1].with_suffix(".json").read_text())
    assert record["scores"] == [0.9] and record["classes"] == [2] and record["boxes"] == [[1, 2, 3, 4]]
    assert record["variant"] == "v" and record["time"] == clock.t
    clock.t += 61  # every kept sample is now too old
    newest = sampler.offer(_image(), None)
    assert sampler.files() == [newest]
    assert (tmp_path / "samples").stat().st_mode & 0o077 == 0  # users' images: private folder


def test_sampling_is_off_unless_asked_and_its_arguments_are_checked(tmp_path):
    assert Sampler(tmp_path / "none", rate=0.0).offer(_image()) is None
    with pytest.raises(ConfigError, match="rate"):
        Sampler(tmp_path / "bad", rate=1.5)
    metrics = Metrics("v", background=False)  # no sampler: nothing kept, nothing counted
    metrics.observe("infer", 200, {"total": 1.0}, 0, image=_image(), detections=None)
    assert not any(name == "wb_sampled_total" for name, _ in samples(metrics))
    kept = Metrics("v", sampler=Sampler(tmp_path / "kept", rate=1.0), background=False)
    kept.observe("infer", 200, {"total": 1.0}, 0, image=_image(), detections=None)
    assert samples(kept)[("wb_sampled_total", (("variant", "v"),))] == 1


@pytest.fixture(scope="module")
def shapes(tmp_path_factory):
    """48 val images at 192 px and the generator's shifts of them (the same scenes, one condition changed)."""
    import cv2

    from workbench.core.data.generate import ShapesConfig, generate_shapes, generate_shift

    dataset = generate_shapes(tmp_path_factory.mktemp("monitor"), ShapesConfig(seed=3, train=1, val=48, imgsz=192))
    read = lambda folder: [cv2.imread(str(p)) for p in sorted((folder / "images" / "val").glob("*.jpg"))]  # noqa: E731
    return {"val": read(dataset.root), **{s: read(generate_shift(dataset, s).parent) for s in SHIFTS}}


def _reference(images):
    return reference_stats(images, [None] * len(images), source="val[:24]")


def _feed(monitor: DriftMonitor, images, detections=None):
    reports = [monitor.update(image, None if detections is None else detections[i]) for i, image in enumerate(images)]
    done = [r for r in reports if r is not None]
    assert len(done) == 1, "one window of images gives one report"
    return done[0]


@pytest.mark.parametrize("shift", SHIFTS)
def test_the_generators_shifts_are_flagged_with_their_name(shapes, shift):
    # bgr_swap: at this seed the scenes' red-minus-blue balance keeps one sign, so the colour statistic names it;
    # at 4 seeds of 10 it does not (as the doctor says), and the channel probe below is what catches it then
    monitor = DriftMonitor(_reference(shapes["val"][:24]), window=24)
    report = _feed(monitor, shapes[shift][24:])  # other scenes than the reference's, shifted
    assert report.drifted and report.looks_like == shift, report.as_dict()
    assert report.features[report.worst.name].kind == "input"


def test_unshifted_val_images_raise_no_alarm(shapes):
    monitor = DriftMonitor(_reference(shapes["val"][:24]), window=24)
    report = _feed(monitor, shapes["val"][24:])
    assert report.drifted == [] and report.looks_like is None, report.as_dict()
    assert {"brightness", "noise", "size"} <= set(report.features) and "jpeg_quality" not in report.features


def test_the_channel_probe_names_a_channel_swap():
    from workbench.core.models.detector import Detections

    def detect(image):  # a reference trained on bluish scenes: confident only when blue outweighs red
        score = 0.9 if image[..., 0].mean() > image[..., 2].mean() else 0.5
        return Detections(np.zeros((1, 4), np.float32), np.array([score], np.float32), np.array([0]))

    rng = np.random.default_rng(0)
    scenes = [rng.integers(0, 256, (40, 40, 3)).astype(np.uint8) // 2 + np.uint8([90, 40, 40]) for _ in range(32)]
    monitor = DriftMonitor(_reference(scenes[:16]), window=16, probe=detect, probe_images=4)
    swapped = _feed(monitor, [image[..., ::-1] for image in scenes[16:]])
    assert swapped.looks_like == "bgr_swap" and swapped.worst.name == "channel_order", swapped.as_dict()
    assert swapped.features["channel_order"].value == pytest.approx(0.4)
    calm = _feed(DriftMonitor(_reference(scenes[:16]), window=16, probe=detect, probe_images=4), scenes[16:])
    assert calm.drifted == [] and calm.features["channel_order"].value < 0


def _detections(rng, n, *, score_shift=0.0, classes=3):
    out = []
    for _ in range(n):
        k = int(rng.integers(2, 7))
        scores = np.clip(rng.uniform(0.45, 0.95, k) + score_shift, 0.01, 1.0)
        out.append({"boxes": np.zeros((k, 4)), "scores": scores, "classes": rng.integers(0, classes, k)})
    return out


def test_output_drift_flags_lower_scores_and_a_changed_class_mix():
    images = [_image(100 + i) for i in range(40)]
    reference = reference_stats(images, _detections(np.random.default_rng(0), 40))
    same = _feed(DriftMonitor(reference, window=30), [None] * 30, _detections(np.random.default_rng(1), 30))
    assert same.drifted == [], same.as_dict()
    lower = _feed(
        DriftMonitor(reference, window=30), [None] * 30, _detections(np.random.default_rng(2), 30, score_shift=-0.3)
    )
    assert "score" in lower.drifted and lower.looks_like == "lower_scores", lower.as_dict()
    one_class = _feed(
        DriftMonitor(reference, window=30), [None] * 30, _detections(np.random.default_rng(3), 30, classes=1)
    )
    assert one_class.drifted == ["class_mix"] and one_class.features["class_mix"].value > 0.5


def test_a_drift_alert_is_written_to_the_ledger_once_per_window(shapes, tmp_path):
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(tmp_path / "ws")
    variant_id = workspace.ledger.add_variant("demo-int8", step="export")
    monitor = DriftMonitor(_reference(shapes["val"][:24]), window=24)
    seen = []
    metrics = Metrics(
        "demo-int8", drift=monitor, workspace=workspace, variant_id=variant_id, on_drift=seen.append, background=False
    )
    for image in shapes["dark"][24:]:
        metrics.observe("infer", 200, {"total": 5.0}, 1, image=image, detections=None)
    alerts = workspace.ledger.measurements(variant_id=variant_id, kind="drift_alert")
    assert len(alerts) == 1 and len(seen) == 1
    evidence = alerts[0].metrics
    assert evidence["looks_like"] == "dark" and "brightness" in evidence["drifted"] and "dark" in evidence["sentence"]
    brightness = evidence["features"]["brightness"]
    assert brightness["statistic"] == "smd" and brightness["value"] <= -0.8 and brightness["threshold"] == 0.8
    assert brightness["p_value"] < 0.05 and brightness["production"] < brightness["reference"]
    assert alerts[0].context["reference"] == "val[:24]" and alerts[0].context["window_images"] == 24
    assert monitor.record_alert(workspace, variant_id, seen[0]) is None  # the same window again: not recorded
    got = samples(metrics)
    assert got[("wb_drift_drifted", (("feature", "brightness"), ("variant", "demo-int8")))] == 1
    assert got[("wb_drift_alerts_total", (("variant", "demo-int8"),))] == 1
    assert metrics.snapshot()["drift"]["looks_like"] == "dark"
    calm = DriftMonitor(_reference(shapes["val"][:24]), window=24)
    assert calm.record_alert(workspace, variant_id, _feed(calm, shapes["val"][24:])) is None
    assert len(workspace.ledger.measurements(variant_id=variant_id, kind="drift_alert")) == 1


def test_drift_runs_off_the_request_thread_and_never_fails_a_request(shapes):
    monitor = DriftMonitor(_reference(shapes["val"][:24]), window=8)
    metrics = Metrics("v", drift=monitor)
    for image in shapes["val"][24:32]:
        metrics.observe("infer", 200, {"total": 5.0}, 1, image=image, detections={"scores": [0.5], "classes": [1]})
    metrics.flush()
    assert monitor.latest is not None and monitor.latest.images == 8
    metrics.close()
    assert not metrics._worker.is_alive()

    class Broken:
        latest = None

        def update(self, image, detections):
            raise RuntimeError("boom")

    failing = Metrics("v", drift=Broken(), background=False)
    failing.observe("infer", 200, {"total": 1.0}, 0, image=_image())
    assert samples(failing)[("wb_monitor_errors_total", ())] == 1


def _fake_snapshot():
    calls = {"n": 0}

    def snapshot():
        calls["n"] += 1
        n = calls["n"]
        drift = {
            "window": 0,
            "drifted": ["brightness"],
            "looks_like": "dark",
            "features": {
                "brightness": {"value": -2.3, "threshold": 0.8, "drifted": True, "looks_like": "dark"},
                "noise": {"value": 0.1, "threshold": 0.8, "drifted": False, "looks_like": None},
            },
        }
        return {
            "variant": "demo-int8",
            "time": 100.0 + n,
            "requests": 10 * n,
            "requests_per_s": 12.5,
            "p50_ms": 8.0 + n,
            "p99_ms": 30.0 + n,
            "in_flight": 2,
            "by_status": {"200": 9 * n, "429": n},
            "drift": drift,
        }

    return snapshot


def test_the_panel_shows_a_snapshot_and_charts_latency():
    from workbench.widgets.monitor import MonitorPanel

    panel = MonitorPanel(_fake_snapshot(), max_points=3)
    panel.widget  # noqa: B018 - builds the figure
    for _ in range(5):
        panel.refresh()
    assert "12.5" in panel.stats.value and "demo-int8" in panel.stats.value and "p99 ms" in panel.stats.value
    assert "429: 5" in panel.by_status.value
    assert "drifted (dark)" in panel.drift.value and "noise" in panel.drift.value
    assert list(panel.figure.data[1].y) == [33.0, 34.0, 35.0] and list(panel.figure.data[0].x) == [2.0, 3.0, 4.0]


def test_the_panel_refreshes_in_a_thread_that_stops():
    from workbench.widgets.monitor import MonitorPanel

    panel = MonitorPanel(_fake_snapshot(), interval_s=0.01)
    panel.start_button.click()
    deadline = time.monotonic() + 5
    while panel.refreshes < 3 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert panel.refreshes >= 3 and panel.running and panel.status.value.endswith("live</span>")
    panel.stop_button.click()
    assert not panel.running and "stopped" in panel.status.value
    bounded = MonitorPanel(_fake_snapshot(), interval_s=0.01, max_s=0.05)
    bounded.start()
    bounded._thread.join(5)
    assert not bounded.running  # stopped by itself


def test_the_panel_shows_an_unreachable_server_and_reads_a_real_metrics():
    from workbench.widgets.monitor import MonitorPanel

    def unreachable():
        raise ConnectionRefusedError("connection refused")

    panel = MonitorPanel(unreachable)
    assert panel.refresh() is None and "cannot read the server" in panel.status.value
    metrics = Metrics("v", background=False)
    metrics.observe("infer", 200, {"total": 4.0}, 0)
    live = MonitorPanel.from_metrics(metrics)
    assert live.refresh()["requests"] == 1 and "no window checked yet" in live.drift.value
    with pytest.raises(ConfigError, match="URL"):
        MonitorPanel.from_url("ftp://host/metrics", "key")
