"""The `workbench` command (also `python -m workbench`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from ..core.errors import ConfigError, WorkbenchError
from .arguments import _positive, _seconds, _trust_flag
from .bundle import add_bundle_parsers
from .card import add_card_parsers
from .deploy import _advise_parser, _doctor_parser
from .mlflow import add_mlflow_parsers
from .progress import ProgressPrinter
from .serve import add_serve_parsers
from .serve_admin import add_admin_parsers
from .sweep import add_sweep_parsers
from .worker import add_worker_parsers


def _shapes(args):
    """The generated dataset the arguments ask for (the defaults where they say nothing)."""
    from dataclasses import replace

    from ..core.data.generate import ShapesConfig

    config = replace(ShapesConfig(), seed=args.seed)
    given = {"train": args.train_images, "val": args.val_images}  # None: not given; 0 never gets here (_positive)
    return replace(config, **{split: count for split, count in given.items() if count is not None})


def _given_data(args) -> Path | None:
    """The user's data YAML, or None for the generated shapes dataset ('demo' or nothing given)."""
    return None if args.data in (None, "demo") else Path(args.data).expanduser().resolve()


def _run(fn, *args, **kwargs):
    """Call a long step with a progress printer that is closed however the step ends."""
    printer = ProgressPrinter()
    try:
        return fn(*args, progress=printer, **kwargs)
    finally:
        printer.close()


def _demo(args) -> int:
    from ..core.services.demo import DemoConfig, run_demo

    config = DemoConfig(
        workspace=args.workspace,
        model=args.model,
        data=_given_data(args),
        shapes=_shapes(args),
        measure=not args.no_measure,
        recipe=None if args.no_optimize else args.recipe,
        trust=args.trust_checkpoint,
    )
    start = time.perf_counter()
    result = _run(run_demo, config)
    acc = result.accuracy
    print(
        f"model {args.model}: mAP50 {acc.map50:.4f}, mAP50-95 {acc.map50_95:.4f} on {acc.images} val images "
        f"({time.perf_counter() - start:.0f} s)"
    )
    print(f"ledger: {result.workspace.ledger.path}")
    print(f"report: {result.report}")
    return 0


def _info(args) -> int:
    from ..core.environment import describe

    print(describe())
    return 0


def _data(args) -> int:
    from ..core.data.generate import ShapesConfig, generate_shapes, generate_shift

    config = ShapesConfig(seed=args.seed, train=args.train_images, val=args.val_images, imgsz=args.imgsz)
    printer = ProgressPrinter()
    try:
        dataset = generate_shapes(args.out, config, progress=printer)
        shifted = [generate_shift(dataset, shift, progress=printer) for shift in args.shift]
    finally:
        printer.close()
    print(f"data YAML: {dataset.data_yaml}")
    for path in shifted:
        print(f"shifted:   {path}")
    return 0


def _demo_model(args) -> int:
    import json

    from ..core.models import cards

    if args.student and args.searched:
        raise ConfigError("--student and --searched name two models", "give one of them")
    if not args.train:
        which = "student" if args.student else "searched" if args.searched else "demo"
        weights = getattr(cards, f"{which}_weights")()
        if not weights.is_file():
            raise ConfigError(f"{weights} is not in this install", "reinstall the workbench, or make it with --train")
        card = cards.read_card(weights)
        print(f"{weights}\n{json.dumps({k: v for k, v in card.items() if k != 'history'}, indent=2)}")
        return 0
    if args.searched:
        from ..core.services.searched_model import train_searched

        card = _run(train_searched, args.out, args.workspace)
        print(
            f"searched variant: trial {card['search']['chosen_trial']} of {card['search']['name']}, mAP50-95 "
            f"{card['metrics']['map50_95']}: {Path(args.out) / card['model']}"
        )
        return 0
    if args.student:
        from ..core.services.shipped_models import train_student

        card = _run(train_student, args.out, args.workspace)
        print(
            f"student mAP50-95 {card['metrics']['map50_95']} after {card['epochs']} epochs: "
            f"{Path(args.out) / card['model']}"
        )
        return 0
    from dataclasses import replace

    from ..core.services.shipped_models import DEMO_RECIPE, train_demo_model

    recipe = replace(DEMO_RECIPE, epochs=args.epochs or DEMO_RECIPE.epochs)
    card = _run(train_demo_model, args.out, Path(args.workspace) / "datasets", recipe=recipe)
    print(
        f"mAP50 {card['metrics']['map50']}, mAP50-95 {card['metrics']['map50_95']} "
        f"after {card['epochs']} epochs ({card['train_seconds']} s)"
    )
    print(f"weights and card: {Path(args.out) / card['model']}")
    return 0


def _evaluate(args) -> int:
    from ..core.measure.accuracy import AccuracyConfig, evaluate
    from ..core.models.checkpoints import DEFAULT_IMGSZ, training_imgsz
    from ..core.models.sources import load_model

    config = AccuracyConfig(imgsz=args.imgsz, batch=args.batch)
    model = load_model(args.model, trust=args.trust_checkpoint)
    imgsz = args.imgsz or training_imgsz(model) or DEFAULT_IMGSZ
    result = _run(evaluate, model, args.data, AccuracyConfig(imgsz=imgsz, batch=config.batch))
    source = "as given" if args.imgsz else "the size the model was trained at"
    print(
        f"mAP50 {result.map50:.4f}  mAP50-95 {result.map50_95:.4f}  precision {result.precision:.4f}  "
        f"recall {result.recall:.4f}  ({result.images} images, {result.instances} instances, imgsz {imgsz}: "
        f"{source})"
    )
    for row in result.per_class:
        print(f"  {row['class']:<16} mAP50 {row['map50']:.4f}  mAP50-95 {row['map50_95']:.4f}")
    return 0


def _bench(args) -> int:
    from ..core.bench.run import TABLE_COLUMNS, BenchConfig, run_bench
    from ..core.report.tables import markdown_table

    config = BenchConfig(
        model=args.model,
        data=_given_data(args),
        imgsizes=tuple(args.imgsz),
        threads=args.threads,
        seconds=args.seconds,
        benchmark_app_seconds=args.benchmark_app_seconds,
        shapes=_shapes(args),
        trust=args.trust_checkpoint,
        serving=not args.no_serving,
    )
    start = time.perf_counter()
    result = _run(run_bench, args.out, config)
    print(markdown_table(result["records"], TABLE_COLUMNS))
    print(f"\n{len(result['records'])} rows in {time.perf_counter() - start:.0f} s: {Path(args.out) / 'results.json'}")
    return 0


def _optimize(args) -> int:
    from ..core.data.generate import check_fits_shapes, generate_shapes
    from ..core.models.sources import open_source, record_source
    from ..core.optimize.recipes import PipelineError, Recipe, check_recipe
    from ..core.report.tables import markdown_table, pipeline_table
    from ..core.services.measuring import run_recipe
    from ..core.store.workspace import Workspace

    recipe = Recipe.load(args.recipe)  # a bad recipe, model or dataset fails here, before anything is written
    given = _given_data(args)
    source = open_source(args.model, data_yaml=given, trust=args.trust_checkpoint)
    shapes = _shapes(args)
    if given is None:
        check_fits_shapes(source.names, args.model)
    check_recipe(recipe, source.model.model, given, split_sizes={"train": shapes.train, "val": shapes.val})
    workspace = Workspace(args.workspace)
    printer = ProgressPrinter()
    try:
        data_yaml = given or generate_shapes(workspace.datasets, shapes, progress=printer).data_yaml
        result = run_recipe(workspace, recipe, record_source(workspace, source), data_yaml, progress=printer)
    except PipelineError as exc:
        for step in exc.completed:
            print(f"kept: step {step.index} ({step.kind}) -> variants {step.variants}")
        raise
    finally:
        printer.close()
    rows = pipeline_table(workspace, result)
    sizes = sorted({k for row in rows for k in row if k.startswith("p50_ms_")})
    columns = ["step", "variant", "runtime", "precision", "gflops", *sizes, "map50_95", "map_imgsz", "map_set"]
    print(markdown_table(rows, columns, digits={"gflops": 2, "map50_95": 4, **dict.fromkeys(sizes, 1)}))
    if result.standings:
        aim = ", ".join(f"{k} {v}" for k, v in vars(recipe.aim).items() if v is not None)
        print(f"\naim ({aim}):")
        print(markdown_table(result.standings, ["variant_id", "variant", "p99_ms", "map50_95", "meets", "misses"]))
        best = result.best
        print(f"best: variant {best['variant_id']} ({best['variant']})" if best else "no variant meets the aim")
    print(f"\nledger: {workspace.ledger.path}  (workbench optimize --recipe {args.recipe})")
    return 0


def _common_data(command, *, model_help: str) -> None:
    """--model and --data, and the generated dataset's sizes: every command that takes a model takes its data."""
    command.add_argument("--model", default="demo", help=model_help)
    _trust_flag(command)
    command.add_argument(
        "--data",
        default=None,
        help="your data YAML, or 'demo' for the generated shapes dataset (the default)",
    )
    command.add_argument("--train-images", type=_positive, default=None, help="generated train images (default 800)")
    command.add_argument("--val-images", type=_positive, default=None, help="generated val images (default 200)")
    command.add_argument("--seed", type=int, default=0, help="seed of the generated dataset")


def parser() -> argparse.ArgumentParser:
    from ..core.data.generate import SHIFTS

    main = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = main.add_subparsers(dest="command", required=True)
    workspace_help = "folder for ledger, artifacts and reports (default: $WORKBENCH_WORKSPACE or ./workbench-runs)"
    model_help = "'demo', 'student', 'searched', or the path of a trained .pt"

    demo = sub.add_parser("demo", help="export, measure and compare a model end to end, write a report")
    demo.add_argument("--workspace", default=None, help=workspace_help)
    _common_data(demo, model_help=model_help)
    demo.add_argument("--no-measure", action="store_true", help="skip export and the runtime measurements")
    demo.add_argument("--recipe", default="demo-short", help="optimization recipe run after the exports")
    demo.add_argument("--no-optimize", action="store_true", help="skip the optimization recipe")
    demo.set_defaults(run=_demo)

    optimize = sub.add_parser("optimize", help="run an optimization recipe (prune, distill, quantize, export)")
    optimize.add_argument("--recipe", required=True, help="a recipe YAML, or a shipped one: demo-short, demo-best")
    optimize.add_argument("--workspace", default=None, help=workspace_help)
    _common_data(optimize, model_help=model_help)
    optimize.set_defaults(run=_optimize)

    info = sub.add_parser("info", help="print the environment fingerprint")
    info.set_defaults(run=_info)

    data = sub.add_parser("data", help="generate the shapes dataset and domain-shifted copies")
    data.add_argument("--out", default="workbench-runs/datasets")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--train-images", type=_positive, default=800)
    data.add_argument("--val-images", type=_positive, default=200)
    data.add_argument("--imgsz", type=_positive, default=320)
    data.add_argument("--shift", action="append", default=[], choices=SHIFTS, help="repeat for several")
    data.set_defaults(run=_data)

    model = sub.add_parser("demo-model", help="show the shipped demo model's card, or retrain it (--train)")
    model.add_argument("--train", action="store_true", help="reproduce the demo model from scratch")
    model.add_argument(
        "--student",
        action="store_true",
        help="the pruned student instead (recipe demo-best, about 98 minutes to train)",
    )
    model.add_argument(
        "--searched",
        action="store_true",
        help="the searched variant instead (search-student.yaml: 2 trials, about 33 minutes on 2 cores)",
    )
    model.add_argument("--epochs", type=_positive, default=None, help="override the recipe's epochs")
    model.add_argument("--out", default="workbench-runs/demo-model")
    model.add_argument("--workspace", default="workbench-runs")
    model.set_defaults(run=_demo_model)

    bench = sub.add_parser("bench", help="a model on every runtime at 320 and 640 (bench/results.json)")
    bench.add_argument("--out", default="bench")
    _common_data(bench, model_help=model_help)
    bench.add_argument("--imgsz", type=_positive, nargs="+", default=[320, 640])
    bench.add_argument("--threads", type=_positive, default=2)
    bench.add_argument("--seconds", type=_seconds, default=5.0, help="timed seconds per row (default 5)")
    bench.add_argument("--benchmark-app-seconds", type=_positive, default=10)
    bench.add_argument("--no-serving", action="store_true", help="skip the serving section (HTTPS against in process)")
    bench.set_defaults(run=_bench)

    evaluate = sub.add_parser("evaluate", help="mAP of a model on a YOLO dataset (Ultralytics' validator)")
    evaluate.add_argument("--model", default="demo", help=model_help + ", or an exported model")
    _trust_flag(evaluate)
    evaluate.add_argument("--data", required=True, help="a YOLO data YAML")
    evaluate.add_argument("--imgsz", type=_positive, default=None, help="default: the size the model was trained at")
    evaluate.add_argument("--batch", type=_positive, default=16)
    evaluate.set_defaults(run=_evaluate)
    _advise_parser(sub, workspace_help, model_help)
    _doctor_parser(sub, model_help)
    add_serve_parsers(sub)
    add_admin_parsers(sub)
    add_bundle_parsers(sub)
    add_card_parsers(sub)
    add_sweep_parsers(sub)
    add_mlflow_parsers(sub)
    add_worker_parsers(sub)
    return main


def _terminate_like_interrupt(signum, frame):
    """SIGTERM (a `kill`, a container stop) unwinds like Ctrl-C, so every staged write is cleaned up."""
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    import signal
    import threading

    args = parser().parse_args(argv)
    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate_like_interrupt) if main_thread else None
    try:
        return args.run(args)
    except WorkbenchError as exc:
        print(f"error: {exc.problem}", file=sys.stderr)
        if exc.fix:
            print(f"  fix: {exc.fix}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished artifacts are kept, the unfinished step left nothing behind", file=sys.stderr)
        return 130
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
