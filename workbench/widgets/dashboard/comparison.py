"""The comparison dashboard: latency vs mAP50-95 with the Pareto front, filters, details and diagnoses of a variant,
and the ledger's sweeps with their fronts.

It reads the ledger, so variants from the CLI, from notebooks and from earlier sessions appear too. Its plotly
figure widgets can be built lazily (`lazy=True`), when their tab is first shown: a plotly figure first drawn
into a hidden tab lays itself out at zero size and stays empty in some front-ends (Voila). The diagnoses area is
plain HTML: it is filled on every refresh, built or not.
"""

from __future__ import annotations

import html
import json
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ...core.measure.on_set import measure_on
from ...core.report.compare import (
    best_within_budget,
    comparison_table,
    filter_table,
    meets_latency_budget,
    variant_details,
)
from ...core.report.diagnoses import ROW_COLUMNS, diagnosis_html, diagnosis_rows
from ...core.report.figures import latency_distribution_figure, pareto_figure, row_label, stage_figure
from ...core.report.tables import table_html
from ...core.services.session import Session
from ...core.store.evaluation_sets import NOT_MEASURED
from ..controls import WIDE, Hushable, replace_figure
from .evaluation_set import EvaluationSetArea
from .sweep_front import SweepFrontArea

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

LEDGER_COLUMNS = ["id", "name", "step", "format", "parent_id", "size_bytes", "created_at"]


class Dashboard:
    """Interactive comparison of every measured variant of the session's workspace.

    Args:
        lazy: build the figure widgets only when `build()` is called (the app does so when the tab is shown).
        latency_budget_ms: a p99 budget to draw on the comparison (the advisor panel sets it with
            `set_latency_budget` when its requirements are ranked); None: none drawn.
    """

    title = "Compare"

    def __init__(
        self,
        session: Session,
        *,
        table=comparison_table,
        lazy: bool = False,
        latency_budget_ms: float | None = None,
        measure=measure_on,
        background: bool = True,
    ):
        self.session, self._table = session, table
        # which images the mAPs are from; its button measures the variants not measured on them (`measure`)
        self.sets = EvaluationSetArea(session, on_pick=self.reread, measure=measure, background=background)
        self.latency_budget_ms = latency_budget_ms
        self.runtime = widgets.SelectMultiple(description="Runtime", style=WIDE, rows=4)
        self.precision = widgets.SelectMultiple(description="Precision", style=WIDE, rows=4)
        self.imgsz = widgets.SelectMultiple(description="imgsz", style=WIDE, rows=4)
        self.refresh_button = widgets.Button(description="Refresh", icon="refresh")
        self.summary = widgets.HTML()
        self.details = widgets.HTML(
            "<i>Click a point to see its lineage and measurements.</i>", layout=widgets.Layout(width="420px")
        )
        self.ledger = widgets.HTML()
        self.diagnoses = DiagnosesArea(session)
        self.sweeps = SweepFrontArea(session)  # the ledger's sweeps: trials against latency, the front joined
        self.main_area = widgets.Box()  # holds the comparison figure once built
        self.extra_areas = widgets.HBox()  # the distribution and stage figures, each hidden while empty
        self.figure = self.distributions = self.stages = None
        self.extras: dict[int, widgets.Box] = {}
        self.table = None
        self.selected: int | None = None
        for control in (self.runtime, self.precision, self.imgsz):
            control.observe(lambda _: self.redraw(), names="value")
        self.refresh_button.on_click(lambda _: self.refresh())
        session.on_change(lambda _: self.refresh())
        self.refresh()
        if not lazy:
            self.build()

    @property
    def built(self) -> bool:
        return self.figure is not None

    def build(self) -> None:
        """Create the figure widgets with the current data in them (once; later calls only refresh)."""
        if self.built:
            self.refresh()
            return
        import plotly.graph_objects as go

        self.figure, self.distributions, self.stages = go.FigureWidget(), go.FigureWidget(), go.FigureWidget()
        self.extras = {id(f): widgets.Box([f]) for f in (self.distributions, self.stages)}
        self.main_area.children = (self.figure,)
        self.extra_areas.children = tuple(self.extras.values())
        self.sweeps.build()
        self.redraw()

    @property
    def widget(self) -> widgets.VBox:
        if not hasattr(self, "_widget"):
            filters = widgets.HBox([self.runtime, self.precision, self.imgsz, self.refresh_button])
            side = widgets.VBox([self.details], layout=widgets.Layout(max_height="460px", overflow="auto"))
            self._widget = widgets.VBox(
                [
                    widgets.HTML("<h3 style='margin:4px 0'>Compare variants</h3>"),
                    filters,
                    self.sets.widget,
                    self.summary,
                    widgets.HBox([self.main_area, side]),
                    self.extra_areas,
                    self.sweeps.widget,
                    self.diagnoses.widget,
                    widgets.HTML("<h4>Ledger</h4>"),
                    self.ledger,
                ]
            )
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    def refresh(self) -> None:
        """Re-read the ledger; filter choices and the evaluation set keep what is still available."""
        self.sets.refresh()
        self.reread()
        self.ledger.value = _ledger_html(self.session.workspace)
        self.diagnoses.refresh()
        self.sweeps.refresh()

    def reread(self) -> None:
        """The comparison on the chosen evaluation set, the filters kept where their values still exist."""
        self.table = self._table(self.session.workspace, evaluation_set=self.sets.value)
        ok = self.table[self.table["status"] == "ok"] if len(self.table) else self.table
        for control, column in ((self.runtime, "runtime"), (self.precision, "precision"), (self.imgsz, "imgsz")):
            options = sorted({v for v in ok[column] if v is not None}) if len(ok) else []
            keep = tuple(v for v in control.value if v in options)
            control.options = options
            control.value = keep
        self.redraw()

    def set_latency_budget(self, latency_budget_ms: float | None) -> None:
        """Draw this p99 budget (ms) on the comparison, ring the rows that meet it, name the best; None: remove it."""
        self.latency_budget_ms = latency_budget_ms
        self.redraw()

    def filtered(self):
        if self.table is None or not len(self.table):
            return self.table
        return filter_table(
            self.table, runtimes=self.runtime.value, precisions=self.precision.value, imgsizes=self.imgsz.value
        )

    def redraw(self) -> None:
        rows = self.filtered()
        if rows is None or not len(rows):
            self.summary.value = (
                "<i>No latency measurements yet: export and measure a variant, or run <code>workbench demo</code>.</i>"
            )
            for figure in (self.figure, self.distributions, self.stages):
                self._show(figure, None)
            self.sets.show_missing([], [])
            return
        ok = rows[rows["status"] == "ok"]
        failed = len(rows) - len(ok)
        missing = ok[ok["map_note"] == NOT_MEASURED] if "map_note" in ok else ok.iloc[:0]
        self.sets.show_missing(missing["variant_id"], missing["variant"])
        self.summary.value = (
            f"{len(ok)} measured rows"
            + (f", {failed} failed (see the ledger)" if failed else "")
            + _budget_text(ok, self.latency_budget_ms)
            + f" · workspace <code>{html.escape(str(self.session.workspace.root))}</code>"
        )
        if not self.built:
            return
        replace_figure(self.figure, pareto_figure(rows, latency_budget_ms=self.latency_budget_ms))
        for trace in self.figure.data:
            if trace.customdata is not None:
                trace.on_click(self.on_click)
        with_samples = [
            {"label": row_label(r), "samples_ms": r["samples_ms"]}
            for _, r in ok.iterrows()
            if isinstance(r["samples_ms"], list) and r["samples_ms"]
        ]
        self._show(self.distributions, latency_distribution_figure(with_samples) if with_samples else None)
        has_stages = ok["stages"].map(lambda s: isinstance(s, dict) and bool(s))
        self._show(self.stages, stage_figure(ok[has_stages]) if has_stages.any() else None)

    def _show(self, target, source) -> None:
        if target is None:
            return
        replace_figure(target, source)
        if id(target) in self.extras:
            self.extras[id(target)].layout.display = "none" if source is None else None

    def on_click(self, trace, points, selector=None) -> None:
        """Plotly's click callback: show the clicked variant's lineage and measurements."""
        if points.point_inds:
            self.select(int(trace.customdata[points.point_inds[0]][4]))

    def select(self, variant_id: int) -> None:
        self.selected = variant_id
        self.details.value = details_html(variant_details(self.session.workspace, variant_id))
        self.diagnoses.show_variant(variant_id)


class DiagnosesArea(Hushable):
    """The doctor's recorded diagnoses: a row per run, of every variant or of one, and the findings of the one picked.

    It only reads the ledger through `workbench.core.report.diagnoses`; `refresh()` picks up new records.
    """

    def __init__(self, session: Session):
        self.session = session
        self.variant = widgets.Dropdown(description="Variant", options=[("all variants", None)], style=WIDE)
        self.pick = widgets.Dropdown(
            description="Diagnosis", options=[], style=WIDE, layout=widgets.Layout(width="50%")
        )
        self.rows_html, self.findings = widgets.HTML(), widgets.HTML()
        self.rows: list[dict] = []  # every recorded diagnosis, newest first
        self._quiet = False  # set while options are replaced: one redraw per refresh, not one per trait change
        self.variant.observe(lambda _: self._quiet or self.show_rows(), names="value")
        self.pick.observe(lambda _: self._quiet or self.show_findings(), names="value")
        self.widget = widgets.VBox(
            [widgets.HTML("<h4>Diagnoses</h4>"), widgets.HBox([self.variant, self.pick]), self.rows_html, self.findings]
        )

    def refresh(self) -> None:
        """Re-read the diagnoses; the chosen variant and diagnosis stay chosen while they still exist."""
        self.rows = diagnosis_rows(self.session.workspace)
        variants = {r["variant_id"]: f"#{r['variant_id']} {r['variant']}" for r in self.rows}
        options = [("all variants", None)] + sorted(((label, i) for i, label in variants.items()), key=lambda o: o[1])
        keep = self.variant.value if self.variant.value in variants else None
        with self._hushed():
            self.variant.options, self.variant.value = options, keep
        self.show_rows()

    def show_variant(self, variant_id: int) -> None:
        """Show the diagnoses of `variant_id` (all, when it has none)."""
        self.variant.value = variant_id if any(r["variant_id"] == variant_id for r in self.rows) else None

    def shown(self) -> list[dict]:
        chosen = self.variant.value
        return [r for r in self.rows if chosen is None or r["variant_id"] == chosen]

    def show_rows(self) -> None:
        rows = self.shown()
        if not self.rows:
            self.rows_html.value = "<i>No diagnoses recorded yet: run the accuracy or speed doctor on a variant.</i>"
        else:
            self.rows_html.value = f"<div style='max-height:220px;overflow:auto'>{table_html(rows, ROW_COLUMNS)}</div>"
        options = [(f"#{r['id']} {r['kind']} · {r['variant']} · {r['when']}", r["id"]) for r in rows]
        keep = self.pick.value if self.pick.value in {r["id"] for r in rows} else (rows[0]["id"] if rows else None)
        with self._hushed():
            self.pick.options, self.pick.value = options, keep
        self.show_findings()

    def show_findings(self) -> None:
        """The picked diagnosis: its sentence, ranked findings and the top finding's pictures."""
        if self.pick.value is None:
            self.findings.value = ""
            return
        workspace = self.session.workspace
        self.findings.value = diagnosis_html(workspace, workspace.ledger.measurement(self.pick.value))


def _budget_text(ok, latency_budget_ms: float | None) -> str:
    """' · 3 meet the p99 budget of 20 ms; the most accurate: ...' (empty without a budget)."""
    if latency_budget_ms is None:
        return ""
    meets = int(meets_latency_budget(ok, latency_budget_ms).sum()) if len(ok) else 0
    best = best_within_budget(ok, latency_budget_ms) if len(ok) else None
    text = f" · {meets} meet the p99 budget of {latency_budget_ms:g} ms"
    if best is None:
        return text + " (none with a measured mAP50-95)" if meets else text
    return text + (
        f"; the most accurate: <b>{html.escape(str(best['variant']))}</b> {html.escape(str(best['runtime']))} "
        f"{html.escape(str(best['precision']))} at {best['imgsz']} px (mAP50-95 {best['map50_95']:.4f})"
    )


def details_html(details: dict) -> str:
    """Lineage as a chain of steps with their parameters, then one line per measurement."""
    steps = []
    for v in details["lineage"]:
        params = {k: v for k, v in (v["params"] or {}).items() if not isinstance(v, dict | list)}
        steps.append(
            f"<li><b>{html.escape(v['step'])}</b> #{v['id']} {html.escape(v['name'])}"
            f"<br><small>{html.escape(json.dumps(params, default=str)[:400])}</small></li>"
        )
    lines = []
    for m in details["measurements"]:
        ctx, met = m["context"], m["metrics"]
        if m["kind"] == "latency":
            text = f"p50 {met.get('p50_ms', float('nan')):.2f} ms at {ctx.get('imgsz')} px"
        elif m["kind"] == "accuracy":
            text = f"mAP50-95 {met.get('map50_95', float('nan')):.4f} at {ctx.get('imgsz')} px"
        elif m["kind"] == "diagnosis":
            lines.append(
                f"<li>{html.escape(str(met.get('kind', '')))} diagnosis: {html.escape(met.get('sentence', ''))}</li>"
            )
            continue
        else:
            text = f"verdict {met.get('verdict', '?')}"
        lines.append(
            f"<li>{m['kind']}: {text} ({html.escape(str(ctx.get('runtime', '')))} "
            f"{html.escape(str(ctx.get('precision', '')))})</li>"
        )
    return (
        f"<h4 style='margin:4px 0'>Variant #{details['variant_id']} · {html.escape(details['technique'])}</h4>"
        f"<b>Lineage</b><ol>{''.join(steps)}</ol><b>Measurements</b><ul>{''.join(lines)}</ul>"
    )


def _ledger_html(workspace: Workspace) -> str:
    rows = [v.as_dict() for v in workspace.ledger.variants(newest_first=True)]
    return f"<div style='max-height:260px;overflow:auto'>{table_html(rows, LEDGER_COLUMNS)}</div>"
