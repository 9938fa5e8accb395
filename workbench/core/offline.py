"""Offline by construction: no downloads, no auto-install, no telemetry, set before the libraries load."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path


def config_dir() -> Path:
    """Ultralytics' settings folder for the workbench, apart from the user's own Ultralytics settings."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "deploy-workbench" / "ultralytics"


def set_environment() -> None:
    """Ultralytics' switches; they must be set before its first import, so `workbench.core` sets them on import."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ["YOLO_AUTOINSTALL"] = "False"
    os.environ.setdefault("YOLO_VERBOSE", "False")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(config_dir()))


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
