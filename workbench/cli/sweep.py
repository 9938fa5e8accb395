"""`workbench sweep SPEC`: run a sweep over recipe options and print each trial, the Pareto front and the best."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..core.errors import ConfigError
from .arguments import _positive, _trust_flag

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

METRIC_DIGITS = {"map50_95": 4, "p50_ms": 2, "p99_ms": 2, "size_mb": 2}


def add_sweep_parsers(sub) -> None:
    sweep = sub.add_parser("sweep", help="a sweep over recipe options: grid, random or Optuna; the Pareto front")
    sweep.add_argument("spec", help="a sweep YAML (e.g. workbench/recipes/sweeps/small.yaml)")
    sweep.add_argument(
        "--workspace", default=None, help="the study's folder (default: $WORKBENCH_WORKSPACE or ./workbench-runs)"
    )
    sweep.add_argument("--engine", choices=("local", "dask"), default="local", help="where trials run")
    sweep.add_argument("--scheduler", default=None, help="the Dask scheduler's address (--engine dask)")
    sweep.add_argument("--workers", type=_positive, default=None, help="local Dask workers to start (--engine dask)")
    sweep.add_argument("--model", default="demo", help="'demo', 'student', 'searched', or the path of a trained .pt")
    _trust_flag(sweep)
    sweep.add_argument("--data", default=None, help="your data YAML, or 'demo' for the generated shapes dataset")
    sweep.add_argument("--train-images", type=_positive, default=None, help="generated train images (default 800)")
    sweep.add_argument("--val-images", type=_positive, default=None, help="generated val images (default 200)")
    sweep.add_argument("--seed", type=int, default=0, help="seed of the generated dataset")
    sweep.set_defaults(run=_sweep)


def make_engine(args):
    """The engine the arguments ask for; the Dask one is imported only when asked for."""
    from ..core.sweep.chosen import EngineChoice
    from ..core.sweep.chosen import make_engine as engine_for

    if args.engine == "local":
        if args.scheduler or args.workers:
            raise ConfigError("--scheduler and --workers are for the Dask engine", "add --engine dask, or drop them")
        return engine_for(EngineChoice("local"))
    if args.scheduler:
        return engine_for(EngineChoice("scheduler", scheduler=args.scheduler))
    return engine_for(EngineChoice("dask", workers=args.workers or 2))


def _sweep(args) -> int:
    from dataclasses import replace

    from ..core.data.generate import ShapesConfig, check_fits_shapes, generate_shapes
    from ..core.models.sources import open_source, record_source
    from ..core.services.recipe_sweeps import SearchSpace
    from ..core.store.workspace import Workspace
    from ..core.sweep.search import run_sweep

    space = SearchSpace.from_yaml(args.spec)  # a bad spec, model or dataset fails here, before anything is written
    given = None if args.data in (None, "demo") else Path(args.data).expanduser().resolve()
    source = open_source(args.model, data_yaml=given, trust=args.trust_checkpoint)
    shapes = replace(ShapesConfig(), seed=args.seed)
    shapes = replace(shapes, **{k: v for k, v in {"train": args.train_images, "val": args.val_images}.items() if v})
    if given is None:
        check_fits_shapes(source.names, args.model)
    space.check(source.model.model, given, split_sizes={"train": shapes.train, "val": shapes.val})
    engine = make_engine(args)
    workspace = Workspace(args.workspace)
    try:
        if given is None:
            print(f"generating the shapes dataset ({shapes.train} train / {shapes.val} val images)", flush=True)
        data_yaml = given or generate_shapes(workspace.datasets, shapes).data_yaml
        model_id = record_source(workspace, source)
        print(f"sweep {space.name}: {space.method}, up to {space.trials} trials on {args.engine}", flush=True)
        if getattr(engine, "dashboard_link", None):
            print(f"Dask dashboard: {engine.dashboard_link}", flush=True)
        result = run_sweep(workspace, model_id, data_yaml, space, engine=engine, on_result=_print_trial, check=False)
    finally:
        getattr(engine, "close", lambda: None)()
    _print_summary(workspace, space, result)
    return 0


def _print_trial(spec, result) -> None:
    params = ", ".join(f"{k}={_shown(v)}" for k, v in spec.params.items())
    head = f"trial {result.number} ({result.stage}, {result.worker}, {result.seconds:.1f} s) [{params}]"
    if result.error:
        print(f"{head}: FAILED: {result.error}", flush=True)
        return
    values = "  ".join(f"{k} {v:.{METRIC_DIGITS.get(k, 3)}f}" for k, v in result.values.items())
    print(f"{head}: variant {result.final_id}  {values}", flush=True)


def _print_summary(workspace: Workspace, space, result) -> None:
    from ..core.report.tables import markdown_table
    from ..core.sweep.search import front_objectives

    metrics = [k for k in METRIC_DIGITS if any(k in r for r in result.rows)]
    print(f"\n{len(result.results)} trial runs in {result.seconds:.0f} s, {len(result.failed)} failed")
    against = ", ".join(f"{k} ({d}imized)" for k, d in front_objectives(space).items() if k != space.metric)
    against = against or "nothing else"
    print(f"\nPareto front ({space.metric} {space.direction}imized against {against}; feasible trials):")
    rows = [{**r, "params": ", ".join(f"{k}={_shown(v)}" for k, v in r["params"].items())} for r in result.pareto]
    print(markdown_table(rows, ["number", "variant_id", *metrics, "params"], digits=METRIC_DIGITS))
    best = result.best
    if best is None:
        print(f"\nbest feasible: none ({result.why_no_best})")
    else:
        lineage = " <- ".join(f"{v.id}:{v.step}" for v in workspace.lineage(best["variant_id"]))
        print(f"\nbest feasible: variant {best['variant_id']} ({space.metric} {best[space.metric]:.4f}), {lineage}")
    print(f"ledger: {workspace.ledger.path}")


def _shown(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)
