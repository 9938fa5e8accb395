"""Model sources: the shipped demo model, student or searched variant, a .pt file, an Ultralytics name, a YAML or
an exported file; and recording a trained model as the source variant a study starts from."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelLoadError, ModelNotFoundError
from .cards import demo_weights, searched_weights, student_weights
from .checkpoints import DEFAULT_IMGSZ, load_checkpoint, load_yolo, training_imgsz

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

DEMO = "demo"
STUDENT = "student"
SEARCHED = "searched"
_NAME = re.compile(r"^(yolo|yolov|rtdetr)[\w.-]*\.pt$", re.IGNORECASE)
_YAML = re.compile(r"^(yolo|yolov|rtdetr)[\w.-]*\.ya?ml$", re.IGNORECASE)
EXPORTED_SUFFIXES = (".onnx", ".torchscript", "_openvino_model")


class SourceKind(StrEnum):
    DEMO = "demo"
    WEIGHTS = "weights"  # a .pt file on disk
    NAME = "name"  # an Ultralytics release name, downloaded by Ultralytics where the network allows
    YAML = "yaml"  # an architecture: random weights, for latency-only studies
    EXPORTED = "exported"  # an ONNX file, OpenVINO model folder or TorchScript file, run by Ultralytics' AutoBackend


@dataclass(frozen=True)
class ModelSource:
    kind: SourceKind
    ref: str  # a path for demo/weights/custom YAML, else the name as given

    @property
    def trained(self) -> bool:
        return self.kind is not SourceKind.YAML


def resolve(spec: str | Path) -> ModelSource:
    """Classify a model spec without loading anything.

    Raises:
        ModelNotFoundError: a path that does not exist and is not an Ultralytics name.
        ModelLoadError: a file that is not a model (wrong suffix).
    """
    text = str(spec).strip()
    if text == DEMO:
        return ModelSource(SourceKind.DEMO, str(demo_weights()))
    if text == STUDENT:
        return ModelSource(SourceKind.DEMO, str(student_weights()))
    if text == SEARCHED:
        return ModelSource(SourceKind.DEMO, str(searched_weights()))
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        if path.is_file():
            return ModelSource(SourceKind.YAML, str(path.resolve()))
        if _YAML.match(path.name) and path.name == text:
            return ModelSource(SourceKind.YAML, text)
        raise ModelNotFoundError(
            f"model YAML {text!r} not found",
            "pass an existing YAML path or an Ultralytics architecture such as 'yolo11n.yaml'",
        )
    if path.exists() and path.name.endswith(EXPORTED_SUFFIXES):
        return ModelSource(SourceKind.EXPORTED, str(path.resolve()))
    if path.is_file():
        if suffix != ".pt":
            raise ModelLoadError(
                f"{path} is not a model file the workbench knows ({suffix or 'no suffix'})",
                "pass a .pt, .onnx or .torchscript file, an OpenVINO model folder, a YAML or 'demo'",
            )
        return ModelSource(SourceKind.WEIGHTS, str(path.resolve()))
    if path.exists():
        raise ModelLoadError(f"{path} is a folder, not a model file", "pass the .pt file inside it")
    if _NAME.match(text):
        return ModelSource(SourceKind.NAME, text)
    raise ModelNotFoundError(
        f"model file {text!r} does not exist", "check the path, or use 'demo' (or 'student') for a shipped model"
    )


def load_model(spec: str | Path, *, trust: bool = False):
    """Load a detector as an Ultralytics `YOLO` object.

    Args:
        spec: 'demo' or 'student' (the shipped models), a .pt path, an Ultralytics name such as 'yolo11n.pt' (needs
            the network, or a local copy in Ultralytics' weights folder), a model YAML such as 'yolov8s.yaml'
            (random weights), or an exported ONNX / OpenVINO / TorchScript artifact.
        trust: load a .pt whose pickle names more than model classes with full pickle (it may run code); only
            for a file you made or checked. Without it such a file is refused before anything in it runs.
    Raises:
        ModelNotFoundError, ModelLoadError: with the cause and the fix.
    """
    source = resolve(spec)
    if source.kind in (SourceKind.DEMO, SourceKind.WEIGHTS):
        shipped = source.kind is SourceKind.DEMO
        fix = (
            "reinstall the workbench, or rebuild it with `workbench demo-model --train`"
            if shipped
            else "check the path"
        )
        return load_checkpoint(source.ref, missing_fix=fix, trust=trust)
    if source.kind is SourceKind.NAME:
        return _load_name(source.ref, trust=trust)
    if source.kind is SourceKind.EXPORTED:
        return _exported(source.ref)
    return load_yolo(source.ref)


def _exported(path: str):
    """Ultralytics loads exported models lazily; open it with its runtime first so a broken file fails here."""
    from .runners import open_runner

    open_runner(path)
    return load_yolo(path, task="detect")


def _load_name(name: str, *, trust: bool = False):
    from .ultralytics_offline import ultralytics

    ultralytics()
    from ultralytics.utils import SETTINGS

    local = Path(SETTINGS["weights_dir"]) / name
    if local.is_file():
        return load_model(local, trust=trust)
    if _offline():
        raise ModelNotFoundError(
            f"{name!r} is an Ultralytics release name; it is not on this machine, and downloading it needs the "
            "network, which the workbench does not use (YOLO_OFFLINE is on)",
            f"use 'demo' for the shipped model, pass a local .pt path, put {name} into {local.parent}, "
            "or set YOLO_OFFLINE=0 to let Ultralytics download it",
        )
    try:
        from ultralytics.utils.downloads import attempt_download_asset

        return load_yolo(attempt_download_asset(name), trust=trust)
    except Exception as exc:
        raise ModelNotFoundError(
            f"{name!r} is an Ultralytics release that is not on this machine and could not be downloaded ({exc})",
            f"use 'demo' for the shipped model, pass a local .pt path, or put {name} into {local.parent}",
        ) from exc


def _offline() -> bool:
    """Whether Ultralytics' offline switch is on (the workbench sets it unless the user set it otherwise)."""
    import os

    return os.environ.get("YOLO_OFFLINE", "1").strip().lower() in ("1", "true", "yes", "on", "y", "t")


@dataclass(frozen=True)
class SourceModel:
    """A trained PyTorch detector, checked and ready to be recorded as the variant a study starts from."""

    spec: str  # as the user gave it: 'demo', 'student', a path, a name
    kind: SourceKind
    path: Path  # the .pt file
    model: object  # the loaded Ultralytics YOLO
    imgsz: int  # the size it was trained at (its checkpoint's train_args), the default for every measurement

    @property
    def names(self) -> dict[int, str]:
        return dict(self.model.names)


def open_source(spec: str | Path, *, data_yaml: Path | str | None = None, trust: bool = False) -> SourceModel:
    """Load and check a trained detector (and, with `data_yaml`, that the dataset fits it); writes nothing.

    Raises:
        ModelLoadError: not a trained .pt checkpoint (a YAML or an exported file cannot be optimized), or one
            whose pickle would run code (`trust` loads a file you checked anyway).
        DatasetError: the data YAML or its val split is unsound, or its class count differs from the model's.
    """
    from ..data.checks import check_dataset

    source = resolve(spec)
    if source.kind in (SourceKind.YAML, SourceKind.EXPORTED):
        raise ModelLoadError(
            f"{spec} is {'an architecture without trained weights' if source.kind is SourceKind.YAML else 'an export'}"
            ", not a trained PyTorch checkpoint",
            "start from a trained .pt ('demo', 'student' or a path); the workbench exports variants from it",
        )
    model = load_model(spec, trust=trust)
    path = Path(model.ckpt_path or source.ref)
    if path.suffix != ".pt" or not path.is_file():
        raise ModelLoadError(f"{spec} did not load from a .pt file ({path})", "pass the path of a trained .pt")
    if data_yaml is not None:
        check_dataset(data_yaml, splits=("val",), model_names=dict(model.names))
    return SourceModel(str(spec), source.kind, path, model, training_imgsz(model) or DEFAULT_IMGSZ)


def record_source(workspace: Workspace, source: SourceModel) -> int:
    """Record a checked model as a 'source' variant (the same file recorded again keeps its id)."""
    params = {"source": source.spec, "kind": source.kind.value, "train_imgsz": source.imgsz}
    return workspace.add_artifact(source.path, source.path.name, step="source", params=params, format="pytorch")
