"""The `workbench export-mlflow` command: the workspace's variants as MLflow runs, to browse with `mlflow ui`."""

from __future__ import annotations

from pathlib import Path


def _variant_list(text: str) -> list[int]:
    """'1,2,5' as [1, 2, 5] (argparse type: a bad list is refused before anything runs)."""
    import argparse

    parts = [p.strip() for p in text.split(",") if p.strip()]
    if not parts or not all(p.isdigit() for p in parts):
        raise argparse.ArgumentTypeError(f"{text!r} is not a list of variant ids, e.g. 1,2,5")
    return [int(p) for p in parts]


def _export_mlflow(args) -> int:
    from ..core.errors import ConfigError
    from ..core.services.mlflow_variants import export_to_mlflow
    from ..core.store.workspace import LEDGER_NAME, Workspace, default_workspace
    from .progress import ProgressPrinter

    root = Path(args.workspace).expanduser().resolve() if args.workspace else default_workspace()
    if not (root / LEDGER_NAME).is_file():  # never make an empty workspace just to export nothing from it
        raise ConfigError(f"no workspace at {root} (no {LEDGER_NAME})", "pass --workspace, the folder of your study")
    printer = ProgressPrinter()
    try:
        result = export_to_mlflow(
            Workspace(root),
            tracking_uri=args.tracking_uri,
            experiment=args.experiment,
            variant_ids=args.variants,
            artifacts=not args.no_artifacts,
            progress=printer,
        )
    finally:
        printer.close()
    print(
        f"{len(result.runs)} runs in experiment {args.experiment!r} (id {result.experiment_id}): "
        f"{len(result.created)} created, {len(result.updated)} updated"
    )
    for skipped in result.skipped:
        print(f"  variant {skipped.variant_id}: {skipped.what} {skipped.reason}")
    print(f"store:  {result.tracking_uri}")
    print(f"browse: {result.browse}")
    return 0


def add_mlflow_parsers(sub) -> None:
    from ..core.services.mlflow_variants import DEFAULT_EXPERIMENT

    command = sub.add_parser("export-mlflow", help="write the workspace's variants as MLflow runs (see `mlflow ui`)")
    command.add_argument(
        "--workspace", default=None, help="the study's folder (default: $WORKBENCH_WORKSPACE or ./workbench-runs)"
    )
    command.add_argument(
        "--tracking-uri",
        default=None,
        help="an MLflow tracking store: sqlite:///..., file:///..., http(s)://... (default: <workspace>/mlflow.db)",
    )
    command.add_argument("--experiment", default=DEFAULT_EXPERIMENT, help="the MLflow experiment (made if missing)")
    command.add_argument("--variants", type=_variant_list, default=None, help="variant ids, e.g. 1,2,5 (default: all)")
    command.add_argument("--no-artifacts", action="store_true", help="leave out model files and model cards")
    command.set_defaults(run=_export_mlflow)
