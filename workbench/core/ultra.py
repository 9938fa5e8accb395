"""Ultralytics, imported offline: no downloads, no auto-install, no telemetry, no logger integrations."""

from __future__ import annotations

import os
from pathlib import Path

_OFF = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "vscode_msg", "openvino_msg")


def config_dir() -> Path:
    """Ultralytics' settings folder for the workbench, apart from the user's own Ultralytics settings."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deploy-workbench" / "ultralytics"


def set_offline_environment() -> None:
    """Set Ultralytics' environment switches; must run before the first `import ultralytics`."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir()))


def ultralytics():
    """Return the `ultralytics` module, imported with the offline environment and integrations off."""
    import sys

    if "ultralytics" not in sys.modules:
        set_offline_environment()
        Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    import ultralytics as ul
    from ultralytics.utils import SETTINGS

    changes = {key: False for key in _OFF if SETTINGS.get(key) is not False}
    if changes:
        SETTINGS.update(changes)
    return ul


def YOLO(source):  # noqa: N802 - mirrors the Ultralytics class name on purpose
    """Construct `ultralytics.YOLO(source)` after the offline set-up."""
    return ultralytics().YOLO(str(source))
