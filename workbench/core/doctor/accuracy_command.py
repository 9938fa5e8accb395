"""The accuracy doctor from CLI-like inputs: a model, a folder of production images, an optional data YAML and the
deployment's preprocessing and postprocessing as overrides of the correct (Ultralytics) defaults; and the diagnosis
as lines of text for a terminal."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..errors import ConfigError
from ..models.detector import DeploymentSpec, Postprocessing, Preprocessing
from .accuracy import diagnose_accuracy
from .findings import Diagnosis

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PRE_OVERRIDES = ("color", "scale", "mean", "std", "resize", "pad_value", "layout")
POST_OVERRIDES = ("conf", "iou", "max_det")


def run_accuracy_doctor(
    model,
    data=None,
    images_dir=None,
    *,
    reference=None,
    imgsz: int | None = None,
    training_dir=None,
    workspace=None,
    out_dir=None,
    time_limit_s: float = 10,
    **overrides,
) -> Diagnosis:
    """Diagnose the deployment of `model` with the given overrides against its correct deployment.

    Args:
        model: the deployed artifact (.pt, .onnx, OpenVINO folder, .torchscript, .tflite) or 'demo'.
        data: a data YAML: its val split is the labelled control set, its train split the training distribution.
        images_dir: a folder of production images (default: the data's val images).
        reference: the artifact the deployment was derived from (default: `model` itself with the default
            pipeline); a .pt reference is also what re-exports start from.
        imgsz: the deployment's input size (default: the model's own: a static export's, else its training size).
        training_dir: a folder of training images for the data check (default: the data's train split).
        overrides: the deployment's preprocessing (color, scale, mean, std, resize, pad_value, layout) and
            postprocessing (conf, iou, max_det), as `Preprocessing` and `Postprocessing` name them.
    Raises:
        ConfigError: an unknown override, no images, or a model that does not resolve.
    """
    unknown = sorted(set(overrides) - set(PRE_OVERRIDES) - set(POST_OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}", f"use {', '.join(PRE_OVERRIDES + POST_OVERRIDES)}")
    artifact = _artifact(model)
    reference_artifact = _artifact(reference) if reference is not None else artifact
    reference_spec = DeploymentSpec(reference_artifact, imgsz=_own_imgsz(reference_artifact))
    deployment = DeploymentSpec(
        artifact,
        imgsz=imgsz or _own_imgsz(artifact),
        preprocessing=replace(Preprocessing(), **_picked(overrides, PRE_OVERRIDES)),
        postprocessing=replace(Postprocessing(), **_picked(overrides, POST_OVERRIDES)),
    )
    images = _images(images_dir, data)
    training = list_folder(training_dir) if training_dir is not None else None
    weights = reference_artifact if str(reference_artifact).endswith(".pt") else None
    return diagnose_accuracy(
        deployment,
        reference_spec,
        images,
        labelled=data,
        training_images=training,
        reference_weights=weights,
        workspace=workspace,
        out_dir=out_dir,
        time_limit_s=time_limit_s,
    )


def _picked(overrides: dict, names) -> dict:
    picked = {k: v for k, v in overrides.items() if k in names and v is not None}
    for key in ("mean", "std"):
        if key in picked:
            picked[key] = tuple(float(v) for v in picked[key])
    return picked


def _artifact(model) -> Path:
    from ..models.sources import SourceKind, resolve

    source = resolve(model)
    if source.kind not in (SourceKind.DEMO, SourceKind.WEIGHTS, SourceKind.EXPORTED):
        raise ConfigError(f"{model} is not a model file here", "pass a .pt, an export, or 'demo'")
    return Path(source.ref)


def _own_imgsz(artifact: Path) -> int:
    """A static export's input size, else the size the .pt was trained at, else 640."""
    from ..models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz
    from ..models.runners import RuntimeOptions, open_runner

    if artifact.suffix == ".pt":
        return checkpoint_imgsz(artifact) or DEFAULT_IMGSZ
    shape = open_runner(artifact, RuntimeOptions(threads=1)).input_shape
    return int(shape[2]) if len(shape) == 4 and shape[2] > 0 else DEFAULT_IMGSZ


def list_folder(folder) -> list[Path]:
    """The image files of a folder, sorted.

    Raises:
        ConfigError: the folder does not exist or holds no image.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder", "pass the folder that holds the production images")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ConfigError(f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})", "pass a folder of images")
    return found


def _images(images_dir, data) -> list[Path]:
    if images_dir is not None:
        return list_folder(images_dir)
    if data is None:
        raise ConfigError("no production images", "pass --images DIR (or --data DATA.yaml to use its val images)")
    from ..data.checks import list_images

    return list_images(data, "val")


def describe_diagnosis(diagnosis: Diagnosis) -> str:
    """The diagnosis as text: the sentence, then one line per finding (verdict, check, title, fix, after)."""
    lines = [diagnosis.sentence(), ""]
    for finding in diagnosis.findings:
        lines.append(f"{finding.verdict.value:12s} {finding.check:16s} {finding.title}")
        if finding.verdict.value != "ok" and finding.fix:
            lines.append(f"{'':29s} fix: {finding.fix}")
        if finding.after:
            lines.append(f"{'':29s} after the fix: {finding.after}")
        for picture in finding.pictures:
            lines.append(f"{'':29s} picture: {picture}")
    return "\n".join(lines)
