"""Cancel through a panel, with the real core functions: the ledger and the artifacts stay as they were."""

from __future__ import annotations

import pytest

from workbench.core.models.cards import demo_weights
from workbench.core.models.export import ExportConfig, export
from workbench.core.optimize.prune import prune
from workbench.core.optimize.quantize import quantize
from workbench.core.services.session import Session, measure_variants
from workbench.core.store.workspace import Workspace
from workbench.widgets import MeasurePanel, PrunePanel, QuantizePanel

pytestmark = pytest.mark.slow


@pytest.fixture
def session(tmp_path, tiny_dataset):
    workspace = Workspace(tmp_path / "ws")
    model_id = workspace.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")
    return Session(workspace, model_id=model_id, data_yaml=tiny_dataset.data_yaml, imgsz=64)


def snapshot(workspace) -> tuple:
    return (
        len(workspace.ledger.variants()),
        len(workspace.ledger.measurements()),
        sorted(p.name for p in workspace.artifacts.iterdir()),
    )


def cancelling_at(panel, core, when):
    """Wrap `core` so that the panel's cancel is pressed when `when(event)` first holds."""

    def wrapped(*args, progress, **kwargs):
        def watch(event):
            if when(event):
                panel.cancel()
            progress(event)

        return core(*args, progress=watch, **kwargs)

    return wrapped


def test_cancelled_pruning_keeps_nothing(session):
    panel = PrunePanel(session, background=False)
    panel._prune = cancelling_at(panel, prune, lambda event: event.stage == "prune")
    panel.ratio.value, panel.measure_after.value = 0.3, False
    before = snapshot(session.workspace)
    panel.run_button.click()
    assert panel.state == "cancelled", panel.message.value
    assert snapshot(session.workspace) == before


def test_cancelled_calibration_keeps_nothing(session):
    parent = export(session.workspace, session.model_id, ExportConfig(format="openvino", imgsz=64))
    session.changed()
    panel = QuantizePanel(session, background=False)
    panel._quantize = cancelling_at(panel, quantize, lambda event: event.stage == "calibrate" and event.done >= 2)
    panel.parent.widget.value = parent
    panel.imgsz.value, panel.calibration.value, panel.measure_after.value = 64, 8, False
    before = snapshot(session.workspace)
    panel.run_button.click()
    assert panel.state == "cancelled", panel.message.value
    assert snapshot(session.workspace) == before


def test_cancelled_measurement_removes_what_it_had_recorded(session):
    panel = MeasurePanel(session, background=False)
    panel._measure = cancelling_at(panel, measure_variants, lambda event: event.stage == "latency" and event.done == 1)
    panel.variants.widget.value = (session.model_id,)
    panel.accuracy.value, panel.imgsz.value, panel.seconds.value = True, 64, 0.1
    before = snapshot(session.workspace)
    panel.run_button.click()
    assert panel.state == "cancelled", panel.message.value
    assert snapshot(session.workspace) == before
