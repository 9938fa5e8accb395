"""NNCF post-training INT8 for OpenVINO and ONNX, plain and accuracy-controlled, on tiny sizes."""

import pytest

from workbench.core.errors import ConfigError
from workbench.core.models.cards import demo_weights
from workbench.core.models.runners import example_input, open_runner
from workbench.core.optimize.quantize import ImageSet, QuantizeConfig, head_float_names, quantize
from workbench.core.store.workspace import Workspace


@pytest.fixture()
def workspace_with_demo(tmp_path):
    ws = Workspace(tmp_path / "ws")
    return ws, ws.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")


def test_head_post_processing_is_found_in_both_graph_dialects():
    openvino = [
        "__module.model.0.conv/aten::_convolution/Convolution",
        "__module.model.23.cv2.0.0.conv/Conv",
        "__module.model.23/aten::sigmoid/Sigmoid",
        "__module.model.23.dfl.conv/aten::_convolution/Conv",
        "__module.model.23/aten::sub/Subtract",
    ]
    assert head_float_names(openvino, "openvino") == openvino[2:]
    onnx = [
        "/model.0/conv/Conv",
        "/model.23/cv2.0/cv2.0.0/conv/Conv",
        "/model.23/Sigmoid",
        "/model.23/dfl/conv/Conv",
        "/model.23/Sub_1",
        "/model.22/m.0/Add",
    ]
    assert head_float_names(onnx, "onnx") == ["/model.23/Sigmoid", "/model.23/dfl/conv/Conv", "/model.23/Sub_1"]


@pytest.mark.parametrize(
    "config",
    [
        dict(format="torchscript"),
        dict(preset="fast"),
        dict(imgsz=100),
        dict(calibration_images=4),
        dict(max_drop=0),
        dict(max_drop=0.01, format="onnx"),
        dict(max_drop=0.01, validation_split="train"),
    ],
)
def test_bad_quantization_options_fail_early(config):
    with pytest.raises(ConfigError) as error:
        QuantizeConfig(**config)
    assert error.value.fix


def test_too_few_calibration_images_names_the_split(tiny_dataset):
    with pytest.raises(ConfigError, match="'train' split .* 8 images"):
        ImageSet.from_data(tiny_dataset.data_yaml, "train", 300, minimum=20)


@pytest.mark.parametrize("fmt,runtime", [("openvino", "openvino"), ("onnx", "onnxruntime")])
def test_post_training_int8_records_calibration_and_runs(workspace_with_demo, tiny_dataset, fmt, runtime):
    ws, parent = workspace_with_demo
    child = quantize(ws, parent, tiny_dataset.data_yaml, QuantizeConfig(format=fmt, imgsz=64, calibration_images=8))
    variants = ws.variants().set_index("id")
    exported = variants.loc[child, "parent_id"]
    assert variants.loc[exported, "step"] == "export" and variants.loc[exported, "parent_id"] == parent
    params = variants.loc[child, "params"]
    calibration = ImageSet.from_data(tiny_dataset.data_yaml, "train", 8)
    assert params["calibration"] == calibration.record() and params["calibration"]["count"] == 8
    assert params["ignored_ops"] > 0 and params["reverted_ops"] is None
    runner = open_runner(ws.artifact_path(child))
    assert runner.runtime == runtime and "int8" in runner.precision
    assert runner(example_input(runner, 64))[0].shape == (1, 8, 84)


def test_accuracy_control_lists_what_it_reverted(workspace_with_demo, tiny_dataset):
    ws, parent = workspace_with_demo
    config = QuantizeConfig(imgsz=64, calibration_images=8, max_drop=0.001, validation_images=8)
    child = quantize(ws, parent, tiny_dataset.data_yaml, config)
    params = ws.variants().set_index("id").loc[child, "params"]
    assert isinstance(params["reverted_ops"], list)
    assert all(isinstance(name, str) and name for name in params["reverted_ops"])


def test_an_int8_model_is_not_quantized_twice(workspace_with_demo, tiny_dataset):
    ws, parent = workspace_with_demo
    child = quantize(ws, parent, tiny_dataset.data_yaml, QuantizeConfig(imgsz=64, calibration_images=8))
    with pytest.raises(ConfigError, match="already quantized"):
        quantize(ws, child, tiny_dataset.data_yaml, QuantizeConfig(imgsz=64, calibration_images=8))
