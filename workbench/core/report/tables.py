"""Tables for reports, panels and the terminal: HTML and markdown from rows of dicts (one writer each)."""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

from ..store.evaluation_sets import NOT_MEASURED, choose_set, rows_on, workspace_sets

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


def cell_text(value, digits: int = 4) -> str:
    """How a value reads in a table: floats rounded, missing values (None, NaN) empty, never 'nan'."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if hasattr(value, "item") and not isinstance(value, (list, dict, str)):  # numpy scalars
        value = value.item()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table_html(rows: Sequence[dict], columns: Sequence[str] | None = None, *, digits: int = 4) -> str:
    """A plain HTML table; floats rounded to `digits`, missing values left empty."""
    if not rows:
        return "<p><em>nothing recorded</em></p>"
    columns = list(columns or rows[0].keys())

    def cell(value) -> str:
        return html.escape(cell_text(value, digits))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def markdown_table(
    rows: Sequence[dict],
    columns: Sequence[str] | None = None,
    *,
    digits: int | dict[str, int] = 3,
    headers: dict[str, str] | None = None,
) -> str:
    """A markdown table of `columns` (default: every key, in first-seen order); missing values left empty.

    `digits` rounds every float, or per column ({"p50_ms": 2}); `headers` renames columns in the header row.
    """
    columns = list(columns or dict.fromkeys(k for row in rows for k in row))
    places = digits if isinstance(digits, dict) else {}
    default = 3 if isinstance(digits, dict) else digits
    lines = ["| " + " | ".join((headers or {}).get(c, c) for c in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell_text(row.get(c), places.get(c, default)) for c in columns) + " |" for row in rows]
    return "\n".join(lines)


def pipeline_table(workspace: Workspace, result, evaluation_set=None) -> list[dict]:
    """One row per measured variant of a recipe run (the input first): step, variant, runtime, precision, GFLOPs,
    p50 at each imgsz, mAP50-95 with the imgsz it was measured at, and the evaluation set it was measured on.

    Every mAP is from one set: `evaluation_set` (None: the set with the most of these variants measured on it); a
    variant not measured there says so in `map_set` rather than show a mAP from other images.
    """
    produced = [("input", result.input_id)] + [(f"{s.index}:{s.kind}", v) for s in result.steps for v in s.variants]
    chosen = choose_set(workspace_sets(workspace, [v for _, v in produced]), evaluation_set)
    rows = []
    for step, variant_id in produced:
        measured = [m for m in workspace.ledger.measurements(variant_id=variant_id) if m.ok]
        accuracy = rows_on(measured, chosen)
        row = {
            "step": step,
            "variant_id": variant_id,
            "variant": workspace.variant(variant_id).name,
            "map50_95": accuracy[-1].metrics["map50_95"] if accuracy else None,
            "map_imgsz": accuracy[-1].context.get("imgsz") if accuracy else None,
            "map_set": chosen.name if accuracy else (NOT_MEASURED if chosen else None),
        }
        for m in (m for m in measured if m.kind == "latency"):
            row.update(
                runtime=m.context.get("runtime"), precision=m.context.get("precision"), gflops=m.metrics.get("gflops")
            )
            row[f"p50_ms_{m.context['imgsz']}"] = m.metrics["p50_ms"]
        rows.append(row)
    return rows
