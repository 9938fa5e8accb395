"""The dashboard's sweep area: one recorded sweep's trials as p50 latency against mAP50-95, its Pareto front joined.

It only reads the ledger through `workbench.core.sweep.recorded` and draws with `sweep_figure`; its figure widget
is built by `build()` (the dashboard's lazy build), its note and sweep choice on every `refresh()`.
"""

from __future__ import annotations

import html

import ipywidgets as widgets

from ...core.report.pareto import sweep_figure
from ...core.services.session import Session
from ...core.sweep.recorded import RecordedSweep, workspace_sweeps
from ..controls import WIDE, Hushable, replace_figure

NO_SWEEP = (
    "<i>No sweep yet: run one in the Sweep tab (or <code>workbench sweep SPEC</code>) and its trials show here, "
    "the Pareto front of mAP50-95 against p50 latency highlighted.</i>"
)


class SweepFrontArea(Hushable):
    """The sweeps in the ledger, one at a time (newest first): every finished trial, the front highlighted."""

    def __init__(self, session: Session):
        self.session = session
        self.pick = widgets.Dropdown(description="Sweep", options=[], style=WIDE, layout=widgets.Layout(width="480px"))
        self.note = widgets.HTML()
        self.figure = None
        self.figure_area = widgets.Box(layout=widgets.Layout(display="none"))
        self.sweeps: dict[str, RecordedSweep] = {}
        self._quiet = False  # set while the options are replaced: one redraw per refresh
        self.pick.observe(lambda _: self._quiet or self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HTML("<h4>Sweeps</h4>"), self.pick, self.note, self.figure_area])

    def build(self) -> None:
        """Create the figure widget (once) and draw the chosen sweep into it."""
        if self.figure is None:
            import plotly.graph_objects as go

            self.figure = go.FigureWidget()
            self.figure_area.children = (self.figure,)
        self.redraw()

    def refresh(self) -> None:
        """Re-read the ledger's sweeps; the chosen sweep stays chosen while it exists (else the newest)."""
        self.sweeps = workspace_sweeps(self.session.workspace)
        names = list(self.sweeps)
        keep = self.pick.value if self.pick.value in names else (names[0] if names else None)
        with self._hushed():
            self.pick.options, self.pick.value = names, keep
        self.redraw()

    @property
    def chosen(self) -> RecordedSweep | None:
        return self.sweeps.get(self.pick.value)

    def redraw(self) -> None:
        sweep = self.chosen
        self.pick.layout.display = None if sweep is not None else "none"
        self.figure_area.layout.display = None if sweep is not None and self.figure is not None else "none"
        if sweep is None:
            self.note.value = NO_SWEEP
            if self.figure is not None:
                replace_figure(self.figure, None)
            return
        self.note.value = _note(sweep)
        if self.figure is not None:
            title = f"Sweep {sweep.name}: mAP50-95 against p50 latency"
            title += f"<br><sup>mAP50-95 on {html.escape(sweep.evaluation_set)}</sup>" if sweep.evaluation_set else ""
            replace_figure(self.figure, sweep_figure(sweep.drawn, title=title))


def _note(sweep: RecordedSweep) -> str:
    failed = sum(1 for r in sweep.trials if not r["ok"])
    parts = [f"{len(sweep.trials)} trial(s)", f"{len(sweep.front)} on the front"]
    if failed:
        parts.append(f"{failed} failed")
    if sweep.passes:
        parts.append(f"{sweep.passes} early-stopping pass(es) not drawn")
    if sweep.other_set:
        parts.append(f"{sweep.other_set} measured on other images, not drawn")
    on = f" Every mAP50-95 drawn was measured on {html.escape(sweep.evaluation_set)}." if sweep.evaluation_set else ""
    return (
        f"<b>{html.escape(sweep.name)}</b>: {', '.join(parts)}.{on} The ledger keeps no constraints: this front is "
        "over every finished trial (the Sweep tab's front keeps only the feasible ones)."
    )
