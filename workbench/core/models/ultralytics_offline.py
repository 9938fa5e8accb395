"""Ultralytics, imported offline and safe: no downloads, no auto-install, no telemetry, no logger integrations, and
its restricted (weights-only) checkpoint loading on."""

from __future__ import annotations

import os
from pathlib import Path

from ..offline import decline_openvino_telemetry

_OFF = ("sync", "clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb", "vscode_msg", "openvino_msg")


def ultralytics():
    """Return the `ultralytics` module, imported with the offline environment and integrations off."""
    import sys

    if "ultralytics" not in sys.modules:  # the switches were set when workbench.core was imported
        Path(os.environ["YOLO_CONFIG_DIR"]).mkdir(parents=True, exist_ok=True)
    decline_openvino_telemetry()  # Ultralytics' OpenVINO and INT8 exports run OpenVINO's converter and NNCF
    import ultralytics as ul
    from ultralytics.utils import SETTINGS

    changes = {key: False for key in _OFF if SETTINGS.get(key) is not False}
    if changes:
        SETTINGS.update(changes)
    _provide_fonts()
    from .pickle_guard import enable_process_safe_mode

    enable_process_safe_mode()  # Ultralytics' own loads (trainers, validators) never unpickle code either
    return ul


def _provide_fonts() -> None:
    """Ultralytics downloads Arial.ttf on first use of a dataset (to label plots); give it a shipped font instead.

    The file is matplotlib's DejaVu Sans (a free font; matplotlib is a dependency) under the names Ultralytics
    looks for in its config folder, which is the workbench's own (`YOLO_CONFIG_DIR`).
    """
    import shutil

    import matplotlib
    from ultralytics.utils import USER_CONFIG_DIR

    source = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    for name in ("Arial.ttf", "Arial.Unicode.ttf"):
        target = Path(USER_CONFIG_DIR) / name
        if not target.exists() and source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)


def YOLO(source):  # noqa: N802 - mirrors the Ultralytics class name on purpose
    """Construct `ultralytics.YOLO(source)` after the offline set-up."""
    return ultralytics().YOLO(str(source))
