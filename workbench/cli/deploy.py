"""The deployment commands of `workbench`: `advise` (where to deploy) and `doctor` (why a deployment loses accuracy
or is slow)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..core.errors import WorkbenchError
from .arguments import _positive, _seconds, _trust_flag


def _advise(args) -> int:
    import json

    from ..core.advise.advisor import advise_model, advise_workspace
    from ..core.advise.catalog import load_catalog
    from ..core.advise.requirements import Requirements
    from ..core.report.advice import BRIEF_ADVICE_COLUMNS
    from ..core.report.tables import markdown_table
    from ..core.store.workspace import Workspace, default_workspace

    given = {k: v for k, v in vars(args).items() if k in Requirements.__dataclass_fields__ and v is not None}
    requirements = Requirements.from_dict(given, source="workbench advise")
    targets = load_catalog(args.targets)
    root = Path(args.workspace) if args.workspace else default_workspace()
    has_ledger = (Path(root) / "workbench.db").is_file()
    if args.variant or (has_ledger and args.model is None):
        advice = advise_workspace(Workspace(root), requirements, variant_ids=args.variant, targets=targets)
    else:
        workspace = Workspace(root) if has_ledger else None
        advice = advise_model(
            args.model or "demo", requirements, targets=targets, trust=args.trust_checkpoint, workspace=workspace
        )
    if args.json:
        print(
            json.dumps(
                {"requirements": vars(requirements), "ranking": advice.rows(), "summary": advice.summary()},
                indent=2,
                default=str,
            )
        )
        return 0
    columns = [("target" if c == "name" else c) for c in BRIEF_ADVICE_COLUMNS]  # the catalog id: names run long
    digits = {"p99_ms": 1, "network_ms": 1, "memory_mb": 0, "monthly_usd": 0}
    print(markdown_table(advice.rows(), columns, digits=digits))
    print(f"\n{advice.summary()}")
    return 0


ACCURACY_OVERRIDES = ("color", "scale", "mean", "std", "resize", "pad_value", "layout", "conf", "iou")


def _doctor(args) -> int:
    """`workbench doctor accuracy|speed`: the diagnosis as text (or JSON); exit 0 when nothing was found, 1 else.

    With `--variant`, the deployed artifact is that workspace variant's and the diagnosis is recorded in the
    workspace's ledger; without it, `--model` (default demo) is diagnosed and nothing is recorded.
    """
    import json

    from ..core.doctor.accuracy import describe_diagnosis

    if args.variant is not None:
        diagnosis, measurement_id = _doctor_variant(args)
    else:
        diagnosis, measurement_id = _doctor_model(args), None
    if args.json:
        findings = [f.as_dict() for f in diagnosis.findings]
        report = {"sentence": diagnosis.sentence(), "ok": diagnosis.ok, "findings": findings}
        if args.variant is not None:
            report.update(variant_id=args.variant, measurement_id=measurement_id)
        print(json.dumps(report, indent=2))
    else:
        print(describe_diagnosis(diagnosis))
        if measurement_id is not None:
            print(f"\nrecorded as measurement {measurement_id} of variant {args.variant}")
    return 0 if diagnosis.ok else 1


def _doctor_variant(args):
    """The diagnosis of a workspace variant's artifact, recorded in that workspace's ledger."""
    from ..core.doctor.on_variant import diagnose_variant
    from ..core.errors import ConfigError
    from ..core.store.workspace import Workspace, default_workspace

    if args.model is not None:
        raise ConfigError(
            "--model and --variant both name the deployed artifact",
            "pick one: --variant ID (a workspace variant, recorded in its ledger) or --model ARTIFACT",
        )
    if getattr(args, "runtime", None) is not None:
        raise ConfigError(
            "--runtime exports a --model; a --variant is diagnosed in its own runtime",
            "export the variant to that runtime first and pass the export's variant id",
        )
    root = Path(args.workspace) if args.workspace else default_workspace()
    if not (root / "workbench.db").is_file():
        raise ConfigError(f"no workspace ledger in {root}", "pass --workspace DIR of the workspace the variant is in")
    options = {"doctor": args.which, "images_dir": args.images, "data": args.data, "imgsz": args.imgsz}
    if args.which == "accuracy":
        overrides = {k: getattr(args, k) for k in ACCURACY_OVERRIDES if getattr(args, k) is not None}
        options.update(reference=args.reference, overrides=overrides, out_dir=args.out, time_limit_s=args.time_limit)
    else:
        options.update(budget_s=args.budget, threads=args.threads, scenario=args.scenario)
    return diagnose_variant(Workspace(root), args.variant, **options)


def _doctor_model(args):
    """The diagnosis of `--model` (default demo), as before `--variant` existed; nothing is recorded."""
    from ..core.doctor.accuracy import run_accuracy_doctor
    from ..core.store.workspace import Workspace

    model = args.model or "demo"
    workspace = Workspace(args.workspace) if args.workspace else None
    if args.which == "accuracy":
        overrides = {k: getattr(args, k) for k in ACCURACY_OVERRIDES}
        return run_accuracy_doctor(
            model, args.data, args.images, reference=args.reference, imgsz=args.imgsz, out_dir=args.out,
            time_limit_s=args.time_limit, workspace=workspace, **overrides,
        )  # fmt: skip
    from ..core.doctor.speed import run_speed_doctor

    if args.images is None:
        raise WorkbenchError("the speed doctor needs images", "pass --images DIR (a folder of JPEG or PNG files)")
    return run_speed_doctor(
        model, args.images, imgsz=args.imgsz, threads=args.threads, runtime=args.runtime,
        scenario=args.scenario, data=args.data, budget_s=args.budget, workspace=workspace,
    )  # fmt: skip


def _advise_parser(sub, workspace_help: str, model_help: str) -> None:
    advise = sub.add_parser("advise", help="rank cloud, edge and on-premises targets for your requirements")
    advise.add_argument("--workspace", default=None, help=workspace_help + "; its models and measurements are used")
    advise.add_argument("--model", default=None, help=model_help + " (default: the workspace's models, else demo)")
    _trust_flag(advise)
    advise.add_argument("--variant", type=_positive, nargs="+", default=None, help="workspace variant ids to rank")
    advise.add_argument("--targets", action="append", default=[], help="a YAML of more targets (repeatable)")
    advise.add_argument("--json", action="store_true", help="print the ranking as JSON")
    _requirement_flags(advise)
    advise.set_defaults(run=_advise)


def _doctor_parser(sub, model_help: str, workspace_help: str = "folder of the ledger and artifacts") -> None:
    doctor = sub.add_parser("doctor", help="find why a deployment loses accuracy or is slow, and prove the fix")
    which = doctor.add_subparsers(dest="which", required=True)
    accuracy = which.add_parser("accuracy", help="the deployment against its reference: data, preprocessing, ...")
    speed = which.add_parser("speed", help="time the deployment, then every lever: engine, threads, precision, ...")
    for command in (accuracy, speed):
        command.add_argument(
            "--model", default=None, help=model_help + ", or an export: the deployed artifact (default: demo)"
        )
        command.add_argument("--workspace", default=None, help=workspace_help + "; where --variant is looked up")
        command.add_argument(
            "--variant", type=_positive, default=None, help="a workspace variant id: its artifact is the deployed "
            "one, and the diagnosis is recorded in the workspace's ledger (instead of --model)"
        )  # fmt: skip
        command.add_argument("--images", default=None, help="a folder of production images")
        command.add_argument("--data", default=None, help="a data YAML: labelled control set (its val split)")
        command.add_argument("--imgsz", type=_positive, default=None, help="the deployment's input size")
        command.add_argument("--json", action="store_true", help="print the diagnosis as JSON")
    accuracy.add_argument("--reference", default=None, help="what the deployment was derived from (default: model)")
    accuracy.add_argument("--color", choices=["rgb", "bgr"], default=None, help="channel order the deployment feeds")
    accuracy.add_argument("--scale", type=float, default=None, help="the deployment's pixel scale (e.g. 1 or 1/255)")
    accuracy.add_argument("--mean", type=float, nargs=3, default=None, help="per-channel mean it subtracts")
    accuracy.add_argument("--std", type=float, nargs=3, default=None, help="per-channel std it divides by")
    accuracy.add_argument("--resize", choices=["letterbox", "stretch"], default=None)
    accuracy.add_argument("--pad-value", type=int, default=None, dest="pad_value")
    accuracy.add_argument("--layout", choices=["nchw", "nhwc"], default=None)
    accuracy.add_argument("--conf", type=float, default=None, help="its confidence threshold")
    accuracy.add_argument("--iou", type=float, default=None, help="its NMS IoU threshold")
    accuracy.add_argument("--out", default=None, help="a folder for the evidence pictures")
    accuracy.add_argument("--time-limit", type=_seconds, default=10.0, dest="time_limit", help="per call, seconds")
    speed.add_argument("--threads", type=_positive, default=None)
    speed.add_argument("--runtime", choices=["onnxruntime", "openvino"], default=None, help="export a .pt to it")
    speed.add_argument("--scenario", choices=["single", "stream", "server", "offline"], default="single")
    speed.add_argument("--budget", type=_seconds, default=60.0, help="seconds the levers may take (default 60)")
    doctor.set_defaults(run=_doctor)


def _requirement_flags(command) -> None:
    """One flag per Requirements field (--latency-p99-ms, --fleet-size, ...), defaults from the dataclass."""
    import dataclasses
    import typing

    from ..core.advise.requirements import Connectivity, Requirements

    hints = typing.get_type_hints(Requirements)
    for field in dataclasses.fields(Requirements):
        hint, flag = hints[field.name], "--" + field.name.replace("_", "-")
        if hint is bool:
            kind, extra = _yes_no, {"metavar": "yes|no"}
        elif hint is Connectivity:
            kind, extra = str, {"choices": [c.value for c in Connectivity]}
        else:
            kind, extra = (int if hint is int else float), {}
        command.add_argument(flag, type=kind, default=None, help=f"default {field.default}", **extra)


def _yes_no(value: str) -> bool:
    if value.lower() in ("yes", "true", "1"):
        return True
    if value.lower() in ("no", "false", "0"):
        return False
    raise argparse.ArgumentTypeError(f"expected yes or no, got {value!r}")
