"""`workbench demo` end to end on the embedded default, with every outbound connection blocked."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from workbench.core.models import demo_card
from workbench.core.workspace import Workspace

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
    assert len(variants) == 1 and variants.loc[0, "sha256"] == card["sha256"]
    assert variants.loc[0, "step"] == "source" and variants.loc[0, "params"]["source"] == "demo"
    assert (ws.root / variants.loc[0, "path"]).is_file()
    row = measurements.iloc[0]
    assert row["images"] == card["dataset"]["val"] and row["ctx_imgsz"] == card["imgsz"]
    assert abs(row["map50_95"] - card["metrics"]["map50_95"]) <= 0.005
    assert abs(row["map50"] - card["metrics"]["map50"]) <= 0.005
    fingerprint = ws.fingerprints().set_index("id").loc[row["fingerprint_id"], "data"]
    assert fingerprint["libraries"]["ultralytics"] and fingerprint["cpu"]["logical_cores"] >= 1
    assert sorted(p.name for p in ws.reports.iterdir()) == ["demo.html", "fingerprints.csv", "measurements.csv",
                                                           "variants.csv"]
