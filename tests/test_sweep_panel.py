"""The Sweep panel and the dashboard's sweep chart: a tiny real sweep in process, bad specs refused before any work,
cancel (between trials, and through a Dask-like engine), and the ledger's sweeps as rows with their fronts."""

from __future__ import annotations

import functools
import html
import threading
import time

import pytest

from workbench.core.errors import ConfigError
from workbench.core.progress import emit
from workbench.core.services import recipe_sweeps
from workbench.core.services.recipe_sweeps import SearchSpace
from workbench.core.services.session import Session
from workbench.core.store.records import Measurement
from workbench.core.store.workspace import Workspace
from workbench.core.sweep.chosen import EngineChoice, SweepRequest, run_chosen_sweep
from workbench.core.sweep.recorded import recorded_sweeps
from workbench.core.sweep.trials import TRIAL_KIND, TrialResult
from workbench.widgets import Dashboard, SweepPanel, Workbench

WAIT_S = 180  # the longest any background run may take here (a few tiny trials on a busy 2-core machine)


def tiny_spec(tmp_path, sizes=(64, 96), name="tiny") -> str:
    """An ONNX export measured at each size: seconds a trial, as tests/test_sweep.py's CLI test."""
    spec = tmp_path / f"{name}.yaml"
    spec.write_text(
        f"name: {name}\nsteps:\n  - export: {{format: onnx}}\nsearch:\n  measure.imgsz: {list(sizes)}\n"
        f"objective: {{minimize: p50_ms}}\nmethod: grid\ntrials: {len(sizes)}\n"
        "measure: {seconds: 0.2, warmup_s: 0.05, min_runs: 3}\n"
    )
    return str(spec)


@pytest.fixture
def session(tmp_path, tiny_dataset):
    from workbench.core.models.sources import open_source, record_source

    workspace = Workspace(tmp_path / "ws")
    return Session(workspace, model_id=record_source(workspace, open_source("demo")), data_yaml=tiny_dataset.data_yaml)


def trial_records(session) -> list[Measurement]:
    return session.workspace.ledger.measurements(kind=TRIAL_KIND)


def wait_for(panel, timeout: float = WAIT_S) -> None:
    panel.wait(timeout)
    assert not panel.running, f"the sweep still runs after {timeout} s: {panel.status.value}"


# ---------------------------------------------------------------------------------------------------- a real sweep


def test_a_tiny_sweep_fills_the_trials_and_front_tables_and_the_dashboard(session, tmp_path):
    dashboard = Dashboard(session)  # built: its sweep figure exists, empty and hidden while no sweep is recorded
    area = dashboard.sweeps
    assert "No sweep yet" in area.note.value and not area.figure.data
    assert area.figure_area.layout.display == "none" and area.pick.layout.display == "none"
    panel = SweepPanel(session, background=False)
    panel.path.value = tiny_spec(tmp_path)
    panel.run_button.click()
    assert panel.state == "done", panel.message.value
    assert panel.progress.value == 1.0 and "2 trial runs" in panel.status.value and "0 failed" in panel.status.value
    assert [r["number"] for r in panel.rows] == [0, 1] and all(r["status"] == "ok" for r in panel.rows)
    assert all(r["p50_ms"] and r["map50_95"] and r["size_mb"] for r in panel.rows)
    assert "<h4>Trials</h4>" in panel.trials.value and panel.trials.value.count("<tr>") == 3  # header + 2 trials
    front = panel.result.pareto
    assert front and "Pareto front" in panel.front.value and panel.front.value.count("<tr>") == len(front) + 1
    assert "best feasible: trial" in panel.best.value and "source" in panel.best.value  # its lineage
    assert panel.dashboard.value == ""  # the local engine has no dashboard
    assert len(trial_records(session)) == 2
    # the run told the session, so the dashboard re-read the ledger: the sweep is drawn, its front highlighted
    assert list(area.pick.options) == ["tiny"] and area.figure_area.layout.display is None
    traces = {t.name.split(" (")[0]: t for t in area.figure.data}
    assert "Pareto front" in traces and len(traces["Pareto front"].x) == len(area.chosen.front)
    assert list(traces["Pareto front"].x) == sorted(traces["Pareto front"].x)
    assert traces["Pareto front"].line.shape == "hv" and "lines" in traces["Pareto front"].mode
    assert sum(len(t.x) for t in area.figure.data) == 2 and "2 trial(s)" in area.note.value


def test_cancel_after_the_first_trial_stops_the_sweep(session, tmp_path):
    panel = SweepPanel(session, background=True)
    panel.path.value = tiny_spec(tmp_path, sizes=(64, 96, 128), name="to-cancel")
    shown = panel.add_trial

    def first_then_cancel(spec, result):
        shown(spec, result)
        panel.cancel()  # the Cancel button, once the first trial's result is in

    panel.add_trial = first_then_cancel
    panel.run_button.click()
    wait_for(panel)
    assert panel.state == "cancelled", panel.message.value
    assert panel.result.cancelled and len(panel.result.results) == 1 < 3 and len(panel.rows) == 1
    assert "stay in the ledger" in panel.status.value and not panel.run_button.disabled
    assert len(trial_records(session)) == 1  # the finished trial is kept and shown
    assert panel.front.value.count("<tr>") == 2 and "best feasible: trial 0" in panel.best.value


def test_a_cancel_inside_a_running_trial_returns_the_finished_ones(session, tmp_path):
    from workbench.core.errors import Cancelled

    space, _ = recipe_sweeps.load_sweep(None, tiny_spec(tmp_path, sizes=(64, 96, 128), name="mid-trial"))
    finished, inner = [], []

    def progress(event):  # the second trial's first inner step (its export) is where the Cancel lands
        if finished and event.stage != "sweep":
            inner.append(event)
            raise Cancelled("cancelled", "")

    result = run_chosen_sweep(
        session.workspace, session.model_id, session.data_yaml, SweepRequest(space), progress=progress,
        on_result=lambda spec, r: finished.append(r),
    )  # fmt: skip
    assert inner and result.cancelled and [r.number for r in result.results] == [0]
    assert result.rows[0]["on_front"] and result.best["number"] == 0
    assert [m.context["trial"] for m in trial_records(session)] == [0]


# ---------------------------------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("path", "text", "named"),
    [
        ("missing.yaml", None, "missing.yaml does not exist"),
        ("bad.yaml", "name: x\nsteps: [prune]\nsearch: {prune.sparsity: [0.3]}\n", "prune has no option 'sparsity'"),
        ("broken.yaml", "name: [x\n", "is not valid YAML"),
    ],
)
def test_a_bad_spec_is_a_clear_error_and_writes_nothing(session, tmp_path, path, text, named):
    calls = []
    if text is not None:
        (tmp_path / path).write_text(text)
    panel = SweepPanel(session, run=lambda *a, **k: calls.append(a), background=False)
    panel.path.value = str(tmp_path / path)
    variants = len(session.workspace.ledger.variants())
    panel.run_button.click()
    message = html.unescape(panel.message.value)
    assert panel.state == "error" and named in message and "Fix:" in message
    assert "Traceback" not in message and not calls
    assert not trial_records(session) and len(session.workspace.ledger.variants()) == variants


def test_a_spec_that_fails_the_check_against_the_model_is_refused_before_the_engine_starts(session, tmp_path):
    started = []
    spec = tmp_path / "prune-after-export.yaml"  # parses; `space.check` finds the prune has no PyTorch model
    spec.write_text(
        "name: order\nsteps:\n  - export: {format: onnx}\n  - prune: {round_to: 16}\nsearch:\n"
        "  prune.ratio: [0.3]\nmethod: grid\ntrials: 1\n"
    )
    run = functools.partial(run_chosen_sweep, engine_factory=lambda choice: started.append(choice))
    panel = SweepPanel(session, run=run, background=False)
    panel.path.value = str(spec)
    variants = len(session.workspace.ledger.variants())
    panel.run_button.click()
    assert panel.state == "error", panel.status.value
    assert "step 2 (prune) needs a PyTorch model" in panel.message.value and "Fix:" in panel.message.value
    assert not started and not trial_records(session) and len(session.workspace.ledger.variants()) == variants


def test_engine_choices_are_checked_before_anything_runs(session, tmp_path):
    with pytest.raises(ConfigError, match="no Dask scheduler address"):
        EngineChoice("scheduler", scheduler=" ")
    with pytest.raises(ConfigError, match="is not a scheduler address"):
        EngineChoice("scheduler", scheduler="tcp://host:notaport")
    with pytest.raises(ConfigError, match="Dask workers must be"):
        EngineChoice("dask", workers=0)
    assert EngineChoice("scheduler", scheduler="10.0.0.5:8786").scheduler == "tcp://10.0.0.5:8786"
    targeted = SearchSpace.from_dict(
        {
            "name": "on-jetson",
            "steps": [{"export": {"format": "onnx"}}],
            "search": {"measure.imgsz": [64]},
            "constraints": {"p99_ms": {"max": 20, "target": "jetson-orin-nano-super-8gb"}},
            "trials": 1,
        }
    )
    with pytest.raises(ConfigError, match="in-process engine times this machine only"):
        SweepRequest(targeted, EngineChoice("local"))
    calls = []
    panel = SweepPanel(session, run=lambda *a, **k: calls.append(a), background=False)
    panel.engine.value = "scheduler"
    assert panel.scheduler.layout.display is None and panel.workers.layout.display == "none"
    panel.run_button.click()
    assert panel.state == "error" and "no Dask scheduler address" in panel.message.value and not calls
    assert set(recipe_sweeps.shipped_sweeps()) >= {"small", "search-student"} and panel.spec.value == "small"


# ---------------------------------------------------------------------------------------------------- a Dask engine


class FakeDask:
    """Looks like DaskEngine to the panel: a dashboard link, cancel() from another thread, close()."""

    parallelism = 2

    def __init__(self, link=None):
        self.dashboard_link, self.closed, self.cancelled = link, False, threading.Event()
        self.seen_dashboard = None

    def run(self, workspace, model_id, data_yaml, trials, *, progress=None):
        for done, spec in enumerate(trials):
            if self.cancelled.wait(0.3):
                break
            yield TrialResult(spec.number, spec.stage, None, (), {"map50_95": 0.5, "p50_ms": 1.0 + done}, "fake")
        emit(progress, "sweep", done, len(trials), "cancelled" if self.cancelled.is_set() else "done")

    def cancel(self):
        self.cancelled.set()

    def close(self):
        self.closed = True


@pytest.mark.parametrize("link", [None, "http://127.0.0.1:8787/status"])
def test_a_dask_sweep_shows_its_dashboard_is_cancelled_through_the_engine_and_closed(session, tmp_path, link):
    engine = FakeDask(link)
    panel = SweepPanel(
        session, run=functools.partial(run_chosen_sweep, engine_factory=lambda choice: engine), background=True
    )
    panel.path.value = tiny_spec(tmp_path, sizes=(64, 96, 128, 160, 192, 224), name="on-dask")
    panel.engine.value = "dask"
    assert panel.workers.layout.display is None and panel.scheduler.layout.display == "none"
    panel.run_button.click()
    deadline = time.monotonic() + 60
    while not panel.rows and time.monotonic() < deadline:  # the dashboard line is up while the engine runs
        engine.seen_dashboard = panel.dashboard.value
        time.sleep(0.02)
    if link is None:
        assert "not available: bokeh is not installed" in engine.seen_dashboard
    else:
        assert f'<a href="{link}"' in engine.seen_dashboard
    panel.cancel()
    wait_for(panel, 60)
    assert engine.cancelled.is_set() and engine.closed and panel.engine_in_use is None
    assert panel.state == "cancelled" and 1 <= len(panel.result.results) < 6, panel.message.value
    assert panel.dashboard.value == ""  # the cluster is gone with the run


def test_a_real_local_cluster_runs_shows_its_dashboard_line_cancels_and_closes(session, tmp_path):
    import importlib.util

    seen = {}

    def run(*args, on_engine, **kwargs):  # the real run; the test keeps the engine it starts
        return run_chosen_sweep(*args, on_engine=lambda e: (seen.setdefault("engine", e), on_engine(e)), **kwargs)

    panel = SweepPanel(session, run=run, background=True)
    panel.path.value = tiny_spec(tmp_path, sizes=(64, 96, 128), name="real-dask")
    panel.engine.value, panel.workers.value = "dask", 1
    shown = panel.add_trial

    def first_then_cancel(spec, result):
        shown(spec, result)
        seen.setdefault("dashboard", panel.dashboard.value)
        panel.cancel()

    panel.add_trial = first_then_cancel
    panel.run_button.click()
    wait_for(panel)
    assert panel.state == "cancelled", panel.message.value
    assert 1 <= len(panel.result.results) < 3 and len(trial_records(session)) == len(panel.result.results)
    if importlib.util.find_spec("bokeh") is None:
        assert "not available: bokeh is not installed" in seen["dashboard"]
    else:
        assert "<a href=" in seen["dashboard"]
    assert seen["engine"].client.status == "closed" and panel.dashboard.value == ""


# ---------------------------------------------------------------------------------------------------- the ledger


def record(id_, sweep, trial, map50_95, p50, stage="full", error=None) -> Measurement:
    metrics = {"params": {"prune.ratio": trial / 10}} if error else {"map50_95": map50_95, "p50_ms": p50, "params": {}}
    context = {"sweep": sweep, "trial": trial, "stage": stage, "status": "failed" if error else "ok", "error": error}
    return Measurement(id_, 100 + id_, TRIAL_KIND, metrics, context)


def test_recorded_sweeps_group_by_sweep_newest_first_and_mark_the_front():
    measurements = [
        record(1, "old", 0, 0.50, 10.0),
        record(2, "old", 1, 0.40, 12.0),  # slower and less accurate than trial 0: not on the front
        record(3, "new", 0, 0.30, 5.0, stage="short"),  # an early-stopping pass: counted, not drawn
        record(4, "new", 0, 0.60, 9.0),
        record(5, "new", 1, 0.55, 4.0),
        record(6, "new", 2, 0.0, 0.0, error="worker lost"),
        record(7, "new", 3, 0.55, 6.0),  # dominated by trial 1
        Measurement(8, 1, "latency", {"p50_ms": 1.0}, {}),  # not a sweep trial
    ]
    found = recorded_sweeps(reversed(measurements))
    assert list(found) == ["new", "old"]
    new, old = found["new"], found["old"]
    assert [r["number"] for r in new.trials] == [0, 1, 2, 3] and new.passes == 1
    assert [r["number"] for r in new.front] == [1, 0]  # in latency order, for the step line
    assert [r["on_front"] for r in new.trials] == [True, True, False, False]
    assert not new.trials[2]["ok"] and new.trials[2]["error"] == "worker lost"
    assert [r["number"] for r in old.front] == [0] and old.trials[0]["variant_id"] == 101
    assert recorded_sweeps([]) == {}


# ---------------------------------------------------------------------------------------------------- the app


def test_the_app_has_a_sweep_tab_between_pipeline_and_compare(tmp_path):
    app = Workbench(session=Session(Workspace(tmp_path / "ws")), background=False)
    titles = list(app.tabs.titles)
    assert titles.index("Sweep") == titles.index("Pipeline") + 1 == len(app.panels) - 1
    assert titles[len(app.panels)] == "Compare" and isinstance(app.panel("Sweep"), SweepPanel)
    assert "No model yet" in app.panel("Sweep").model_line.value
    app.panel("Sweep").run_button.click()
    assert app.panel("Sweep").state == "error" and "no model and dataset chosen" in app.panel("Sweep").message.value
    app.tabs.selected_index = len(app.panels)
    assert app.dashboard.built and "No sweep yet" in app.dashboard.sweeps.note.value
