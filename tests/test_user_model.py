"""A user's own detector and data, as a new user would bring them: another architecture (YOLOv8n), other classes,
non-square images, trained at another size (96). Every command takes the data, and measures at the model's size."""

import json
from pathlib import Path

import numpy as np
import pytest

from workbench.cli import main
from workbench.core.store.workspace import Workspace

TRAINED_AT = 96
pytestmark = pytest.mark.slow


def _write_dataset(root: Path, count: int = 12) -> Path:
    """Two classes ('cat' squares, 'dog' discs) on 128x80 images: not the shapes dataset, not square."""
    import cv2

    rng = np.random.default_rng(7)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "labels" / split).mkdir(parents=True)
        for index in range(count):
            image = np.full((80, 128, 3), rng.integers(40, 200), np.uint8)
            lines = []
            for _ in range(int(rng.integers(1, 3))):
                cls, w, h = int(rng.integers(0, 2)), int(rng.integers(16, 32)), int(rng.integers(16, 32))
                x, y = int(rng.integers(0, 128 - w)), int(rng.integers(0, 80 - h))
                colour = tuple(int(c) for c in rng.integers(0, 255, 3))
                if cls == 0:
                    cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
                else:
                    cv2.ellipse(image, (x + w // 2, y + h // 2), (w // 2, h // 2), 0, 0, 360, colour, -1)
                lines.append(f"{cls} {(x + w / 2) / 128:.6f} {(y + h / 2) / 80:.6f} {w / 128:.6f} {h / 80:.6f}")
            cv2.imwrite(str(root / "images" / split / f"{split}{index}.jpg"), image)
            (root / "labels" / split / f"{split}{index}.txt").write_text("\n".join(lines) + "\n")
    data = root / "pets.yaml"
    data.write_text("path: .\ntrain: images/train\nval: images/val\nnames: {0: cat, 1: dog}\n")
    return data


@pytest.fixture(scope="module")
def user_model(tmp_path_factory):
    """YOLOv8n from its YAML, trained 2 epochs at 96 px on the user's data (random start, a few seconds)."""
    from workbench.core.models.sources import load_model
    from workbench.core.optimize.train import TrainConfig, train

    root = tmp_path_factory.mktemp("user")
    data = _write_dataset(root / "pets")
    weights = root / "pets-yolov8n.pt"
    train(load_model("yolov8n.yaml"), data, weights, TrainConfig(epochs=2, imgsz=TRAINED_AT, batch=4, cache=False))
    return weights, data


def test_evaluate_uses_the_size_the_model_was_trained_at(user_model, capsys):
    weights, data = user_model
    assert main(["evaluate", "--model", str(weights), "--data", str(data)]) == 0
    out = capsys.readouterr().out
    assert f"imgsz {TRAINED_AT}: the size the model was trained at" in out and "cat" in out and "dog" in out


def test_optimize_measures_the_users_model_at_its_own_size(user_model, tmp_path, capsys):
    weights, data = user_model
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "steps:\n  - sparsify: {ratio: 0.5, imgsz: 96}\n  - export: {format: onnx}\n"
        "measure: {seconds: 0.3, warmup_s: 0.1, min_runs: 3}\n"
    )
    ws = tmp_path / "ws"
    assert (
        main(
            ["optimize", "--recipe", str(recipe), "--model", str(weights), "--data", str(data), "--workspace", str(ws)]
        )
        == 0
    )
    workspace = Workspace(ws)
    export = workspace.ledger.variants(step="export")[0]
    assert export.params["imgsz"] == TRAINED_AT  # the export defaulted to the training size too
    measured = workspace.ledger.measurements()
    assert measured and all(m.ok for m in measured), [m.metrics.get("error") for m in measured]
    assert {m.context["imgsz"] for m in measured} == {TRAINED_AT}
    assert {m.kind for m in measured} == {"latency", "accuracy"}
    assert "| 2:export |" in capsys.readouterr().out


def test_demo_takes_the_users_data_and_refuses_to_run_their_model_on_the_shapes(user_model, tmp_path, capsys):
    weights, data = user_model
    ws = tmp_path / "ws"
    assert main(["demo", "--model", str(weights), "--workspace", str(ws)]) == 2
    err = capsys.readouterr().err
    assert "predicts 2 classes (cat, dog" in err and "--data" in err and not ws.exists()
    assert main(["demo", "--model", str(weights), "--data", str(data), "--workspace", str(ws), "--no-optimize"]) == 0
    workspace = Workspace(ws)
    latency = workspace.ledger.measurements(kind="latency")
    assert {m.context["runtime"] for m in latency if m.ok} == {"pytorch", "onnxruntime", "openvino", "torchscript"}
    assert {m.context["imgsz"] for m in latency} == {TRAINED_AT}
    assert not any(v.params.get("shipped") for v in workspace.ledger.variants())  # no demo student for this model
    assert (ws / "reports" / "demo.html").is_file()


@pytest.mark.parametrize("command", ["optimize", "bench"])
def test_optimize_and_bench_refuse_the_users_model_on_the_shapes_before_writing(user_model, tmp_path, capsys, command):
    weights, _ = user_model
    where = ["--workspace", str(tmp_path / "ws")] if command == "optimize" else ["--out", str(tmp_path / "ws")]
    extra = ["--recipe", "demo-short"] if command == "optimize" else []
    assert main([command, "--model", str(weights), *extra, *where]) == 2
    assert "predicts 2 classes (cat, dog" in capsys.readouterr().err and not (tmp_path / "ws").exists()


def test_the_model_panel_defaults_every_size_to_the_users_training_size(user_model, tmp_path):
    from workbench.core.services.session import Session
    from workbench.widgets import ExportPanel, MeasurePanel, ModelPanel, QuantizePanel

    weights, data = user_model
    session = Session.open(tmp_path / "ws")
    panels = [
        ExportPanel(session, background=False),
        MeasurePanel(session, background=False),
        QuantizePanel(session, background=False),
    ]
    opener = ModelPanel(session, background=False)
    opener.model.value, opener.data.value = str(weights), str(data)
    opener.run_button.click()
    assert opener.state == "done", opener.message.value
    assert session.imgsz == TRAINED_AT and all(p.imgsz.value == TRAINED_AT for p in panels)


def test_bench_takes_the_users_model_and_data(user_model, tmp_path):
    from workbench.core.bench.run import BenchConfig, run_bench

    weights, data = user_model
    quick = BenchConfig(
        model=str(weights),
        data=str(data),
        imgsizes=(TRAINED_AT,),
        seconds=0.2,
        warmup_s=0.1,
        warmup_runs=1,
        min_runs=3,
        benchmark_app_seconds=1,
        bare_loop_runs=5,
        retries=0,
        serving=False,  # tests/test_bench_serving.py covers the section on a tiny setup
    )
    result = run_bench(tmp_path / "bench", quick)
    rows = {r["variant"]: r for r in result["records"]}
    assert {"pytorch-96", "onnx-fp32-96", "openvino-f32-96", "ultralytics-openvino-int8-96"} <= set(rows)
    assert "optimized" not in result  # the shipped student belongs to the demo model only
    assert all(r["imgsz"] == TRAINED_AT and r["map_imgsz"] == TRAINED_AT for r in rows.values() if r["status"] == "ok")
    assert json.loads((tmp_path / "bench" / "results.json").read_text())["config"]["map_imgsz"] == TRAINED_AT
