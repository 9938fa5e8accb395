"""A model card in markdown: its sections as prose and tables, figures rounded (mAP to 4 decimals, milliseconds to 2),
each with its measurement's id and date; the deployment record writes its tables the same way.
"""

from __future__ import annotations

from collections.abc import Mapping

from .card_facts import NOT_MEASURED, NOT_RECORDED, data_text


def when(iso: str | None) -> str:
    """A ledger time as 'YYYY-MM-DD HH:MM:SS UTC'."""
    if not iso:
        return "unknown"
    return iso[:19].replace("T", " ") + (" UTC" if iso.endswith("+00:00") else "")


def cell(value, digits: int = 4) -> str:
    """A value for a markdown table cell: floats rounded, None as '-', pipes escaped."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    text = f"{value:.{digits}f}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def table(rows: list[dict], columns: list[tuple[str, str, int]]) -> list[str]:
    """Markdown table lines of `columns` (key, header, float digits)."""
    lines = ["| " + " | ".join(h for _, h, _ in columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(r.get(k), d) for k, _, d in columns) + " |" for r in rows]
    return lines


ACCURACY_COLUMNS = [
    ("map50_95", "mAP50-95", 4), ("map50", "mAP50", 4), ("precision", "P", 4), ("recall", "R", 4),
    ("images", "images", 0), ("instances", "instances", 0), ("split", "split", 0), ("imgsz", "imgsz", 0),
    ("runtime", "runtime", 0), ("compute_precision", "precision", 0), ("measurement_id", "#", 0),
    ("measured_at", "measured", 0),
]  # fmt: skip
LATENCY_COLUMNS = [
    ("p50_ms", "p50 ms", 2), ("p99_ms", "p99 ms", 2), ("runs", "runs", 0), ("runtime", "runtime", 0),
    ("precision", "precision", 0), ("threads", "threads", 0), ("batch", "batch", 0), ("imgsz", "imgsz", 0),
    ("cpu", "CPU", 0), ("cores", "cores", 0), ("measurement_id", "#", 0), ("measured_at", "measured", 0),
]  # fmt: skip
PARITY_COLUMNS = [
    ("verdict", "verdict", 0), ("match_rate", "match rate", 4), ("mean_iou", "mean IoU", 4),
    ("max_abs_diff", "max abs diff", 6), ("parent_id", "parent #", 0), ("parent_runtime", "parent runtime", 0),
    ("runtime", "runtime", 0), ("imgsz", "imgsz", 0), ("measurement_id", "#", 0), ("measured_at", "measured", 0),
]  # fmt: skip


def dated_rows(rows: list[dict]) -> list[dict]:
    return [{**r, "measured_at": when(r.get("measured_at"))} for r in rows]


def card_markdown(card) -> str:
    """A `ModelCard` as markdown."""
    d, use, m, ev = card.details, card.intended_use, card.metrics, card.evaluation
    names = d["classes"]
    size = f"{d['size_bytes']} bytes ({d['size_bytes'] / 1e6:.2f} MB)" if d["size_bytes"] is not None else "-"
    lines = [
        f"# Model card: {d['name']} (variant #{d['id']})",
        "",
        f"_Generated {when(card.generated_at)} from the ledger of `{card.workspace}`. Every figure is a ledger "
        "measurement (its # and date given); mAP is rounded to 4 decimals and milliseconds to 2 here, the card's "
        "JSON holds them as recorded._",
        "",
        "## Model details",
        "",
        f"- **Name**: {d['name']}",
        f"- **Variant id**: {d['id']}",
        f"- **File**: `{d['file']}`" + ("" if d["file_present"] else " (missing from the workspace)")
        if d["file"]
        else "- **File**: none recorded",
        f"- **Format**: {d['format'] or '-'}",
        f"- **sha256**: `{d['sha256'] or '-'}`",
        f"- **Size**: {size}",
        f"- **Classes**: {', '.join(f'{k}: {v}' for k, v in names.items())} ({d['classes_note']})"
        if names
        else f"- **Classes**: {NOT_RECORDED} ({d['classes_note']})",
        f"- **Input size**: {d['input_size']}",
        f"- **Created**: {when(d['created_at'])}",
        f"- **Environment when recorded**: {', '.join(f'{k} {v}' for k, v in d['made_with'].items()) or NOT_RECORDED}",
        "",
        "### Lineage (source first)",
        "",
    ]
    lines += [
        f"{i}. #{s['id']} **{s['step']}** `{s['name']}` ({s['format'] or '-'}, {when(s['created_at'])}): {s['params']}"
        for i, s in enumerate(card.lineage, 1)
    ]
    lines += ["", "## Intended use", "", f"- **Task**: {use['task']}", f"- {use['statement']}", "- **Trained on**:"]
    lines += [f"  - {t}" for t in use["trained_on"]] or [f"  - {NOT_RECORDED}"]
    lines += ["- **Out of scope**:"] + [f"  - {t}" for t in use["out_of_scope"]]
    lines += ["", "## Metrics", "", "Each figure holds for the context in its row, and nowhere else.", ""]
    for title, rows, columns in (
        ("Accuracy", m["accuracy"], ACCURACY_COLUMNS),
        ("Latency", m["latency"], LATENCY_COLUMNS),
        ("Parity with its parent", m["parity"], PARITY_COLUMNS),
    ):
        lines += [f"### {title}", ""] + (table(dated_rows(rows), columns) if rows else [f"{title}: {NOT_MEASURED}."])
        lines.append("")
        if title == "Accuracy" and rows and rows[-1]["per_class"]:
            lines += [f"Per class (measurement #{rows[-1]['measurement_id']}):", ""]
            lines += table(rows[-1]["per_class"], [("class", "class", 0), *ACCURACY_COLUMNS[:6]]) + [""]
    if m["superseded"]:
        lines += [f"{m['superseded']} earlier measurement(s) of the same settings are in the ledger.", ""]
    if m["failed"]:
        lines += ["### Failed measurements", ""]
        lines += [f"- #{r['measurement_id']} {r['kind']} ({when(r['measured_at'])}): {r['error']}" for r in m["failed"]]
        lines.append("")
    lines += ["## Evaluation data", ""]
    lines += [f"- {data_text(x)}" for x in ev["data"]] or [f"- none: accuracy {NOT_MEASURED}"]
    lines += ["", "## Caveats and recommendations", "", *drift_lines(ev["drift"]), ""]
    lines += ["### Troubleshooting diagnoses", ""]
    lines += [
        f"- #{x['id']} {x['kind']} ({x['when']} UTC): {x['sentence']}"
        + (f" Top cause: {x['top_check']}; fix: {x['top_fix']}." if x["top_check"] else "")
        for x in ev["diagnoses"]
    ] or ["- none recorded"]
    lines += ["", "## Ethical considerations", ""] + [f"- {t}" for t in card.ethics]
    lines += ["", "## Limitations", ""] + [f"- {t}" for t in card.limitations] + [""]
    return "\n".join(lines)


def drift_lines(drift: Mapping) -> list[str]:
    """The drift alerts as markdown lines: how many, the shifts named, the latest one's sentence."""
    if not drift["count"]:
        return ["- Drift alerts: none recorded against this variant."]
    shifts = ", ".join(f"{name} x{n}" for name, n in drift["shifts"].items())
    latest = drift["latest"]
    return [
        f"- Drift alerts: {drift['count']} recorded (shifts named: {shifts}).",
        f"- Latest: #{latest['measurement_id']} ({when(latest['measured_at'])}): {latest['sentence']}",
    ]
