"""The advisor's panel, chart and tables, headless: the form builds Requirements, a bad value is a readable error,
a ranking (from an injected advise function) fills the table, the summary and the charts, and the Compare tab's
chart draws the chosen latency budget."""

from __future__ import annotations

import pytest

from workbench.core.advise.advisor import advise
from workbench.core.advise.catalog import Figure, Target
from workbench.core.advise.profile import ModelProfile
from workbench.core.advise.requirements import Requirements
from workbench.core.report.advice import (
    advice_figure,
    advice_table,
    catalog_rows,
    describe_changes,
    estimate_check_figure,
    estimate_check_text,
    ranking_changes,
)
from workbench.core.services.session import Session
from workbench.core.store.workspace import Workspace
from workbench.widgets import AdvisorPanel, Dashboard, Workbench

MODEL = ModelProfile("yolo11n", 640, 6.5, 2_590_620, 1_638_400, 52_000_000, variant_id=1, map50_95=0.85)


def _target(id, environment, *, fp32, price, power_w=None, memory_gb=8):
    unit = "USD/hour" if environment == "cloud" else "USD"
    return Target(
        id=id,
        name=f"{id} (a test target)",
        environment=environment,
        provider="test",
        device="cpu",
        peak={"fp32": Figure(float(fp32), "GFLOP/s", "test")},
        memory=Figure(float(memory_gb), "GB", "test"),
        power=None if power_w is None else Figure(float(power_w), "W", "test"),
        price=Figure(float(price), unit, "test"),
        price_date="2026-11",
        runtimes=("onnxruntime",),
    )


TARGETS = [
    _target("cloud-cpu", "cloud", fp32=4000, price=0.2),
    _target("edge-box", "edge", fp32=300, price=250, power_w=10, memory_gb=4),
    _target("server", "on_prem", fp32=2000, price=6000, power_w=300),
]
POOLED = Requirements(
    latency_p99_ms=500, fleet_size=50, mean_images_per_s=0.5, peak_images_per_s=1, monthly_budget_usd=1e6
)
CHECKS = [
    {"measurement_id": 1, "variant_id": 1, "runtime": "onnxruntime", "precision": "fp32", "imgsz": 320,
     "measured_p50_ms": 9.4, "estimated_p50_ms": 11.0, "error_pct": 17.0, "basis": "learned from 1 row on a CPU"},
    {"measurement_id": 2, "variant_id": 1, "runtime": "openvino", "precision": "bf16", "imgsz": 640,
     "measured_p50_ms": 13.4, "estimated_p50_ms": 10.1, "error_pct": -24.6, "basis": "prior"},
]  # fmt: skip


class FakeAdvise:
    """advise_workspace's stand-in: ranks the test targets for the test model, records what it was asked."""

    def __init__(self):
        self.calls = []

    def __call__(self, workspace, requirements):
        self.calls.append(requirements)
        return advise([MODEL], requirements, TARGETS)


@pytest.fixture
def session(tmp_path):
    return Session(Workspace(tmp_path / "ws"))


def _panel(session, checks=CHECKS, **kwargs):
    fake = FakeAdvise()
    panel = AdvisorPanel(session, advise=fake, checks=lambda workspace: list(checks), background=False, **kwargs)
    return panel, fake


def test_the_form_builds_requirements(session):
    panel, _ = _panel(session)
    assert panel.config() == Requirements()  # the form starts at the defaults
    panel.latency.value, panel.fleet_size.value, panel.connectivity.value = 30, 12, "intermittent"
    panel.images_may_leave.value, panel.power_envelope.value, panel.rank_by.value = False, 15, "latency"
    need = panel.config()
    assert (need.latency_p99_ms, need.fleet_size, need.connectivity.value) == (30, 12, "intermittent")
    assert (need.images_may_leave_site, need.power_envelope_w, need.rank_by) == (False, 15, "latency")
    panel.power_envelope.value = 0
    assert panel.config().power_envelope_w is None  # 0: no limit
    start = Requirements(network_rtt_ms=120, imgsz=320, uplink_mbps=5)
    seeded, _ = _panel(session, requirements=start)
    assert seeded.config() == start  # the fields the form does not show are kept


@pytest.mark.parametrize(
    "field, value, named",
    [("latency", 0, "latency_p99_ms"), ("peak_rate", 1, "peak_images_per_s"), ("imgsz", 30, "imgsz")],
)
def test_a_bad_value_shows_problem_and_fix_and_nothing_runs(session, field, value, named):
    panel, fake = _panel(session)
    getattr(panel, field).value = value
    panel.run_button.click()
    assert not fake.calls and panel.state == "error"
    assert named in panel.message.value and "Fix:" in panel.message.value
    assert "Traceback" not in panel.message.value


def test_ranking_fills_the_table_summary_and_charts(session):
    panel, fake = _panel(session)
    panel.set_requirements(POOLED)
    panel.images_may_leave.value = False
    assert panel.widget.children
    panel.run_button.click()
    assert panel.state == "done", panel.message.value
    assert fake.calls[0].images_may_leave_site is False
    assert "best:" in panel.status.value
    for name in ("cloud-cpu (a test target)", "edge-box (a test target)", "server (a test target)"):
        assert name in panel.table.value
    assert "images may not leave the site" in panel.table.value  # the cloud's reason
    assert panel.summary.value.count("Best: ") == 1
    chart = panel.chart_area.children[0]
    assert any("misses" in trace.name for trace in chart.data)
    assert "median absolute error 21% over 2 measured rows" in panel.check_text.value
    assert panel.check_area.children  # the cross-check chart
    assert panel.output.children[0] is panel.summary


def test_without_measured_rows_the_panel_says_what_to_run(session):
    panel, _ = _panel(session, checks=[])
    panel.run_button.click()
    assert panel.state == "done"
    assert "no measured rows yet: run the demo (chapter 00) first" in panel.check_text.value
    assert not panel.check_area.children


def _measured(session, variant_id, runtime, p50, p99, map50_95):
    ledger = session.workspace.ledger
    ledger.add_measurement(
        variant_id,
        "latency",
        {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p99, "runs": 20},
        {"runtime": runtime, "precision": "fp32", "imgsz": 320, "batch": 1, "status": "ok"},
    )
    ledger.add_measurement(
        variant_id, "accuracy", {"map50": 0.9, "map50_95": map50_95}, {"runtime": runtime, "precision": "fp32",
                                                                        "imgsz": 320, "status": "ok"}
    )  # fmt: skip


def test_the_app_hands_the_budget_to_the_dashboard(session):
    ledger = session.workspace.ledger
    model = ledger.add_variant("model.pt", step="source", format="pytorch")
    onnx = ledger.add_variant("model.onnx", step="export", parent_id=model, format="onnx")
    _measured(session, model, "pytorch", 30.0, 36.0, 0.85)
    _measured(session, onnx, "onnxruntime", 9.0, 12.0, 0.849)
    app = Workbench(session=session, background=False)
    assert app.panel("Where to deploy") is app.advisor
    app.advisor._advise, app.advisor._checks = FakeAdvise(), lambda workspace: []
    app.advisor.latency.value = 20
    app.advisor.run_button.click()
    assert app.advisor.state == "done", app.advisor.message.value
    assert app.dashboard.latency_budget_ms == 20
    assert "1 meet the p99 budget of 20 ms" in app.dashboard.summary.value
    assert "model.onnx" in app.dashboard.summary.value  # the most accurate within the budget
    app.tabs.selected_index = len(app.panels)  # the Compare tab: its chart is built now, with the budget
    names = [t.name for t in app.dashboard.figure.data]
    assert "meets the p99 budget (1 of 2)" in names and "best within the budget" in names
    assert app.dashboard.figure.layout.shapes[0].x0 == 20


def test_a_dashboard_without_a_budget_draws_none(session):
    model = session.workspace.ledger.add_variant("model.pt", step="source", format="pytorch")
    _measured(session, model, "pytorch", 30.0, 36.0, 0.85)
    dashboard = Dashboard(session)
    assert not dashboard.figure.layout.shapes and "budget" not in dashboard.summary.value
    dashboard.set_latency_budget(40)
    assert dashboard.figure.layout.shapes and "1 meet the p99 budget of 40 ms" in dashboard.summary.value
    dashboard.set_latency_budget(None)
    assert not dashboard.figure.layout.shapes


# -- the chart and tables -----------------------------------------------------------------------------------------


def test_advice_figure_marks_feasibility_the_best_and_both_budgets():
    need = Requirements(latency_p99_ms=500, fleet_size=50, mean_images_per_s=0.5, peak_images_per_s=1,
                        monthly_budget_usd=5000, images_may_leave_site=False)  # fmt: skip
    result = advise([MODEL], need, TARGETS)
    fig = advice_figure(result)
    by_name = {t.name: t for t in fig.data}
    hollow = by_name["cloud: misses the requirements"]
    assert hollow.marker.symbol == "circle-open" and "images may not leave the site" in hollow.customdata[0][7]
    best = next(t for t in fig.data if t.name.startswith("best: "))
    assert best.name == f"best: {result.best.target.id}" and best.text[0] == best.name
    assert fig.layout.xaxis.type == "log"
    labels = sorted(shape.label.text for shape in fig.layout.shapes)
    assert labels == [" monthly budget: $5,000", "latency budget: p99 500 ms"]
    assert len(advice_table(result)) == 3 and list(advice_table(result).index) == [1, 2, 3]


def test_estimate_check_figure_has_the_identity_line_and_the_errors():
    fig = estimate_check_figure(CHECKS)
    assert [t.name for t in fig.data] == ["onnxruntime fp32", "openvino bf16", "estimate = measurement"]
    assert list(fig.data[1].customdata[0][:2]) == [640, -24.6]
    assert estimate_check_text([]) == "no measured rows yet: run the demo (chapter 00) first"


def test_ranking_changes_say_which_targets_moved_and_why():
    before = advise([MODEL], POOLED, TARGETS)
    after = advise([MODEL], Requirements(**{**POOLED.__dict__, "connectivity": "offline"}), TARGETS)
    changes = ranking_changes(before, after)
    cloud = next(c for c in changes if c["target"] == "cloud-cpu")
    assert cloud["feasible_before"] and not cloud["feasible_after"]
    assert "a cloud service needs the network, which is offline" in cloud["now_misses"]
    text = describe_changes(changes)
    assert "cloud-cpu: rank 1 -> 3 (down), no longer meets them" in text
    assert describe_changes([]).startswith("nothing moved")


def test_catalog_rows_carry_peaks_prices_and_dates():
    row = catalog_rows(TARGETS)[1]
    assert row["environment"] == "edge" and row["peaks"] == "fp32 300 GFLOP/s"
    assert (row["price"], row["price_date"], row["power"]) == ("250 USD", "2026-11", "10 W")
