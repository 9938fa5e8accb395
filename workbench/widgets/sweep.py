"""The sweep panel: a shipped or own sweep spec, where its trials run, a live trials table, the front and the best."""

from __future__ import annotations

import html
import threading

import ipywidgets as widgets

from ..core.report.tables import table_html
from ..core.services import recipe_sweeps
from ..core.services.session import Session
from ..core.sweep import chosen
from ..core.sweep.chosen import FRONT_COLUMNS, TRIAL_COLUMNS, EngineChoice, SweepRequest
from .base import Panel
from .controls import WIDE, dropdown, int_box, note

ENGINES = [
    ("in this process, one trial at a time", "local"),
    ("Dask LocalCluster on this machine", "dask"),
    ("a running Dask scheduler", "scheduler"),
]


class SweepPanel(Panel):
    """A sweep over recipe options from the session's model (grid, random or Optuna), the Pareto front, the best.

    Args:
        run: `run_chosen_sweep(workspace, model_id, data_yaml, request, *, progress, cancel, on_engine, on_result)`
            (injected: tests pass a fake or wrap the real one).
    """

    title = "Sweep"
    run_label = "Run sweep"

    def __init__(self, session: Session, *, run=chosen.run_chosen_sweep, background: bool = True):
        super().__init__(background=background)
        self.session, self._run = session, run
        shipped = list(recipe_sweeps.shipped_sweeps())
        self.spec = dropdown("Shipped sweep", shipped, "small" if "small" in shipped else None)
        self.path = _text("Or your YAML", "the path of a sweep YAML (when given, it is run instead)")
        self.engine = dropdown("Run trials", ENGINES, "local")
        self.workers = int_box("Dask workers", 2, 1, 64, tooltip="the LocalCluster's worker processes")
        self.scheduler = _text("Scheduler address", "host:port or tcp://host:port, as `dask scheduler` prints it")
        self.model_line = widgets.HTML()
        self.dashboard, self.trials, self.front, self.best = (widgets.HTML() for _ in range(4))
        self.rows: list[dict] = []  # the live trials table, one row per finished trial
        self.engine_in_use = None  # the running sweep's engine (a Dask one is cancelled through it)
        self._rows_lock = threading.Lock()
        self.output.children = (self.dashboard, self.trials, self.front, self.best)
        self.engine.observe(lambda _: self._show_engine_options(), names="value")
        self._show_engine_options()
        self._follow_model(session)
        session.on_change(self._follow_model)

    def controls(self) -> list:
        return [
            note(
                "A sweep runs one recipe many times over a grid, random or Optuna search of its options, records "
                "every trial's final variant, and keeps the Pareto front of the objective against p50 latency. "
                "Every trial's recipe is checked against the model and data before the first one starts."
            ),
            self.model_line,
            self.spec,
            self.path,
            self.engine,
            self.workers,
            self.scheduler,
        ]

    def _show_engine_options(self) -> None:
        self.workers.layout.display = None if self.engine.value == "dask" else "none"
        self.scheduler.layout.display = None if self.engine.value == "scheduler" else "none"

    def _follow_model(self, session: Session) -> None:
        if session.model_id is None:
            self.model_line.value = "<i>No model yet: open one in the 'Model & data' tab; the sweep starts from it.</i>"
            return
        name = html.escape(session.workspace.variant(session.model_id).name)
        data = html.escape(str(session.data_yaml))
        self.model_line.value = f"Starts from the session's model <b>#{session.model_id} {name}</b>, data {data}"

    # -- the run ------------------------------------------------------------------------------------------
    def config(self) -> SweepRequest:
        space, path = recipe_sweeps.load_sweep(self.spec.value, self.path.value)
        choice = EngineChoice(self.engine.value, self.workers.value, self.scheduler.value)
        return SweepRequest(space, choice, str(path))

    def arguments(self) -> dict:
        model_id, data_yaml = self.session.require()
        return {"model_id": model_id, "data_yaml": data_yaml}

    def execute(self, request: SweepRequest, progress, model_id, data_yaml):
        with self._rows_lock:
            self.rows = []
        self.trials.value = self.front.value = self.best.value = self.dashboard.value = ""
        try:
            return self._run(
                self.session.workspace, model_id, data_yaml, request, progress=progress, cancel=self._cancel,
                on_engine=self._engine_started, on_result=self.add_trial,
            )  # fmt: skip
        finally:
            self.engine_in_use = None
            self.dashboard.value = ""
            self.session.changed()  # the finished trials' variants are in the ledger

    def cancel(self) -> None:
        """Stop the sweep: between trials, at a running trial's next progress step, and on a Dask cluster."""
        super().cancel()
        engine = self.engine_in_use
        if self._cancel.is_set() and engine is not None and hasattr(engine, "cancel"):
            engine.cancel()

    def _engine_started(self, engine) -> None:
        self.engine_in_use = engine
        self.dashboard.value = chosen.dashboard_html(engine)

    def add_trial(self, spec, result) -> None:
        """`run_sweep`'s on_result: one more row in the live trials table."""
        with self._rows_lock:
            self.rows.append(chosen.trial_row(spec, result))
            rows = list(self.rows)
        self.trials.value = f"<h4>Trials</h4>{table_html(rows, TRIAL_COLUMNS)}"

    # -- the result ---------------------------------------------------------------------------------------
    def outcome(self, result) -> str:
        return "cancelled" if result.cancelled else "done"

    def describe(self, result) -> str:
        text = (
            f"{len(result.results)} trial runs in {result.seconds:.0f} s, {len(result.failed)} failed, "
            f"{len(result.pareto)} on the Pareto front"
        )
        return f"cancelled after {text}; the finished trials stay in the ledger" if result.cancelled else text

    def show(self, result) -> None:
        space = result.space
        heading = (
            f"<h4>Pareto front</h4><div>{html.escape(space.metric)} {space.direction}imized against p50 latency, "
            "over the feasible finished trials</div>"
        )
        rows = chosen.front_rows(result)
        empty = "<p><i>no feasible finished trial: the front is empty</i></p>"
        self.front.value = heading + (table_html(rows, FRONT_COLUMNS) if rows else empty)
        self.best.value = f"<b>{html.escape(chosen.best_text(self.session.workspace, result))}</b>"


def _text(description: str, placeholder: str) -> widgets.Text:
    layout = widgets.Layout(width="640px")
    return widgets.Text(description=description, placeholder=placeholder, style=WIDE, layout=layout)
