"""The accuracy doctor: it names the planted cause of every lab fault, raises no false alarm on correct deployments
(the demo model's and a model it did not make), and reports bad input (undecodable images, callables that raise,
hang or return the wrong thing) as findings instead of crashing."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from workbench.core.doctor.accuracy import diagnose_accuracy
from workbench.core.doctor.findings import Verdict
from workbench.core.doctor.lab.accuracy import FAULTS, build_accuracy_lab, correct_case
from workbench.core.errors import ConfigError
from workbench.core.models.detector import DeploymentSpec, Detections, Preprocessing, prepare

SLOW_FAULTS = {"int8_blank_calibration"}


def _nncf_int8(source, out, calibration, imgsz):
    """The workbench's post-training INT8 (NNCF) on exactly the calibration images given: the lab's INT8 fault."""
    from workbench.core.optimize.quantize import QuantizeConfig, quantize_artifact

    config = QuantizeConfig(format="onnx", imgsz=imgsz, calibration_images=len(calibration.paths))
    return quantize_artifact(source, out, config, calibration)


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    return build_accuracy_lab(tmp_path_factory.mktemp("accuracy-lab"), quantize=_nncf_int8)


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW_FAULTS else n for n in FAULTS])
def test_the_doctor_names_the_planted_cause(lab, name):
    build, expected = FAULTS[name]
    diagnosis = build(lab).diagnose()
    top = diagnosis.most_likely
    assert top is not None and top.cause == expected, [(f.verdict.value, f.cause, f.title) for f in diagnosis.findings]
    assert top.fix and top.evidence
    assert expected in diagnosis.sentence() or top.title in diagnosis.sentence()


def test_a_fix_applied_here_is_measured(lab):
    top = FAULTS["bgr_as_rgb"][0](lab).diagnose().most_likely
    assert top.verdict is Verdict.CAUSE and top.after["agreement"] >= 0.9
    assert top.after["agreement"] > top.evidence["before"]["agreement"]


@pytest.mark.slow
def test_no_false_alarm_on_the_correct_demo_deployment(lab, tmp_path):
    diagnosis = correct_case(lab).diagnose(out_dir=tmp_path / "pictures")
    assert diagnosis.ok, [(f.verdict.value, f.cause, f.title) for f in diagnosis.findings]
    assert diagnosis.sentence().startswith("No accuracy problem found")
    assert {f.check for f in diagnosis.findings} >= {
        "data",
        "preprocessing",
        "postprocessing",
        "environment",
        "stages",
        "re-export",
        "controlled test",
    }


@pytest.mark.slow
def test_no_false_alarm_on_a_model_the_doctor_did_not_make(tiny_dataset, tmp_path):
    """YOLOv8n from its YAML, one epoch at 64 px on other generated images, exported to ONNX."""
    from workbench.core.data.checks import list_images
    from workbench.core.models.export import ExportConfig, export_artifact
    from workbench.core.models.sources import load_model
    from workbench.core.optimize.train import TrainConfig, train

    weights = tmp_path / "foreign.pt"
    train(
        load_model("yolov8n.yaml"),
        tiny_dataset.data_yaml,
        weights,
        TrainConfig(epochs=1, imgsz=64, batch=8, cache=False),
    )
    onnx = export_artifact(weights, ExportConfig(format="onnx", imgsz=64), tmp_path / "foreign.onnx")
    diagnosis = diagnose_accuracy(
        DeploymentSpec(onnx, imgsz=64, postprocessing=_low_conf()),
        DeploymentSpec(weights, imgsz=64, postprocessing=_low_conf()),
        list_images(tiny_dataset.data_yaml, "val"),
        labelled=tiny_dataset.data_yaml,
        reference_weights=weights,
    )
    assert diagnosis.ok, [(f.verdict.value, f.cause, f.title) for f in diagnosis.findings]
    run = next(f for f in diagnosis.findings if f.check == "run")
    assert run.evidence["reference"] > 0 and run.evidence["agreement"] >= 0.9  # boxes were compared, not none


def _low_conf():
    from workbench.core.models.detector import Postprocessing

    return Postprocessing(conf=0.001, max_det=50)  # a one-epoch model is unsure: keep boxes to compare


def test_pictures_show_reference_and_deployment_side_by_side(lab, tmp_path):
    import cv2

    diagnosis = FAULTS["stretch_not_letterbox"][0](lab).diagnose(out_dir=tmp_path)
    pictures = diagnosis.most_likely.pictures
    assert pictures and diagnosis.context["pictures"] == list(pictures)
    image = cv2.imread(pictures[0])
    assert image.shape[1] == 2 * 480 and image.shape[0] == 288


def test_an_image_that_does_not_decode_is_a_finding(lab, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    diagnosis = diagnose_accuracy(lab.spec(), lab.reference, [broken, *lab.production[:3]])
    assert diagnosis.most_likely.cause == "image_unreadable" and diagnosis.context["images"] == 3
    only_broken = diagnose_accuracy(lab.spec(), lab.reference, [broken])
    assert only_broken.most_likely.cause == "image_unreadable" and only_broken.most_likely.verdict is Verdict.CAUSE


def test_a_callable_that_raises_is_reported(lab):
    def detect(image):
        raise RuntimeError("model server said 500")

    diagnosis = diagnose_accuracy(detect, lab.reference, lab.production[:3])
    assert diagnosis.most_likely.cause == "deployment_raises"
    assert "model server said 500" in diagnosis.most_likely.title


@pytest.mark.parametrize("answer", [None, "boxes", np.zeros((2, 4)), [[0, 0, 1, 1, 0.9, 0]]])
def test_a_callable_that_returns_the_wrong_thing_is_reported(lab, answer):
    diagnosis = diagnose_accuracy(lambda image: answer, lab.reference, lab.production[:2])
    assert diagnosis.most_likely.cause == "wrong_output", diagnosis.most_likely
    assert "expected Detections" in diagnosis.most_likely.title


def test_a_callable_that_hangs_is_reported_not_waited_on(lab):
    release = threading.Event()

    def detect(image):
        release.wait(60)
        return Detections(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, int))

    start = time.perf_counter()
    try:
        diagnosis = diagnose_accuracy(detect, lab.reference, lab.production[:3], time_limit_s=0.5)
    finally:
        release.set()
    assert diagnosis.most_likely.cause == "deployment_hangs"
    assert time.perf_counter() - start < 20  # one call waited for, the rest skipped


def test_a_deployment_that_does_not_load_is_a_finding(lab, tmp_path):
    diagnosis = diagnose_accuracy(DeploymentSpec(tmp_path / "missing.onnx"), lab.reference, lab.production[:2])
    assert diagnosis.most_likely.cause == "deployment_does_not_load"


def test_a_bad_reference_is_the_callers_error(lab, tmp_path):
    with pytest.raises(ConfigError, match="reference"):
        diagnose_accuracy(lab.spec(), "model.onnx", lab.production[:2])
    with pytest.raises(ConfigError, match="reference does not load"):
        diagnose_accuracy(lab.spec(), DeploymentSpec(tmp_path / "missing.onnx"), lab.production[:2])


@pytest.mark.parametrize(
    ("shift", "expected"),
    [("dark", "dark"), ("bright", "bright"), ("blur", "blur"), ("noisy", "noisy"), ("bgr_swap", "bgr_swap")]
    + [("lowres", "lowres")],
)
def test_the_data_check_names_the_generators_shift(lab, tmp_path, shift, expected):
    import cv2

    from workbench.core.data.generate import apply_shift
    from workbench.core.doctor.accuracy.data import data_check
    from workbench.core.models.detector import open_detector

    def shifted(path):
        image = apply_shift(cv2.imread(str(path)).astype(np.float32), shift, 480)
        if shift == "lowres":
            image = cv2.resize(image, None, fx=0.4, fy=0.4, interpolation=cv2.INTER_AREA)
        out = tmp_path / path.name
        cv2.imwrite(str(out), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        return out

    paths = [shifted(p) for p in lab.training]  # the same scenes, one condition changed
    production = [cv2.imread(str(p)) for p in paths]
    reference = open_detector(lab.reference)
    finding = data_check(production, paths, list(lab.training), reference)
    assert finding.verdict is not Verdict.OK and finding.cause == f"data_drift_{expected}", finding.evidence
    same = data_check([cv2.imread(str(p)) for p in lab.production], list(lab.production), list(lab.training), reference)
    assert same.verdict is Verdict.OK, same.evidence


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"color": "bgr"}, "channels_swapped"),
        ({"scale": 1.0}, "no_scaling"),
        ({"scale": 1 / 255 / 255}, "double_scaling"),
        ({"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}, "normalization"),
        ({"resize": "stretch"}, "stretch_resize"),
        ({"pad_value": 0}, "pad_value"),
        ({"layout": "nhwc"}, "layout_nhwc"),
    ],
)
def test_the_tensor_check_names_the_correction(lab, changes, expected):
    import cv2

    from workbench.core.doctor.accuracy.tensors import match_tensor

    image = cv2.imread(str(lab.production[0]))
    tensor = prepare(image, 320, Preprocessing(**changes)).batch
    found = match_tensor(tensor, image, 320)
    assert found["explained"] and found["corrections"] == [expected], found
    assert match_tensor(prepare(image, 320).batch, image, 320)["equal"]


def test_run_accuracy_doctor_builds_both_from_cli_inputs(lab, tmp_path):
    from workbench.core.doctor.accuracy import describe_diagnosis, run_accuracy_doctor

    folder = tmp_path / "images"
    folder.mkdir()
    for path in lab.production[:4]:
        (folder / path.name).write_bytes(path.read_bytes())
    diagnosis = run_accuracy_doctor(lab.onnx, lab.data_yaml, folder, color="bgr", training_dir=lab.root / "training")
    assert diagnosis.most_likely.cause == "channels_swapped"
    assert "fix:" in describe_diagnosis(diagnosis)
    with pytest.raises(ConfigError, match="unknown option"):
        run_accuracy_doctor(lab.onnx, lab.data_yaml, folder, colour="bgr")
