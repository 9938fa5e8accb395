"""The sweeps a workspace's ledger holds: each sweep's trial records as plain rows, with the front of each (what the
dashboard draws beside the variants)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..store.evaluation_sets import CONTEXT_KEY as EVALUATION_SET
from .pareto import main_set, on_main_set, pareto_front
from .trials import METRICS, TRIAL_KIND

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

LEDGER_FRONT = {"map50_95": "max", "p50_ms": "min"}  # what the dashboard's sweep chart trades off


@dataclass(frozen=True)
class RecordedSweep:
    """One sweep's trials as the ledger holds them: plain rows (oldest first) and its early-stopping passes.

    The ledger keeps no constraints, so `on_front` marks the front of mAP50-95 against p50 latency over every
    finished trial (the Sweep panel's own front keeps only the feasible ones).
    """

    name: str
    trials: list[dict]  # the full-stage records: number, variant_id, params, metrics, ok, error, on_front
    passes: int = 0  # early-stopping ("short") records, not drawn
    evaluation_set: str | None = None  # the name of the set the front's mAPs were measured on
    other_set: int = 0  # finished trials measured on other images: not on the front, not drawn

    @property
    def drawn(self) -> list[dict]:
        """The trials drawn beside each other: those measured on `evaluation_set` (and those without a mAP)."""
        return [r for r in self.trials if not r.get("other_set")]

    @property
    def front(self) -> list[dict]:
        """The front's rows in latency order (what a step line joins)."""
        return sorted((r for r in self.trials if r["on_front"]), key=lambda r: r["p50_ms"])


def recorded_sweeps(measurements: Iterable) -> dict[str, RecordedSweep]:
    """The sweep trial records (kind "sweep_trial") among `measurements`, grouped by sweep, newest sweep first."""
    groups: dict[str, list[dict]] = {}
    newest: dict[str, int] = {}
    for m in sorted((m for m in measurements if m.kind == TRIAL_KIND), key=lambda m: m.id):
        name = str(m.context.get("sweep") or "(unnamed)")
        groups.setdefault(name, []).append(_ledger_row(m))
        newest[name] = m.id
    sweeps = {}
    for name in sorted(groups, key=lambda n: -newest[n]):
        full = [r for r in groups[name] if r["stage"] == "full"]
        _, set_name = main_set([r for r in full if r["ok"]])
        same = {id(r) for r in on_main_set([r for r in full if r["ok"]])}
        front = {id(r) for r in pareto_front([r for r in full if id(r) in same], LEDGER_FRONT)}
        for row in full:
            row["on_front"], row["other_set"] = id(row) in front, row["ok"] and id(row) not in same
        other = sum(1 for r in full if r["other_set"])
        sweeps[name] = RecordedSweep(name, full, len(groups[name]) - len(full), set_name, other)
    return sweeps


def workspace_sweeps(workspace: Workspace) -> dict[str, RecordedSweep]:
    """`recorded_sweeps` of the workspace's ledger."""
    return recorded_sweeps(workspace.ledger.measurements(kind=TRIAL_KIND))


def _ledger_row(m) -> dict:
    ok = m.ok and not m.context.get("error")
    return {
        "number": m.context.get("trial"),
        "stage": m.context.get("stage", "full"),
        "variant_id": m.variant_id,
        "params": dict(m.metrics.get("params") or {}),
        **{k: m.metrics[k] for k in METRICS if k in m.metrics},
        EVALUATION_SET: m.context.get(EVALUATION_SET),
        "ok": ok,
        "feasible": ok,  # for sweep_figure: no constraints are recorded, so every finished trial counts
        "error": m.context.get("error"),
        "final": m.context.get("stage", "full") == "full",
        "worker": m.context.get("worker"),
        "seconds": m.context.get("seconds"),
    }
