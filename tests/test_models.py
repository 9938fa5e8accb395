"""Model sources and their errors: demo, .pt, Ultralytics names offline, YAMLs of every size."""

import zipfile

import pytest
import socket_guard

from workbench.core.errors import ModelLoadError, ModelNotFoundError
from workbench.core.models.cards import demo_card, demo_weights
from workbench.core.models.sources import SourceKind, load_model, resolve
from workbench.core.models.summary import model_info


def test_resolve_classifies_without_loading(tmp_path):
    weights = tmp_path / "m.pt"
    weights.write_bytes(b"x")
    assert resolve("demo").kind is SourceKind.DEMO
    assert resolve(weights).kind is SourceKind.WEIGHTS
    assert resolve("yolo11n.pt").kind is SourceKind.NAME
    assert resolve("yolov8s.yaml").kind is SourceKind.YAML and not resolve("yolov8s.yaml").trained


def test_demo_model_loads_with_its_classes(demo_model):
    assert demo_model.task == "detect" and list(demo_model.names.values()) == ["circle", "triangle", "square", "star"]
    info = model_info(demo_model, imgsz=320)
    assert 2_000_000 < info["params"] < 3_000_000 and info["gflops"] > 0


def test_shipped_card_matches_the_file_and_the_target():
    from workbench.core.store.atomic import sha256

    card = demo_card()
    assert card["sha256"] == sha256(demo_weights()) and card["size_bytes"] == demo_weights().stat().st_size
    assert card["metrics"]["map50_95"] >= 0.60 and card["imgsz"] == 320
    assert card["architecture"] == "yolo11n.yaml" and card["versions"]["ultralytics"]
    assert demo_weights().stat().st_size < 25 * 2**20


@pytest.mark.parametrize("yaml", ["yolo11n.yaml", "yolov8n.yaml", "yolo11s.yaml"])
def test_model_yaml_builds_random_weights_offline(yaml):
    model = load_model(yaml)
    assert model.task == "detect" and len(model.names) == 80


def test_missing_file():
    with pytest.raises(ModelNotFoundError, match="does not exist") as info:
        load_model("/no/such/model.pt")
    assert "demo" in info.value.fix


def test_empty_and_garbage_and_wrong_suffix(tmp_path):
    empty, garbage, wrong = tmp_path / "empty.pt", tmp_path / "garbage.pt", tmp_path / "model.bin"
    empty.write_bytes(b"")
    garbage.write_bytes(b"\x00" * 1000)
    wrong.write_bytes(b"onnx")
    with pytest.raises(ModelLoadError, match="is empty"):
        load_model(empty)
    with pytest.raises(ModelLoadError, match="not a PyTorch checkpoint"):
        load_model(garbage)
    with pytest.raises(ModelLoadError, match=r"not a model file the workbench knows \(\.bin\)"):
        load_model(wrong)
    broken_onnx = tmp_path / "model.onnx"
    broken_onnx.write_bytes(b"not onnx")
    with pytest.raises(ModelLoadError, match="could not load"):
        load_model(broken_onnx)
    with pytest.raises(ModelLoadError, match="is a folder"):
        load_model(tmp_path)


def test_truncated_checkpoint(tmp_path):
    data = demo_weights().read_bytes()
    cut = tmp_path / "cut.pt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelLoadError, match="corrupt|not a PyTorch"):
        load_model(cut)


def test_checkpoint_with_a_flipped_byte_fails_its_crc(tmp_path):
    data = bytearray(demo_weights().read_bytes())
    with zipfile.ZipFile(demo_weights()) as archive:
        info = max(archive.infolist(), key=lambda i: i.compress_size)
    data[info.header_offset + 200] ^= 0xFF  # inside the largest tensor's stored bytes
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(data))
    with pytest.raises(ModelLoadError, match="CRC"):
        load_model(bad)


def test_zip_that_is_not_a_model(tmp_path):
    path = tmp_path / "notes.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("notes.txt", "hello")
    with pytest.raises(ModelLoadError, match="not one torch.save wrote"):
        load_model(path)


def test_ultralytics_name_offline_points_to_the_demo_model():
    restore = socket_guard.install()
    try:
        with pytest.raises(ModelNotFoundError, match="yolo11x.pt") as info:
            load_model("yolo11x.pt")
    finally:
        restore()
    assert "'demo'" in info.value.fix
