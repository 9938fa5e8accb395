"""Panels in plain pytest: set control values, click, assert on what the injected core function received."""

from __future__ import annotations

import threading

import pytest

from workbench.core.errors import Cancelled, ConfigError, WorkbenchError
from workbench.core.measure.plan import MeasurePlan
from workbench.core.models.cards import demo_weights
from workbench.core.models.export import ExportConfig
from workbench.core.optimize.distill import DistillConfig
from workbench.core.optimize.prune import PruneConfig
from workbench.core.optimize.qat import QATConfig
from workbench.core.optimize.quantize import QuantizeConfig
from workbench.core.optimize.recipes import Recipe
from workbench.core.optimize.sparsify import SparsifyConfig
from workbench.core.progress import emit
from workbench.core.services.session import ModelChoice, Session
from workbench.core.store.workspace import Workspace
from workbench.widgets import (
    DistillPanel,
    ExportPanel,
    MeasurePanel,
    ModelPanel,
    PipelinePanel,
    PrunePanel,
    QuantizePanel,
    Workbench,
)


@pytest.fixture
def session(tmp_path, tiny_dataset):
    workspace = Workspace(tmp_path / "ws")
    model_id = workspace.add_artifact(demo_weights(), "yolo11n-shapes.pt", step="source", format="pt")
    return Session(workspace, model_id=model_id, data_yaml=tiny_dataset.data_yaml, imgsz=320)


class Recorder:
    """A fake core function: records its calls, makes a child variant of the first id it is given."""

    def __init__(self, session, result=None):
        self.session, self.calls, self.result = session, [], result

    def __call__(self, *args, **kwargs):
        self.calls.append((args, kwargs))
        if self.result is not None:
            return self.result
        parent = next(a for a in args if isinstance(a, int))
        return self.session.workspace.ledger.add_variant(
            f"child-of-{parent}", step="fake", parent_id=parent, format="pytorch"
        )

    @property
    def config(self):
        return next(a for a in self.calls[-1][0] if hasattr(a, "__dataclass_fields__") and not isinstance(a, Session))


def test_model_panel_reads_controls_into_a_model_choice(session):
    fake = Recorder(session, result=7)
    panel = ModelPanel(session, open_model=fake, background=False)
    panel.model.value, panel.val_images.value, panel.train_images.value = "student", 12, 16
    panel.run_button.click()
    choice = fake.config
    assert isinstance(choice, ModelChoice)
    assert (choice.model, choice.data, choice.shapes.val, choice.shapes.train) == ("student", "demo", 12, 16)
    assert panel.state == "done" and "variant #7" in panel.status.value


def test_bad_data_path_is_a_readable_error_and_nothing_runs(session, tmp_path):
    fake = Recorder(session, result=1)
    panel = ModelPanel(session, open_model=fake, background=False)
    panel.data.value = str(tmp_path / "missing.yaml")
    panel.run_button.click()
    assert not fake.calls
    assert panel.state == "error"
    assert "does not exist" in panel.message.value and "Fix:" in panel.message.value
    assert "Traceback" not in panel.message.value


def test_export_panel_passes_parent_and_export_config(session):
    fake = Recorder(session)
    panel = ExportPanel(session, export=fake, background=False)
    assert panel.variant.value == session.model_id
    panel.format.value, panel.imgsz.value, panel.precision.value = "onnx", 320, "fp16"
    panel.run_button.click()
    (workspace, parent, config), _ = fake.calls[0]
    assert parent == session.model_id
    assert config == ExportConfig(format="onnx", imgsz=320, precision="fp16")
    assert panel.state == "done" and "child-of" in panel.status.value


def test_new_variants_appear_in_every_picker(session):
    app = Workbench(session=session, background=False)
    before = len(app.panel("Export").variant.widget.options)
    session.workspace.ledger.add_variant("pruned.pt", step="prune", parent_id=session.model_id, format="pytorch")
    session.changed()
    assert len(app.panel("Export").variant.widget.options) == before + 1
    assert len(app.panel("Distill").student.widget.options) == before + 1
    assert not app.dashboard.built  # plotly draws nothing into a hidden tab: the figures wait for theirs
    app.tabs.selected_index = len(app.panels)
    assert app.dashboard.built


def test_measure_panel_request_and_nothing_ticked(session):
    fake = Recorder(session, result=[1, 2])
    panel = MeasurePanel(session, measure=fake, background=False)
    panel.variants.widget.value = (session.model_id,)
    panel.parity.value, panel.threads.value, panel.imgsz.value = True, 2, 320
    panel.precision.value = None
    panel.run_button.click()
    args, _ = fake.calls[0]
    assert args[1] == [session.model_id]
    assert args[2] == MeasurePlan(parity=True, threads=2, imgsz=(320,), precisions=(None,), seconds=2.0, stage_images=8)
    panel.latency.value = panel.accuracy.value = panel.parity.value = False
    panel.run_button.click()
    assert panel.state == "error" and "measures nothing" in panel.message.value and len(fake.calls) == 1


def test_prune_panel_structured_unstructured_and_measurement(session):
    prune, sparsify, measure = Recorder(session), Recorder(session), Recorder(session, result=[])
    panel = PrunePanel(session, prune=prune, sparsify=sparsify, measure=measure, background=False)
    panel.ratio.value, panel.round_to.value, panel.steps.value = 0.5, 32, 2
    panel.run_button.click()
    assert prune.config == PruneConfig(ratio=0.5, round_to=32, steps=2)
    assert prune.calls[0][1]["data_yaml"] == session.data_yaml
    assert measure.calls and measure.calls[0][0][2] == MeasurePlan(imgsz=(320,), seconds=2.0)  # the model's size
    panel.mode.value, panel.measure_after.value = "unstructured", False
    panel.run_button.click()
    assert sparsify.config == SparsifyConfig(ratio=0.5)
    assert len(measure.calls) == 1


def test_prune_ratio_out_of_range_names_the_fix(session):
    panel = PrunePanel(session, prune=Recorder(session), background=False)
    panel.ratio.max = 1.0
    panel.ratio.value = 1.0
    panel.run_button.click()
    assert panel.state == "error" and "between 0 and 1" in panel.message.value and "ratio=0.3" in panel.message.value


def test_quantize_panel_three_methods(session):
    quantize, qat = Recorder(session), Recorder(session, result={"qat": 5, "openvino": 6})
    measure = Recorder(session, result=[])
    panel = QuantizePanel(session, quantize=quantize, qat=qat, measure=measure, background=False)
    panel.format.value, panel.calibration.value, panel.fast_bias.value = "onnx", 32, False
    panel.run_button.click()
    assert quantize.config == QuantizeConfig(
        format="onnx", imgsz=320, calibration_images=32, fast_bias_correction=False
    )  # imgsz: the session model's training size
    panel.format.value, panel.mode.value, panel.max_drop.value = "openvino", "accuracy-controlled", 0.01
    panel.run_button.click()
    assert quantize.config.max_drop == 0.01
    panel.mode.value, panel.epochs.value = "quantization-aware", 3
    panel.run_button.click()
    assert qat.config == QATConfig(epochs=3, calibration_images=32, export_imgsz=320, formats=("openvino",))
    assert [c[0][1] for c in measure.calls][-1] == 6  # the INT8 export is measured, not the fake-quant weights


def test_distill_panel_runs_baseline_and_refuses_self_teaching(session):
    distill, finetune = Recorder(session), Recorder(session)
    student = session.workspace.ledger.add_variant(
        "pruned.pt", step="prune", parent_id=session.model_id, format="pytorch"
    )
    session.changed()
    panel = DistillPanel(
        session, distill=distill, finetune=finetune, measure=Recorder(session, result=[]), background=False
    )
    panel.student.widget.value, panel.teacher.widget.value = student, session.model_id
    panel.epochs.value, panel.weight.value = 3, 1.5
    panel.run_button.click()
    args, _ = distill.calls[0]
    assert args[1:4] == (student, session.model_id, session.data_yaml)
    assert args[4] == DistillConfig(epochs=3, imgsz=320, weight=1.5, baseline=True)
    assert finetune.calls and panel.state == "done"
    panel.teacher.widget.value = student
    panel.run_button.click()
    assert panel.state == "error" and "same variant" in panel.message.value and len(distill.calls) == 1


def test_pipeline_panel_builds_checks_and_runs_a_recipe(session):
    class Result:
        steps, final_id = [], 1

    fake = Recorder(session, result=Result())
    panel = PipelinePanel(session, run_recipe=fake, background=False)
    panel.recipe.value = "demo-short"
    steps = len(Recipe.load("demo-short").steps)
    panel.add_step("export")
    assert len(panel.config().steps) == steps + 1
    panel.show = lambda result: None  # the fake result has no variants to tabulate
    panel.run_button.click()
    args, _ = fake.calls[0]
    assert isinstance(args[1], Recipe) and args[1].steps[-1].kind == "export" and args[2] == session.model_id
    panel.text.value = panel.text.value.replace("- export:", "- sharpen:")
    panel.run_button.click()
    assert panel.state == "error" and "sharpen" in panel.message.value and len(fake.calls) == 1
    panel.text.value = "steps: [unclosed"
    panel.run_button.click()
    assert "not valid YAML" in panel.message.value


def test_step_errors_are_problem_and_fix_never_a_traceback(session):
    def failing(*args, **kwargs):
        raise WorkbenchError("the teacher is of another family", "distill from a model with the same head")

    panel = ExportPanel(session, export=failing, background=False)
    panel.run_button.click()
    assert panel.state == "error" and not panel.run_button.disabled
    assert "another family" in panel.message.value and "same head" in panel.message.value

    def crashing(*args, **kwargs):
        raise KeyError("stride")

    panel = ExportPanel(session, export=crashing, background=False)
    panel.run_button.click()
    assert "KeyError" in panel.message.value and "Traceback" not in panel.message.value


def test_cancel_stops_a_background_step_at_its_next_progress_event(session):
    started, seen = threading.Event(), []

    def slow_export(workspace, parent_id, config, progress=None):
        started.set()
        try:
            for i in range(2000):
                emit(progress, "export", i, 2000, f"chunk {i}")
                threading.Event().wait(0.005)
        except Cancelled as exc:
            seen.append(exc)
            raise
        return parent_id

    panel = ExportPanel(session, export=slow_export)
    panel.run_button.click()
    assert started.wait(10) and panel.running and panel.run_button.disabled
    for _ in range(1000):
        if panel.progress.value > 0:
            break
        threading.Event().wait(0.01)
    panel.cancel_button.click()
    panel.wait(10)
    assert seen and panel.state == "cancelled" and "as it was" in panel.status.value
    assert 0 < panel.progress.value < 1 and not panel.run_button.disabled


PANELS = {
    ModelPanel: ("open_model",),
    ExportPanel: ("export",),
    MeasurePanel: ("measure",),
    PrunePanel: ("prune", "sparsify", "measure"),
    QuantizePanel: ("quantize", "qat", "measure"),
    DistillPanel: ("distill", "finetune", "measure"),
    PipelinePanel: ("run_recipe",),
}


@pytest.mark.parametrize("panel_class", list(PANELS), ids=lambda c: c.__name__)
def test_panel_contract(panel_class, session):
    """Every panel builds, shows its controls, runs on its defaults with fakes, and reports no error."""
    if panel_class is DistillPanel:  # needs two different models
        session.workspace.ledger.add_variant("student.pt", step="prune", parent_id=session.model_id, format="pytorch")

    class Result:
        steps, final_id = [], session.model_id

    results = {"measure": [], "run_recipe": Result(), "qat": {"qat": session.model_id}, "open_model": 1}
    fakes = {name: Recorder(session, result=results.get(name)) for name in PANELS[panel_class]}
    panel = panel_class(session, background=False, **fakes)
    if panel_class is PipelinePanel:
        panel.show = lambda result: None
    assert panel.widget.children and panel.title and panel.state == "idle"
    panel.run_button.click()
    assert panel.state == "done", panel.message.value
    assert panel.message.value == "" and panel.progress.value == 1.0
    assert any(f.calls for f in fakes.values())


def test_config_errors_are_config_errors():
    with pytest.raises(ConfigError, match="measures nothing"):
        MeasurePlan(latency=False, accuracy=False, parity=False)


def _measured(session, variant_id, runtime, precision, p50, map50_95):
    ledger = session.workspace.ledger
    ledger.add_measurement(
        variant_id,
        "latency",
        {"p50_ms": p50, "p90_ms": p50 * 1.1, "runs": 20, "samples_ms": [p50] * 20},
        {"runtime": runtime, "precision": precision, "imgsz": 320, "batch": 1, "status": "ok"},
    )
    ledger.add_measurement(
        variant_id,
        "accuracy",
        {"map50": 0.9, "map50_95": map50_95},
        {"runtime": runtime, "precision": precision, "imgsz": 320, "status": "ok"},
    )


def test_dashboard_filters_and_shows_the_clicked_variant(session):
    from plotly.callbacks import Points

    from workbench.widgets import Dashboard

    ledger = session.workspace.ledger
    pruned = ledger.add_variant(
        "pruned.pt", step="prune", parent_id=session.model_id, format="pytorch", params={"ratio": 0.3}
    )
    int8 = ledger.add_variant("pruned-int8.xml", step="quantize", parent_id=pruned, format="openvino")
    _measured(session, session.model_id, "pytorch", "fp32", 30.0, 0.85)
    _measured(session, pruned, "pytorch", "fp32", 20.0, 0.84)
    _measured(session, int8, "openvino", "int8+fp32", 4.0, 0.83)
    dashboard = Dashboard(session)
    names = [t.name for t in dashboard.figure.data]
    assert "prune+quantize: openvino int8+fp32" in names and "Pareto front" in names
    assert set(dashboard.runtime.options) == {"pytorch", "openvino"}
    assert dashboard.extras[id(dashboard.stages)].layout.display == "none"  # no stage breakdown measured
    dashboard.runtime.value = ("openvino",)
    points = [t for t in dashboard.figure.data if t.customdata is not None]
    assert len(points) == 1 and list(points[0].x) == [4.0]
    dashboard.on_click(points[0], Points(point_inds=[0], xs=[4.0], ys=[0.83], trace_name=points[0].name, trace_index=0))
    assert dashboard.selected == int8
    assert "prune+quantize" in dashboard.details.value and "ratio" in dashboard.details.value
    assert "pruned-int8.xml" in dashboard.ledger.value
    lazy = Dashboard(session, lazy=True)  # as the app builds it: no figure until its tab is shown
    assert not lazy.built and "measured rows" in lazy.summary.value
    lazy.build()
    assert lazy.built and "Pareto front" in [t.name for t in lazy.figure.data]
    dashboard.runtime.value = ()
    ledger.add_variant("later.onnx", step="export", parent_id=session.model_id, format="onnx")
    session.changed()  # a step elsewhere: the ledger table follows
    assert "later.onnx" in dashboard.ledger.value
