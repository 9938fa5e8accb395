"""Diagnose a workspace variant with the accuracy or the speed doctor and record the diagnosis in its ledger."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path

from ..errors import ConfigError, WorkbenchError, check_imgsz
from ..store.recorded_data import recorded_data
from ..store.records import Format, Variant
from ..store.workspace import Workspace
from .accuracy import POST_OVERRIDES, PRE_OVERRIDES, list_folder
from .findings import Diagnosis

DOCTORS = ("accuracy", "speed")
OVERRIDES = PRE_OVERRIDES + POST_OVERRIDES
SPEED_IMAGES = 16  # the speed doctor times a few images; more only cost time


@dataclass(frozen=True)
class DiagnoseRequest:
    """The checked inputs of one doctor run on a variant: what `diagnose_variant` hands the doctor."""

    doctor: str
    variant: Variant
    artifact: Path
    reference: Path
    images: tuple[Path, ...]
    images_dir: Path | None
    data: Path | None
    overrides: dict
    imgsz: int | None
    out_dir: Path

    def context(self) -> dict:
        """What the ledger keeps beside the findings: which variant, against what, on which images."""
        return {
            "doctor": self.doctor,
            "variant_id": self.variant.id,
            "artifact": str(self.artifact),
            "reference": str(self.reference),
            "images_dir": str(self.images_dir) if self.images_dir else None,
            "data_yaml": str(self.data) if self.data else None,
            "overrides": dict(self.overrides),
            "out_dir": str(self.out_dir),
        }


def diagnose_variant(
    workspace: Workspace | Path | str,
    variant_id: int,
    *,
    doctor: str,
    images_dir=None,
    data=None,
    reference=None,
    overrides: dict | None = None,
    imgsz: int | None = None,
    budget_s: float = 60.0,
    out_dir=None,
    time_limit_s: float = 10.0,
    threads: int | None = None,
    scenario: str = "single",
    record: bool = True,
) -> tuple[Diagnosis, int | None]:
    """Run the accuracy or the speed doctor on a recorded variant's artifact and record what it found.

    Args:
        workspace: a `Workspace` (or its folder): where the variant, its lineage and the ledger are.
        variant_id: the deployed variant; its artifact is what the doctor diagnoses.
        doctor: "accuracy" or "speed".
        images_dir: a folder of production images (default: the data's val images).
        data: a data YAML (default: the one the ledger recorded for the variant or its ancestors).
        reference: what the deployment was derived from: a variant id or a model path (default: the nearest
            PyTorch ancestor in the variant's lineage, else the artifact itself).
        overrides: for the accuracy doctor, the deployment's preprocessing and postprocessing where they differ
            from the correct (Ultralytics) defaults: color, scale, mean, std, resize, pad_value, layout, conf, iou,
            max_det.
        imgsz: the deployment's input size (default: the artifact's own).
        budget_s: seconds the speed doctor's levers may take.
        out_dir: where the accuracy doctor writes its evidence pictures (default: under the workspace's reports/).
        time_limit_s: how long one call of the deployment may take before it counts as hung (accuracy).
        threads, scenario: the speed doctor's deployment threads and scenario (single, stream, server, offline).
        record: store the diagnosis in the ledger as a measurement of kind "diagnosis" of the variant.
    Returns:
        the diagnosis and its measurement id (None when `record` is False).
    Raises:
        ConfigError: an unknown doctor, variant or override, a variant without an artifact, no images; every
            input is checked before the doctor starts.
    """
    _check_run(budget_s=budget_s, time_limit_s=time_limit_s, threads=threads, scenario=scenario)
    workspace = workspace if isinstance(workspace, Workspace) else Workspace(workspace)
    request = check_request(
        workspace,
        variant_id,
        doctor=doctor,
        images_dir=images_dir,
        data=data,
        reference=reference,
        overrides=overrides or {},
        imgsz=imgsz,
        out_dir=out_dir,
    )
    if doctor == "accuracy":
        diagnosis = _run_accuracy(workspace, request, time_limit_s)
    else:
        diagnosis = _run_speed(workspace, request, budget_s=budget_s, threads=threads, scenario=scenario)
    diagnosis = replace(diagnosis, context={**diagnosis.context, **request.context()})
    return diagnosis, (diagnosis.record(workspace, request.variant.id) if record else None)


def check_request(
    workspace: Workspace, variant_id, *, doctor, images_dir, data, reference, overrides, imgsz, out_dir
) -> DiagnoseRequest:
    """Every input of `diagnose_variant` checked and resolved, nothing run yet.

    Raises:
        ConfigError: naming the bad input and the fix.
    """
    if doctor not in DOCTORS:
        raise ConfigError(f"unknown doctor {doctor!r}", f"choose one of {', '.join(DOCTORS)}")
    overrides = _check_overrides(doctor, overrides)
    variant = _variant(workspace, variant_id)
    artifact = _artifact(workspace, variant)
    data_yaml = _data(data) if data not in (None, "") else recorded_data(workspace, variant.id)
    folder = Path(images_dir).expanduser() if images_dir not in (None, "") else None
    images = _images(folder, data_yaml)
    return DiagnoseRequest(
        doctor=doctor,
        variant=variant,
        artifact=artifact,
        reference=_reference(workspace, variant, artifact, reference),
        images=tuple(images),
        images_dir=folder,
        data=data_yaml,
        overrides=overrides,
        imgsz=check_imgsz(imgsz) if imgsz is not None else None,
        out_dir=Path(out_dir) if out_dir is not None else _default_out(workspace, variant.id, doctor),
    )


def _check_overrides(doctor: str, overrides: dict) -> dict:
    given = {k: v for k, v in dict(overrides).items() if v is not None}
    unknown = sorted(set(given) - set(OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown override(s) {', '.join(unknown)}", f"use {', '.join(OVERRIDES)}")
    if given and doctor != "accuracy":
        raise ConfigError(
            f"the {doctor} doctor takes no preprocessing or postprocessing overrides ({', '.join(sorted(given))})",
            "drop them, or run the accuracy doctor",
        )
    from ..models.detector import Postprocessing, Preprocessing

    pre = {k: tuple(float(x) for x in v) if k in ("mean", "std") else v for k, v in given.items() if k in PRE_OVERRIDES}
    try:
        replace(Preprocessing(), **pre)  # a bad colour, resize, layout, scale or std fails here
    except ConfigError as exc:  # Preprocessing names the allowed values but gives no fix for them
        raise ConfigError(exc.problem, exc.fix or "color rgb|bgr, resize letterbox|stretch, layout nchw|nhwc") from None
    post = replace(Postprocessing(), **{k: v for k, v in given.items() if k in POST_OVERRIDES})
    for name in ("conf", "iou"):
        if not 0 <= getattr(post, name) <= 1:
            raise ConfigError(f"{name} must be between 0 and 1, got {getattr(post, name)}", f"set {name} to e.g. 0.25")
    return given


def _check_run(*, budget_s, time_limit_s, threads, scenario) -> None:
    from .speed import SCENARIOS

    for name, value in (("budget_s", budget_s), ("time_limit_s", time_limit_s)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
            raise ConfigError(f"{name} must be a positive number of seconds, got {value!r}", f"set {name} to e.g. 60")
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 1):
        raise ConfigError(f"threads must be a whole number of at least 1, got {threads!r}", "pass e.g. 2, or none")
    if scenario not in SCENARIOS:
        raise ConfigError(f"unknown scenario {scenario!r}", f"choose one of {', '.join(SCENARIOS)}")


def _variant(workspace: Workspace, variant_id) -> Variant:
    try:
        return workspace.variant(int(variant_id))
    except (TypeError, ValueError):
        raise ConfigError(f"variant id must be a number, got {variant_id!r}", "pass an id from the ledger") from None
    except WorkbenchError as exc:
        known = ", ".join(str(v.id) for v in workspace.ledger.variants()) or "none yet"
        raise ConfigError(exc.problem, f"pick one of the workspace's variants ({known})") from None


def _artifact(workspace: Workspace, variant: Variant) -> Path:
    if not variant.path:
        raise ConfigError(
            f"variant {variant.id} ({variant.name}) has no artifact in {workspace.root}",
            "pick a variant with a file (an export, a .pt), or export this one first",
        )
    path = workspace.root / variant.path
    if not path.exists():
        raise ConfigError(
            f"variant {variant.id}'s artifact {path} is missing", "run the step that made it again, or pick another"
        )
    return path


def _reference(workspace: Workspace, variant: Variant, artifact: Path, reference) -> Path:
    """The given reference (a variant id or a model path), else the nearest PyTorch ancestor, else the artifact."""
    if reference is None or reference == "":
        for ancestor in workspace.lineage(variant.id)[1:]:
            if ancestor.format is Format.PYTORCH and ancestor.path and (workspace.root / ancestor.path).is_file():
                return workspace.root / ancestor.path
        return artifact
    if isinstance(reference, int) or str(reference).isdigit():
        return _artifact(workspace, _variant(workspace, int(reference)))
    from ..models.sources import resolve

    return Path(resolve(reference).ref)


def _data(data) -> Path:
    path = Path(data).expanduser()
    if not path.is_file():
        raise ConfigError(f"data YAML {path} does not exist", "pass the path of a YOLO data YAML, or none")
    return path


def _images(folder: Path | None, data: Path | None) -> list[Path]:
    if folder is not None:
        return list_folder(folder)
    if data is None:
        raise ConfigError(
            "no production images and no data YAML to take val images from",
            "pass a folder of production images, or a data YAML (its val images are used)",
        )
    from ..data.checks import list_images

    return list_images(data, "val")


def _default_out(workspace: Workspace, variant_id: int, doctor: str) -> Path:
    stamp = f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
    return workspace.reports / "diagnoses" / f"variant-{variant_id}-{doctor}-{stamp}"


def _run_accuracy(workspace: Workspace, request: DiagnoseRequest, time_limit_s: float) -> Diagnosis:
    from .accuracy import run_accuracy_doctor

    return run_accuracy_doctor(
        request.artifact,
        request.data,
        request.images_dir,
        reference=request.reference,
        imgsz=request.imgsz,
        workspace=workspace,
        out_dir=request.out_dir,
        time_limit_s=time_limit_s,
        **request.overrides,
    )


def _run_speed(workspace: Workspace, request: DiagnoseRequest, *, budget_s, threads, scenario) -> Diagnosis:
    from ..models.detector import DeploymentSpec
    from .speed import diagnose_speed

    spec = DeploymentSpec(request.artifact, imgsz=request.imgsz or own_imgsz(request.artifact), threads=threads)
    return diagnose_speed(
        spec,
        list(request.images[:SPEED_IMAGES]),
        reference_model=request.reference if request.reference.suffix == ".pt" else None,
        workspace=workspace,
        data_yaml=request.data,
        scenario=scenario,
        budget_s=budget_s,
    )


def own_imgsz(artifact: Path) -> int:
    """A static export's input size, else the size the .pt was trained at, else 640."""
    from ..models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz
    from ..models.runners import RuntimeOptions, open_runner

    if artifact.suffix == ".pt":
        return checkpoint_imgsz(artifact) or DEFAULT_IMGSZ
    shape = open_runner(artifact, RuntimeOptions(threads=1)).input_shape
    side = shape[2] if len(shape) == 4 else None
    return int(side) if isinstance(side, int) and side > 0 else DEFAULT_IMGSZ  # a dynamic axis is named or -1
