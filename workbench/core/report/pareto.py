"""The sweep figure: every trial as its objective against p50 latency, the Pareto front highlighted and joined.

A pure function of plain rows (what `run_sweep` returns as `SweepResult.rows`): each row carries `number`,
`variant_id`, `params`, the metrics, `feasible` and `on_front`. Infeasible trials are grey; failed trials (no
values) are left out and counted in the title.
"""

from __future__ import annotations

from collections.abc import Sequence

LABELS = {"map50_95": "mAP50-95", "p50_ms": "p50 latency (ms)", "p99_ms": "p99 latency (ms)", "size_mb": "size (MB)"}
FRONT_COLOUR, FEASIBLE_COLOUR, INFEASIBLE_COLOUR = "#d62728", "#1f77b4", "#b0b0b0"


def sweep_figure(rows: Sequence[dict], objective: str = "map50_95", *, latency: str = "p50_ms", title: str = ""):
    """A scatter of `objective` (y) against `latency` (x, log) with the front's points joined in latency order.

    Args:
        rows: plain dicts; those without both values (failed trials) are counted, not drawn.
        objective: the metric on the y axis; when it is the latency itself, mAP50-95 goes on the y axis.
    """
    import plotly.graph_objects as go

    y_key = "map50_95" if objective == latency else objective
    drawn = [r for r in rows if _has(r, latency) and _has(r, y_key)]
    groups = (
        ("infeasible", [r for r in drawn if not r.get("feasible")], INFEASIBLE_COLOUR, 7),
        ("feasible", [r for r in drawn if r.get("feasible") and not r.get("on_front")], FEASIBLE_COLOUR, 9),
        ("Pareto front", sorted((r for r in drawn if r.get("on_front")), key=lambda r: r[latency]), FRONT_COLOUR, 12),
    )
    figure = go.Figure()
    for name, group, colour, size in groups:
        if not group:
            continue
        figure.add_trace(
            go.Scatter(
                x=[r[latency] for r in group],
                y=[r[y_key] for r in group],
                mode="lines+markers" if name == "Pareto front" else "markers",
                name=f"{name} ({len(group)})",
                marker={"color": colour, "size": size},
                line={"color": colour, "shape": "hv"} if name == "Pareto front" else None,
                text=[hover_text(r) for r in group],
                hovertemplate="%{text}<extra></extra>",
            )
        )
    failed = len(rows) - len(drawn)
    heading = title or f"Sweep: {LABELS.get(y_key, y_key)} against {LABELS.get(latency, latency)}"
    figure.update_layout(
        title=heading + (f" ({failed} trial(s) without values not drawn)" if failed else ""),
        xaxis={"title": LABELS.get(latency, latency), "type": "log"},
        yaxis={"title": LABELS.get(y_key, y_key)},
        legend={"orientation": "h"},
    )
    return figure


def hover_text(row: dict) -> str:
    """Variant id, trial and stage, the sampled params and the metrics, one per line."""
    lines = [f"variant {row.get('variant_id')} · trial {row.get('number')} ({row.get('stage', 'full')})"]
    lines += [f"{k} = {_shown(v)}" for k, v in (row.get("params") or {}).items()]
    lines += [f"{LABELS.get(k, k)}: {_shown(row[k])}" for k in LABELS if _has(row, k)]
    if not row.get("feasible"):
        lines.append("misses a constraint")
    return "<br>".join(lines)


def _has(row: dict, key: str) -> bool:
    value = row.get(key)
    return isinstance(value, (int, float)) and not isinstance(value, bool) and value == value


def _shown(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
