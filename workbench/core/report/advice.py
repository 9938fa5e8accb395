"""The advisor's charts and tables (pure plotly and pandas): estimated p99 latency against cost per month for every
ranked target, the estimator checked against this machine's measurements, the target catalog, and what moved
between two rankings.

These read an `Advice` (advise/advisor.py) through its public parts only: `rows()`, `requirements`, `best`.
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

ENVIRONMENT_COLOURS = {"cloud": "#1f77b4", "edge": "#2ca02c", "on_prem": "#d9730d"}
ENVIRONMENT_NAMES = {"cloud": "cloud", "edge": "edge", "on_prem": "on-premises"}
ADVICE_COLUMNS = [
    "rank",
    "name",
    "environment",
    "device",
    "model",
    "format",
    "runtime",
    "precision",
    "imgsz",
    "p99_ms",
    "network_ms",
    "memory_mb",
    "devices",
    "monthly_usd",
    "per_million_usd",
    "feasible",
    "reasons",
    "estimate_basis",
]
# The ranked targets where room is short (the advisor panel, `workbench advise`): what decides between them, without
# how each would run (runtime, input size) and what its estimate rests on.
BRIEF_ADVICE_COLUMNS = [c for c in ADVICE_COLUMNS if c not in ("runtime", "imgsz", "estimate_basis")]
WIDE_RANGE = 20.0  # a latency axis spanning more than this factor is drawn in log scale


def short_name(name: str) -> str:
    """A target's name without its parenthesised details: 'AWS EC2 c7i.xlarge (4 vCPU ...)' -> 'AWS EC2 c7i.xlarge'."""
    return name.split(" (")[0]


def _reasons_html(row: dict) -> str:
    if row["feasible"]:
        return "meets every requirement"
    return "misses: " + "".join(f"<br>• {reason}" for reason in row["reasons"].split("; "))


def _hover_data(row: dict) -> list:
    deploy = f"{row['model']} as {row['format']} {row['precision']} at {row['imgsz']} px on {row['runtime']}"
    return [
        row["rank"],
        row["name"],
        row["device"],
        deploy,
        row["devices"],
        row["network_ms"],
        row["per_million_usd"],
        _reasons_html(row),
        row["estimate_basis"],
        row["monthly_usd"],
    ]


HOVER = (
    "#%{customdata[0]} %{customdata[1]} (%{customdata[2]})<br>%{customdata[3]}"
    "<br>p99 about %{y:.1f} ms (network %{customdata[5]:.1f} ms)"
    "<br>$%{customdata[9]:,.0f} a month for %{customdata[4]} device(s), $%{customdata[6]:,.2f} per million images"
    "<br>%{customdata[7]}<br><i>estimate: %{customdata[8]}</i><extra>%{fullData.name}</extra>"
)


def _cost_floor(rows: list[dict]) -> float:
    """Where a free option (hardware already owned) sits on the log cost axis: a tenth of the cheapest paid one."""
    paid = [r["monthly_usd"] for r in rows if r["monthly_usd"] > 0]
    return min(paid) / 10 if paid else 1.0


def _wide(values: list[float]) -> bool:
    positive = [v for v in values if v and v > 0]
    return bool(positive) and max(positive) / min(positive) > WIDE_RANGE


def advice_figure(advice, title: str = "Where to deploy: estimated p99 latency against cost per month"):
    """One marker per ranked target: cost per month (x, log) against estimated p99 (y, log when the range is wide),
    coloured by environment, filled where the target meets the requirements and hollow (reasons in the hover)
    where it does not; the best one labelled; the latency budget and the monthly budget drawn as lines."""
    import plotly.graph_objects as go

    rows, need = advice.rows(), advice.requirements
    floor = _cost_floor(rows)
    fig = go.Figure()
    for environment, colour in ENVIRONMENT_COLOURS.items():
        for feasible in (True, False):
            group = [r for r in rows if r["environment"] == environment and bool(r["feasible"]) == feasible]
            if not group:
                continue
            fig.add_scatter(
                x=[max(r["monthly_usd"], floor) for r in group],
                y=[r["p99_ms"] for r in group],
                mode="markers",
                name=f"{ENVIRONMENT_NAMES[environment]}: {'meets' if feasible else 'misses'} the requirements",
                legendgroup=environment,
                marker={
                    "size": 13,
                    "color": colour,
                    "symbol": "circle" if feasible else "circle-open",
                    "line": {"width": 2, "color": colour},
                },
                customdata=[_hover_data(r) for r in group],
                hovertemplate=HOVER,
            )
    _label_best(fig, advice, floor)
    _budget_lines(fig, need)
    latencies = [r["p99_ms"] for r in rows] + [need.latency_p99_ms]
    costs = [max(r["monthly_usd"], floor) for r in rows] + [need.monthly_budget_usd or floor]
    log_y = _wide(latencies)
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=520,
        xaxis={
            "title": "estimated cost per month, whole fleet (USD, log scale)",
            "type": "log",
            "dtick": "D2",
            "range": _padded(costs, log=True),
        },
        yaxis={
            "title": "estimated p99 latency per image (ms" + (", log scale)" if log_y else ")"),
            "type": "log" if log_y else "linear",
            "dtick": "D2" if log_y else None,
            "range": _padded(latencies, log=log_y),
        },
        legend={"title": "environment"},
    )
    return fig


def _padded(values: list[float], *, log: bool) -> list[float]:
    """An axis range around `values` with room for the labels of the lines and markers at its ends (log10 units on
    a log axis, as plotly takes them)."""
    if log:
        positive = [v for v in values if v > 0] or [1.0]
        return [math.log10(min(positive) / 2), math.log10(max(positive) * 2.5)]
    return [0.0, max(values) * 1.25]


def _label_best(fig, advice, floor: float) -> None:
    if advice.best is None:
        fig.add_annotation(
            text="no target meets every requirement: the hover of each says what it misses",
            xref="paper",
            yref="paper",
            x=0.5,
            y=1.0,
            yanchor="bottom",
            showarrow=False,
        )
        return
    row = next(r for r in advice.rows() if r["rank"] == 1)
    fig.add_scatter(
        x=[max(row["monthly_usd"], floor)],
        y=[row["p99_ms"]],
        mode="markers+text",
        name=f"best: {short_name(row['name'])}",
        text=[f"best: {short_name(row['name'])}"],
        textposition="top right",
        marker={"size": 22, "symbol": "star", "color": "rgba(0,0,0,0)", "line": {"width": 2, "color": "#222"}},
        hoverinfo="skip",
    )


def _budget_lines(fig, need) -> None:
    """The latency budget (horizontal) and the monthly budget (vertical), each labelled on its line."""
    fig.add_shape(
        type="line",
        xref="paper",
        x0=0,
        x1=1,
        y0=need.latency_p99_ms,
        y1=need.latency_p99_ms,
        line={"dash": "dash", "color": "#b3261e", "width": 1.5},
        label={"text": f"latency budget: p99 {need.latency_p99_ms:g} ms", "textposition": "end"},
        name="latency budget",
    )
    if need.monthly_budget_usd > 0:  # a zero budget has no place on a log axis
        fig.add_shape(
            type="line",
            yref="paper",
            y0=0,
            y1=1,
            x0=need.monthly_budget_usd,
            x1=need.monthly_budget_usd,
            line={"dash": "dash", "color": "#6a3d9a", "width": 1.5},
            label={
                "text": f" monthly budget: ${need.monthly_budget_usd:,.0f}",
                "textposition": "end",
                "textangle": 0,
                "xanchor": "left",
                "yanchor": "top",
            },
            name="monthly budget",
        )


def estimate_check_figure(checks: list[dict], title: str = "Estimated against measured p50 on this machine"):
    """One marker per measured row: measured p50 (x) against the estimate made without that row (y), with the
    y = x line; the hover names the runtime, precision, imgsz, the error and what the estimate was based on."""
    import plotly.graph_objects as go

    fig = go.Figure()
    groups: dict[tuple, list[dict]] = {}
    for check in checks:
        groups.setdefault((check["runtime"], check["precision"]), []).append(check)
    for (runtime, precision), group in sorted(groups.items()):
        fig.add_scatter(
            x=[c["measured_p50_ms"] for c in group],
            y=[c["estimated_p50_ms"] for c in group],
            mode="markers",
            name=f"{runtime} {precision}",
            marker={"size": 11},
            customdata=[[c["imgsz"], c["error_pct"], c["basis"], c["variant_id"]] for c in group],
            hovertemplate="variant #%{customdata[3]} · %{fullData.name} · %{customdata[0]} px"
            "<br>measured p50 %{x:.2f} ms, estimated %{y:.2f} ms (%{customdata[1]:+.0f}%)"
            "<br>estimate: %{customdata[2]}<extra></extra>",
        )
    values = [v for c in checks for v in (c["measured_p50_ms"], c["estimated_p50_ms"]) if v > 0]
    log = _wide(values)
    if values:
        low, high = min(values) / 1.2, max(values) * 1.2
        fig.add_scatter(x=[low, high], y=[low, high], mode="lines", name="estimate = measurement", line={"dash": "dot"})
    scale = "log" if log else "linear"
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=440,
        xaxis={"title": f"measured p50 (ms{', log scale' if log else ''})", "type": scale},
        yaxis={"title": f"estimated p50 (ms{', log scale' if log else ''})", "type": scale},
        legend={"title": "runtime, precision"},
    )
    return fig


def estimate_checks(workspace: Workspace, *, leave_out: str = "size") -> list[dict]:
    """Every latency row of this machine in the workspace estimated from the others (see advise/estimate.py)."""
    from ..advise.estimate import cross_check, observations

    return cross_check(observations(workspace), leave_out=leave_out)


def estimate_check_text(checks: list[dict]) -> str:
    """'median absolute error 23% over 7 measured rows' or what to do without rows."""
    if not checks:
        return "no measured rows yet: run the demo (chapter 00) first"
    median = statistics.median(abs(c["error_pct"]) for c in checks)
    rows = f"{len(checks)} measured row{'s' * (len(checks) != 1)}"
    return f"median absolute error {median:.0f}% over {rows} (each estimated without its own variant at its size)"


def advice_table(advice, columns: list[str] | None = None):
    """The ranked options as a DataFrame (one row a target), `ADVICE_COLUMNS` unless `columns` are given."""
    import pandas as pd

    return pd.DataFrame(advice.rows(), columns=columns or ADVICE_COLUMNS).set_index("rank")


def _figure_text(figure) -> str:
    if figure is None:
        return ""
    value = f"{figure.value:,.4g}" if isinstance(figure.value, float) else str(figure.value)
    return f"{value} {figure.unit}"


def catalog_rows(targets) -> list[dict]:
    """One flat row a target: environment, device, peaks by precision, memory, power, price with its date, runtimes."""
    return [
        {
            "id": t.id,
            "name": short_name(t.name),
            "environment": ENVIRONMENT_NAMES.get(t.environment, t.environment),
            "device": t.device,
            "peaks": "; ".join(f"{p} {_figure_text(f)}" for p, f in t.peak.items()),
            "memory": _figure_text(t.memory),
            "power": _figure_text(t.power),
            "price": _figure_text(t.price),
            "price_date": t.price_date,
            "runtimes": ", ".join(t.runtimes),
        }
        for t in targets
    ]


def catalog_table(targets):
    """The target catalog as a DataFrame indexed by target id."""
    import pandas as pd

    return pd.DataFrame(catalog_rows(targets)).set_index("id")


def ranking_changes(before, after) -> list[dict]:
    """For every target whose rank, verdict or kinds of reason differ between two rankings: ranks, verdicts and
    the reasons it gained (`now_misses`) and lost (`no_longer_misses`)."""
    old = _standings(before)
    changes = []
    for target, (rank, feasible, name, misses) in _standings(after).items():
        if target not in old:
            continue
        rank_before, feasible_before, _, missed = old[target]
        gained = [text for kind, text in misses.items() if kind not in missed]
        lost = [text for kind, text in missed.items() if kind not in misses]
        if (rank_before, feasible_before) == (rank, feasible) and not (gained or lost):
            continue
        changes.append(
            {
                "target": target,
                "name": short_name(name),
                "rank_before": rank_before,
                "rank_after": rank,
                "feasible_before": feasible_before,
                "feasible_after": feasible,
                "now_misses": gained,
                "no_longer_misses": lost,
            }
        )
    return changes


def _standings(advice) -> dict[str, tuple]:
    """target id -> (rank, feasible, name, {kind of reason: its words})."""
    return {
        o.target.id: (rank, o.feasible, o.target.name, dict(zip(o.blockers, o.reasons, strict=True)))
        for rank, o in enumerate(advice.options, start=1)
    }


def describe_changes(changes: list[dict]) -> str:
    """The changes of `ranking_changes` in words, one target a line."""
    if not changes:
        return "nothing moved: every target keeps its rank, its verdict and its reasons"
    lines = []
    for c in changes:
        move = "up" if c["rank_after"] < c["rank_before"] else "down" if c["rank_after"] > c["rank_before"] else "stays"
        verdict = ""
        if c["feasible_before"] != c["feasible_after"]:
            verdict = ", now meets the requirements" if c["feasible_after"] else ", no longer meets them"
        why = [f"now misses: {r}" for r in c["now_misses"]] + [f"no longer misses: {r}" for r in c["no_longer_misses"]]
        moved = {"up": "targets above it fell behind", "down": "others moved ahead of it"}.get(move, "")
        because = f" ({'; '.join(why)})" if why else f" ({moved})" if moved else ""
        lines.append(f"{c['name']}: rank {c['rank_before']} -> {c['rank_after']} ({move}){verdict}{because}")
    return "\n".join(lines)
