"""The re-export check's opset option and the per-layer quantization analysis: ExportConfig.opset is validated and
lands in the ONNX file; on a real INT8 ONNX of the demo model (NNCF, 160 px) the layers are ranked by error, and a
layer whose quantization is deliberately destroyed is ranked first and, kept in float, brings agreement back."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest

from workbench.core.doctor.accuracy.run import AGREE, differences, run_on
from workbench.core.doctor.findings import Verdict
from workbench.core.errors import ConfigError
from workbench.core.models.export import ExportConfig, export_artifact, opset_range

IMGSZ = 160
WEIGHT_NODE = "/model.4/m.0/cv1/conv/Conv"  # a bottleneck conv: its weight scale is planted
ACTIVATION_NODE = "/model.4/m.0/cv2/conv/Conv"  # reads m.0.cv1's output, and is its only reader


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The demo model at 160 px: float ONNX, its NNCF INT8 QDQ model (8 calibration images), images, weights."""
    import cv2

    from workbench.core.data.calibration import ImageSet
    from workbench.core.data.generate import ShapesConfig, generate_shapes
    from workbench.core.models.cards import demo_weights
    from workbench.core.optimize.quantize import QuantizeConfig, quantize_artifact

    root = tmp_path_factory.mktemp("layers")
    data = generate_shapes(root / "data", ShapesConfig(seed=0, train=8, val=8, imgsz=IMGSZ))
    float_path = export_artifact(demo_weights(), ExportConfig(format="onnx", imgsz=IMGSZ), root / "demo.onnx")
    calibration = ImageSet("train", tuple(sorted((data.root / "images" / "train").glob("*.jpg"))))
    int8 = root / "demo-int8.onnx"
    quantize_artifact(float_path, int8, QuantizeConfig(format="onnx", imgsz=IMGSZ, calibration_images=8), calibration)
    paths = sorted((data.root / "images" / "val").glob("*.jpg"))
    return {
        "root": root,
        "float": float_path,
        "int8": int8,
        "paths": paths,
        "images": [cv2.imread(str(p)) for p in paths],
        "weights": demo_weights(),
    }


@pytest.fixture(scope="module")
def reference(models):
    from workbench.core.models.detector import DeploymentSpec, open_detector

    detector = open_detector(DeploymentSpec(models["float"], imgsz=IMGSZ))
    return detector, [detector(image) for image in models["images"]]


def _agreement_of(models, reference):
    from workbench.core.models.detector import DeploymentSpec, Detector
    from workbench.core.models.runners import open_runner

    def agreement(path):
        detector = Detector(DeploymentSpec(path, imgsz=IMGSZ), open_runner(path))
        return differences(reference[1], run_on(detector, models["images"]))["agreement"]

    return agreement


def _batches(models):
    from workbench.core.models.detector import prepare

    return [prepare(image, IMGSZ).batch for image in models["images"][:4]]


@pytest.mark.parametrize(
    ("changes", "named"),
    [
        ({"opset": 5}, "outside"),
        ({"opset": 99}, "outside"),
        ({"opset": "17"}, "integer"),
        ({"opset": 17.0}, "integer"),
        ({"opset": True}, "integer"),
        ({"opset": 17, "format": "openvino"}, "ONNX export only"),
    ],
)
def test_a_bad_opset_is_refused_with_a_fix(changes, named):
    with pytest.raises(ConfigError, match=named) as error:
        ExportConfig(**changes)
    assert error.value.fix


def test_the_opset_reaches_ultralytics_and_the_ledger_only_when_set():
    low, high = opset_range()
    assert low <= 17 <= high
    config = ExportConfig(format="onnx", imgsz=IMGSZ, opset=17)
    assert config.arguments()["opset"] == 17 and "opset17" in config.name_suffix()
    plain = ExportConfig(format="onnx", imgsz=IMGSZ)
    assert "opset" not in plain.arguments() and "opset" not in plain.params()  # old ledger rows still match
    assert config.params()["opset"] == 17


def test_an_onnx_export_records_the_chosen_opset(models, tmp_path):
    import onnx

    from workbench.core.doctor.accuracy.artifact import OTHER_OPSET, REEXPORTS

    out = export_artifact(
        models["weights"], ExportConfig(format="onnx", imgsz=IMGSZ, opset=OTHER_OPSET), tmp_path / "o.onnx"
    )
    default = {o.domain: o.version for o in onnx.load(str(models["float"])).opset_import}[""]
    chosen = {o.domain: o.version for o in onnx.load(str(out)).opset_import}[""]
    assert chosen == OTHER_OPSET != default  # the re-export tries an opset the default export does not use
    assert (f"fp32, opset {OTHER_OPSET}", {"opset": OTHER_OPSET}) in REEXPORTS


def test_layers_are_ranked_by_error_with_finite_numbers(models, tmp_path):
    import onnx

    from workbench.core.doctor.accuracy.layers import layer_errors

    ranked = layer_errors(models["int8"], models["float"], _batches(models), tmp_path)
    assert len(ranked) > 50
    errors = [row.sqnr_db for row in ranked]
    assert all(math.isfinite(e) for e in errors) and errors == sorted(errors)
    assert 0 < errors[0] < 60  # an honest int8 model: tens of dB, no layer destroyed
    float_nodes = {node.name for node in onnx.load(str(models["float"])).graph.node}
    assert {row.node for row in ranked} <= float_nodes  # names NNCF's ignored_scope accepts
    kinds = {row.worst.split()[0] for row in ranked}
    assert kinds == {"weight", "activation"}
    assert all(math.isfinite(row.float_sqnr_db) for row in ranked if row.worst.startswith("activation"))


def _planted(models, node_name: str, port: int, out):
    """The INT8 model with the scale of `node_name`'s input `port` quantizer multiplied by 1000."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(models["int8"]))
    producer = {o: n for n in model.graph.node for o in n.output}
    node = next(n for n in model.graph.node if n.name == node_name)
    dequantize = producer[node.input[port]]
    assert dequantize.op_type == "DequantizeLinear"
    readers = [n for n in model.graph.node if dequantize.output[0] in n.input]
    assert readers == [node]  # the planted error belongs to this node alone
    scale = next(i for i in model.graph.initializer if i.name == dequantize.input[1])
    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * np.float32(1000), scale.name))
    onnx.save(model, str(out))
    return out


@pytest.mark.parametrize(("node", "port", "kind"), [(WEIGHT_NODE, 1, "weight"), (ACTIVATION_NODE, 0, "activation")])
def test_a_destroyed_layer_is_ranked_first_and_kept_in_float(models, reference, tmp_path, node, port, kind):
    from workbench.core.doctor.accuracy.layers import layers_check

    agreement = _agreement_of(models, reference)
    honest = agreement(models["int8"])
    planted = _planted(models, node, port, tmp_path / "planted.onnx")
    before = agreement(planted)
    assert honest >= AGREE > before  # the plant breaks a model that agreed
    finding = layers_check(
        planted, models["float"], _batches(models), agreement, before=before, folder=tmp_path / "work"
    )
    first = finding.evidence["layers"][0]
    assert first["node"] == node and first["worst"].startswith(kind), finding.evidence["layers"][:3]
    assert first["sqnr_db"] < finding.evidence["layers"][1]["sqnr_db"]
    assert finding.verdict is Verdict.CAUSE and finding.cause == "int8_quantization"
    assert finding.after["kept_in_float"] == [node] and finding.after["agreement"] >= AGREE
    assert f"ignored_scope names={[node]}" in finding.fix


def test_the_accuracy_doctor_names_the_layer_to_keep_in_float(models, reference, tmp_path):
    """Through diagnose_accuracy: the re-export check finds the int8 fault, then the layer, and measures the fix."""
    from workbench.core.doctor.accuracy import diagnose_accuracy
    from workbench.core.models.detector import DeploymentSpec

    planted = _planted(models, WEIGHT_NODE, 1, tmp_path / "planted.onnx")
    diagnosis = diagnose_accuracy(
        DeploymentSpec(planted, imgsz=IMGSZ),
        DeploymentSpec(models["float"], imgsz=IMGSZ),
        models["paths"],
        reference_weights=models["weights"],
    )
    found = next(f for f in diagnosis.findings if f.check == "re-export")
    assert found.verdict is Verdict.CAUSE and found.cause == "int8_quantization", found
    assert found.evidence["reexports"][0]["settings"] == "fp32" and found.evidence["reexports"][0]["verdict"] == "pass"
    layers = found.evidence["layers"]
    assert layers["verdict"] == "cause" and layers["layers"][0]["node"] == WEIGHT_NODE
    assert found.after["agreement"] >= AGREE > found.evidence["alone_agreement"]
    assert WEIGHT_NODE in found.fix and found.as_dict()["evidence"]["layers"]["layers"]  # JSON for the ledger
    assert diagnosis.most_likely.cause == "int8_quantization"
    assert WEIGHT_NODE in diagnosis.sentence()


def test_a_float_model_of_another_graph_is_refused(models, tmp_path):
    import onnx

    from workbench.core.doctor.accuracy.layers import LayerAnalysisError, layer_errors

    other = onnx.load(str(models["float"]))
    other.graph.node[0].name = "renamed"
    onnx.save(other, str(tmp_path / "other.onnx"))
    with pytest.raises(LayerAnalysisError, match="not the float graph") as error:
        layer_errors(models["int8"], tmp_path / "other.onnx", _batches(models), tmp_path / "work")
    assert error.value.fix


def test_the_reexport_check_tries_another_opset(models, reference, tmp_path, monkeypatch):
    """When only the opset re-export agrees (parity faked by opset), the check names that setting."""
    import onnx

    from workbench.core.doctor.accuracy import artifact as accuracy_artifact
    from workbench.core.models.runners import open_runner

    def parity_by_opset(ref_runner, runner, paths, config):
        version = {o.domain: o.version for o in onnx.load(str(runner.path)).opset_import}[""]
        verdict = "pass" if version == accuracy_artifact.OTHER_OPSET else "fail"
        return SimpleNamespace(verdict=verdict, match_rate=1.0, mean_iou=1.0, max_abs_diff=0.0)

    monkeypatch.setattr(accuracy_artifact, "compare", parity_by_opset)
    evidence = {}
    finding = accuracy_artifact._reexport(
        open_runner(models["float"]), reference[0], models["weights"], models["paths"], evidence, 120, tmp_path
    )
    settings = [(t["settings"], t["verdict"]) for t in evidence["reexports"]]
    opset = f"fp32, opset {accuracy_artifact.OTHER_OPSET}"
    assert settings == [("fp32", "fail"), ("fp32, simplify off", "fail"), (opset, "pass")]
    assert finding.cause == "export_settings" and opset in finding.title
