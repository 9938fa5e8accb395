"""The advisor panel: a deployment's requirements in, the catalog's targets ranked out (cloud, edge, on-premises),
with the reasons, the recommendation in words, the chart, and how well the estimates match this machine's
measurements."""

from __future__ import annotations

import html

import ipywidgets as widgets

from ..core.advise import advisor as advisor_core
from ..core.advise.requirements import RANK_BY, Connectivity, Requirements
from ..core.report.advice import (
    BRIEF_ADVICE_COLUMNS,
    advice_figure,
    estimate_check_figure,
    estimate_check_text,
    estimate_checks,
)
from ..core.report.tables import table_html
from ..core.services.session import Session
from .base import Panel
from .controls import WIDE, checkbox, dropdown, note

RANK_BY_LABELS = {"cost": "cost: the cheapest that meets them", "latency": "latency: the fastest that meets them"}


def number_box(description: str, value, *, whole: bool = False, tooltip: str = ""):
    """A box that takes any number (no clamping): the requirements check the value and say what is wrong."""
    kind = widgets.IntText if whole else widgets.FloatText
    return kind(value=value, description=description, style=WIDE, tooltip=tooltip)


class AdvisorPanel(Panel):
    """Rank the catalog's deployment targets for the workspace's models against a deployment's requirements.

    Args:
        advise: `advise_workspace(workspace, requirements) -> Advice` (injected: tests pass a fake).
        checks: `(workspace) -> list[dict]`, every measured row estimated from the others (`estimate_checks`).
        requirements: the form's starting values (default: `Requirements()`).
    """

    title = "Where to deploy"
    run_label = "Rank targets"

    def __init__(
        self,
        session: Session,
        *,
        advise=advisor_core.advise_workspace,
        checks=estimate_checks,
        requirements: Requirements | None = None,
        background: bool = True,
    ):
        super().__init__(background=background)
        self.session, self._advise, self._checks = session, advise, checks
        self._budget_listeners: list = []
        self.advice = None
        self.checks: list[dict] = []
        self.latency = number_box("p99 budget (ms)", 0.0, tooltip="end-to-end per image, network included")
        self.mean_rate = number_box("Mean images/s", 0.0, tooltip="per site, averaged over the day")
        self.peak_rate = number_box("Peak images/s", 0.0, tooltip="per site, the busiest minute: sizes the capacity")
        self.imgsz = number_box("imgsz", 0, whole=True, tooltip="the input size the model runs at")
        self.connectivity = dropdown("Connectivity", [c.value for c in Connectivity])
        self.images_may_leave = checkbox("Images may leave the site", True, "unticked: no cloud target qualifies")
        self.fleet_size = number_box("Sites (fleet size)", 1, whole=True, tooltip="cameras, stores or lines")
        self.monthly_budget = number_box("Monthly budget (USD)", 0.0, tooltip="the whole fleet, hardware amortised")
        self.power_envelope = number_box("Power envelope (W)", 0.0, tooltip="per device on a site; 0: no limit")
        self.rank_by = dropdown("Rank by", [(RANK_BY_LABELS[r], r) for r in RANK_BY])
        self.summary = widgets.HTML()
        self.table = widgets.HTML()
        self.chart_area = widgets.Box()
        self.check_text = widgets.HTML()
        self.check_area = widgets.Box()
        self.set_requirements(requirements or Requirements())

    def controls(self) -> list:
        return [
            note(
                "Cloud scales and is paid per use, but every image crosses the network and leaves the site; the "
                "edge is fast, private and works offline, with little compute per device; on-premises gives full "
                "control, and its upkeep is yours. Set what the deployment must meet, then rank the targets."
            ),
            widgets.HBox([widgets.VBox(self._left_column()), widgets.VBox(self._right_column())]),
        ]

    def _left_column(self) -> list:
        return [self.latency, self.mean_rate, self.peak_rate, self.imgsz, self.rank_by]

    def _right_column(self) -> list:
        return [self.connectivity, self.images_may_leave, self.fleet_size, self.monthly_budget, self.power_envelope]

    @property
    def widget(self) -> widgets.VBox:
        if not hasattr(self, "_widget"):
            super().widget  # noqa: B018 - builds the panel's frame
            self.output.children = (
                self.summary,
                self.table,
                self.chart_area,
                widgets.HTML("<h4 style='margin:8px 0 4px'>Estimates vs measurements on this machine</h4>"),
                self.check_text,
                self.check_area,
            )
        return self._widget

    def set_requirements(self, requirements: Requirements) -> None:
        """Put a Requirements' values into the form."""
        self.latency.value = requirements.latency_p99_ms
        self.mean_rate.value, self.peak_rate.value = requirements.mean_images_per_s, requirements.peak_images_per_s
        self.imgsz.value = requirements.imgsz
        self.connectivity.value = requirements.connectivity.value
        self.images_may_leave.value = requirements.images_may_leave_site
        self.fleet_size.value = requirements.fleet_size
        self.monthly_budget.value = requirements.monthly_budget_usd
        self.power_envelope.value = requirements.power_envelope_w or 0.0
        self.rank_by.value = requirements.rank_by
        self._rest = requirements  # the fields the form does not show (network, image size, amortisation, power price)

    def config(self) -> Requirements:
        """The form's values as Requirements (a bad value raises the ConfigError that names it and the fix)."""
        return Requirements(
            latency_p99_ms=self.latency.value,
            mean_images_per_s=self.mean_rate.value,
            peak_images_per_s=self.peak_rate.value,
            imgsz=self.imgsz.value,
            connectivity=self.connectivity.value,
            images_may_leave_site=self.images_may_leave.value,
            fleet_size=self.fleet_size.value,
            monthly_budget_usd=self.monthly_budget.value,
            power_envelope_w=self.power_envelope.value or None,
            network_rtt_ms=self._rest.network_rtt_ms,
            uplink_mbps=self._rest.uplink_mbps,
            image_kb=self._rest.image_kb,
            amortize_months=self._rest.amortize_months,
            electricity_usd_per_kwh=self._rest.electricity_usd_per_kwh,
            rank_by=self.rank_by.value,
        )

    def on_budget(self, callback) -> None:
        """Call `callback(latency_p99_ms)` with the budget of every ranking (the app hands it to the dashboard)."""
        self._budget_listeners.append(callback)

    def execute(self, config, progress):
        workspace = self.session.workspace
        return self._advise(workspace, config), self._checks(workspace)

    def describe(self, result) -> str:
        advice, _ = result
        best = advice.best
        ranked = f"ranked {len(advice.options)} targets"
        return f"{ranked}; best: {best.target.name}" if best else f"{ranked}; none meets every requirement"

    def show(self, result) -> None:
        import plotly.graph_objects as go

        self.advice, self.checks = result
        self.summary.value = f"<p style='max-width:900px'>{html.escape(self.advice.summary())}</p>"
        self.table.value = (
            f"<div style='max-height:360px;overflow:auto'>"
            f"{table_html(self.advice.rows(), BRIEF_ADVICE_COLUMNS, digits=2)}</div>"
        )
        self.chart_area.children = (go.FigureWidget(advice_figure(self.advice)),)
        self.check_text.value = html.escape(estimate_check_text(self.checks))
        self.check_area.children = (go.FigureWidget(estimate_check_figure(self.checks)),) if self.checks else ()
        for callback in self._budget_listeners:
            callback(self.advice.requirements.latency_p99_ms)
