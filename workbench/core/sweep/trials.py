"""The trial types every sweep engine shares (`TrialSpec`, `TrialResult`, `Engine`) and the in-process engine.

A trial is one recipe run from the sweep's input model (by the toolkit the spec carries) plus the final variant's
measurement. An engine turns specs into results; a failed trial is a `TrialResult` with `error`, never an
exception. Only the client process writes the ledger: `record_trial` adds one "sweep_trial" measurement to each
trial's final variant.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ..errors import Cancelled, ConfigError, WorkbenchError
from ..progress import ProgressFn, emit
from ..store.evaluation_sets import CONTEXT_KEY as EVALUATION_SET
from .toolkit import Toolkit, TrialFailed

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

TRIAL_KIND = "sweep_trial"  # the measurement kind of a sweep's trial record
METRICS = ("map50_95", "p50_ms", "p99_ms", "size_mb")  # the values a trial reports


@dataclass(frozen=True)
class TrialSpec:
    number: int
    params: dict  # the sampled point, e.g. {"prune.ratio": 0.3, "finetune.epochs": 1, "measure.imgsz": 160}
    recipe: dict  # what Recipe.from_dict takes: "name" and "steps" (no "measure")
    accuracy: dict  # MeasurePlan keyword arguments for the final variant's accuracy (latency=False)
    latency: dict | None  # MeasurePlan keyword arguments for its latency (accuracy=False); None: not timed
    target: str | None = None  # a catalog target id whose worker times it; None: a worker of this machine
    stage: str = "full"  # "short": the early-stopping pass (fewer epochs), "full"
    sweep: str = ""  # the sweep's name (what record_trial writes when it is given no other)
    toolkit: Toolkit | None = field(default=None, repr=False, compare=False)  # what checks and runs the recipe


@dataclass(frozen=True)
class TrialResult:
    number: int
    stage: str
    final_id: int | None  # the trial's last variant, in the client's ledger
    variant_ids: tuple[int, ...]
    values: dict  # {"map50_95": .., "p50_ms": .., "p99_ms": .., "size_mb": ..} of the final variant
    worker: str | None = None  # which worker ran it ("local" in process)
    error: str | None = None  # the failure, in words, when the trial failed (its values are then empty)
    attempts: int = 1
    seconds: float = 0.0  # wall time of the trial
    evaluation_set: dict | None = None  # what its mAP was measured on (`EvaluationSet.as_context()`), if recorded

    @property
    def ok(self) -> bool:
        return self.error is None


class Engine(Protocol):
    parallelism: int  # how many trials it runs at once

    def run(
        self, workspace: Workspace, model_id: int, data_yaml, trials: Sequence[TrialSpec], *, progress=None
    ) -> Iterator[TrialResult]: ...  # yields as trials finish; a failed trial is a TrialResult with error


def run_recipe(workspace: Workspace, spec: TrialSpec, model_id: int, data_yaml, *, progress: ProgressFn | None = None):
    """The spec's recipe run from `model_id` by its toolkit, its steps' variants recorded but not measured (only the
    final one is): a `RecipeRun`.

    Raises:
        ConfigError: the spec carries no toolkit. TrialFailed: a step failed. Cancelled: stopped.
    """
    if spec.toolkit is None:
        raise ConfigError(
            f"trial {spec.number} carries no toolkit to run its recipe", "make the trials with SearchSpace.spec"
        )
    return spec.toolkit.run_recipe(
        workspace, spec.recipe, model_id, data_yaml, source=f"trial {spec.number}", progress=progress
    )


def trial_plans(spec: TrialSpec) -> list:
    """The MeasurePlans of the final variant: accuracy, then latency when the trial is timed."""
    from ..measure.plan import MeasurePlan

    plans = [MeasurePlan(**{**spec.accuracy, "latency": False, "accuracy": True})]
    if spec.latency is not None:
        plans.append(MeasurePlan(**{**spec.latency, "latency": True, "accuracy": False}))
    return plans


def read_values(workspace: Workspace, variant_id: int, measurement_ids: Sequence[int]) -> tuple[dict, str | None]:
    """The trial values from the final variant's measurements, and the first failure among them (or None)."""
    values: dict = {}
    size = workspace.variant(variant_id).size_bytes
    if size is not None:
        values["size_mb"] = size / 1e6
    for m in workspace.ledger.measurements(ids=list(measurement_ids)):
        if not m.ok:
            return {}, f"{m.kind} measurement failed: {m.metrics.get('error') or m.status}"
        if m.kind == "accuracy":
            values["map50_95"] = float(m.metrics["map50_95"])
        elif m.kind == "latency":
            values.update(p50_ms=float(m.metrics["p50_ms"]), p99_ms=float(m.metrics["p99_ms"]))
    return values, None


def read_set(workspace: Workspace, measurement_ids: Sequence[int]) -> dict | None:
    """The evaluation set the trial's mAP was measured on (`EvaluationSet.as_context()`; None: none recorded), so
    that a front is taken over trials measured on the same images only."""
    found = [m for m in workspace.ledger.measurements(ids=list(measurement_ids)) if m.kind == "accuracy" and m.ok]
    return found[-1].context.get(EVALUATION_SET) if found else None


def run_trial(workspace: Workspace, model_id: int, data_yaml, spec: TrialSpec, *, progress: ProgressFn | None = None):
    """Run one trial in this process: the recipe, then the final variant's measurements. Returns a TrialResult."""
    from ..measure.measure import measure

    start = time.perf_counter()
    variants: list[int] = []
    try:
        made = run_recipe(workspace, spec, model_id, data_yaml, progress=progress)
        variants, final = list(made.variants), made.final_id
        ids = [m for plan in trial_plans(spec) for m in measure(workspace, final, plan, data_yaml, progress=progress)]
        values, error = read_values(workspace, final, ids)
        identity = read_set(workspace, ids)
    except Cancelled:
        raise
    except Exception as exc:  # a trial's failure is its result; the sweep goes on
        if isinstance(exc, TrialFailed):
            variants = list(exc.variants)
        problem = exc.problem if isinstance(exc, WorkbenchError) else f"{type(exc).__name__}: {exc}"
        final, values, error, identity = (variants[-1] if variants else None), {}, problem, None
    seconds = round(time.perf_counter() - start, 2)
    return TrialResult(spec.number, spec.stage, final, tuple(variants), values, "local", error, 1, seconds, identity)


class LocalEngine:
    """Runs trials one after another in this process (parallelism 1)."""

    parallelism = 1

    def run(
        self, workspace: Workspace, model_id: int, data_yaml, trials: Sequence[TrialSpec], *, progress=None
    ) -> Iterator[TrialResult]:
        for index, spec in enumerate(trials):
            emit(progress, "sweep", index, len(trials), f"trial {spec.number} ({spec.stage})")
            yield run_trial(workspace, model_id, data_yaml, spec, progress=progress)
        emit(progress, "sweep", len(trials), len(trials), "done")


def record_trial(
    workspace: Workspace, spec: TrialSpec, result: TrialResult, sweep_name: str | None = None
) -> int | None:
    """Record the trial on its final variant as one "sweep_trial" measurement; returns its id.

    Idempotent: a trial (sweep, number, stage) already recorded on that variant is not recorded again, so an
    engine and the search may both call it. A trial with no final variant (it failed before making one) records
    nothing and returns None.
    """
    if result.final_id is None:
        return None
    name = sweep_name if sweep_name is not None else spec.sweep
    key = {"sweep": name, "trial": spec.number, "stage": result.stage}
    for m in workspace.ledger.measurements(variant_id=result.final_id, kind=TRIAL_KIND):
        if all(m.context.get(k) == v for k, v in key.items()):
            return m.id
    metrics = {**result.values, "params": spec.params}
    context = {
        **key,
        "variants": list(result.variant_ids),
        "worker": result.worker,
        "attempts": result.attempts,
        "seconds": result.seconds,
        "target": spec.target,
        "status": "ok" if result.ok else "failed",
        "error": result.error,
        EVALUATION_SET: result.evaluation_set,
    }
    return workspace.ledger.add_measurement(result.final_id, TRIAL_KIND, metrics, context)
