"""Recorded diagnoses read back: rows and findings, the report's Diagnoses section, the dashboard's Diagnoses area."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from workbench.core.doctor.findings import Diagnosis, Finding, Verdict
from workbench.core.report.diagnoses import (
    diagnoses_sections,
    diagnosis_html,
    diagnosis_rows,
    finding_rows,
    key_evidence,
    recorded_diagnoses,
)
from workbench.core.report.html import write_report
from workbench.core.report.sections import study_sections
from workbench.core.store.workspace import Workspace

HOSTILE = "channels are swapped in <script>alert(1)</script>.jpg"


@pytest.fixture
def picture(tmp_path):
    import cv2

    path = tmp_path / "pictures" / "doctor-val_0.jpg"
    path.parent.mkdir()
    cv2.imwrite(str(path), np.full((16, 32, 3), 200, np.uint8))
    return path


@pytest.fixture
def workspace(tmp_path):
    ws = Workspace(tmp_path / "ws")
    source = ws.ledger.add_variant("model.pt", step="source", format="pytorch")
    ws.ledger.add_variant("model.onnx", step="export", parent_id=source, format="onnx")
    return ws


def _accuracy(pictures=()) -> Diagnosis:
    cause = Finding(
        "preprocessing",
        Verdict.CAUSE,
        HOSTILE,
        "feed RGB",
        "channels_swapped",
        evidence={"agreement": 0.12, "reference_model": {"as_given": 0.1, "channels_reversed": 0.95}, "table": [1]},
        after={"agreement": 0.99},
        pictures=tuple(str(p) for p in pictures),
        strength=0.9,
    )
    suspect = Finding("data", Verdict.SUSPECT, "images are darker", "collect brighter images", "dark", strength=0.4)
    return Diagnosis.of("accuracy", [Finding("environment", Verdict.OK, "same libraries"), suspect, cause], "m.onnx")


def _speed() -> Diagnosis:
    return Diagnosis.of("speed", [Finding("warm-up", Verdict.OK, "warm"), Finding("threads", Verdict.OK, "2 threads")])


def _export_id(ws) -> int:
    return ws.ledger.variants(step="export")[0].id


def test_rows_count_verdicts_and_name_the_top_cause(workspace, picture):
    onnx = _export_id(workspace)
    first = _accuracy([picture]).record(workspace, onnx)
    second = _speed().record(workspace, onnx)
    rows = diagnosis_rows(workspace)
    assert [r["id"] for r in rows] == [second, first]  # newest first
    speed, accuracy = rows
    assert (accuracy["causes"], accuracy["suspects"], accuracy["oks"]) == (1, 1, 1)
    assert accuracy["variant"] == "model.onnx" and accuracy["kind"] == "accuracy" and accuracy["ok"] is False
    assert (accuracy["top_check"], accuracy["top_fix"], accuracy["after"]) == (
        "preprocessing",
        "feed RGB",
        "agreement 0.990",
    )
    assert accuracy["sentence"].startswith("Most likely cause: channels are swapped")
    assert speed["ok"] is True and speed["top_check"] is None and (speed["causes"], speed["oks"]) == (0, 2)
    assert diagnosis_rows(workspace, [onnx - 1]) == [] and len(diagnosis_rows(workspace, [onnx])) == 2
    findings = finding_rows(workspace.ledger.measurement(first))
    assert [(f["rank"], f["verdict"]) for f in findings] == [(1, "cause"), (2, "suspect"), (3, "ok")]
    assert findings[0]["evidence"] == {
        "agreement": 0.12,
        "reference_model.as_given": 0.1,
        "reference_model.channels_reversed": 0.95,
    }  # scalars only: the list is left out
    assert key_evidence({f"k{i}": i for i in range(20)}, limit=3) == {"k0": 0, "k1": 1, "k2": 2}


def test_the_report_shows_sentence_verdicts_and_the_picture_and_escapes_text(workspace, picture, tmp_path):
    onnx = _export_id(workspace)
    _accuracy([picture]).record(workspace, onnx)
    _speed().record(workspace, onnx)
    sections = study_sections(workspace)  # no latency measured: the comparison says so, the diagnoses still show
    assert [s.title for s in sections] == ["Comparison", "Diagnoses"]
    page = write_report(tmp_path / "r.html", "report", sections).read_text()
    assert "Most likely cause: channels are swapped" in page and "No speed problem found" in page
    assert all(f"verdict-{v}" in page for v in ("cause", "suspect", "ok"))
    assert "data:image/jpeg;base64," + base64.b64encode(picture.read_bytes()).decode() in page
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "reference_model.channels_reversed: 0.950" in page and "Variant #2 model.onnx" in page


def test_no_diagnoses_no_section(workspace):
    assert recorded_diagnoses(workspace) == [] and diagnoses_sections(workspace) == []
    assert "Diagnoses" not in [s.title for s in study_sections(workspace)]
    workspace.ledger.add_measurement(_export_id(workspace), "parity", {"verdict": "pass"})  # other kinds: still none
    assert diagnoses_sections(workspace) == []


def test_a_missing_or_foreign_picture_is_named_not_embedded(workspace, tmp_path):
    text = tmp_path / "secret.jpg"
    text.write_text("not a picture")
    measurement_id = _accuracy([tmp_path / "gone.jpg", text]).record(workspace, _export_id(workspace))
    body = diagnosis_html(workspace, workspace.ledger.measurement(measurement_id))
    assert "gone.jpg is missing" in body and "secret.jpg is not a JPEG or PNG image" in body
    assert "data:image" not in body and "not a picture" not in body
    (section,) = diagnoses_sections(workspace)
    assert "gone.jpg is missing" in section.body


def test_a_picture_relative_to_the_workspace_is_found(workspace, picture):
    relative = picture.rename(workspace.root / picture.name).relative_to(workspace.root)
    measurement_id = _accuracy([relative]).record(workspace, _export_id(workspace))
    assert "data:image/jpeg;base64," in diagnosis_html(workspace, workspace.ledger.measurement(measurement_id))


def test_the_dashboard_shows_a_variants_diagnoses_and_follows_new_ones(workspace, picture):
    from workbench.core.services.session import Session
    from workbench.widgets import Dashboard

    session = Session(workspace, model_id=workspace.ledger.variants(step="source")[0].id)
    source, onnx = session.model_id, _export_id(workspace)
    dashboard = Dashboard(session, lazy=True)
    area = dashboard.diagnoses
    assert "No diagnoses recorded yet" in area.rows_html.value and area.findings.value == ""
    cause = _accuracy([picture]).record(workspace, onnx)
    session.changed()  # as a panel does after a step
    assert "Most likely cause" in area.rows_html.value and area.pick.value == cause
    assert "verdict-cause" in area.findings.value and "data:image/jpeg;base64," in area.findings.value
    assert "&lt;script&gt;" in area.findings.value and "<script>" not in area.findings.value
    healthy = _speed().record(workspace, source)
    dashboard.refresh()
    assert area.pick.value == cause  # the picked diagnosis stays picked
    assert "No speed problem found" in area.rows_html.value and len(area.pick.options) == 2
    dashboard.select(source)  # a variant picked in the chart: its diagnoses only
    assert area.variant.value == source and [o[1] for o in area.pick.options] == [healthy]
    assert "No speed problem found" in area.findings.value and "Most likely cause" not in area.rows_html.value
    assert "speed diagnosis" in dashboard.details.value
    area.variant.value = None
    assert len(area.pick.options) == 2
    area.pick.value = cause
    assert "preprocessing" in area.findings.value
    assert not dashboard.built  # the diagnoses need no figure: the lazy dashboard stays unbuilt
