"""Runners on a small model: every runtime loads, agrees with PyTorch, reports its precision, fails clearly."""

import numpy as np
import pytest

from workbench.core.errors import ConfigError, DatasetError
from workbench.core.measure.latency import LatencyConfig, measure_throughput
from workbench.core.measure.stages import STAGES, stage_breakdown
from workbench.core.models import runners as runtimes
from workbench.core.models.cards import demo_weights
from workbench.core.models.detector import ImageDecodeError
from workbench.core.models.export import ExportConfig, ExportError, export
from workbench.core.models.runners import (
    ArtifactLoadError,
    RuntimeNotInstalled,
    RuntimeOptions,
    example_input,
    open_runner,
)
from workbench.core.store.workspace import Workspace

QUICK = LatencyConfig(warmup_runs=1, warmup_s=0, min_runs=3, min_time_s=0)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo model and its ONNX, OpenVINO and TorchScript exports at 64 px, in a workspace."""
    ws = Workspace(tmp_path_factory.mktemp("ws"))
    base = ws.add_artifact(demo_weights(), "demo.pt", step="source")
    ids = {fmt: export(ws, base, ExportConfig(format=fmt, imgsz=64)) for fmt in ("onnx", "openvino", "torchscript")}
    return ws, base, ids


def test_every_runtime_agrees_with_pytorch(exported):
    ws, base, ids = exported
    reference = open_runner(ws.artifact_path(base), RuntimeOptions(threads=1))
    x = example_input(reference, imgsz=64)
    expected = reference(x)[0]
    assert expected.shape == (1, 8, 84)  # 4 box + 4 classes, 84 anchors at 64 px
    for fmt, vid in ids.items():
        runner = open_runner(ws.artifact_path(vid), RuntimeOptions(threads=1, precision="f32"))
        assert runner.input_shape == (1, 3, 64, 64) and runner.load_ms > 0
        assert runner.precision == "fp32", fmt
        np.testing.assert_allclose(runner(x)[0], expected, atol=1e-2, rtol=1e-3)


def test_export_records_lineage_and_options(exported):
    ws, base, ids = exported
    variants = ws.variants().set_index("id")
    row = variants.loc[ids["openvino"]]
    assert row["parent_id"] == base and row["step"] == "export" and row["format"] == "openvino"
    assert row["params"]["imgsz"] == 64 and row["params"]["precision"] == "fp32"
    assert row["path"].endswith("_openvino_model") and (ws.root / row["path"] / "metadata.yaml").is_file()


def test_openvino_reports_the_precision_its_executed_graph_used(exported):
    import openvino as ov

    ws, _, ids = exported
    path = ws.artifact_path(ids["openvino"])
    hinted = open_runner(path, RuntimeOptions(threads=1, precision="bf16"))
    assert hinted.context["precision_hint"] == "bf16" and hinted.context["threads"] == 1
    assert hinted.precision == ("bf16" if hinted.context["node_precisions"].get("bf16") else "fp32")
    default = open_runner(path, RuntimeOptions(threads=1))  # OpenVINO's own choice: bf16 where the CPU has it
    native_bf16 = "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert default.precision == ("bf16" if native_bf16 else "fp32")
    assert open_runner(path, RuntimeOptions(threads=1, precision="f32")).context["node_precisions"].get("bf16") is None


def test_wrong_input_shape_names_the_expected_one(exported):
    ws, _, ids = exported
    runner = open_runner(ws.artifact_path(ids["onnx"]), RuntimeOptions(threads=1))
    with pytest.raises(ArtifactLoadError, match=r"expects \(1, 3, 64, 64\)") as info:
        runner(np.zeros((1, 3, 96, 96), np.float32))
    assert "dynamic" in info.value.fix


def test_corrupt_artifact_and_missing_runtime(tmp_path, monkeypatch):
    broken = tmp_path / "m.onnx"
    broken.write_bytes(b"\x08\x01garbage")
    with pytest.raises(ArtifactLoadError, match="could not load m.onnx"):
        open_runner(broken)
    monkeypatch.setattr(runtimes, "installed", lambda runtime: False)
    with pytest.raises(RuntimeNotInstalled, match="pip install onnxruntime"):
        open_runner(broken)


def test_unknown_artifact_and_bad_options(tmp_path):
    with pytest.raises(ConfigError, match="no runtime runs"):
        open_runner(tmp_path / "model.mnn")
    with pytest.raises(ConfigError):
        RuntimeOptions(precision="int4")
    with pytest.raises(ConfigError):
        RuntimeOptions(threads=0)


def test_int8_export_without_data_is_refused_before_work():
    with pytest.raises(ConfigError, match="calibration"):
        ExportConfig(format="openvino", precision="int8")
    with pytest.raises(ConfigError, match="does not store fp16"):
        ExportConfig(format="torchscript", precision="fp16")


def test_missing_calibration_data_fails_before_export(exported):
    ws, base, _ = exported
    with pytest.raises(DatasetError, match="does not exist"):
        export(ws, base, ExportConfig(format="openvino", imgsz=64, precision="int8", data="/no/such/data.yaml"))
    assert len(ws.variants()) == 4


def test_exporter_failure_is_named_and_keeps_nothing(exported, monkeypatch):
    from workbench.core.models import checkpoints

    ws, base, _ = exported

    class Broken:
        def export(self, **kwargs):
            raise RuntimeError("converter crashed")

    monkeypatch.setattr(checkpoints, "load_checkpoint", lambda path: Broken())
    with pytest.raises(ExportError, match="onnx export of .* failed: RuntimeError: converter crashed"):
        export(ws, base, ExportConfig(format="onnx", imgsz=96))
    assert len(ws.variants()) == 4 and not [p for p in ws.artifacts.iterdir() if p.name.startswith(".")]


def test_throughput_uses_the_async_queue_for_openvino_and_threads_elsewhere(exported):
    ws, _, ids = exported
    for fmt, mode in (("openvino", "openvino-async-queue"), ("onnx", "thread-pool")):
        runner = open_runner(ws.artifact_path(ids[fmt]), RuntimeOptions(threads=1))
        stats = measure_throughput(runner, example_input(runner, 64), jobs=2, seconds=0.3)
        assert stats.mode == mode and stats.images > 0 and stats.fps > 0


def test_stage_breakdown_on_real_images(exported, tiny_dataset, tmp_path):
    ws, _, ids = exported
    runner = open_runner(ws.artifact_path(ids["onnx"]), RuntimeOptions(threads=1))
    images = sorted((tiny_dataset.root / "images" / "val").glob("*.jpg"))[:3]
    stages = stage_breakdown(runner, images, 64, QUICK)
    assert list(stages) == list(STAGES) and all(s.p50_ms > 0 for s in stages.values())
    bad = tmp_path / "bad.jpg"
    bad.write_bytes(b"not a jpeg")
    with pytest.raises(ImageDecodeError, match="bad.jpg does not decode"):
        stage_breakdown(runner, [bad], 64, QUICK)
