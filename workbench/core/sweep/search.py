"""Running a sweep: grid, seeded random or Optuna constrained search over a space, early stopping, the front.

`run_sweep(workspace, model_id, data_yaml, space)` checks the space against the model and data, runs its trials on
an engine (in process by default), records each trial on its final variant ("sweep_trial") and returns the
trials, their results, the Pareto front of the objective against p50 latency and the best feasible variant.

Early stopping (`early_stop: {epochs, keep}`): every trial first trains `epochs` (stage "short"); grid and random
run the best `keep` fraction of them fully, by plain ranking of the short values. Optuna reports the short value
as the trial's intermediate value and asks its `PercentilePruner(100 * keep)` (`trial.should_prune()`) whether to
run the full stage.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..progress import ProgressFn
from .pareto import on_main_set, pareto_front
from .space import THIS_MACHINE, SearchSpace
from .trials import LocalEngine, TrialResult, TrialSpec, record_trial

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

LATENCY = "p50_ms"


@dataclass
class SweepResult:
    """What a sweep ran and found; `rows` are plain dicts (one per trial result) for tables and figures."""

    space: SearchSpace
    trials: list[TrialSpec] = field(default_factory=list)
    results: list[TrialResult] = field(default_factory=list)
    rows: list[dict] = field(default_factory=list)
    pareto: list[dict] = field(default_factory=list)
    best: dict | None = None
    why_no_best: str = ""
    seconds: float = 0.0
    cancelled: bool = False

    @property
    def failed(self) -> list[TrialResult]:
        return [r for r in self.results if not r.ok]


def run_sweep(
    workspace: Workspace,
    model_id: int,
    data_yaml,
    space: SearchSpace,
    *,
    engine=None,
    progress: ProgressFn | None = None,
    cancel: Callable[[], bool] | None = None,
    on_result: Callable[[TrialSpec, TrialResult], None] | None = None,
    check: bool = True,
) -> SweepResult:
    """Run the sweep and return its trials, results, front and best feasible variant.

    Args:
        engine: LocalEngine() (the default) or any Engine (e.g. the Dask engine).
        cancel: called between trials (or an object with `is_set()`); true stops the sweep, keeping what ran.
        on_result: called with each trial's spec and result as it finishes (after it is recorded).
        check: run `check_recipe` on the space's recipes against the model and data first.
    Raises:
        ConfigError: the space does not fit the model or data, or the engine cannot time the target.
    """
    engine = engine or LocalEngine()
    if space.target not in (None, THIS_MACHINE) and isinstance(engine, LocalEngine):
        raise ConfigError(
            f"the in-process engine times this machine only, not target {space.target!r}",
            "use the Dask engine with a worker for that target, or drop the constraint's target",
        )
    if check:
        _check_against_model(workspace, model_id, data_yaml, space)
    run = _Run(workspace, model_id, data_yaml, space, engine, progress, _stopper(cancel), on_result)
    start = time.perf_counter()
    if space.method == "optuna":
        run.optuna()
    else:
        run.fixed(grid_points(space) if space.method == "grid" else random_points(space))
    result = SweepResult(space, run.trials, run.results, cancelled=run.stopped)
    result.rows = trial_rows(space, run.results, run.trials)
    result.pareto = [r for r in result.rows if r["on_front"]]
    result.best, result.why_no_best = best_feasible(space, result.rows)
    result.seconds = round(time.perf_counter() - start, 1)
    return result


# ---------------------------------------------------------------------------------------------------- points


def grid_points(space: SearchSpace) -> list[dict]:
    """The grid: the product of the dimensions in order, capped at `trials`."""
    return space.grid_points()[: space.trials]


def random_points(space: SearchSpace) -> list[dict]:
    """`trials` distinct points drawn with `random.Random(seed)` (fewer when the space holds fewer)."""
    rng = random.Random(space.seed)
    points: list[dict] = []
    for _ in range(space.trials * 50):
        point = {k: d.sample(rng) for k, d in space.search.items()}
        if point not in points:
            points.append(point)
        if len(points) == space.trials:
            break
    return points


# ---------------------------------------------------------------------------------------------------- running


class _Run:
    """One sweep's state while it runs: the specs sent, the results back, the ledger records."""

    def __init__(self, workspace: Workspace, model_id, data_yaml, space, engine, progress, stop, on_result):
        self.workspace, self.model_id, self.data_yaml, self.space = workspace, model_id, data_yaml, space
        self.engine, self.progress, self.stop, self.on_result = engine, progress, stop, on_result
        self.trials: list[TrialSpec] = []
        self.results: list[TrialResult] = []
        self.stopped = False

    def execute(self, specs: list[TrialSpec]) -> dict[int, TrialResult]:
        """Run specs on the engine, record each result as it comes; stops early when cancelled."""
        if self.stopped or not specs:
            return {}
        self.trials += specs
        by_number = {s.number: s for s in specs}
        done: dict[int, TrialResult] = {}
        results = self.engine.run(self.workspace, self.model_id, self.data_yaml, specs, progress=self.progress)
        try:
            for result in results:
                record_trial(self.workspace, by_number[result.number], result, self.space.name)
                self.results.append(result)
                done[result.number] = result
                if self.on_result is not None:
                    self.on_result(by_number[result.number], result)
                if self.stop():
                    self.stopped = True
                    break
        finally:
            getattr(results, "close", lambda: None)()
        return done

    def fixed(self, points: list[dict]) -> None:
        """Grid or random: every point (short first, then the best `keep` fully, with early stopping)."""
        stop = self.space.early_stop
        if stop is None:
            self.execute([self.space.spec(n, p) for n, p in enumerate(points)])
            return
        short = self.execute([self.space.spec(n, p, "short") for n, p in enumerate(points)])
        keep = max(1, math.ceil(stop["keep"] * len(points)))
        ranked = sorted((r for r in short.values() if r.ok), key=lambda r: self._rank(r.values))
        chosen = sorted(r.number for r in ranked[:keep])
        self.execute([self.space.spec(n, points[n]) for n in chosen])

    def optuna(self) -> None:
        """Optuna TPE constrained by `trial.set_constraint`, ask/tell in batches of the engine's parallelism."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        space = self.space
        sampler = optuna.samplers.TPESampler(seed=space.seed)  # constrained: trial.set_constraint, Optuna 5
        keep = (space.early_stop or {}).get("keep", 1.0)
        pruner = optuna.pruners.PercentilePruner(100 * keep, n_startup_trials=0, n_warmup_steps=0)
        direction = "maximize" if space.direction == "max" else "minimize"
        study = optuna.create_study(direction=direction, sampler=sampler, pruner=pruner)
        batch = max(1, int(getattr(self.engine, "parallelism", 1)))
        while len(study.trials) < space.trials and not self.stopped:
            asked = [study.ask() for _ in range(min(batch, space.trials - len(study.trials)))]
            points = {t.number: {k: d.suggest(t) for k, d in space.search.items()} for t in asked}
            self._optuna_batch(study, asked, points)

    def _optuna_batch(self, study, asked, points: dict[int, dict]) -> None:
        import optuna

        space = self.space
        full = asked
        if space.early_stop is not None:
            short = self.execute([space.spec(t.number, points[t.number], "short") for t in asked])
            full = []
            for trial in asked:
                result = short.get(trial.number)
                if result is None or not result.ok or space.metric not in result.values:
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    continue
                trial.report(result.values[space.metric], step=0)
                if trial.should_prune():
                    _set_constraints(trial, space, result.values)
                    study.tell(trial, state=optuna.trial.TrialState.PRUNED)
                else:
                    full.append(trial)
        done = self.execute([space.spec(t.number, points[t.number]) for t in full])
        for trial in full:
            result = done.get(trial.number)
            if result is None or not result.ok or space.metric not in result.values:
                study.tell(trial, state=optuna.trial.TrialState.FAIL)
                continue
            _set_constraints(trial, space, result.values)
            study.tell(trial, result.values[space.metric])

    def _rank(self, values: dict) -> tuple:
        """Sort key, best first: feasible before infeasible, then the objective."""
        value = values.get(self.space.metric, math.nan)
        score = -value if self.space.direction == "max" else value
        return (not self.space.feasible(values), math.inf if math.isnan(score) else score)


def _set_constraints(trial, space: SearchSpace, values: dict) -> None:
    """Optuna's constraint values, which its TPE sampler optimizes under: <= 0 means met."""
    for metric, bound in space.constraints.items():
        value = values.get(metric)
        if value is None:
            trial.set_constraint(metric, 1e9)  # not measured: infeasible (Optuna refuses inf and NaN)
        else:
            trial.set_constraint(metric, value - bound["max"] if "max" in bound else bound["min"] - value)


def _stopper(cancel) -> Callable[[], bool]:
    if cancel is None:
        return lambda: False
    return cancel.is_set if hasattr(cancel, "is_set") else cancel


def _check_against_model(workspace: Workspace, model_id: int, data_yaml, space: SearchSpace) -> None:
    from ..models.checkpoints import load_checkpoint

    path = workspace.artifact_path(model_id)
    if path.suffix != ".pt":
        raise ConfigError(f"a sweep starts from a PyTorch model, not {path.name}", "start from the .pt variant")
    space.check(load_checkpoint(path).model, data_yaml)


# ---------------------------------------------------------------------------------------------------- results


def trial_rows(space: SearchSpace, results: Iterable[TrialResult], trials: Iterable[TrialSpec]) -> list[dict]:
    """One plain row per result: number, stage, variant id, params, values, feasible, error, on_front.

    The front is taken over the feasible rows that finished their last stage (objective against p50 latency,
    or against mAP50-95 when the objective is latency)."""
    params = {(s.number, s.stage): s.params for s in trials}
    rows = [
        {
            "number": r.number,
            "stage": r.stage,
            "variant_id": r.final_id,
            "params": params.get((r.number, r.stage), {}),
            **r.values,
            "evaluation_set": r.evaluation_set,
            "feasible": r.ok and space.feasible(r.values),
            "error": r.error,
            "worker": r.worker,
            "seconds": r.seconds,
        }
        for r in results
    ]
    for row in rows:
        row["final"] = row["stage"] == "full"  # a short row is a pruned trial's early pass
    candidates = [r for r in on_main_set(rows) if r["feasible"] and r["final"]]  # mAPs of one set of images
    front = {id(r) for r in pareto_front(candidates, front_objectives(space))}
    for row in rows:
        row["on_front"] = id(row) in front
    return rows


def front_objectives(space: SearchSpace) -> dict[str, str]:
    """The objective and, against it, p50 latency (or mAP50-95 when latency is the objective)."""
    other = ("map50_95", "max") if space.metric == LATENCY else (LATENCY, "min")
    objectives = {space.metric: space.direction}
    if space.timed or other[0] != LATENCY:
        objectives.setdefault(*other)
    return objectives


def best_feasible(space: SearchSpace, rows: list[dict]) -> tuple[dict | None, str]:
    """The best row by the objective among the feasible final ones, or None and why."""
    finished = [r for r in rows if r["final"] and r["error"] is None and space.metric in r]
    if not finished:
        return None, "no trial finished" if rows else "no trial ran"
    feasible = [r for r in finished if r["feasible"]]
    if not feasible:
        closest = min(finished, key=lambda r: sum(space.violations(r).values()))
        missed = ", ".join(f"{m} by {v:.3g}" for m, v in space.violations(closest).items())
        return None, f"no trial meets the constraints (the closest, trial {closest['number']}, misses {missed})"
    sign = -1 if space.direction == "max" else 1
    tie = LATENCY if space.metric != LATENCY else "map50_95"  # equal objectives: the faster (or the more accurate)
    tie_sign = 1 if tie == LATENCY else -1
    return min(feasible, key=lambda r: (sign * r[space.metric], tie_sign * r.get(tie, math.inf * tie_sign))), ""
