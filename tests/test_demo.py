"""`workbench demo` end to end on the embedded default, with every outbound connection blocked."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.core.models.cards import demo_card, student_card
from workbench.core.store.workspace import Workspace

GUARD = Path(__file__).with_name("socket_guard.py")


@pytest.mark.slow
@pytest.mark.timeout(2400)  # 5-11 min alone on a 2-core machine; up to twice that beside the chapters
def test_demo_runs_offline_and_reproduces_the_card(tmp_path):
    attempts = tmp_path / "attempts.json"
    run = subprocess.run(
        [sys.executable, str(GUARD), str(attempts), "workbench", "demo", "--workspace", str(tmp_path / "ws")],
        capture_output=True,
        text=True,
        timeout=2300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.loads(attempts.read_text()) == [], "the demo tried to reach the network"
    report = Path(run.stdout.split("report: ")[1].split()[0])
    page = report.read_text()

    card = demo_card()
    ws = Workspace(tmp_path / "ws")
    source = ws.ledger.variants(step="source")[0]
    assert source.sha256 == card["sha256"] and source.params["source"] == "demo"
    assert source.params["train_imgsz"] == card["imgsz"] and (ws.root / source.path).is_file()
    exports = ws.ledger.variants(step="export", parent_id=source.id)
    assert sorted(v.format.value for v in exports) == ["onnx", "openvino", "torchscript"]
    accuracy = {(m.variant_id, m.context.get("precision")): m for m in ws.ledger.measurements(kind="accuracy")}
    base = accuracy[(source.id, "fp32")]
    assert base.ok and base.metrics["images"] == card["dataset"]["val"] and base.context["imgsz"] == card["imgsz"]
    # the workbench's own runner path scores what Ultralytics' validator wrote on the card
    assert abs(base.metrics["map50_95"] - card["metrics"]["map50_95"]) <= 0.005
    latency = [
        m for m in ws.ledger.measurements(kind="latency") if m.variant_id in {source.id, *(v.id for v in exports)}
    ]
    assert sum(m.ok for m in latency) == 5  # pytorch, onnxruntime, openvino f32 and default, torchscript
    assert {m.context["runtime"] for m in latency} == {"pytorch", "onnxruntime", "openvino", "torchscript"}
    assert all(m.context["imgsz"] == card["imgsz"] for m in latency)
    parity = [m for m in ws.ledger.measurements(kind="parity") if m.variant_id in {v.id for v in exports}]
    assert len(parity) == 4 and all(m.metrics["verdict"] == "pass" for m in parity)  # onnx, openvino x2, torchscript
    for export_variant in exports:
        mine = [m for m in accuracy.values() if m.variant_id == export_variant.id]
        assert mine and all(abs(m.metrics["map50_95"] - base.metrics["map50_95"]) < 0.02 for m in mine)
    # the shipped student beside its parent, and its INT8: what the full recipe achieves
    student = next(v for v in ws.ledger.variants() if v.params.get("shipped"))
    assert student.params["epochs"] == student_card()["epochs"] and ws.variant(student.parent_id).step == "prune"
    assert accuracy[(student.id, "fp32")].metrics["map50_95"] > 0.8
    int8 = [v for v in ws.ledger.variants(step="quantize") if ws.lineage(v.id)[2].id == student.id]
    assert int8 and any(m.ok for m in ws.ledger.measurements(variant_id=int8[0].id, kind="latency"))
    assert any(m.kind == "parity" for m in ws.ledger.measurements(variant_id=int8[0].id))  # INT8 vs its float
    # the short recipe: every step's variant recorded with lineage and measured, shown as a taste on its own
    distilled = ws.ledger.variants(step="distill")
    assert len(distilled) == 1 and distilled[0].params["epochs"] == 2
    taste_int8 = next(
        v for v in ws.ledger.variants(step="quantize") if distilled[0].id in {a.id for a in ws.lineage(v.id)}
    )
    for variant in (ws.variant(distilled[0].parent_id), distilled[0], taste_int8):
        assert {"latency", "accuracy"} <= {m.kind for m in ws.ledger.measurements(variant_id=variant.id)}
    assert "Latency vs accuracy" in page and "Parity with the parent" in page and "GOP/s" in page
    assert "A 2-epoch taste: the demo-short recipe" in page and "prune+distill 2ep+quantize" in page
    assert "prune+finetune 120ep" in page and "<td>nan</td>" not in page
    assert sorted(p.name for p in ws.reports.iterdir()) == [
        "demo.html",
        "fingerprints.csv",
        "measurements.csv",
        "variants.csv",
    ]
