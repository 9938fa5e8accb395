"""`workbench demo` end to end on the embedded default, with every outbound connection blocked."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.core.models.sources import demo_card
from workbench.core.store.workspace import Workspace

GUARD = Path(__file__).with_name("socket_guard.py")


@pytest.mark.slow
def test_demo_runs_offline_and_reproduces_the_card(tmp_path):
    attempts = tmp_path / "attempts.json"
    run = subprocess.run([sys.executable, str(GUARD), str(attempts), "workbench", "demo", "--workspace",
                          str(tmp_path / "ws")], capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(attempts.read_text()) == [], "the demo tried to reach the network"
    report = Path(run.stdout.split("report: ")[1].split()[0])
    assert report.is_file() and "mAP50-95" in report.read_text()

    card = demo_card()
    ws = Workspace(tmp_path / "ws")
    variants, measurements = ws.variants(), ws.measurements("accuracy")
    assert variants.loc[0, "sha256"] == card["sha256"]
    base_id = variants.loc[0, "id"]
    exports = variants[(variants["step"] == "export") & (variants["parent_id"] == base_id)]
    assert sorted(exports["format"]) == ["onnx", "openvino", "torchscript"]
    assert variants.loc[0, "step"] == "source" and variants.loc[0, "params"]["source"] == "demo"
    assert (ws.root / variants.loc[0, "path"]).is_file()
    row = measurements[measurements["variant_id"] == base_id].iloc[0]
    assert row["images"] == card["dataset"]["val"] and row["ctx_imgsz"] == card["imgsz"]
    assert abs(row["map50_95"] - card["metrics"]["map50_95"]) <= 0.005
    assert abs(row["map50"] - card["metrics"]["map50"]) <= 0.005
    fingerprint = ws.fingerprints().set_index("id").loc[row["fingerprint_id"], "data"]
    assert fingerprint["libraries"]["ultralytics"] and fingerprint["cpu"]["logical_cores"] >= 1
    latency = ws.measurements("latency")
    runtime_rows = latency[latency["variant_id"].isin([base_id, *exports["id"]])]
    assert (runtime_rows["ctx_status"] == "ok").sum() == 5  # pytorch, onnxruntime, openvino f32 and default, ts
    assert set(runtime_rows["ctx_runtime"]) == {"pytorch", "onnxruntime", "openvino", "torchscript"}
    parity = ws.measurements("parity")
    assert len(parity) == 2 and (parity["verdict"] == "pass").all() and (parity["match_rate"] >= 0.99).all()
    exported_accuracy = measurements[measurements["variant_id"].isin(exports["id"])]
    assert len(exported_accuracy) == 4 and (abs(exported_accuracy["map50_95"] - row["map50_95"]) < 0.02).all()
    # the short recipe: every step's variant recorded with lineage and measured
    everything = ws.measurements()
    for step in ("prune", "distill", "quantize"):
        made = variants[variants["step"] == step]
        assert len(made) == 1, step
        assert set(everything[everything["variant_id"] == made["id"].iloc[0]]["kind"]) == {"latency", "accuracy"}
    page = report.read_text()
    assert "Latency vs accuracy" in page and "Parity with the parent" in page and "GOP/s" in page
    assert "prune+distill+quantize: openvino" in page  # the recipe's INT8 variant is on the chart
    assert sorted(p.name for p in ws.reports.iterdir()) == ["demo.html", "fingerprints.csv", "measurements.csv",
                                                           "variants.csv"]
