"""The troubleshooting panel and the service under it: the panel's controls become `diagnose_variant`'s arguments,
its findings, sentence and pictures are shown, errors read as problem and fix; `diagnose_variant` checks its inputs
before running anything, and on a real exported variant it names a planted fault and records it in the ledger."""

from __future__ import annotations

import pytest

from workbench.core.doctor.findings import Diagnosis, Finding, Verdict
from workbench.core.doctor.on_variant import check_request, diagnose_variant
from workbench.core.errors import ConfigError
from workbench.core.services.session import Session
from workbench.core.store.workspace import Workspace
from workbench.widgets import DoctorPanel, Workbench


def _file(content: bytes):
    return lambda path: path.write_bytes(content)


@pytest.fixture
def session(tmp_path):
    """A workspace with a source .pt, its ONNX export (dummy files: the doctor is faked) and a variant without one."""
    workspace = Workspace(tmp_path / "ws")
    source = workspace.add_artifact(_file(b"pt"), "model.pt", step="source", format="pytorch")
    workspace.add_artifact(_file(b"onnx"), "model.onnx", step="export", parent_id=source, format="onnx")
    workspace.ledger.add_variant("planned.onnx", step="export", parent_id=source, format="onnx")  # no artifact
    data = tmp_path / "data.yaml"
    data.write_text("path: .\ntrain: images\nval: images\nnames: [a]\n")
    return Session(workspace, model_id=source, data_yaml=data, imgsz=320)


def _picture(path):
    import cv2
    import numpy as np

    ok, encoded = cv2.imencode(".jpg", np.full((8, 16, 3), 200, np.uint8))
    path.write_bytes(encoded.tobytes())
    return str(path)


def _diagnosis(picture: str, variant_id: int) -> Diagnosis:
    findings = [
        Finding("environment", Verdict.OK, "runtime matches", fix="never shown"),
        Finding("stages", Verdict.SUSPECT, "preprocessing differs first", fix="look at preprocessing"),
        Finding(
            "preprocessing",
            Verdict.CAUSE,
            "BGR images are fed as RGB",
            fix="feed RGB",
            cause="channels_swapped",
            after={"agreement": 1.0},
            pictures=(picture,),
            strength=0.9,
        ),
    ]
    return Diagnosis.of("accuracy", findings, "model.onnx", {"variant_id": variant_id})


class FakeDiagnose:
    """diagnose_variant's stand-in: records the call, returns a diagnosis with a cause and measurement id 7."""

    def __init__(self, picture: str, error: Exception | None = None):
        self.picture, self.error, self.calls = picture, error, []

    def __call__(self, workspace, variant_id, **options):
        self.calls.append((variant_id, options))
        if self.error is not None:
            raise self.error
        return _diagnosis(self.picture, variant_id), 7


def _panel(session, tmp_path, **fake):
    diagnose = FakeDiagnose(_picture(tmp_path / "side-by-side.jpg"), **fake)
    return DoctorPanel(session, diagnose=diagnose, background=False), diagnose


def _ids(workspace):
    """The fixture's variants by what they are (the ledger adds a content hash to stored names)."""
    names = ("model.pt", "model.onnx", "planned.onnx")
    return dict(zip(names, (v.id for v in workspace.ledger.variants()[:3]), strict=True))


def test_the_picker_offers_only_variants_with_an_artifact(session, tmp_path):
    panel, _ = _panel(session, tmp_path)
    names = [label for label, _ in panel.variant.widget.options]
    assert len(names) == 2 and not any("planned" in n for n in names)
    assert panel.variant.value == _ids(session.workspace)["model.onnx"]  # the newest: the export
    added = session.workspace.add_artifact(_file(b"int8"), "model-int8.onnx", step="quantize", format="onnx")
    session.changed()
    assert added in [i for _, i in panel.variant.widget.options]


def test_accuracy_controls_become_the_call_arguments(session, tmp_path):
    panel, fake = _panel(session, tmp_path)
    onnx = _ids(session.workspace)["model.onnx"]
    panel.images.value = str(tmp_path / "production")
    panel.color.value, panel.scale.value, panel.conf.value = "bgr", 1.0, 0.5
    panel.run_button.click()
    assert panel.state == "done", panel.message.value
    variant_id, options = fake.calls[-1]
    assert variant_id == onnx
    assert options == {
        "doctor": "accuracy",
        "images_dir": str(tmp_path / "production"),
        "data": str(session.data_yaml),  # the session's data by default
        "overrides": {"color": "bgr", "scale": 1.0, "conf": 0.5},  # only what differs from the correct defaults
    }


def test_speed_controls_become_the_call_arguments(session, tmp_path):
    panel, fake = _panel(session, tmp_path)
    panel.doctor.value = "speed"
    assert panel.accuracy_box.layout.display == "none" and panel.speed_box.layout.display is None
    panel.budget.value, panel.data.value = 12.0, str(tmp_path / "other.yaml")
    panel.run_button.click()
    _, options = fake.calls[-1]
    assert options == {"doctor": "speed", "images_dir": None, "data": str(tmp_path / "other.yaml"), "budget_s": 12.0}


def test_findings_sentence_pictures_and_the_recorded_note(session, tmp_path):
    panel, fake = _panel(session, tmp_path)
    panel.run_button.click()
    assert panel.state == "done", panel.message.value
    assert "2 finding(s) to act on; recorded as measurement #7" in panel.status.value
    assert "Most likely cause: BGR images are fed as RGB. Fix: feed RGB." in panel.sentence.value
    table = panel.table.value
    ranked = [table.index(f"verdict-{v}") for v in ("cause", "suspect", "ok")]
    assert ranked == sorted(ranked)  # causes first, then suspects, then ok
    assert "feed RGB" in table and "agreement 1.000" in table and "never shown" not in table
    images = [w for w in panel.pictures.children if type(w).__name__ == "Image"]
    assert len(images) == 1 and images[0].value == (tmp_path / "side-by-side.jpg").read_bytes()
    assert "BGR images are fed as RGB" in panel.pictures.children[0].value
    onnx = _ids(session.workspace)["model.onnx"]
    assert f"measurement #7 (kind 'diagnosis') for variant #{onnx} " in panel.recorded.value


def test_a_config_error_is_problem_and_fix_not_a_traceback(session, tmp_path):
    error = ConfigError("/nowhere is not a folder", "pass the folder that holds the production images")
    panel, fake = _panel(session, tmp_path, error=error)
    panel.run_button.click()
    assert fake.calls and panel.state == "error"
    assert "<b>Problem:</b> /nowhere is not a folder" in panel.message.value
    assert "<b>Fix:</b> pass the folder that holds the production images" in panel.message.value
    assert "Traceback" not in panel.message.value and panel.sentence.value == ""


def test_without_an_artifact_nothing_runs(tmp_path):
    panel, fake = _panel(Session(Workspace(tmp_path / "empty")), tmp_path)
    panel.run_button.click()
    assert not fake.calls and panel.state == "error"
    assert "no variant with an artifact" in panel.message.value and "Export" in panel.message.value


def test_the_app_has_a_troubleshoot_tab_after_compare(session):
    app = Workbench(session=session, background=False)
    titles = list(app.tabs.titles)
    assert titles.index("Compare") == len(app.panels) and titles[len(app.panels) + 1] == "Troubleshoot"
    assert titles[:3] == ["Model & data", "Where to deploy", "Export"]
    assert isinstance(app.panel("Troubleshoot"), DoctorPanel) and app.panel("Troubleshoot") is app.doctor


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({"doctor": "taste"}, "unknown doctor 'taste'"),
        ({"doctor": "accuracy", "overrides": {"colour": "bgr"}}, "unknown override(s) colour"),
        ({"doctor": "accuracy", "overrides": {"resize": "crop"}}, "resize must be one of"),
        ({"doctor": "accuracy", "overrides": {"conf": 2.0}}, "conf must be between 0 and 1"),
        ({"doctor": "speed", "overrides": {"color": "bgr"}}, "takes no preprocessing"),
        ({"doctor": "speed", "budget_s": 0}, "budget_s must be a positive number"),
        ({"doctor": "accuracy", "variant_id": 99}, "no variant 99"),
        ({"doctor": "accuracy", "variant_id": "planned"}, "has no artifact"),
        ({"doctor": "accuracy", "images_dir": "/nowhere"}, "is not a folder"),
        ({"doctor": "accuracy", "data": None}, "no production images and no data YAML"),
    ],
)
def test_bad_input_is_refused_before_anything_runs(session, options, named):
    workspace = session.workspace
    options = {"data": session.data_yaml, **options}
    variant_id = options.pop("variant_id", _ids(workspace)["model.onnx"])
    variant_id = _ids(workspace)["planned.onnx"] if variant_id == "planned" else variant_id
    with pytest.raises(ConfigError, match=named.replace("(", r"\(").replace(")", r"\)")) as raised:
        diagnose_variant(workspace, variant_id, **options)
    assert raised.value.fix
    assert not workspace.ledger.measurements(kind="diagnosis")


def test_the_reference_and_the_data_come_from_the_ledger(session, tmp_path):
    workspace, ids = session.workspace, _ids(session.workspace)
    (tmp_path / "production").mkdir()
    (tmp_path / "production" / "a.png").write_bytes(b"png")
    workspace.ledger.add_measurement(
        ids["model.pt"], "accuracy", {"map50_95": 0.5}, {"data_yaml": str(session.data_yaml), "status": "ok"}
    )
    request = check_request(
        workspace, ids["model.onnx"], doctor="accuracy", images_dir=tmp_path / "production", data=None,
        reference=None, overrides={}, imgsz=None, out_dir=None,
    )  # fmt: skip
    assert request.reference == workspace.artifact_path(ids["model.pt"])  # the export's PyTorch parent
    assert request.data == session.data_yaml  # recorded with the parent's accuracy measurement
    assert request.out_dir.parent == workspace.reports / "diagnoses"
    assert [p.name for p in request.images] == ["a.png"]


def test_a_real_variant_is_diagnosed_and_the_diagnosis_recorded(tmp_path):
    """The demo model and its ONNX export at the lab's size (320), deployed with BGR fed as RGB, on 2 images."""
    from workbench.core.data.generate import ShapesConfig, generate_shapes
    from workbench.core.models.cards import demo_weights
    from workbench.core.models.export import ExportConfig, export

    workspace = Workspace(tmp_path / "ws")
    dataset = generate_shapes(workspace.datasets, ShapesConfig(seed=3, train=2, val=2, imgsz=320))
    source = workspace.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pytorch")
    onnx = export(workspace, source, ExportConfig(format="onnx", imgsz=320))
    diagnosis, measurement_id = diagnose_variant(
        workspace, onnx, doctor="accuracy", data=dataset.data_yaml, overrides={"color": "bgr"}
    )
    assert diagnosis.most_likely.cause == "channels_swapped", diagnosis.sentence()
    stored = workspace.ledger.measurement(measurement_id)
    assert (stored.kind, stored.variant_id) == ("diagnosis", onnx)
    assert stored.metrics["cause"] == "channels_swapped" and not stored.metrics["ok"]
    assert stored.metrics["findings"][0]["check"] == "preprocessing"
    assert stored.metrics["sentence"] == diagnosis.sentence()
    assert stored.context["reference"] == str(workspace.artifact_path(source))
    assert stored.context["overrides"] == {"color": "bgr"}
    pictures = diagnosis.most_likely.pictures
    assert pictures and all(str(workspace.reports) in p for p in pictures)


def test_an_inconclusive_speed_diagnosis_names_no_cause_and_says_so(session, tmp_path):
    unsure = Finding(
        "engine", Verdict.INCONCLUSIVE, "inconclusive, the machine was busy or unsteady: rounds 0.9x to 2.1x"
    )
    findings = [Finding("threads", Verdict.OK, "2 threads on 2 usable cores"), unsure]
    diagnosis = Diagnosis.of("speed", findings, "model.onnx")
    assert diagnosis.findings[0] is unsure and diagnosis.most_likely is None and diagnosis.ok
    panel = DoctorPanel(session, diagnose=lambda workspace, variant_id, **o: (diagnosis, 8), background=False)
    panel.run_button.click()
    assert panel.state == "done", panel.message.value
    assert "nothing found, 1 inconclusive (the machine was busy: run it again)" in panel.status.value
    assert "No speed cause named: engine: inconclusive" in panel.sentence.value
    assert "verdict-inconclusive" in panel.table.value and "#d9dde3" in panel.sentence.value
