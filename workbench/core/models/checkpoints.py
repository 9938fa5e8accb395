"""PyTorch checkpoints (.pt): checked before pickle sees them, loaded as Ultralytics models, written and reloaded."""

from __future__ import annotations

import copy
import zipfile
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ModelLoadError, ModelNotFoundError

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

DEFAULT_IMGSZ = 640  # Ultralytics' default, for a model whose checkpoint does not say what it was trained at


def check_checkpoint(path: Path, *, missing_fix: str = "check the path") -> None:
    """Fail early and clearly on a missing, empty, truncated or foreign file before pickle sees it."""
    path = Path(path)
    if not path.is_file():
        raise ModelNotFoundError(f"model file {path} does not exist", missing_fix)
    if path.stat().st_size == 0:
        raise ModelLoadError(f"{path} is empty", "re-copy or re-export the checkpoint")
    if not zipfile.is_zipfile(path):
        raise ModelLoadError(
            f"{path} is not a PyTorch checkpoint (no zip archive inside; corrupt or not a model)",
            "re-copy or re-export the checkpoint, or use 'demo' for the shipped model",
        )
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
    except (zipfile.BadZipFile, OSError) as exc:
        raise ModelLoadError(f"{path} is truncated or corrupt ({exc})", "re-copy or re-export the checkpoint") from exc
    if bad is not None:
        raise ModelLoadError(f"{path} is corrupt (entry {bad} fails its CRC check)", "re-copy or re-export it")


def load_yolo(source: Path | str, *, trust: bool = False, **kwargs):
    """`YOLO(source)` offline, with Ultralytics' and torch's many error types turned into a ModelLoadError.

    A .pt file is first checked by `pickle_guard` (refused if its pickle would run code, unless `trust`), then
    loaded with Ultralytics' restricted unpickler; only a trusted file is unpickled in full.
    """
    from .pickle_guard import check_safe, is_trusted, ultralytics_safe_mode
    from .ultralytics_offline import ultralytics

    ul = ultralytics()
    pickled = Path(str(source)).suffix == ".pt" and Path(str(source)).is_file()
    if pickled:
        check_safe(source, trust=trust)
    full_pickle = pickled and (trust or is_trusted(source))
    try:
        with ultralytics_safe_mode(not full_pickle):
            model = ul.YOLO(str(source), **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:  # Ultralytics and torch raise many types; name the file and the cause
        raise ModelLoadError(
            f"could not load {source}: {type(exc).__name__}: {exc}",
            "check that it is an Ultralytics YOLO checkpoint or YAML",
        ) from exc
    if model.task != "detect":
        raise ModelLoadError(
            f"{source} is a {model.task} model; the workbench handles detection models",
            "pass a YOLO detection model (e.g. yolo11n.pt)",
        )
    return model


def load_checkpoint(path: Path | str, *, missing_fix: str = "check the path", trust: bool = False):
    """A checked .pt file as an Ultralytics `YOLO` detection model (refused if its pickle would run code, unless
    `trust`: see `pickle_guard`)."""
    check_checkpoint(Path(path), missing_fix=missing_fix)
    return load_yolo(path, trust=trust)


def training_imgsz(model) -> int | None:
    """The image size a loaded Ultralytics model was trained at, as its checkpoint records it (None if unknown)."""
    args = (getattr(model, "ckpt", None) or {}).get("train_args") or {}
    value = args.get("imgsz")
    if isinstance(value, (list, tuple)) and value:
        value = max(value)
    return int(value) if isinstance(value, (int, float)) and value >= 32 else None


@lru_cache(maxsize=128)
def _training_imgsz_of_file(path: str, mtime_ns: int) -> int | None:
    return training_imgsz(load_checkpoint(path))


def checkpoint_imgsz(path: Path | str) -> int | None:
    """`training_imgsz` of a .pt file, read once per file version."""
    path = Path(path)
    return _training_imgsz_of_file(str(path), path.stat().st_mtime_ns)


def save_checkpoint(net, path: Path, *, note: dict | None = None) -> Path:
    """Write an Ultralytics-style checkpoint (the module itself, fp32) that `YOLO(path)` reloads."""
    import torch

    model = copy.deepcopy(net).float().eval()
    for p in model.parameters():
        p.requires_grad_(False)
    args = dict(getattr(net, "args", {}) or {})
    checkpoint = {"model": model, "ema": None, "epoch": -1, "optimizer": None, "train_args": args}
    torch.save({**checkpoint, "workbench": note or {}}, path)
    return path


def check_reloads(path: Path) -> None:
    """A written checkpoint must load back through Ultralytics and run."""
    import torch

    net = load_checkpoint(path).model.float().eval()
    with torch.no_grad():
        net(torch.zeros(1, 3, 64, 64))


def record_checkpoint(workspace: Workspace, net, name: str, *, step: str, params: dict, parent_id: int) -> int:
    """Write `net` into the workspace as a checkpoint (staged, reloaded and run once) and record it as the
    PyTorch variant that `step` made from `parent_id`."""
    return workspace.add_artifact(
        lambda out: save_checkpoint(net, out, note=params),
        name,
        step=step,
        params=params,
        parent_id=parent_id,
        format="pytorch",
        check=check_reloads,
    )
