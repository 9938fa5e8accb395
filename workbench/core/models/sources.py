"""Model sources: the shipped demo model, a .pt file, an Ultralytics model name, or a model YAML."""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from enum import StrEnum
from importlib import resources
from pathlib import Path

from ..errors import ModelLoadError, ModelNotFoundError

DEMO = "demo"
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


def demo_weights() -> Path:
    """The shipped demo model: a YOLO11n trained on the generated shapes dataset."""
    return Path(str(resources.files("workbench") / "assets" / "demo" / "yolo11n-shapes.pt"))


def demo_card() -> dict:
    """The JSON card of the shipped demo model: recipe, dataset, versions, accuracy, sha256."""
    return json.loads(demo_weights().with_suffix(".json").read_text())


def student_weights() -> Path:
    """The shipped pruned student: the demo model pruned 30% and trained back (recipe demo-best)."""
    return demo_weights().with_name("yolo11n-shapes-p30-student.pt")


def student_card() -> dict:
    """The student's card: the recipe that made it, its parent's sha256, training history, accuracy."""
    return json.loads(student_weights().with_suffix(".json").read_text())


def resolve(spec: str | Path) -> ModelSource:
    """Classify a model spec without loading anything.

    Raises:
        ModelNotFoundError: a path that does not exist and is not an Ultralytics name.
        ModelLoadError: a file that is not a model (wrong suffix).
    """
    text = str(spec).strip()
    if text == DEMO:
        return ModelSource(SourceKind.DEMO, str(demo_weights()))
    path = Path(text).expanduser()
    suffix = path.suffix.lower()
    if suffix in (".yaml", ".yml"):
        if path.is_file():
            return ModelSource(SourceKind.YAML, str(path.resolve()))
        if _YAML.match(path.name) and path.name == text:
            return ModelSource(SourceKind.YAML, text)
        raise ModelNotFoundError(f"model YAML {text!r} not found",
                                 "pass an existing YAML path or an Ultralytics architecture such as 'yolo11n.yaml'")
    if path.exists() and path.name.endswith(EXPORTED_SUFFIXES):
        return ModelSource(SourceKind.EXPORTED, str(path.resolve()))
    if path.is_file():
        if suffix != ".pt":
            raise ModelLoadError(f"{path} is not a model file the workbench knows ({suffix or 'no suffix'})",
                                 "pass a .pt, .onnx or .torchscript file, an OpenVINO model folder, a YAML or 'demo'")
        return ModelSource(SourceKind.WEIGHTS, str(path.resolve()))
    if path.exists():
        raise ModelLoadError(f"{path} is a folder, not a model file", "pass the .pt file inside it")
    if _NAME.match(text):
        return ModelSource(SourceKind.NAME, text)
    raise ModelNotFoundError(f"model file {text!r} does not exist",
                             "check the path, or use 'demo' for the shipped model")


def check_checkpoint(path: Path) -> None:
    """Fail early and clearly on a missing, empty, truncated or foreign file before pickle sees it."""
    if not path.is_file():
        hint = ("reinstall the workbench, or rebuild it with `workbench demo-model --train`"
                if path == demo_weights() else "check the path")
        raise ModelNotFoundError(f"model file {path} does not exist", hint)
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty", "re-copy or re-export the checkpoint")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(f"{path} is not a PyTorch checkpoint (no zip archive inside; corrupt or not a model)",
                             "re-copy or re-export the checkpoint, or use 'demo' for the shipped model")
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path} is truncated or corrupt ({exc})", "re-copy or re-export the checkpoint") from exc
    if bad is not None:
        raise ModelLoadError(f"{path} is corrupt (entry {bad} fails its CRC check)", "re-copy or re-export it")


def load_model(spec: str | Path):
    """Load a detector as an Ultralytics `YOLO` object.

    Args:
        spec: 'demo', a .pt path, an Ultralytics name such as 'yolo11n.pt' (needs the network, or a local
            copy in Ultralytics' weights folder), or a model YAML such as 'yolov8s.yaml' (random weights).
    Raises:
        ModelNotFoundError, ModelLoadError: with the cause and the fix.
    """
    source = resolve(spec)
    if source.kind in (SourceKind.DEMO, SourceKind.WEIGHTS):
        check_checkpoint(Path(source.ref))
    if source.kind is SourceKind.NAME:
        return _load_name(source.ref)
    from .ultralytics_offline import YOLO

    try:
        model = YOLO(source.ref) if source.kind is not SourceKind.EXPORTED else _exported(source.ref)
    except ModelLoadError:
        raise
    except Exception as exc:  # Ultralytics and torch raise many types; name the file and the cause
        raise ModelLoadError(f"could not load {source.ref}: {type(exc).__name__}: {exc}",
                             "check that it is an Ultralytics YOLO checkpoint or YAML") from exc
    if model.task != "detect":
        raise ModelLoadError(f"{source.ref} is a {model.task} model; the workbench handles detection models",
                             "pass a YOLO detection model (e.g. yolo11n.pt)")
    return model


def _exported(path: str):
    """Ultralytics loads exported models lazily; open it with its runtime first so a broken file fails here."""
    from .runners import open_runner
    from .ultralytics_offline import ultralytics

    open_runner(path)
    return ultralytics().YOLO(path, task="detect")


def _load_name(name: str):
    from .ultralytics_offline import YOLO, ultralytics

    ultralytics()
    from ultralytics.utils import SETTINGS

    local = Path(SETTINGS["weights_dir"]) / name
    if local.is_file():
        return load_model(local)
    try:
        from ultralytics.utils.downloads import attempt_download_asset

        return YOLO(attempt_download_asset(name))
    except Exception as exc:
        raise ModelNotFoundError(
            f"{name!r} is an Ultralytics release that is not on this machine and could not be downloaded ({exc})",
            f"use 'demo' for the shipped model, pass a local .pt path, or put {name} into {local.parent}",
        ) from exc


def model_info(model, imgsz: int = 640) -> dict:
    """Parameters, GFLOPs at `imgsz`, layer count, class names."""
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    net = model.model
    return {
        "params": int(get_num_params(net)),
        "gflops": round(float(get_flops(net, imgsz)), 3),
        "imgsz": imgsz,
        "layers": len(list(net.modules())),
        "names": dict(net.names),
        "task": model.task,
    }
