"""Studies over recorded variants: latency rows with context, failure rows, parity verdicts, tables, report."""

import pytest

from workbench.core.measure.accuracy import AccuracyConfig
from workbench.core.measure.latency import LatencyConfig
from workbench.core.measure.measure import check_parity, evaluate_variant, measure_latency
from workbench.core.measure.parity import ParityConfig, compare
from workbench.core.models import runners as runtimes
from workbench.core.models.export import ExportConfig, export
from workbench.core.models.runners import RuntimeOptions, open_runner
from workbench.core.models.sources import demo_weights, load_model
from workbench.core.report.compare import comparison_table, pareto_front
from workbench.core.report.sections import study_sections
from workbench.core.store.workspace import Workspace

QUICK = LatencyConfig(warmup_runs=1, warmup_s=0, min_runs=3, min_time_s=0)


def _measurement(ws, measurement_id):
    return next(r for r in ws.ledger.rows("measurements") if r["id"] == measurement_id)


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_dataset):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source")
    onnx = export(ws, base, ExportConfig(format="onnx", imgsz=64))
    ov = export(ws, base, ExportConfig(format="openvino", imgsz=64))
    images = sorted((tiny_dataset.root / "images" / "val").glob("*.jpg"))[:2]
    for vid, options in ((base, RuntimeOptions()), (onnx, RuntimeOptions()), (ov, RuntimeOptions(precision="f32"))):
        measure_latency(ws, vid, options, imgsz=64, config=QUICK, images=images, throughput_jobs=2,
                        throughput_s=0.3)
    for vid in (base, onnx):
        evaluate_variant(ws, vid, tiny_dataset.data_yaml, AccuracyConfig(imgsz=64, batch=8))
    return ws, base, onnx, ov


def test_latency_rows_carry_their_context_and_ops(study):
    ws, base, onnx, ov = study
    rows = ws.measurements("latency").set_index("variant_id")
    ov_row = rows.loc[ov]
    assert ov_row["ctx_runtime"] == "openvino" and ov_row["ctx_precision"] == "fp32" and ov_row["ctx_threads"] >= 1
    assert ov_row["ctx_imgsz"] == 64 and ov_row["ctx_batch"] == 1 and ov_row["ctx_status"] == "ok"
    assert ov_row["p50_ms"] <= ov_row["p90_ms"] <= ov_row["p99_ms"] and ov_row["runs"] >= 3
    assert ov_row["gflops"] > 0 and ov_row["gops_per_s"] > 0
    assert set(ov_row["metrics"]["stages"]) == {"decode", "preprocess", "inference", "postprocess"}
    assert ov_row["metrics"]["throughput"]["fps"] > 0
    assert 0 < ov_row["runtime_internal_p50_ms"] <= ov_row["p50_ms"]  # OpenVINO's own time sits inside the call
    assert rows.loc[onnx, "ctx_graph_optimization"] == "all"


def test_comparison_table_has_speedup_and_accuracy_against_the_baseline(study):
    ws, base, onnx, ov = study
    table = comparison_table(ws).set_index("variant_id")
    assert table.loc[base, "speedup"] == pytest.approx(1.0)
    assert table.loc[onnx, "speedup"] == pytest.approx(table.loc[base, "p50_ms"] / table.loc[onnx, "p50_ms"])
    assert table.loc[onnx, "map_imgsz"] == 64 and table.loc[onnx, "map50_95_delta"] == pytest.approx(
        table.loc[onnx, "map50_95"] - table.loc[base, "map50_95"])


def test_failed_rows_are_recorded_and_the_study_goes_on(study, tmp_path, monkeypatch):
    ws, base, onnx, ov = study
    wrong_shape = measure_latency(ws, onnx, imgsz=96, config=QUICK)
    bad_image = tmp_path / "x.jpg"
    bad_image.write_bytes(b"nope")
    undecodable = measure_latency(ws, ov, imgsz=64, config=QUICK, images=[bad_image])
    broken = ws.add_artifact(lambda p: p.write_bytes(b"garbage"), "broken.onnx", step="export", parent_id=base,
                             format="onnx")
    unloadable = measure_latency(ws, broken, imgsz=64, config=QUICK)
    monkeypatch.setattr(runtimes, "installed", lambda runtime: runtime != "openvino")
    missing = measure_latency(ws, ov, imgsz=64, config=QUICK)
    rows = {r["id"]: r for r in ws.ledger.rows("measurements")}
    assert "exported for input (1, 3, 64, 64)" in rows[wrong_shape]["metrics"]["error"]
    assert "x.jpg does not decode" in rows[undecodable]["metrics"]["error"]
    assert "could not load" in rows[unloadable]["metrics"]["error"]
    assert "openvino is not installed" in rows[missing]["metrics"]["error"]
    assert all(rows[i]["context"]["status"] == "failed" for i in (wrong_shape, undecodable, unloadable, missing))
    table = comparison_table(ws)
    assert (table["status"] == "failed").sum() >= 3 and (table["status"] == "ok").sum() >= 3
    titles = [s.title for s in study_sections(ws)]
    assert "Failed rows" in titles and "Latency vs accuracy" in titles


def test_pareto_front():
    mask = pareto_front([1, 2, 3, 2.5], [0.5, 0.7, 0.6, 0.7])
    assert mask.tolist() == [True, True, False, False]


@pytest.mark.slow
def test_parity_passes_for_an_export_and_fails_for_a_different_model(tmp_path, tiny_dataset):
    import torch

    images = sorted((tiny_dataset.root / "images" / "val").glob("*.jpg"))
    ws = Workspace(tmp_path / "ws")
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source")
    onnx = export(ws, base, ExportConfig(format="onnx", imgsz=64))
    config = ParityConfig(imgsz=64, images=8, conf=0.05)
    result = _measurement(ws, check_parity(ws, onnx, images, config))
    assert result["metrics"]["verdict"] == "pass" and result["metrics"]["parent_boxes"] > 0
    assert result["metrics"]["max_abs_diff"] < 0.05 and result["metrics"]["cosine"] > 0.9999

    other = load_model(demo_weights())
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(torch.randn_like(p) * 0.05 * (p.std() if p.numel() > 1 else 0))
    other.save(tmp_path / "perturbed.pt")
    verdict = compare(open_runner(ws.artifact_path(base)), open_runner(tmp_path / "perturbed.pt"), images, config)
    assert verdict.verdict == "fail" and verdict.match_rate < 0.99 and verdict.worst_images


def test_dynamic_export_runs_other_batches_and_sizes(study):
    ws, base, _, _ = study
    dynamic = export(ws, base, ExportConfig(format="onnx", imgsz=64, dynamic=True))
    assert open_runner(ws.artifact_path(dynamic)).input_shape == (-1, 3, -1, -1)
    for batch, imgsz, threads in ((2, 64, 1), (1, 96, 2)):
        mid = measure_latency(ws, dynamic, RuntimeOptions(threads=threads), imgsz=imgsz, batch=batch, config=QUICK)
        row = _measurement(ws, mid)
        assert row["context"]["status"] == "ok", row["metrics"]
        assert (row["context"]["batch"], row["context"]["imgsz"], row["context"]["threads"]) == (batch, imgsz, threads)
