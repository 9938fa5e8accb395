"""How good the latency estimator is on this machine: every measured row of the bench estimated from the others."""

from __future__ import annotations

import statistics
from typing import TYPE_CHECKING

from ..advise.estimate import cross_check, learn, median_abs_error_pct, observations
from ..report.tables import markdown_table

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

METHOD = (
    "each latency row estimated from the bench's other rows (its own variant at its own size left out), from the "
    "model's GFLOPs and this CPU's peak at the row's precision and threads (cores x clock x operations per cycle), "
    "with an efficiency, overhead and tail fitted per runtime and precision; rows whose timing windows disagreed "
    "are left out"
)


def estimator_summary(workspace: Workspace) -> dict:
    """The estimator's errors on the workspace's rows of this machine, three ways, and what it learned.

    `median_abs_error_pct` leaves out the row's variant at its size; `..._unseen_variant` leaves out every row of
    its variant (a model never measured); `..._at_measure_time` is what was stored beside each row when it was
    measured, from the rows recorded before it (the first rows of a fresh workspace rest on priors).
    """
    rows = observations(workspace)
    by_size, by_variant = cross_check(rows, leave_out="size"), cross_check(rows, leave_out="variant")
    stored = [
        abs(m.metrics["estimate"]["error_pct"])
        for m in workspace.ledger.measurements(kind="latency")
        if m.ok and (m.metrics.get("estimate") or {}).get("error_pct") is not None
    ]
    learned = [
        {k: getattr(e, k) for k in ("runtime", "precision", "efficiency", "overhead_ms", "tail", "rows")}
        for e in learn(rows).values()
    ]
    return {
        "rows": len(rows),
        "median_abs_error_pct": median_abs_error_pct(by_size),
        "median_abs_error_pct_unseen_variant": median_abs_error_pct(by_variant),
        "median_abs_error_pct_at_measure_time": statistics.median(stored) if stored else None,
        "method": METHOD,
        "learned": learned,
        "checks": by_size,
    }


def estimator_markdown(summary: dict) -> str:
    """The bench's estimator section: the three errors, then every row's estimate beside its measurement."""

    def pct(value):
        return "n/a" if value is None else f"{value:.1f}%"

    lines = [
        "## Latency estimator on this machine",
        "",
        f"{summary['rows']} measured rows. Median absolute error: {pct(summary['median_abs_error_pct'])} "
        f"(the row's variant at its size left out); {pct(summary['median_abs_error_pct_unseen_variant'])} for a "
        f"variant never measured; {pct(summary['median_abs_error_pct_at_measure_time'])} as stored when each row "
        "was measured.",
        "",
        f"Method: {summary['method']}.",
        "",
    ]
    columns = ["variant_id", "runtime", "precision", "imgsz", "measured_p50_ms", "estimated_p50_ms", "error_pct"]
    digits = {"measured_p50_ms": 2, "estimated_p50_ms": 2, "error_pct": 1}
    return "\n".join(lines) + markdown_table(summary["checks"], columns, digits=digits)
