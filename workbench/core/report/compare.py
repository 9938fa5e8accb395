"""Comparison tables from the ledger: one row per variant x runtime x precision x imgsz, against a baseline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from ..store.evaluation_sets import NOT_MEASURED, choose_set, rows_on, summarize, workspace_sets
from ..store.records import Measurement, Variant

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

_METRICS = (
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "first_ms",
    "load_ms",
    "runs",
    "stable",
    "spread",
    "gflops",
    "gops_per_s",
    "machine_gemm_gflops",
    "runtime_internal_p50_ms",
    "call_overhead_ms",
    "stages",
    "samples_ms",
    "error",
)
COLUMNS = (
    "measurement_id",
    "variant_id",
    "variant",
    "step",
    "format",
    "runtime",
    "precision_hint",
    "precision",
    "imgsz",
    "batch",
    "threads",
    "size_mb",
    "status",
    "throughput_fps",
    *_METRICS,
)
# What a table of measured rows shows, in this order: what ran, how fast, how accurate, against the baseline. The
# report and the bench each show these less what they leave out (`measurement_columns`).
MEASUREMENT_COLUMNS = (
    "variant", "technique", "runtime", "precision_hint", "precision", "imgsz", "batch", "threads",
    "p50_ms", "p90_ms", "p99_ms", "mean_ms", "stable", "spread", "first_ms", "load_ms",
    "runtime_internal_p50_ms", "call_overhead_ms", "gflops", "gops_per_s", "throughput_fps", "speedup",
    "map50", "map50_95", "map_imgsz", "map_note", "map50_95_delta", "size_mb",
)  # fmt: skip
_NOT_TECHNIQUES = ("source", "import", "export")
_CONVERSIONS = ("export", "quantize")
_TRAINING_STEPS = ("distill", "finetune", "qat")


def measurement_columns(*leave_out: str, renamed: dict[str, str] | None = None) -> list[str]:
    """`MEASUREMENT_COLUMNS` in their order, less `leave_out`, the `renamed` ones under their new names."""
    renamed = renamed or {}
    unknown = (set(leave_out) | set(renamed)) - set(MEASUREMENT_COLUMNS)
    if unknown:
        raise KeyError(f"not measurement columns: {sorted(unknown)}")
    return [renamed.get(c, c) for c in MEASUREMENT_COLUMNS if c not in leave_out]


def precision_hint(measurement: Measurement) -> str | None:
    """The OpenVINO precision hint a row asked for ('default' when it left the choice to OpenVINO); None elsewhere."""
    if measurement.context.get("runtime") != "openvino":
        return None
    return (measurement.context.get("options") or {}).get("precision") or "default"


def _latency_row(measurement: Measurement, variant: Variant) -> dict:
    ctx, met = measurement.context, measurement.metrics
    return {
        "measurement_id": measurement.id,
        "variant_id": variant.id,
        "variant": variant.name,
        "step": variant.step,
        "format": variant.format.value if variant.format else None,
        "runtime": ctx.get("runtime"),
        "precision_hint": precision_hint(measurement),
        "precision": ctx.get("precision"),
        "imgsz": ctx.get("imgsz"),
        "batch": ctx.get("batch"),
        "threads": ctx.get("threads"),
        "size_mb": (variant.size_bytes or 0) / 2**20,
        "status": measurement.status,
        "throughput_fps": (met.get("throughput") or {}).get("fps"),
        **{k: met.get(k) for k in _METRICS},
    }


def latency_table(workspace: Workspace):
    """The newest latency measurement of each variant x runtime x precision x imgsz x batch x threads setting."""
    import pandas as pd

    variants = {v.id: v for v in workspace.ledger.variants()}
    rows = [_latency_row(m, variants[m.variant_id]) for m in workspace.ledger.measurements(kind="latency")]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame.empty:
        return frame
    keys = ["variant_id", "runtime", "precision_hint", "precision", "imgsz", "batch", "threads"]
    return frame.sort_values("measurement_id").groupby(keys, dropna=False).tail(1).reset_index(drop=True)


def family(variants: dict[int, Variant], variant_id: int) -> tuple:
    """What a variant is apart from the size it was exported for: exports and INT8 models of one model that differ
    only in imgsz share a family (their ancestors' conversions are followed up to the PyTorch model)."""
    variant = variants[variant_id]
    options = tuple(sorted((k, str(v)) for k, v in variant.params.items() if k not in ("imgsz", "export_imgsz")))
    parent = variants.get(variant.parent_id)
    origin = family(variants, parent.id) if parent is not None and parent.step in _CONVERSIONS else variant.parent_id
    return (origin, variant.step, variant.format, options)


def accuracy_lookup(workspace: Workspace, evaluation_set=None) -> dict[tuple, dict]:
    """Newest successful accuracy on one evaluation set (None: the default set, see `choose_set`) of each variant
    and precision: at an imgsz, measured for a latency imgsz, at any size, and of the same export at another size
    (its family). Rows of other sets are never used: their mAPs are not comparable."""
    variants = {v.id: v for v in workspace.ledger.variants()}
    measured = workspace.ledger.measurements(kind="accuracy")
    found = {}
    for m in rows_on(measured, choose_set(summarize(measured), evaluation_set)):
        ctx, met = m.context, m.metrics
        value = {"map50": met["map50"], "map50_95": met["map50_95"], "map_imgsz": ctx.get("imgsz")}
        key = (m.variant_id, ctx.get("precision"))
        found[(*key, "at", ctx.get("imgsz"))] = value
        found[(*key, "for", ctx.get("latency_imgsz", ctx.get("imgsz")))] = value
        found[key] = value
        if variants[m.variant_id].step in _CONVERSIONS:
            found[("family", family(variants, m.variant_id), ctx.get("precision"))] = value
    return found


def accuracy_of(lookup: dict, variant: Variant, precision: str | None, imgsz: int | None, variants: dict) -> dict:
    """A row's accuracy: at its own imgsz, else the one its plan measured for it, else the variant's at any size,
    else its family's (the same export at another size); `map_imgsz` says which size it was measured at."""
    own = variant.id, precision
    keys = [(*own, "at", imgsz), (*own, "for", imgsz), own]
    if variant.step in _CONVERSIONS:
        keys.append(("family", family(variants, variant.id), precision))
    return next((lookup[key] for key in keys if key in lookup), {})


def comparison_table(workspace: Workspace, *, baseline: dict | None = None, evaluation_set=None):
    """Latency rows with mAP on one evaluation set (`map_imgsz` says at which size), speed-up and mAP delta
    against a baseline row.

    Every mAP in the table was measured on the same images: `evaluation_set` names them in each row, and a row
    whose variant was not measured on that set says so in `map_note` (its mAP is left empty, never taken from
    another set). `table.attrs["evaluation_sets"]` lists every set the ledger holds, the shown one first.

    Args:
        baseline: column values that pick the baseline row, e.g. {"runtime": "pytorch", "imgsz": 640};
            default: the PyTorch row of the source model at each imgsz (any PyTorch row if there is none).
        evaluation_set: the set's key, name or digest prefix; None: the set with the most variants measured on it
            (ties: the most images). A name the ledger does not hold raises ConfigError listing the ones it does.
    """
    table = latency_table(workspace)
    sets = workspace_sets(workspace)
    chosen = choose_set(sets, evaluation_set)
    if table.empty:
        return table
    lookup = accuracy_lookup(workspace, chosen)
    variants = {v.id: v for v in workspace.ledger.variants()}
    table["technique"] = [technique(variants, int(v)) for v in table["variant_id"]]
    accuracy = [
        accuracy_of(lookup, variants[int(r.variant_id)], r.precision, r.imgsz, variants) for r in table.itertuples()
    ]
    for key in ("map50", "map50_95", "map_imgsz"):
        table[key] = [a.get(key, np.nan) for a in accuracy]
    _name_the_set(table, chosen, sets)
    ok = table["status"] == "ok"
    table["speedup"] = np.nan
    table["map50_95_delta"] = np.nan
    table["baseline"] = None
    for _, group in table[ok].groupby("imgsz"):
        base = _pick(group, baseline)
        if base is None:
            continue
        table.loc[group.index, "speedup"] = base["p50_ms"] / group["p50_ms"]
        table.loc[group.index, "map50_95_delta"] = group["map50_95"] - base["map50_95"]
        table.loc[group.index, "baseline"] = f"{base['variant']} {base['runtime']} {base['precision']}"
    return table


def _name_the_set(table, chosen, sets) -> None:
    """The set's name in every row; 'not measured on this set' where a measured row has no mAP on it."""
    table["evaluation_set"] = chosen.name if chosen else None
    missing = (table["status"] == "ok") & table["map50_95"].isna()
    table["map_note"] = np.where(missing, NOT_MEASURED, "")
    table.attrs["evaluation_sets"] = [s.name for s in sets]


def technique(variants: dict[int, Variant], variant_id: int) -> str:
    """The optimization steps behind a variant, oldest first ("prune+distill 2ep+quantize"), or "baseline".

    Training steps carry their epochs, so a two-epoch taste is not mistaken for a full recovery.
    """
    steps, seen = [], set()
    while variant_id is not None and variant_id in variants and variant_id not in seen:
        seen.add(variant_id)
        variant = variants[variant_id]
        if variant.step not in _NOT_TECHNIQUES:
            epochs = variant.params.get("epochs")
            steps.append(f"{variant.step} {epochs}ep" if variant.step in _TRAINING_STEPS and epochs else variant.step)
        variant_id = variant.parent_id
    return "+".join(reversed(steps)) or "baseline"


def _pick(group, baseline: dict | None):
    candidates = [baseline] if baseline else [{"runtime": "pytorch", "step": "source"}, {"runtime": "pytorch"}]
    for wanted in candidates:
        rows = group
        for key, value in wanted.items():
            if key != "imgsz":
                rows = rows[rows[key] == value]
        if not rows.empty:
            return rows.iloc[0]
    return None


def pareto_front(latency: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
    """Boolean mask of points no other point beats on both lower latency and higher accuracy."""
    latency, accuracy = np.asarray(latency, float), np.asarray(accuracy, float)
    mask = np.zeros(len(latency), bool)
    for i in range(len(latency)):
        if np.isnan(latency[i]) or np.isnan(accuracy[i]):
            continue
        no_worse = (latency <= latency[i]) & (accuracy >= accuracy[i])
        better = no_worse & ((latency < latency[i]) | (accuracy > accuracy[i]))
        mask[i] = not better.any()
    return mask


def filter_table(table, *, runtimes=(), precisions=(), imgsizes=(), variant_ids=None):
    """Rows of a comparison table whose runtime, precision and imgsz are among the given ones (empty: any)."""
    keep = np.ones(len(table), bool)
    for column, allowed in (("runtime", runtimes), ("precision", precisions), ("imgsz", imgsizes)):
        if allowed:
            keep &= table[column].isin(list(allowed)).to_numpy()
    if variant_ids is not None:
        keep &= table["variant_id"].isin(list(variant_ids)).to_numpy()
    return table[keep]


def variant_details(workspace: Workspace, variant_id: int) -> dict:
    """A variant's lineage (root first: step, name, parameters) and its successful measurements, newest last."""
    lineage = [
        {"id": v.id, "name": v.name, "step": v.step, "format": v.format, "params": v.params}
        for v in reversed(workspace.lineage(variant_id))
    ]
    measurements = [
        {
            "id": m.id,
            "kind": m.kind,
            "context": m.context,
            "metrics": {k: v for k, v in m.metrics.items() if k not in ("samples_ms", "per_class")},
        }
        for m in workspace.ledger.measurements(variant_id=variant_id)
        if m.ok
    ]
    variants = {v.id: v for v in workspace.ledger.variants()}
    return {
        "variant_id": variant_id,
        "technique": technique(variants, variant_id),
        "lineage": lineage,
        "measurements": measurements,
    }


def budget_latency_ms(table) -> np.ndarray:
    """The latency a row is held to a p99 budget by: its measured p99, or its p50 where no p99 was recorded."""
    p50 = table["p50_ms"].to_numpy(dtype=float)
    p99 = table["p99_ms"].to_numpy(dtype=float) if "p99_ms" in table else np.full(len(table), np.nan)
    return np.where(np.isnan(p99), p50, p99)


def meets_latency_budget(table, latency_budget_ms: float) -> np.ndarray:
    """Boolean mask of rows whose measured p99 (p50 where p99 is missing) is within the budget."""
    return budget_latency_ms(table) <= latency_budget_ms


def best_within_budget(table, latency_budget_ms: float):
    """The most accurate row (mAP50-95) that meets the p99 budget, the faster of equals; None if none does."""
    rows = table[meets_latency_budget(table, latency_budget_ms) & table["map50_95"].notna().to_numpy()]
    if rows.empty:
        return None
    return rows.sort_values(["map50_95", "p50_ms"], ascending=[False, True]).iloc[0]
