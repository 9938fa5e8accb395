"""The `workbench` command (also `python -m workbench`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from .core.errors import WorkbenchError
from .core.progress import Progress


class ProgressPrinter:
    """One line per stage on a terminal (redrawn in place), a line per 10% otherwise."""

    def __init__(self, stream=None):
        self.stream = stream or sys.stderr
        self.tty = self.stream.isatty()
        self.stage, self.last_tenth, self.start = None, -1, time.perf_counter()

    def __call__(self, event: Progress) -> None:
        if event.stage != self.stage:
            if self.stage is not None and self.tty:
                self.stream.write("\n")
            self.stage, self.last_tenth, self.start = event.stage, -1, time.perf_counter()
        fraction = event.fraction
        if fraction is None:
            text = f"{event.stage}: {event.message}".rstrip(": ")
        else:
            bar = "#" * int(fraction * 24)
            text = (f"{event.stage:<18} [{bar:<24}] {event.done}/{event.total} "
                    f"{time.perf_counter() - self.start:5.1f}s {event.message}")
        if self.tty:
            self.stream.write("\r" + text[:150])
        elif fraction is None or int(fraction * 10) > self.last_tenth:
            self.last_tenth = -1 if fraction is None else int(fraction * 10)
            self.stream.write(text + "\n")
        self.stream.flush()

    def close(self) -> None:
        if self.tty and self.stage is not None:
            self.stream.write("\n")


def _demo(args) -> int:
    from .core.data.generate import ShapesConfig
    from .core.services.demo import DemoConfig, run_demo
    from .core.services.shipped_models import DEMO_DATA

    data = ShapesConfig(seed=args.seed, train=args.train_images or DEMO_DATA.train,
                        val=args.val_images or DEMO_DATA.val, imgsz=DEMO_DATA.imgsz)
    printer = ProgressPrinter()
    start = time.perf_counter()
    try:
        result = run_demo(DemoConfig(workspace=Path(args.workspace), model=args.model, data=data,
                                     measure=not args.no_measure,
                                     recipe=None if args.no_optimize else args.recipe), progress=printer)
    finally:
        printer.close()
    acc = result.accuracy
    print(f"model {args.model}: mAP50 {acc.map50:.4f}, mAP50-95 {acc.map50_95:.4f} on {acc.images} val images "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"ledger: {result.workspace.ledger.path}")
    print(f"report: {result.report}")
    return 0


def _info(args) -> int:
    from .core.environment import describe

    print(describe())
    return 0


def _data(args) -> int:
    from .core.data.generate import ShapesConfig, generate_shapes, generate_shift

    printer = ProgressPrinter()
    try:
        dataset = generate_shapes(args.out, ShapesConfig(seed=args.seed, train=args.train_images,
                                                         val=args.val_images, imgsz=args.imgsz), progress=printer)
        shifted = [generate_shift(dataset, shift, progress=printer) for shift in args.shift]
    finally:
        printer.close()
    print(f"data YAML: {dataset.data_yaml}")
    for path in shifted:
        print(f"shifted:   {path}")
    return 0


def _demo_model(args) -> int:
    import json

    from .core.models.sources import demo_card, demo_weights, student_card, student_weights

    if not args.train:
        card, weights = (student_card(), student_weights()) if args.student else (demo_card(), demo_weights())
        print(f"{weights}\n{json.dumps({k: v for k, v in card.items() if k != 'history'}, indent=2)}")
        return 0
    if args.student:
        from .core.services.shipped_models import train_student

        printer = ProgressPrinter()
        try:
            card = train_student(args.out, args.workspace, progress=printer)
        finally:
            printer.close()
        print(f"student mAP50-95 {card['metrics']['map50_95']} after {card['epochs']} epochs: "
              f"{Path(args.out) / card['model']}")
        return 0
    from dataclasses import replace

    from .core.services.shipped_models import DEMO_RECIPE, train_demo_model

    recipe = replace(DEMO_RECIPE, epochs=args.epochs or DEMO_RECIPE.epochs)
    printer = ProgressPrinter()
    try:
        card = train_demo_model(args.out, Path(args.workspace) / "datasets", recipe=recipe, progress=printer)
    finally:
        printer.close()
    print(f"mAP50 {card['metrics']['map50']}, mAP50-95 {card['metrics']['map50_95']} "
          f"after {card['epochs']} epochs ({card['train_seconds']} s)")
    print(f"weights and card: {Path(args.out) / card['model']}")
    return 0


def _evaluate(args) -> int:
    from .core.measure.accuracy import AccuracyConfig, evaluate
    from .core.models.sources import load_model

    model = load_model(args.model)
    printer = ProgressPrinter()
    try:
        result = evaluate(model, args.data, AccuracyConfig(imgsz=args.imgsz, batch=args.batch), progress=printer)
    finally:
        printer.close()
    print(f"mAP50 {result.map50:.4f}  mAP50-95 {result.map50_95:.4f}  precision {result.precision:.4f}  "
          f"recall {result.recall:.4f}  ({result.images} images, {result.instances} instances)")
    for row in result.per_class:
        print(f"  {row['class']:<16} mAP50 {row['map50']:.4f}  mAP50-95 {row['map50_95']:.4f}")
    return 0


def _bench(args) -> int:
    from .core.bench.reference import BenchConfig, markdown_table, run_bench

    printer = ProgressPrinter()
    start = time.perf_counter()
    try:
        result = run_bench(args.out, BenchConfig(imgsizes=tuple(args.imgsz), threads=args.threads),
                           progress=printer)
    finally:
        printer.close()
    print(markdown_table(result["records"]))
    print(f"\n{len(result['records'])} rows in {time.perf_counter() - start:.0f} s: {Path(args.out) / 'results.json'}")
    return 0


def _optimize(args) -> int:
    from .core.optimize.recipes import PipelineError, Recipe, pipeline_table, run_recipe
    from .core.store.workspace import Workspace

    recipe = Recipe.load(args.recipe)  # a bad recipe fails here, before any data or model work
    workspace = Workspace(args.workspace)
    printer = ProgressPrinter()
    try:
        data_yaml = _data_yaml(args, workspace, printer)
        model_id = _import_model(workspace, args.model)
        result = run_recipe(workspace, recipe, model_id, data_yaml, progress=printer)
    except PipelineError as exc:
        for step in exc.completed:
            print(f"kept: step {step.index} ({step.kind}) -> variants {step.variants}")
        raise
    finally:
        printer.close()
    rows = pipeline_table(workspace, result)
    sizes = sorted({k for row in rows for k in row if k.startswith("p50_ms_")})
    print(f"| step | variant | runtime | precision | GFLOPs | {' | '.join(sizes)} | mAP50-95 (imgsz) |")
    print("|" + "---|" * (6 + len(sizes)))
    for row in rows:
        gflops = f"{row['gflops']:.2f}" if row.get("gflops") else ""
        cells = [f"{row[k]:.1f}" if row.get(k) else "" for k in sizes]
        score = f"{row['map50_95']:.4f} ({row['map_imgsz']})" if row["map50_95"] is not None else ""
        print(f"| {row['step']} | {row['variant']} | {row.get('runtime', '')} | {row.get('precision', '')} | "
              f"{gflops} | {' | '.join(cells)} | {score} |")
    print(f"\nledger: {workspace.ledger.path}  (workbench optimize --recipe {args.recipe})")
    return 0


def _data_yaml(args, workspace, progress) -> Path:
    if args.data != "demo":
        return Path(args.data)
    from dataclasses import replace

    from .core.data.generate import generate_shapes
    from .core.services.shipped_models import DEMO_DATA

    config = replace(DEMO_DATA, train=args.train_images or DEMO_DATA.train, val=args.val_images or DEMO_DATA.val)
    return generate_shapes(workspace.datasets, config, progress=progress).data_yaml


def _import_model(workspace, spec: str) -> int:
    from .core.models.sources import load_model, resolve

    source = resolve(spec)
    model = load_model(spec)
    path = Path(model.ckpt_path or source.ref)
    if path.suffix != ".pt":
        raise WorkbenchError(f"{spec} is not a PyTorch checkpoint", "optimize a .pt model ('demo' or a path)")
    return workspace.add_artifact(path, path.name, step="source", params={"source": spec}, format="pt")


def parser() -> argparse.ArgumentParser:
    from .core.data.generate import SHIFTS

    main = argparse.ArgumentParser(prog="workbench", description=__doc__)
    sub = main.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="run the pipeline end to end on the embedded default, write a report")
    demo.add_argument("--workspace", default="workbench-runs", help="folder for ledger, artifacts and reports")
    demo.add_argument("--model", default="demo", help="'demo', a .pt path, an Ultralytics name or a model YAML")
    demo.add_argument("--train-images", type=int, default=None, help="generated train images (default 800)")
    demo.add_argument("--val-images", type=int, default=None, help="generated val images (default 200)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--no-measure", action="store_true", help="skip export and the runtime measurements")
    demo.add_argument("--recipe", default="demo-short", help="optimization recipe run after the exports")
    demo.add_argument("--no-optimize", action="store_true", help="skip the optimization recipe")
    demo.set_defaults(run=_demo)

    optimize = sub.add_parser("optimize", help="run an optimization recipe (prune, distill, quantize, export)")
    optimize.add_argument("--recipe", required=True, help="a recipe YAML, or a shipped one: demo-short, demo-best")
    optimize.add_argument("--model", default="demo", help="'demo' or a .pt path")
    optimize.add_argument("--data", default="demo", help="'demo' (the generated shapes dataset) or a data YAML")
    optimize.add_argument("--workspace", default="workbench-runs")
    optimize.add_argument("--train-images", type=int, default=None, help="demo data: train images (default 800)")
    optimize.add_argument("--val-images", type=int, default=None, help="demo data: val images (default 200)")
    optimize.set_defaults(run=_optimize)

    info = sub.add_parser("info", help="print the environment fingerprint")
    info.set_defaults(run=_info)

    data = sub.add_parser("data", help="generate the shapes dataset and domain-shifted copies")
    data.add_argument("--out", default="workbench-runs/datasets")
    data.add_argument("--seed", type=int, default=0)
    data.add_argument("--train-images", type=int, default=800)
    data.add_argument("--val-images", type=int, default=200)
    data.add_argument("--imgsz", type=int, default=320)
    data.add_argument("--shift", action="append", default=[], choices=SHIFTS, help="repeat for several")
    data.set_defaults(run=_data)

    model = sub.add_parser("demo-model", help="show the shipped demo model's card, or retrain it (--train)")
    model.add_argument("--train", action="store_true", help="reproduce the demo model from scratch")
    model.add_argument("--student", action="store_true",
                       help="the pruned student instead (recipe demo-best, about 80 minutes to train)")
    model.add_argument("--epochs", type=int, default=None, help="override the recipe's epochs")
    model.add_argument("--out", default="workbench-runs/demo-model")
    model.add_argument("--workspace", default="workbench-runs")
    model.set_defaults(run=_demo_model)

    bench = sub.add_parser("bench", help="the demo model on every runtime at 320 and 640 (bench/results.json)")
    bench.add_argument("--out", default="bench")
    bench.add_argument("--imgsz", type=int, nargs="+", default=[320, 640])
    bench.add_argument("--threads", type=int, default=2)
    bench.set_defaults(run=_bench)

    evaluate = sub.add_parser("evaluate", help="mAP of a model on a YOLO dataset (Ultralytics' validator)")
    evaluate.add_argument("--model", default="demo")
    evaluate.add_argument("--data", required=True, help="a YOLO data YAML")
    evaluate.add_argument("--imgsz", type=int, default=320)
    evaluate.add_argument("--batch", type=int, default=16)
    evaluate.set_defaults(run=_evaluate)
    return main


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
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


if __name__ == "__main__":
    sys.exit(main())
