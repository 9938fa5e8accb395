"""The bench's serving section (`bench.serving`) on the demo model exported to OpenVINO at 128 px and the tiny val
images, run for a fraction of a second per part: the figures are there, finite and of the right sign, with their
context; missing pieces are named; the bench's hook records a skip or a failure. No speed is asserted: `make bench`
checks that, as ratios, on a quiet machine."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("argon2")
pytest.importorskip("httpx")

from workbench.core.bench.serving import PATHS, TARGETS, ServingConfig, serving_markdown, serving_section  # noqa: E402
from workbench.core.errors import ConfigError  # noqa: E402

IMGSZ = 128
TINY = ServingConfig(seconds=0.3, max_requests=200, repeats=1, rounds=2, block=3, warmup=1)


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    """The demo model exported to OpenVINO (fp32) at 128."""
    from workbench.core.models.export import ExportConfig, export
    from workbench.core.models.sources import open_source, record_source
    from workbench.core.store.workspace import Workspace

    workspace = Workspace(tmp_path_factory.mktemp("serving") / "ws")
    base = record_source(workspace, open_source("demo"))
    return workspace.artifact_path(export(workspace, base, ExportConfig(format="openvino", imgsz=IMGSZ)))


@pytest.fixture(scope="module")
def images(tiny_dataset):
    from workbench.core.data.checks import list_images

    found = list_images(tiny_dataset.data_yaml, "val")[:4]
    return [*found, np.full((48, 80, 3), 90, np.uint8)]  # files as they are, an array encoded as JPEG once


@pytest.fixture(scope="module")
def section(artifact, images):
    return serving_section(artifact, images, imgsz=IMGSZ, threads=1, config=TINY)


def test_the_section_gives_both_figures_with_what_they_were_measured_in(section):
    assert set(section) >= {"throughput_ratio", "added_p50_ms", "throughput", "latency", "targets", "targets_met"}
    thr, lat = section["throughput"], section["latency"]
    assert "context" in section
    for value in (
        section["throughput_ratio"],
        thr["served_images_per_s"],
        thr["in_process_images_per_s"],
        thr["plain_ratio"],
    ):
        assert math.isfinite(value) and value > 0
    assert section["throughput_ratio"] == pytest.approx(thr["served_images_per_s"] / thr["in_process_images_per_s"])
    assert all(n >= 1 for side in thr["requests"].values() for n in side) and thr["clients"] == 4
    # a difference of two p50s: finite, its sign left to the machine on a setup this small
    assert math.isfinite(section["added_p50_ms"])
    assert section["added_p50_ms"] == pytest.approx(lat["p50_ms"]["tls_auth_audit"] - lat["p50_ms"]["plain_http"])
    assert set(lat["p50_ms"]) == set(PATHS) and all(v > 0 for v in lat["p50_ms"].values())
    for key in ("tls_added_p50_ms", "auth_audit_added_p50_ms", "http_added_p50_ms"):
        assert math.isfinite(lat[key])
    assert lat["rounds"] == TINY.rounds and lat["concurrency"] == 1
    assert lat["parts"]["key_check_p50_ms"] > 0 and lat["parts"]["audit_append_p50_ms"] > 0
    assert isinstance(section["targets_met"], bool) and section["targets"] == TARGETS
    assert section["targets_met"] == (section["throughput_ratio"] >= TARGETS["throughput_ratio"])


def test_the_context_names_the_variant_the_tls_and_the_libraries(section, artifact):
    ctx = section["context"]
    assert ctx["artifact"] == str(artifact) and ctx["runtime"] == "openvino" and ctx["precision"]
    assert (ctx["imgsz"], ctx["images"], ctx["clients"], ctx["threads"]) == (IMGSZ, 5, 4, 1) and ctx["workers"] >= 1
    assert ctx["tls"]["version"] in ("TLSv1.2", "TLSv1.3") and ctx["cpu"]["usable_cores"] >= 1
    assert all(ctx["versions"][name] for name in ("uvicorn", "starlette", "cryptography", "argon2-cffi", "httpx"))
    # every request the real servers answered left a line, and both chains verify
    assert all(a["verified"] and a["lines"] > 0 for a in ctx["audit"].values())
    assert ctx["audit"]["tls_auth_audit"]["lines"] > ctx["audit"]["auth_audit"]["lines"]  # throughput ran there


def test_the_markdown_states_the_target_and_each_part(section):
    text = serving_markdown(section)
    verdict = "met" if section["targets_met"] else "NOT met"
    assert f"(target >= {TARGETS['throughput_ratio']}: {verdict})" in text and "TLS alone" in text
    assert all(f"| {name} |" in text for name in PATHS)
    assert "Not measured" in serving_markdown(None) and "boom" in serving_markdown({"error": "boom"})
    assert "Skipped" in serving_markdown({"skipped": "off"})


def test_missing_pieces_are_named(artifact, images, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="needs images"):
        serving_section(artifact, [], imgsz=IMGSZ, config=TINY)
    with pytest.raises(ConfigError, match="does not exist"):
        serving_section(tmp_path / "nothing_openvino_model", images, imgsz=IMGSZ, config=TINY)
    with pytest.raises(ConfigError, match="clients"):
        ServingConfig(clients=0)
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "httpx" else real(name, *a))
    with pytest.raises(ConfigError, match="needs httpx"):
        serving_section(artifact, images, imgsz=IMGSZ, config=TINY)


def test_the_bench_hook_runs_the_int8_row_and_records_a_skip_or_a_failure(monkeypatch, tmp_path):
    import workbench.core.bench.serving as serving
    from workbench.core.bench.optimized import Row
    from workbench.core.bench.run import BenchConfig, _serving

    class Workspace:
        def artifact_path(self, variant_id):
            return tmp_path / f"v{variant_id}_openvino_model"

    config, int8 = BenchConfig(imgsizes=(320, 640)), [Row("onnx", 1, None, 320), Row("ultralytics-int8", 7, None, 320)]
    assert _serving(int8[:1], Workspace(), "data.yaml", config, None) is None
    skipped = _serving(int8, Workspace(), "data.yaml", BenchConfig(imgsizes=(320,), serving=False), None)
    assert skipped["skipped"] and skipped["imgsz"] == 320
    called = {}

    def fake(path, images, *, imgsz, threads, progress):
        called.update(path=path, images=images, imgsz=imgsz, threads=threads)
        raise RuntimeError("boom")

    monkeypatch.setattr(serving, "serving_section", fake)
    monkeypatch.setattr("workbench.core.data.checks.list_images", lambda data, split: ["a.jpg"])
    found = _serving(int8, Workspace(), "data.yaml", config, None)
    assert found["error"] == "RuntimeError: boom" and found["imgsz"] == 320 and "v7_" in found["artifact"]
    assert called == {"path": tmp_path / "v7_openvino_model", "images": ["a.jpg"], "imgsz": 320, "threads": 2}
