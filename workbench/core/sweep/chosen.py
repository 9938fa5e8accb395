"""A sweep the user chose, run: the engine picked (in process, a Dask LocalCluster, a running scheduler), the checked
request, a checked run that always closes its engine, and the rows its tables show.

Pure logic (no widgets): the Sweep panel and `workbench sweep` call these functions, notebooks may call them directly.
"""

from __future__ import annotations

import html
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..errors import Cancelled, ConfigError
from ..progress import Progress, ProgressFn
from .search import SweepResult, best_feasible, run_sweep, trial_rows
from .space import THIS_MACHINE, SearchSpace
from .trials import METRICS, LocalEngine

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

ENGINES = ("local", "dask", "scheduler")  # in this process, a Dask LocalCluster, a running Dask scheduler
METRIC_DIGITS = {"map50_95": 4, "p50_ms": 2, "p99_ms": 2, "size_mb": 2}
TRIAL_COLUMNS = ["number", "stage", "params", *METRICS, "variant_id", "status"]
FRONT_COLUMNS = ["number", "variant_id", *METRICS, "params"]


# ---------------------------------------------------------------------------------------------------- choices


@dataclass(frozen=True)
class EngineChoice:
    """Where trials run: "local" (in this process), "dask" (a LocalCluster of `workers`) or "scheduler" (an address)."""

    kind: str = "local"
    workers: int = 2
    scheduler: str = ""

    def __post_init__(self):
        if self.kind not in ENGINES:
            raise ConfigError(f"engine must be one of {', '.join(ENGINES)}, got {self.kind!r}", "pick one of them")
        workers = self.workers
        if self.kind == "dask" and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
            raise ConfigError(f"Dask workers must be a whole number >= 1, got {workers!r}", "use e.g. 2")
        if self.kind == "scheduler":
            if not str(self.scheduler or "").strip():
                raise ConfigError(
                    "no Dask scheduler address given",
                    "type host:port as `dask scheduler` prints it, or pick the Dask LocalCluster",
                )
            object.__setattr__(self, "scheduler", _checked_address(self.scheduler))

    @property
    def label(self) -> str:
        if self.kind == "local":
            return "in this process"
        if self.kind == "dask":
            return f"a Dask LocalCluster of {self.workers} worker(s)"
        return f"the Dask scheduler at {self.scheduler}"


@dataclass(frozen=True)
class SweepRequest:
    """A checked sweep spec, where it came from, and the engine its trials run on."""

    space: SearchSpace
    engine: EngineChoice = EngineChoice()
    source: str = ""  # the spec's path, shown to the user

    def __post_init__(self):
        target = self.space.target
        if self.engine.kind == "local" and target not in (None, THIS_MACHINE):
            raise ConfigError(
                f"sweep {self.space.name} times its trials on target {target!r}; the in-process engine times "
                "this machine only",
                "run it on a Dask scheduler with a worker for that target, or drop the constraint's target",
            )


def make_engine(choice: EngineChoice):
    """The engine `choice` asks for; the Dask one is imported (and its cluster started) only when asked for."""
    if choice.kind == "local":
        return LocalEngine()
    DaskEngine = _dask_engine_class()
    if choice.kind == "dask":
        return DaskEngine(workers=choice.workers)
    return DaskEngine(scheduler=choice.scheduler)


def _dask_engine_class():
    try:
        from .dask_engine import DaskEngine
    except ImportError as exc:
        raise ConfigError(
            f"the Dask engine (workbench.core.sweep.dask_engine) cannot be imported: {exc}",
            "install the 'sweep' extra (pip install -e '.[sweep]'), or run the trials in this process "
            "(--engine local; 'local' in the Sweep tab)",
        ) from exc
    return DaskEngine


def _checked_address(address: str) -> str:
    try:
        from .dask_engine import check_address

        return check_address(address)
    except ImportError as exc:
        raise ConfigError(
            f"Dask distributed is not installed ({exc})", "install the 'sweep' extra: pip install -e '.[sweep]'"
        ) from exc


# ---------------------------------------------------------------------------------------------------- running


def check_sweep(workspace: Workspace, model_id: int, data_yaml, space: SearchSpace) -> None:
    """The space's recipes against the model (a .pt variant) and the data, writing nothing (as `workbench sweep`)."""
    from ..models.checkpoints import load_checkpoint

    path = workspace.artifact_path(model_id)
    if path.suffix != ".pt":
        raise ConfigError(
            f"a sweep starts from a PyTorch model, not {path.name}", "open a .pt model in the 'Model & data' tab"
        )
    space.check(load_checkpoint(path).model, data_yaml)


def run_chosen_sweep(
    workspace: Workspace,
    model_id: int,
    data_yaml,
    request: SweepRequest,
    *,
    progress: ProgressFn | None = None,
    cancel=None,
    on_engine: Callable[[object], None] | None = None,
    on_result: Callable | None = None,
    engine_factory: Callable[[EngineChoice], object] = make_engine,
) -> SweepResult:
    """Check the spec against the model and data, start the engine, run the sweep; the engine is always closed.

    Args:
        cancel: an Event (or callable) checked between trials; `progress` raising Cancelled stops a running trial.
        on_engine: called with the engine once it has started (a panel shows its dashboard, cancels through it).
        on_result: `run_sweep`'s callback, with each trial's spec and result as it finishes.
    Returns:
        the sweep's result; a cancelled sweep returns the trials that finished (`cancelled` true; they stay in the
        ledger), whichever way it was stopped.
    """
    check_sweep(workspace, model_id, data_yaml, request.space)
    engine = engine_factory(request.engine)
    done: list[tuple] = []

    def finished(spec, result) -> None:
        done.append((spec, result))
        if on_result is not None:
            on_result(spec, result)

    start = time.perf_counter()
    try:
        if on_engine is not None:
            on_engine(engine)
        result = run_sweep(
            workspace, model_id, data_yaml, request.space, engine=engine, progress=_sweep_bar(progress),
            cancel=cancel, on_result=finished, check=False,
        )  # fmt: skip
        result.cancelled = result.cancelled or _asked_to_stop(cancel)  # an engine that just stopped yielding
        return result
    except Cancelled:
        return partial_result(request.space, done, time.perf_counter() - start)
    finally:
        getattr(engine, "close", lambda: None)()


def partial_result(space: SearchSpace, done: Iterable[tuple], seconds: float = 0.0) -> SweepResult:
    """The result of a sweep stopped part-way, from the (spec, result) pairs that finished."""
    done = list(done)
    trials, results = [s for s, _ in done], [r for _, r in done]
    result = SweepResult(space, trials, results, cancelled=True, seconds=round(seconds, 1))
    result.rows = trial_rows(space, results, trials)
    result.pareto = [r for r in result.rows if r["on_front"]]
    result.best, result.why_no_best = best_feasible(space, result.rows)
    return result


def _asked_to_stop(cancel) -> bool:
    if cancel is None:
        return False
    return bool(cancel.is_set() if hasattr(cancel, "is_set") else cancel())


def _sweep_bar(progress: ProgressFn | None) -> ProgressFn | None:
    """`progress` with only the sweep's own events carrying a fraction: a bar follows trials, not each inner step."""
    if progress is None:
        return None

    def forward(event: Progress) -> None:
        progress(event if event.stage == "sweep" else Progress(event.stage, event.done, None, event.message))

    return forward


# ---------------------------------------------------------------------------------------------------- tables


def trial_row(spec, result) -> dict:
    """One finished trial as a table row: number, stage, params, the metrics, the final variant, status or error."""
    return {
        "number": result.number,
        "stage": result.stage,
        "params": params_text(spec.params),
        **{k: metric_text(k, result.values.get(k)) for k in METRICS},
        "variant_id": result.final_id,
        "status": "ok" if result.ok else f"failed: {result.error}",
    }


def front_rows(result: SweepResult) -> list[dict]:
    """The Pareto front's rows of a sweep's result, ready for a table (in trial order)."""
    return [
        {
            "number": r["number"],
            "variant_id": r["variant_id"],
            **{k: metric_text(k, r.get(k)) for k in METRICS},
            "params": params_text(r["params"]),
        }
        for r in result.pareto
    ]


def best_text(workspace: Workspace, result: SweepResult) -> str:
    """One line on the best feasible trial and its lineage, or on why there is none (as `workbench sweep` prints)."""
    best, space = result.best, result.space
    if best is None:
        return f"best feasible: none ({result.why_no_best})"
    line = f"best feasible: trial {best['number']}, variant {best['variant_id']} ({space.metric} "
    line += f"{metric_text(space.metric, best[space.metric])}, {params_text(best['params'])})"
    if best["variant_id"] is not None:
        line += ", " + " <- ".join(f"{v.id}:{v.step}" for v in workspace.lineage(best["variant_id"]))
    return line


def dashboard_html(engine) -> str:
    """The Dask dashboard's link while `engine` runs, why there is none, or nothing for an engine without one."""
    if not hasattr(engine, "dashboard_link"):
        return ""
    link = engine.dashboard_link
    if link is None:
        return "<i>The Dask dashboard is not available: bokeh is not installed (pip install bokeh).</i>"
    shown = html.escape(str(link), quote=True)
    return f'Dask dashboard: <a href="{shown}" target="_blank" rel="noopener">{shown}</a>'


def params_text(params: dict) -> str:
    return ", ".join(f"{k}={f'{v:.3g}' if isinstance(v, float) else v}" for k, v in (params or {}).items())


def metric_text(metric: str, value) -> str:
    return "" if not isinstance(value, (int, float)) else f"{value:.{METRIC_DIGITS.get(metric, 3)}f}"
