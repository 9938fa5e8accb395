"""Offline by construction: no downloads, no auto-install, no telemetry, set before the libraries load."""

from __future__ import annotations

import os
import warnings
from functools import lru_cache
from pathlib import Path


def config_dir() -> Path:
    """Ultralytics' settings folder for the workbench, apart from the user's own Ultralytics settings."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deploy-workbench" / "ultralytics"


# Ultralytics' switches and the value the workbench wants; Ultralytics reads them once, when it is first imported.
SWITCHES = {"YOLO_OFFLINE": True, "YOLO_AUTOINSTALL": False}
_TRUE = ("1", "true", "yes", "on", "y", "t")  # what Ultralytics' env_bool accepts as true
_WHAT_IT_ALLOWS = {
    "YOLO_OFFLINE": "Ultralytics may reach the network (downloads, update checks)",
    "YOLO_AUTOINSTALL": "Ultralytics may pip-install packages that a model or export names",
}


def set_environment() -> list[str]:
    """Set Ultralytics' offline switches where the user has not set them; `workbench.core` calls this on import.

    A switch the user set explicitly is kept, and a warning says what it allows (the workbench then no longer
    guarantees to stay offline). Returns those warnings.
    """
    notes = []
    for key, wanted in SWITCHES.items():
        given = os.environ.get(key)
        if given is None:
            os.environ[key] = "1" if wanted else "False"
        elif (given.strip().lower() in _TRUE) != wanted:
            notes.append(f"{key}={given} is set in your environment and kept: {_WHAT_IT_ALLOWS[key]}")
    for note in notes:
        warnings.warn(note, stacklevel=3)
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir()))
    return notes


@lru_cache(maxsize=1)
def decline_openvino_telemetry() -> str:
    """OpenVINO's converter and NNCF send usage statistics unless a consent file says no.

    Where no consent file exists yet, write the same "declined" answer that `opt_in_out --opt_out` writes;
    an explicit earlier choice of the user is left as it is. Returns what was found or done.
    """
    try:
        from openvino_telemetry.utils.opt_in_checker import ConsentCheckResult, OptInChecker
    except ImportError:
        return "openvino-telemetry not installed"
    checker = OptInChecker()
    try:
        if checker.consent_file_base_dir() is None:
            return "no home folder for a consent file"
        if os.path.exists(checker.consent_file()):
            return "user's own choice kept"
        return "declined" if checker.update_result(ConsentCheckResult.DECLINED) else "could not write consent file"
    except OSError as exc:
        return f"could not write consent file: {exc}"
