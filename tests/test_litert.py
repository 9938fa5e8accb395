"""LiteRT (TFLite) as one more measured runtime: export, runner convention, INT8 offline, ledger rows, clear errors."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

missing = [name for name in ("ai_edge_litert", "litert_torch") if importlib.util.find_spec(name) is None]
if missing:
    pytest.skip(
        f"LiteRT is not installed ({', '.join(missing)} missing): pip install -e '.[litert]' (make test does)",
        allow_module_level=True,
    )

from workbench.core.data.checks import list_images  # noqa: E402
from workbench.core.data.generate import ShapesConfig, generate_shapes  # noqa: E402
from workbench.core.errors import ConfigError  # noqa: E402
from workbench.core.measure.measure import measure  # noqa: E402
from workbench.core.measure.parity import ParityConfig, compare  # noqa: E402
from workbench.core.measure.plan import MeasurePlan  # noqa: E402
from workbench.core.models import runners as runtimes  # noqa: E402
from workbench.core.models.cards import demo_weights  # noqa: E402
from workbench.core.models.detector import decode, preprocess  # noqa: E402
from workbench.core.models.export import ExportConfig, export  # noqa: E402
from workbench.core.models.runners import RuntimeNotInstalled, RuntimeOptions, open_runner  # noqa: E402
from workbench.core.store.workspace import Workspace  # noqa: E402

IMGSZ = 128  # each export takes seconds at this size
QUICK = {"seconds": 0.05, "warmup_s": 0, "warmup_runs": 1, "min_runs": 3, "threads": 1}


@pytest.fixture(scope="module")
def lite(tmp_path_factory):
    """A workspace with the demo model, a 128 px shapes dataset and the model's ONNX and LiteRT fp32 exports."""
    root = tmp_path_factory.mktemp("litert")
    data = generate_shapes(root / "data", ShapesConfig(seed=5, train=8, val=6, imgsz=IMGSZ)).data_yaml
    ws = Workspace(root / "ws")
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source")
    onnx = export(ws, base, ExportConfig(format="onnx", imgsz=IMGSZ))
    fp32 = export(ws, base, ExportConfig(format="tflite", imgsz=IMGSZ))
    return ws, data, base, onnx, fp32


def _runner(ws, variant_id):
    return open_runner(ws.artifact_path(variant_id), RuntimeOptions(threads=1))


def _parity(ws, data, parent_id, child_id):
    images = list_images(data, "val")
    return compare(_runner(ws, parent_id), _runner(ws, child_id), images, ParityConfig(imgsz=IMGSZ, images=6))


@pytest.mark.slow
def test_fp32_export_records_one_tflite_file(lite):
    ws, _, base, _, fp32 = lite
    variant = ws.variant(fp32)
    assert variant.format.value == "tflite" and variant.parent_id == base and variant.step == "export"
    assert variant.params["precision"] == "fp32" and variant.params["imgsz"] == IMGSZ
    path = ws.artifact_path(fp32)
    assert path.is_file() and path.suffix == ".tflite" and variant.size_bytes == path.stat().st_size
    runner = _runner(ws, fp32)
    assert runner.runtime == "litert" and runner.precision == "fp32"
    assert runner.input_shape == (1, 3, IMGSZ, IMGSZ)
    assert runner.context["delegate"] == "XNNPACK" and runner.context["threads"] == 1 and runner.context["litert"]


@pytest.mark.slow
def test_runner_output_is_the_onnx_convention_with_boxes_in_pixels(lite):
    ws, data, _, onnx, fp32 = lite
    image = list_images(data, "val")[0]
    batch = preprocess(decode(Path(image).read_bytes(), image.name), IMGSZ).batch
    expected, found = _runner(ws, onnx)(batch)[0], _runner(ws, fp32)(batch)[0]
    assert found.shape == expected.shape == (1, 8, 336) and found.dtype == np.float32
    assert found[:, :4].max() > 2  # pixels, not the export's [0, 1]
    np.testing.assert_allclose(found, expected, atol=0.05, rtol=1e-3)
    parity = _parity(ws, data, onnx, fp32)
    assert parity.parent_boxes > 0 and parity.match_rate >= 0.99 and parity.mean_iou > 0.99, parity.reason


@pytest.mark.slow
def test_int8_export_runs_offline_without_a_font_download(lite, tmp_path, monkeypatch):
    """A fresh Ultralytics config folder: the shipped font is put there, nothing is downloaded (the suite's socket
    guard fails the test on any connection attempt as well)."""
    import matplotlib
    from ultralytics.utils import checks, downloads

    monkeypatch.setattr("ultralytics.utils.USER_CONFIG_DIR", tmp_path)
    monkeypatch.setattr(checks, "USER_CONFIG_DIR", tmp_path)
    asked = []
    monkeypatch.setattr(downloads, "is_url", lambda url, *a, **k: asked.append(url) or False)
    monkeypatch.setattr(downloads, "safe_download", lambda *a, **k: asked.append(a) or None)
    ws, data, _, onnx, _ = lite
    int8 = export(ws, lite[2], ExportConfig(format="tflite", imgsz=IMGSZ, precision="int8", data=str(data)))
    assert asked == []
    shipped = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    assert (tmp_path / "Arial.ttf").read_bytes() == shipped.read_bytes()
    variant = ws.variant(int8)
    assert variant.params["precision"] == "int8" and variant.params["split"] == "train"
    assert _runner(ws, int8).precision == "int8"
    parity = _parity(ws, data, onnx, int8)
    assert parity.mean_iou > 0.8 and parity.match_rate > 0.5, parity.reason


@pytest.mark.slow
def test_w8a32_reports_weight_only_int8(lite):
    ws, _, base, _, fp32 = lite
    w8 = export(ws, base, ExportConfig(format="tflite", imgsz=IMGSZ, precision="w8a32"))
    assert _runner(ws, w8).precision == "w8a32"
    assert ws.artifact_path(w8).stat().st_size < 0.5 * ws.artifact_path(fp32).stat().st_size


@pytest.mark.slow
def test_latency_and_accuracy_land_in_the_ledger(lite):
    ws, data, _, _, fp32 = lite
    ids = measure(ws, fp32, MeasurePlan(**QUICK, accuracy_images=4), data)
    rows = ws.ledger.measurements(ids=ids)
    assert [m.kind for m in rows] == ["latency", "accuracy"] and all(m.ok for m in rows), rows
    for m in rows:
        assert m.context["runtime"] == "litert" and m.context["precision"] == "fp32"
        assert m.context["imgsz"] == IMGSZ and m.context["delegate"] == "XNNPACK"
    latency, accuracy = rows
    assert latency.metrics["p50_ms"] > 0
    assert 0 <= accuracy.metrics["map50_95"] <= 1


def test_fp16_and_dynamic_are_refused_before_anything_is_written(tmp_path):
    ws = Workspace(tmp_path / "ws")
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source")
    with pytest.raises(ConfigError, match="tflite export does not store fp16") as refused:
        export(ws, base, ExportConfig(format="tflite", imgsz=IMGSZ, precision="fp16"))
    assert "fp32, int8, w8a32" in refused.value.fix
    with pytest.raises(ConfigError, match="no dynamic input shape"):
        ExportConfig(format="tflite", imgsz=IMGSZ, dynamic=True)
    assert list(ws.variants()["id"]) == [base]
    assert not list(ws.root.rglob("*.tflite"))


def test_a_missing_runtime_names_the_pip_command(tmp_path, monkeypatch):
    model = tmp_path / "m.tflite"
    model.write_bytes(b"not a model")
    monkeypatch.setattr(runtimes, "installed", lambda runtime: runtime != "litert")
    with pytest.raises(RuntimeNotInstalled, match="litert is not installed") as missing_runtime:
        open_runner(model)
    assert "pip install" in missing_runtime.value.fix and ".[litert]" in missing_runtime.value.fix
