"""The Pareto front of a sweep: the rows no other row beats on every objective at once."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from ..store.evaluation_sets import CONTEXT_KEY, UNKNOWN, UNKNOWN_NAME, set_name

DIRECTIONS = ("max", "min")


def dominates(a: dict, b: dict, objectives: dict[str, str]) -> bool:
    """True when `a` is at least as good as `b` on every objective and strictly better on one."""
    better = False
    for key, direction in objectives.items():
        x, y = (a[key], b[key]) if direction == "max" else (-a[key], -b[key])
        if x < y:
            return False
        better = better or x > y
    return better


def pareto_front(rows: Sequence[dict], objectives: dict[str, str]) -> list[dict]:
    """The non-dominated rows, in their input order; a row missing an objective (or NaN there) is left out.

    Args:
        objectives: metric -> "max" or "min", e.g. {"map50_95": "max", "p50_ms": "min"}.
    """
    bad = {k: d for k, d in objectives.items() if d not in DIRECTIONS}
    if not objectives or bad:
        raise ValueError(f"objectives must map metrics to 'max' or 'min', got {objectives!r}")
    scored = [r for r in rows if all(_number(r.get(k)) for k in objectives)]
    ordered = sorted(scored, key=lambda r: [-r[k] if d == "max" else r[k] for k, d in objectives.items()])
    front: list[dict] = []
    for row in ordered:  # sorted best-first on the first objective: a row is dominated only by rows before it
        if not any(dominates(kept, row, objectives) for kept in front):
            front.append(row)
    kept = {id(r) for r in front}
    return [r for r in scored if id(r) in kept]


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and not math.isnan(value)


def set_key_of(row: dict) -> str:
    """The evaluation set a trial row's mAP was measured on (its key; UNKNOWN for rows recorded without one)."""
    found = row.get(CONTEXT_KEY)
    return (found.get("key") or UNKNOWN) if isinstance(found, dict) else UNKNOWN


def main_set(rows: Sequence[dict]) -> tuple[str | None, str | None]:
    """(key, name) of the set most of the rows with a mAP were measured on (ties: the first met), the name with
    every size measured on it; (None, None) when no row has a mAP. A front is drawn over that set's rows only."""
    scored = [r for r in rows if _number(r.get("map50_95"))]
    if not scored:
        return None, None
    key = Counter(set_key_of(r) for r in scored).most_common(1)[0][0]
    if key == UNKNOWN:
        return key, UNKNOWN_NAME
    on = [r[CONTEXT_KEY] for r in scored if set_key_of(r) == key]
    sizes = [s["imgsz"] for s in on if s.get("imgsz")]
    return key, set_name(on[0]["split"], on[0]["images"], sizes, on[0]["digest"])


def on_main_set(rows: Sequence[dict]) -> list[dict]:
    """The rows measured on `main_set(rows)` (rows without a mAP are kept: they hold no mAP to mix)."""
    key, _ = main_set(rows)
    return [r for r in rows if not _number(r.get("map50_95")) or set_key_of(r) == key]
