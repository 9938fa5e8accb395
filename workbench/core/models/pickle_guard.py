"""What a checkpoint's pickle would call when loaded, refused before anything runs unless the user trusts the file.

A `.pt` file is a zip holding a pickle; unpickling calls every global it names (a class to build, or any function:
`os.system` for a payload). `torch.serialization.get_unsafe_globals_in_checkpoint` lists those names by reading the
pickle's opcodes, without running any of them. The workbench allows only model classes (torch's and Ultralytics'
layers, Ultralytics' model classes, the workbench's own split-free blocks) and the few data types Ultralytics'
checkpoints hold, the same rules as Ultralytics' own `ULTRALYTICS_SAFE_LOAD`; then Ultralytics loads the file with
`torch.load(weights_only=True)` (its safe mode, switched on for the whole process), a second line of defence.
A file the user has checked can be trusted explicitly: that file (by content hash) then loads with full pickle.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path

from ..errors import ModelLoadError

# Modules whose nn.Module classes a checkpoint may build. Names are imported only when they start with one of
# these, so a checkpoint cannot make the guard import a module of its choosing.
_CLASS_MODULES = ("torch.nn.modules.", "ultralytics.nn.modules.", "ultralytics.nn.tasks")
WORKBENCH_CLASS_MODULES = ("workbench.core.optimize.split_free",)  # pruned checkpoints pickle these blocks
_HELPER_MODULES = ("ultralytics.utils.loss", "ultralytics.utils.tal")  # training checkpoints: classes only
_DATA = {
    "ultralytics.utils.IterableSimpleNamespace",
    "ultralytics.yolo.utils.IterableSimpleNamespace",
    "numpy.dtype",
    "numpy.core.multiarray.scalar",
    "numpy._core.multiarray.scalar",
    "builtins.getattr",  # Ultralytics' safe loader restricts it to nn.Module attributes
    *(f"{m}.{c}" for m in ("pathlib", "pathlib._local") for c in ("PosixPath", "WindowsPath")),
}
TRUST_FIX = (
    "if you made this file or checked where it comes from, load it with trust=True "
    "(`load_model(path, trust=True)`; on the command line --trust-checkpoint): it may then run code"
)

_trusted: set[str] = set()  # sha256 of files the user trusted in this process (copies in a workspace included)
_lock = threading.Lock()  # the safe-load switch is process-wide; a trusted load turns it off only while it runs


class UnsafeCheckpointError(ModelLoadError):
    """A checkpoint's pickle names callables outside the allow-list: loading it could run arbitrary code."""


class TrustedLoadWarning(UserWarning):
    """A checkpoint is being loaded with full pickle because the user said they trust it."""


def refused_globals(path: Path | str) -> list[str]:
    """The globals named in the checkpoint's pickle that the workbench does not allow (reads, runs nothing)."""
    import torch

    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(str(path))
    except (ValueError, RuntimeError) as exc:  # a zip that torch.save did not write
        raise ModelLoadError(
            f"{path} is not a PyTorch checkpoint (a zip archive, but not one torch.save wrote: {exc})",
            "re-copy or re-export the checkpoint, or use 'demo' for the shipped model",
        ) from exc
    refused = []
    for name in names:
        obj = _allowed_object(name)
        if obj is None:
            refused.append(name)
        elif name.startswith(WORKBENCH_CLASS_MODULES):
            torch.serialization.add_safe_globals([obj])  # torch's weights_only unpickler must know them too
    return refused


def _allowed_object(name: str):
    """The object a global resolves to if the allow-list admits it, else None."""
    if name in _DATA:
        return name
    module_name, _, attr = name.rpartition(".")
    module_ok = module_name.startswith(_CLASS_MODULES) or module_name in (*WORKBENCH_CLASS_MODULES, *_HELPER_MODULES)
    if not module_ok or attr.startswith("_"):
        return None
    try:
        obj = getattr(importlib.import_module(module_name), attr, None)
    except ImportError:
        return None
    from torch import nn

    if not isinstance(obj, type):
        return None
    if module_name in _HELPER_MODULES:
        return obj if obj.__module__ == module_name else None
    return obj if issubclass(obj, nn.Module) else None


def check_safe(path: Path | str, *, trust: bool = False) -> None:
    """Refuse a checkpoint whose pickle would run code outside the allow-list, unless the file is trusted.

    Raises:
        UnsafeCheckpointError: naming the refused globals and how to trust a file one has checked.
    """
    path = Path(path)
    if trust:
        _trusted.add(_digest(path))
        warnings.warn(
            f"loading {path} with full pickle because you trust it: any code it carries runs now",
            TrustedLoadWarning,
            stacklevel=3,
        )
        return
    refused = refused_globals(path)
    if refused and _digest(path) not in _trusted:
        shown = ", ".join(refused[:5]) + (f" and {len(refused) - 5} more" if len(refused) > 5 else "")
        raise UnsafeCheckpointError(
            f"{path} was not loaded: its pickle calls {shown}, which are not model classes the workbench "
            "allows, so loading it could run code (nothing from it has run)",
            TRUST_FIX,
        )


def is_trusted(path: Path | str) -> bool:
    return _digest(Path(path)) in _trusted


@contextlib.contextmanager
def ultralytics_safe_mode(safe: bool) -> Iterator[None]:
    """Run an Ultralytics load with its restricted unpickler on (`safe`) or off, restoring the process default."""
    from ultralytics.nn import tasks

    with _lock:
        before = tasks.SAFE_LOAD
        tasks.SAFE_LOAD = safe
        try:
            yield
        finally:
            tasks.SAFE_LOAD = before


def enable_process_safe_mode() -> None:
    """Ultralytics' own loads in this process (trainers, validators, AutoBackend) use its restricted unpickler."""
    from ultralytics.nn import tasks

    with _lock:
        tasks.SAFE_LOAD = True


def _digest(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
