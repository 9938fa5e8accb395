"""Quantization-aware training with NNCF and Ultralytics' loss, then INT8 export, on tiny sizes."""

import pytest

from workbench.core.errors import ConfigError
from workbench.core.models.cards import demo_weights
from workbench.core.models.runners import example_input, open_runner
from workbench.core.optimize.qat import QATConfig, qat
from workbench.core.store.workspace import Workspace


def test_qat_trains_and_exports_int8(tmp_path, tiny_dataset):
    ws = Workspace(tmp_path / "ws")
    parent = ws.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")
    config = QATConfig(epochs=1, imgsz=64, batch=4, calibration_images=8, export_imgsz=64, formats=("openvino",))
    ids = qat(ws, parent, tiny_dataset.data_yaml, config)
    variants = ws.variants().set_index("id")
    params = variants.loc[ids["qat"], "params"]
    assert variants.loc[ids["qat"], "parent_id"] == parent and params["calibration"]["count"] == 8
    assert len(params["history"]) == 1 and params["history"][0]["loss"] > 0
    runner = open_runner(ws.artifact_path(ids["openvino"]))
    assert "int8" in runner.precision and runner(example_input(runner, 64))[0].shape == (1, 8, 84)


@pytest.mark.parametrize(
    "config", [dict(epochs=0), dict(formats=("tflite",)), dict(calibration_images=2), dict(export_imgsz=100)]
)
def test_bad_qat_options(config):
    with pytest.raises(ConfigError):
        QATConfig(**config)
