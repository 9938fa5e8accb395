"""Pure plotly figures (functions returning go.Figure): latency vs accuracy with the Pareto front, latency
distributions, stages, artifact size, accuracy per class, training history.

Every latency figure shows the model's GFLOPs and the achieved GOP/s, so the distance to the machine's limit
is visible.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import numpy as np

from ..measure.stages import STAGES
from ..store.evaluation_sets import NOT_MEASURED
from .compare import best_within_budget, budget_latency_ms, meets_latency_budget, pareto_front


def _ops_text(row) -> str:
    gflops = row.get("gflops")
    if gflops is None or (isinstance(gflops, float) and np.isnan(gflops)):
        return ""
    return f"{gflops:.2f} GFLOPs/img, {row['gops_per_s']:.1f} GOP/s"


def _stability_text(row) -> str:
    """'(windows agreed within 4%)' or '(NOT stable: windows 18% apart)' for a latency row."""
    spread, stable = row.get("spread"), row.get("stable")
    if spread is None or (isinstance(spread, float) and np.isnan(spread)):
        return ""
    return f"(windows agreed within {spread:.0%})" if stable else f"(NOT stable: windows {spread:.0%} apart)"


def row_label(row) -> str:
    """Variant, runtime, precision and imgsz, with the model's GFLOPs and the achieved GOP/s."""
    ops = _ops_text(row)
    return f"{row['variant']} · {row['runtime']} {row['precision']} · {row['imgsz']}px" + (f" · {ops}" if ops else "")


def pareto_figure(table, title: str = "Latency vs accuracy", *, latency_budget_ms: float | None = None):
    """p50 latency (x, log) against mAP50-95 (y), one marker per row; the Pareto front joined by a line.

    Args:
        latency_budget_ms: a p99 budget (the advisor's requirements): drawn as a vertical line, the rows whose
            measured p99 meets it ringed, the most accurate of them named. None: no budget drawn.
    """
    import plotly.graph_objects as go

    ok = table[(table["status"] == "ok") & table["map50_95"].notna()].copy()
    fig = go.Figure()
    if "technique" not in ok:
        ok["technique"] = "baseline"
    for (technique, runtime, precision), group in ok.groupby(["technique", "runtime", "precision"], sort=False):
        fig.add_scatter(
            x=group["p50_ms"],
            y=group["map50_95"],
            mode="markers",
            name=f"{technique}: {runtime} {precision}",
            marker={"size": 11, "symbol": ["circle" if s == min(ok["imgsz"]) else "diamond" for s in group["imgsz"]]},
            customdata=np.stack(
                [
                    group["variant"],
                    group["imgsz"],
                    [_ops_text(r) for _, r in group.iterrows()],
                    group["map_imgsz"],
                    group["variant_id"],
                    [_stability_text(r) for _, r in group.iterrows()],
                ],
                axis=1,
            ),
            hovertemplate="%{customdata[0]}<br>latency at %{customdata[1]} px: p50 %{x:.2f} ms %{customdata[5]}"
            "<br>mAP50-95 %{y:.4f} at %{customdata[3]} px<br>%{customdata[2]}<extra>%{fullData.name}</extra>",
        )
    if len(ok):
        front = ok[pareto_front(ok["p50_ms"].to_numpy(), ok["map50_95"].to_numpy())].sort_values("p50_ms")
        fig.add_scatter(
            x=front["p50_ms"],
            y=front["map50_95"],
            mode="lines",
            name="Pareto front",
            line={"dash": "dot", "color": "#555"},
            hoverinfo="skip",
        )
    if latency_budget_ms is not None:
        _draw_latency_budget(fig, ok, latency_budget_ms)
    title += set_subtitle(table)
    peak = ok["machine_gemm_gflops"].dropna() if "machine_gemm_gflops" in ok else []
    if len(peak):
        title += f"<br><sup>for scale: this machine's fp32 matrix multiply reaches {peak.max():.0f} GFLOP/s</sup>"
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=460,
        xaxis={"title": "p50 latency per batch (ms, log scale)", "type": "log"},
        yaxis={"title": "mAP50-95"},
        legend={"title": "technique: runtime, precision"},
    )
    return fig


def set_subtitle(table) -> str:
    """'<br><sup>mAP50-95 on val · 200 images · 320 px · a1b2c3; not measured on this set: a, b</sup>' (empty for
    a table without set columns)."""
    if "evaluation_set" not in table or not len(table):
        return ""
    name = table["evaluation_set"].dropna()
    text = f"mAP50-95 on {name.iloc[0]}" if len(name) else "no accuracy measured yet"
    missing = table[table["map_note"] == NOT_MEASURED]["variant"].drop_duplicates().tolist()
    if missing:
        text += f"; {NOT_MEASURED}: {', '.join(map(str, missing))}"
    return f"<br><sup>{html.escape(text)}</sup>"


def _draw_latency_budget(fig, ok, latency_budget_ms: float) -> None:
    """The budget line, rings around the rows that meet it (p99), and the most accurate of them named."""
    fig.add_shape(
        type="line",
        yref="paper",
        y0=0,
        y1=1,
        x0=latency_budget_ms,
        x1=latency_budget_ms,
        line={"dash": "dash", "color": "#b3261e", "width": 1.5},
        label={"text": f"p99 budget {latency_budget_ms:g} ms", "textposition": "end"},
        name="latency budget",
    )
    meets = ok[meets_latency_budget(ok, latency_budget_ms)] if len(ok) else ok
    fig.add_scatter(
        x=meets["p50_ms"] if len(meets) else [],
        y=meets["map50_95"] if len(meets) else [],
        mode="markers",
        name=f"meets the p99 budget ({len(meets)} of {len(ok)})",
        marker={"size": 20, "symbol": "circle-open", "color": "#1b7a3a", "line": {"width": 2}},
        hoverinfo="skip",  # the ringed point below keeps its hover and click
    )
    best = best_within_budget(ok, latency_budget_ms) if len(ok) else None
    if best is not None:
        p99 = float(budget_latency_ms(ok.loc[[best.name]])[0])
        fig.add_scatter(
            x=[best["p50_ms"]],
            y=[best["map50_95"]],
            mode="text",
            text=[f"best within budget: {best['variant']} ({best['runtime']} {best['precision']}, p99 {p99:.1f} ms)"],
            textposition="top right",
            name="best within the budget",
            hoverinfo="skip",
        )


def latency_distribution_figure(measurements: list[dict], title: str = "Latency distributions"):
    """Box plots of the steady-state samples of each latency measurement (dicts with label and samples_ms)."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for m in measurements:
        fig.add_box(x=m["samples_ms"], name=m["label"], boxpoints="outliers", orientation="h")
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=max(300, 60 + 34 * len(measurements)),
        xaxis={"title": "latency (ms)"},
        showlegend=False,
        margin={"l": 320},
    )
    return fig


def stage_figure(table, title: str = "End-to-end time per image by stage"):
    """Stacked p50 bars of decode, preprocess, inference and postprocess for rows that have stages."""
    import plotly.graph_objects as go

    rows = table[table["stages"].map(lambda s: isinstance(s, dict) and bool(s))]
    labels = [row_label(r) for _, r in rows.iterrows()]
    fig = go.Figure()
    for stage in STAGES:
        fig.add_bar(
            y=labels,
            x=[r["stages"][stage]["p50_ms"] for _, r in rows.iterrows()],
            name=stage,
            orientation="h",
            hovertemplate="%{y}<br>" + stage + " %{x:.2f} ms<extra></extra>",
        )
    fig.update_layout(
        title=title,
        barmode="stack",
        template="plotly_white",
        height=max(300, 80 + 34 * len(labels)),
        xaxis={"title": "p50 per stage (ms)"},
        margin={"l": 320},
    )
    return fig


def size_figure(variants, title: str = "Artifact size"):
    """Horizontal bars of artifact size in MB per variant."""
    import plotly.graph_objects as go

    fig = go.Figure(
        go.Bar(
            y=variants["name"],
            x=variants["size_bytes"] / 2**20,
            orientation="h",
            hovertemplate="%{y}: %{x:.2f} MB<extra></extra>",
        )
    )
    fig.update_layout(
        title=title,
        template="plotly_white",
        height=max(260, 80 + 30 * len(variants)),
        xaxis={"title": "MB"},
        margin={"l": 320},
    )
    return fig


def per_class_figure(per_class: Sequence[dict], title: str = "Accuracy per class"):
    """Grouped bars of mAP50 and mAP50-95 for each class, with the instance count in the hover."""
    import plotly.graph_objects as go

    classes = [row["class"] for row in per_class]
    fig = go.Figure()
    for key, label in (("map50", "mAP50"), ("map50_95", "mAP50-95")):
        fig.add_bar(
            name=label,
            x=classes,
            y=[row[key] for row in per_class],
            customdata=[row["instances"] for row in per_class],
            hovertemplate="%{x}: %{y:.3f}<br>%{customdata} instances<extra>" + label + "</extra>",
        )
    fig.update_layout(
        title=title,
        barmode="group",
        yaxis={"range": [0, 1], "title": "average precision"},
        template="plotly_white",
        height=380,
        legend={"orientation": "h", "y": -0.15},
    )
    return fig


def history_figure(history: Sequence[dict], title: str = "Training history"):
    """Validation mAP and training losses per epoch."""
    from plotly.subplots import make_subplots

    epochs = [row["epoch"] for row in history]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation mAP", "training loss"))
    for key, label in (("metrics/mAP50(B)", "mAP50"), ("metrics/mAP50-95(B)", "mAP50-95")):
        fig.add_scatter(x=epochs, y=[row.get(key) for row in history], name=label, row=1, col=1)
    for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
        fig.add_scatter(x=epochs, y=[row.get(key) for row in history], name=key.split("/")[1], row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=360)
    fig.update_xaxes(title_text="epoch")
    return fig
