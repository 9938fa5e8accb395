"""Comparison tables from the ledger: one row per variant x runtime x precision x imgsz, against a baseline."""

from __future__ import annotations

import numpy as np

_METRICS = ("p50_ms", "p90_ms", "p99_ms", "mean_ms", "std_ms", "min_ms", "max_ms", "first_ms", "load_ms", "runs",
            "gflops", "gops_per_s", "machine_gemm_gflops", "runtime_internal_p50_ms", "call_overhead_ms", "stages",
            "samples_ms", "error")
COLUMNS = ("measurement_id", "variant_id", "variant", "step", "format", "runtime", "precision_hint", "precision",
           "imgsz", "batch", "threads", "size_mb", "status", "throughput_fps", *_METRICS)


def _latency_row(measurement: dict, variant: dict) -> dict:
    ctx, met = measurement["context"], measurement["metrics"]
    return {"measurement_id": measurement["id"], "variant_id": variant["id"], "variant": variant["name"],
            "step": variant["step"], "format": variant["format"] or "pt", "runtime": ctx.get("runtime"),
            "precision_hint": (ctx.get("options") or {}).get("precision"), "precision": ctx.get("precision"),
            "imgsz": ctx.get("imgsz"), "batch": ctx.get("batch"), "threads": ctx.get("threads"),
            "size_mb": (variant["size_bytes"] or 0) / 2**20, "status": ctx.get("status", "ok"),
            "throughput_fps": (met.get("throughput") or {}).get("fps"), **{k: met.get(k) for k in _METRICS}}


def latency_table(workspace):
    """The newest latency measurement of each variant x runtime x precision x imgsz x batch x threads setting."""
    import pandas as pd

    variants = {v["id"]: v for v in workspace.ledger.rows("variants")}
    rows = [_latency_row(m, variants[m["variant_id"]]) for m in workspace.ledger.rows("measurements")
            if m["kind"] == "latency"]
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    if frame.empty:
        return frame
    keys = ["variant_id", "runtime", "precision_hint", "precision", "imgsz", "batch", "threads"]
    return frame.sort_values("measurement_id").groupby(keys, dropna=False).tail(1).reset_index(drop=True)


def _family(variant: dict) -> tuple:
    """Variants that differ only in the export imgsz share a family (and their accuracy at the training imgsz)."""
    params = {k: v for k, v in (variant["params"] or {}).items() if k != "imgsz"}
    return variant["parent_id"], variant["step"], variant["format"], tuple(sorted(map(str, params.items())))


def accuracy_lookup(workspace) -> dict[tuple, dict]:
    """Newest successful accuracy per (variant, precision) and per (family, precision), with its imgsz."""
    variants = {v["id"]: v for v in workspace.ledger.rows("variants")}
    found = {}
    for m in workspace.ledger.rows("measurements"):
        if m["kind"] == "accuracy" and m["context"].get("status", "ok") == "ok":
            value = {"map50": m["metrics"]["map50"], "map50_95": m["metrics"]["map50_95"],
                     "map_imgsz": m["context"].get("imgsz"), "map_variant_id": m["variant_id"]}
            precision = m["context"].get("precision")
            found[(m["variant_id"], precision)] = value
            found[(_family(variants[m["variant_id"]]), precision)] = value
    return found


def accuracy_of(lookup: dict, variant: dict, precision: str | None) -> dict:
    """Accuracy for a row: the variant's own at this precision, else its family's (same export at another imgsz)."""
    for key in ((variant["id"], precision), (_family(variant), precision)):
        if key in lookup:
            return lookup[key]
    return {}


def comparison_table(workspace, *, baseline: dict | None = None):
    """Latency rows with mAP (measured once at the training imgsz, as `map_imgsz`), speed-up and mAP delta.

    Args:
        baseline: column values that pick the baseline row, e.g. {"runtime": "pytorch", "imgsz": 640};
            default: the PyTorch row of the first variant at each imgsz.
    """
    table = latency_table(workspace)
    if table.empty:
        return table
    lookup = accuracy_lookup(workspace)
    variants = {v["id"]: v for v in workspace.ledger.rows("variants")}
    table["technique"] = [technique(variants, int(v)) for v in table["variant_id"]]
    accuracy = [accuracy_of(lookup, variants[int(r.variant_id)], r.precision) for r in table.itertuples()]
    for key in ("map50", "map50_95", "map_imgsz", "map_variant_id"):
        table[key] = [a.get(key, np.nan) for a in accuracy]
    ok = table["status"] == "ok"
    table["speedup"] = np.nan
    table["map50_95_delta"] = np.nan
    for _, group in table[ok].groupby("imgsz"):
        base = _pick(group, baseline)
        if base is None:
            continue
        table.loc[group.index, "speedup"] = base["p50_ms"] / group["p50_ms"]
        table.loc[group.index, "map50_95_delta"] = group["map50_95"] - base["map50_95"]
        table.loc[group.index, "baseline"] = f"{base['variant']} {base['runtime']} {base['precision']}"
    return table


_NOT_TECHNIQUES = ("source", "import", "export")


def technique(variants: dict[int, dict], variant_id: int) -> str:
    """The optimization steps behind a variant, oldest first ("prune+distill+quantize"), or "baseline"."""
    steps, seen = [], set()
    while variant_id is not None and variant_id in variants and variant_id not in seen:
        seen.add(variant_id)
        if variants[variant_id]["step"] not in _NOT_TECHNIQUES:
            steps.append(variants[variant_id]["step"])
        variant_id = variants[variant_id]["parent_id"]
    return "+".join(reversed(steps)) or "baseline"


def _pick(group, baseline: dict | None):
    rows = group
    for key, value in (baseline or {"runtime": "pytorch"}).items():
        if key != "imgsz":
            rows = rows[rows[key] == value]
    if rows.empty:
        return None
    return rows.iloc[0]


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


def filter_table(table, *, runtimes=(), precisions=(), imgsizes=()):
    """Rows of a comparison table whose runtime, precision and imgsz are among the given ones (empty: any)."""
    keep = np.ones(len(table), bool)
    for column, allowed in (("runtime", runtimes), ("precision", precisions), ("imgsz", imgsizes)):
        if allowed:
            keep &= table[column].isin(list(allowed)).to_numpy()
    return table[keep]


def variant_details(workspace, variant_id: int) -> dict:
    """A variant's lineage (root first: step, name, parameters) and its successful measurements, newest last."""
    lineage = [{"id": v["id"], "name": v["name"], "step": v["step"], "format": v["format"], "params": v["params"]}
               for v in reversed(workspace.ledger.lineage(variant_id))]
    measurements = [{"id": m["id"], "kind": m["kind"], "context": m["context"],
                     "metrics": {k: v for k, v in m["metrics"].items() if k not in ("samples_ms", "per_class")}}
                    for m in workspace.ledger.rows("measurements")
                    if m["variant_id"] == variant_id and m["context"].get("status", "ok") == "ok"]
    return {"variant_id": variant_id, "technique": technique({v["id"]: v for v in workspace.ledger.rows("variants")},
                                                             variant_id), "lineage": lineage,
            "measurements": measurements}
