"""Errors named by cause; each message says what went wrong and how to fix it."""

from __future__ import annotations


class WorkbenchError(Exception):
    """Base error: `problem` says what is wrong, `fix` says what to do about it."""

    def __init__(self, problem: str, fix: str = ""):
        self.problem = problem
        self.fix = fix
        super().__init__(f"{problem}\n  fix: {fix}" if fix else problem)


class ConfigError(WorkbenchError, ValueError):
    """An argument or setting is out of its allowed range."""


class WorkspaceError(WorkbenchError):
    """The workspace folder or its ledger cannot be used."""


class DatasetError(WorkbenchError):
    """A data YAML, an image or a label file is missing or malformed."""


class ModelLoadError(WorkbenchError):
    """A model file, name or YAML cannot be turned into a model."""


class ModelNotFoundError(ModelLoadError, FileNotFoundError):
    """The model named does not exist here and cannot be fetched."""


class Cancelled(WorkbenchError):
    """A long step was cancelled by its caller; nothing it started was kept."""


def check_imgsz(value, name: str = "imgsz") -> int:
    """An input size for a YOLO model: an integer multiple of 32, at least 32.

    Returns:
        the value as an int.
    Raises:
        ConfigError: naming `name`, the value given and what is expected.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < 32 or value % 32:
        raise ConfigError(
            f"{name} must be a multiple of 32 and at least 32, got {value!r}",
            "use e.g. 320 or 640 (YOLO's strides divide the input by 32)",
        )
    return int(value)
