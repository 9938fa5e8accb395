"""The one measurement path: rows with their context, accuracy at the row's size, failures recorded, parity,
the runner accuracy against Ultralytics' validator, and thread counts left as they were."""

import shutil

import pandas as pd
import pytest

from workbench.core.measure.accuracy import AccuracyConfig, evaluate, runner_accuracy
from workbench.core.measure.measure import measure, plan_rows
from workbench.core.measure.parity import ParityConfig, compare
from workbench.core.measure.plan import MeasurePlan
from workbench.core.models import runners as runtimes
from workbench.core.models.cards import demo_weights
from workbench.core.models.checkpoints import load_yolo
from workbench.core.models.export import ExportConfig, export
from workbench.core.models.runners import RuntimeOptions, open_runner
from workbench.core.models.sources import load_model
from workbench.core.report.compare import comparison_table, pareto_front
from workbench.core.report.sections import study_sections
from workbench.core.store.workspace import Workspace

QUICK = {"seconds": 0.05, "warmup_s": 0, "warmup_runs": 1, "min_runs": 3}


def _plan(**changes) -> MeasurePlan:
    return MeasurePlan(**{"imgsz": (64,), **QUICK, **changes})


@pytest.fixture(scope="module")
def study(tmp_path_factory, tiny_dataset):
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source", format="pytorch")
    onnx = export(ws, base, ExportConfig(format="onnx", imgsz=64))
    ov = export(ws, base, ExportConfig(format="openvino", imgsz=64))
    plan = _plan(stage_images=2, throughput_jobs=2)
    for vid in (base, onnx, ov):
        measure(ws, vid, plan, tiny_dataset.data_yaml)
    return ws, base, onnx, ov


def test_latency_rows_carry_their_context_and_ops(study):
    ws, base, onnx, ov = study
    rows = ws.measurements("latency").set_index("variant_id")
    ov_row = rows.loc[ov]
    assert ov_row["ctx_runtime"] == "openvino" and ov_row["ctx_precision"] == "fp32" and ov_row["ctx_threads"] >= 1
    assert ov_row["ctx_imgsz"] == 64 and ov_row["ctx_batch"] == 1 and ov_row["ctx_status"] == "ok"
    assert ov_row["p50_ms"] <= ov_row["p90_ms"] <= ov_row["p99_ms"] and ov_row["runs"] >= 3
    assert ov_row["gflops"] > 0 and ov_row["gops_per_s"] > 0
    assert isinstance(ov_row["metrics"]["stable"], bool) and len(ov_row["metrics"]["window_p50_ms"]) >= 3
    assert set(ov_row["metrics"]["stages"]) == {"decode", "preprocess", "inference", "postprocess"}
    assert ov_row["metrics"]["throughput"]["fps"] > 0
    assert 0 < ov_row["runtime_internal_p50_ms"] <= ov_row["p50_ms"]  # OpenVINO's own time sits inside the call
    assert rows.loc[onnx, "ctx_graph_optimization"] == "all"


def test_accuracy_is_measured_at_the_row_size_in_the_row_runtime(study):
    ws, base, onnx, ov = study
    accuracy = ws.measurements("accuracy").set_index("variant_id")
    for vid, runtime in ((base, "pytorch"), (onnx, "onnxruntime"), (ov, "openvino")):
        assert accuracy.loc[vid, "ctx_imgsz"] == 64 and accuracy.loc[vid, "ctx_runtime"] == runtime
    assert accuracy.loc[ov, "ctx_precision"] == "fp32"
    table = comparison_table(ws).set_index("variant_id")
    assert (table["map_imgsz"] == table["imgsz"]).all()


def test_comparison_table_has_speedup_and_accuracy_against_the_baseline(study):
    ws, base, onnx, ov = study
    table = comparison_table(ws).set_index("variant_id")
    assert table.loc[base, "speedup"] == pytest.approx(1.0)
    assert table.loc[onnx, "speedup"] == pytest.approx(table.loc[base, "p50_ms"] / table.loc[onnx, "p50_ms"])
    assert table.loc[onnx, "map50_95_delta"] == pytest.approx(table.loc[onnx, "map50_95"] - table.loc[base, "map50_95"])
    assert pd.isna(table.loc[onnx, "precision_hint"]) and table.loc[ov, "precision_hint"] == "f32"


def test_a_plan_resolves_into_one_row_per_size_and_openvino_precision(study):
    ws, base, onnx, ov = study
    plan = _plan(imgsz=(64, 128), precisions=("f32", None))
    assert [(r.imgsz, r.precision) for r in plan_rows(ws, ws.variant(base), plan)] == [(64, None), (128, None)]
    assert [(r.imgsz, r.precision) for r in plan_rows(ws, ws.variant(ov), plan)] == [(64, "f32"), (64, None)]


def test_failed_rows_are_recorded_and_the_study_goes_on(study, tmp_path, monkeypatch, tiny_dataset):
    ws, base, onnx, ov = study
    bad = shutil.copytree(tiny_dataset.root, tmp_path / "bad")
    (bad / "images" / "val" / "val_00000.jpg").write_bytes(b"nope")
    (bad / "data.yaml").write_text((bad / "data.yaml").read_text().replace(str(tiny_dataset.root), str(bad)))
    latency_only = _plan(accuracy=False, stage_images=1)
    undecodable = measure(ws, ov, latency_only, bad / "data.yaml")
    mislabelled = ws.add_artifact(
        ws.artifact_path(onnx), "claims96.onnx", step="export", parent_id=base, format="onnx", params={"imgsz": 96}
    )
    wrong_shape = measure(ws, mislabelled, _plan(accuracy=False))
    broken = ws.add_artifact(
        lambda p: p.write_bytes(b"garbage"), "broken.onnx", step="export", parent_id=base, format="onnx"
    )
    unloadable = measure(ws, broken, _plan(), tiny_dataset.data_yaml)
    monkeypatch.setattr(runtimes, "installed", lambda runtime: runtime != "openvino")
    missing = measure(ws, ov, _plan(accuracy=False))
    rows = {m.id: m for m in ws.ledger.measurements()}
    assert "val_00000.jpg does not decode" in rows[undecodable[0]].metrics["error"]
    assert "exported for input (1, 3, 64, 64)" in rows[wrong_shape[0]].metrics["error"]
    assert [rows[i].kind for i in unloadable] == ["latency", "accuracy"]
    assert all("could not load" in rows[i].metrics["error"] for i in unloadable)
    assert "openvino is not installed" in rows[missing[0]].metrics["error"]
    assert all(not rows[i].ok for i in (*undecodable, *wrong_shape, *unloadable, *missing))
    table = comparison_table(ws)
    assert (table["status"] == "failed").sum() >= 3 and (table["status"] == "ok").sum() >= 2  # newest per setting
    titles = [s.title for s in study_sections(ws)]
    assert "Failed rows" in titles and "Latency vs accuracy" in titles


def test_a_plan_that_needs_data_says_so(study):
    ws, base, *_ = study
    from workbench.core.errors import ConfigError

    with pytest.raises(ConfigError, match="need a dataset"):
        measure(ws, base, _plan())


def test_a_latency_row_stores_the_estimate_it_is_handed_and_its_error(study):
    ws, base, *_ = study
    asked = []

    def estimator(workspace, variant_id, runtime, precision, imgsz, gflops, threads, gemm):
        asked.append((variant_id, runtime, imgsz, gflops > 0, threads >= 1))
        return {"p50_ms": 1.0, "basis": "a fixed guess"}

    plan = _plan(accuracy=False)
    plain, estimated = measure(ws, base, plan), measure(ws, base, plan, estimate=estimator)
    plain_row, row = ws.ledger.measurements(ids=plain + estimated)
    assert "estimate" not in plain_row.metrics  # nothing estimated, nothing stored
    assert asked == [(base, "pytorch", 64, True, True)]
    p50 = row.metrics["p50_ms"]
    assert row.metrics["estimate"] == {"p50_ms": 1.0, "basis": "a fixed guess", "error_pct": 100 * (1.0 - p50) / p50}


def test_pareto_front():
    mask = pareto_front([1, 2, 3, 2.5], [0.5, 0.7, 0.6, 0.7])
    assert mask.tolist() == [True, True, False, False]


@pytest.mark.slow
def test_parity_passes_for_an_export_and_fails_for_a_different_model(tmp_path, tiny_dataset):
    import torch

    images = sorted((tiny_dataset.root / "images" / "val").glob("*.jpg"))
    ws = Workspace(tmp_path / "ws")
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source", format="pytorch")
    onnx = export(ws, base, ExportConfig(format="onnx", imgsz=64))
    [parity] = measure(
        ws, onnx, _plan(latency=False, accuracy=False, parity=True, parity_images=8), tiny_dataset.data_yaml
    )
    result = ws.ledger.measurement(parity)
    assert result.metrics["verdict"] == "pass" and result.context["parent_runtime"] == "pytorch"
    assert result.metrics["max_abs_diff"] < 0.05 and result.metrics["cosine"] > 0.9999

    other = load_model(demo_weights())
    with torch.no_grad():
        for p in other.model.parameters():
            p.add_(torch.randn_like(p) * 0.05 * (p.std() if p.numel() > 1 else 0))
    other.save(tmp_path / "perturbed.pt")
    config = ParityConfig(imgsz=64, images=8, conf=0.05)
    verdict = compare(open_runner(ws.artifact_path(base)), open_runner(tmp_path / "perturbed.pt"), images, config)
    assert verdict.verdict == "fail" and verdict.match_rate < 0.99 and verdict.worst_images


def test_dynamic_export_runs_other_sizes_and_thread_counts(study):
    ws, base, _, _ = study
    dynamic = export(ws, base, ExportConfig(format="onnx", imgsz=64, dynamic=True))
    assert open_runner(ws.artifact_path(dynamic)).input_shape == (-1, 3, -1, -1)
    for threads in (1, 2):
        ids = measure(ws, dynamic, _plan(accuracy=False, imgsz=(64, 96), threads=threads))
        rows = [ws.ledger.measurement(i) for i in ids]
        assert all(r.ok for r in rows), [r.metrics for r in rows]
        assert [(r.context["imgsz"], r.context["threads"]) for r in rows] == [(64, threads), (96, threads)]


@pytest.mark.slow
def test_runner_accuracy_equals_ultralytics_validator_on_the_same_artifact(tmp_path):
    """The demo model's exports scored through the workbench's runners and through `YOLO(...).val()`, same images."""
    from workbench.core.data.generate import ShapesConfig, generate_shapes

    data = generate_shapes(tmp_path / "data", ShapesConfig(train=8, val=200)).data_yaml
    ws = Workspace(tmp_path / "ws")
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source", format="pytorch")
    for fmt, options in (("onnx", RuntimeOptions()), ("openvino", RuntimeOptions(precision="f32"))):
        path = ws.artifact_path(export(ws, base, ExportConfig(format=fmt, imgsz=320)))
        ours = runner_accuracy(open_runner(path, options), data, AccuracyConfig(imgsz=320))
        theirs = evaluate(load_yolo(path, task="detect"), data, AccuracyConfig(imgsz=320, batch=1))
        assert ours.images == theirs.images == 200
        assert abs(ours.map50_95 - theirs.map50_95) <= 0.002, (fmt, ours.map50_95, theirs.map50_95)
        assert abs(ours.map50 - theirs.map50) <= 0.002


@pytest.mark.slow
def test_thread_counts_are_set_for_a_call_and_restored_after_it(tmp_path, tiny_dataset):
    import torch

    from workbench.core.optimize.train import TrainConfig, train

    previous = torch.get_num_threads()
    torch.set_num_threads(1)  # a user's explicit setting, not what the workbench measures with
    try:
        ws = Workspace(tmp_path / "ws")
        base = ws.add_artifact(demo_weights(), "demo.pt", step="source", format="pytorch")
        measure(ws, base, _plan(threads=2), tiny_dataset.data_yaml)
        assert torch.get_num_threads() == 1
        assert ws.ledger.measurements(kind="latency")[0].context["threads"] == 2
        evaluate(load_model("demo"), tiny_dataset.data_yaml, AccuracyConfig(imgsz=64, threads=2))
        assert torch.get_num_threads() == 1  # Ultralytics' select_device would leave cores - 1
        export(ws, base, ExportConfig(format="onnx", imgsz=64))
        assert torch.get_num_threads() == 1
        train(load_model("demo"), tiny_dataset.data_yaml, tmp_path / "t.pt", TrainConfig(epochs=1, imgsz=64, batch=4))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(previous)
