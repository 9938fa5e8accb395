"""`Workbench`: every panel in tabs over one workspace, for JupyterLab and for Voila (`make app`)."""

from __future__ import annotations

from pathlib import Path

import ipywidgets as widgets

from ..core.services.session import Session
from .advisor import AdvisorPanel
from .dashboard import Dashboard
from .doctor import DoctorPanel
from .monitor import MonitorTab
from .optimize import DistillPanel, PipelinePanel, PrunePanel, QuantizePanel
from .panels import ExportPanel, MeasurePanel, ModelPanel
from .sweep import SweepPanel

TABLE_CSS = (
    "<style>.widget-html table{border-collapse:collapse;font-size:12px}.widget-html td,.widget-html th"
    "{border:1px solid #ddd;padding:2px 6px;text-align:left}</style>"
)


class Workbench:
    """The app: Model & data, Where to deploy, Export, Measure, Prune, Quantize, Distill, Pipeline, Sweep, Compare,
    Troubleshoot and Monitor tabs (the course's order: the doctors of chapters 07 and 08 come after the comparison,
    the live monitor of a running server last).

    The advisor's latency budget is drawn on the Compare tab's chart once its requirements are ranked.

    Args:
        workspace: the folder everything lands in (its ledger is shared with the CLI and notebooks).
        background: run steps in a background thread (False: in the caller's thread, for scripts and tests).
    """

    def __init__(self, workspace: Path | str | None = None, *, session: Session | None = None, background: bool = True):
        self.session = session or Session.open(workspace)
        self.advisor = AdvisorPanel(self.session, background=background)
        self.panels = [
            ModelPanel(self.session, background=background),
            self.advisor,
            ExportPanel(self.session, background=background),
            MeasurePanel(self.session, background=background),
            PrunePanel(self.session, background=background),
            QuantizePanel(self.session, background=background),
            DistillPanel(self.session, background=background),
            PipelinePanel(self.session, background=background),
            SweepPanel(self.session, background=background),
        ]
        self.dashboard = Dashboard(self.session, lazy=True)  # its figures are built when its tab is first shown
        self.advisor.on_budget(self.dashboard.set_latency_budget)
        self.doctor = DoctorPanel(self.session, background=background)
        self.monitor = MonitorTab(self.session.workspace.root)  # polls nothing until its Connect is clicked
        self.after = [self.doctor, self.monitor]  # the tabs after Compare (which stays at index len(self.panels))
        self.tabs = widgets.Tab(
            children=[p.widget for p in self.panels] + [self.dashboard.widget] + [p.widget for p in self.after],
            titles=[p.title for p in self.panels] + [self.dashboard.title] + [p.title for p in self.after],
        )
        self.tabs.observe(self._on_tab, names="selected_index")

    def _on_tab(self, change) -> None:
        # a plotly figure first drawn into a hidden tab stays empty in some front-ends (Voila): the dashboard
        # builds its figures when its tab is first shown, and refreshes them on every later visit
        if change["new"] == len(self.panels):
            self.dashboard.build()

    def panel(self, title: str):
        """The panel (or the dashboard) whose tab has this title."""
        every = [*self.panels, self.dashboard, *self.after]
        for item in every:
            if item.title == title:
                return item
        raise KeyError(f"no tab {title!r}; tabs: {[p.title for p in every]}")

    @property
    def widget(self) -> widgets.VBox:
        header = widgets.HTML(f"{TABLE_CSS}<div>workspace <code>{self.session.workspace.root}</code></div>")
        return widgets.VBox([header, self.tabs])

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)
