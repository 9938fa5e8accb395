"""An aim: the constraints a deployment sets (a latency budget, an accuracy floor), checked against what the
ledger measured for each variant. Recipes aim at one (`aim:` in the YAML); the advisor's requirements give one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..store.evaluation_sets import NOT_MEASURED, choose_set, rows_on, summarize, workspace_sets

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


@dataclass(frozen=True)
class Aim:
    """Constraints on measured results: p99 latency on this machine and mAP50-95 (None: not constrained)."""

    latency_p99_ms: float | None = None
    min_map50_95: float | None = None
    imgsz: int | None = None  # the latency rows at this input size only; None: the variant's best row

    def __post_init__(self):
        for name in ("latency_p99_ms", "min_map50_95", "imgsz"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}", f"set {name} above 0")
        if self.min_map50_95 is not None and self.min_map50_95 > 1:
            raise ConfigError(
                f"min_map50_95 is a fraction (0..1), got {self.min_map50_95}", "write e.g. min_map50_95: 0.5"
            )

    @classmethod
    def from_requirements(cls, requirements, min_map50_95: float | None = None) -> Aim:
        return cls(requirements.latency_p99_ms, min_map50_95, requirements.imgsz)


def standing(workspace: Workspace, variant_id: int, aim: Aim, evaluation_set=None) -> dict:
    """How one variant stands against the aim: its best measured p99 (at the aim's size), its mAP50-95 on one
    evaluation set (None: the variant's own default set), whether it meets the aim and, if not, what it misses (a
    constraint without a measurement is missed: unmeasured, or not measured on the set the others were)."""
    measured = [m for m in workspace.ledger.measurements(variant_id=variant_id) if m.ok]
    latency = [
        m for m in measured if m.kind == "latency" and (aim.imgsz is None or m.context.get("imgsz") == aim.imgsz)
    ]
    chosen = choose_set(summarize(measured), evaluation_set)
    accuracy = [m for m in rows_on(measured, chosen) if m.metrics.get("map50_95") is not None]
    p99 = min((m.metrics["p99_ms"] for m in latency if "p99_ms" in m.metrics), default=None)
    map50_95 = accuracy[-1].metrics["map50_95"] if accuracy else None
    misses = []
    if aim.latency_p99_ms is not None:
        if p99 is None:
            misses.append("latency not measured" + (f" at {aim.imgsz} px" if aim.imgsz else ""))
        elif p99 > aim.latency_p99_ms:
            misses.append(f"p99 {p99:.1f} ms > {aim.latency_p99_ms:g} ms")
    if aim.min_map50_95 is not None:
        if map50_95 is None:
            misses.append("accuracy not measured" + (f" on {chosen.name}" if chosen else ""))
        elif map50_95 < aim.min_map50_95:
            misses.append(f"mAP50-95 {map50_95:.3f} < {aim.min_map50_95:g}")
    name = workspace.variant(variant_id).name
    return {"variant_id": variant_id, "variant": name, "p99_ms": p99, "map50_95": map50_95,
            "map_set": (chosen.name if accuracy else NOT_MEASURED) if chosen else None, "meets": not misses,
            "misses": "; ".join(misses)}  # fmt: skip


def standings(workspace: Workspace, variant_ids, aim: Aim, evaluation_set=None) -> list[dict]:
    """`standing` of each variant, every mAP50-95 on one set: `evaluation_set`, else the one most of them were
    measured on (ties: the most images)."""
    ids = list(variant_ids)
    chosen = choose_set(workspace_sets(workspace, ids), evaluation_set)
    return [standing(workspace, v, aim, chosen) for v in ids]


def best_meeting(rows: list[dict]) -> dict | None:
    """The most accurate variant that meets the aim (ties: the fastest); None when none does."""
    meeting = [r for r in rows if r["meets"]]
    if not meeting:
        return None
    return max(meeting, key=lambda r: (r["map50_95"] or 0.0, -(r["p99_ms"] or float("inf"))))
