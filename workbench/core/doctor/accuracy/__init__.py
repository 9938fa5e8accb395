"""The accuracy doctor: why a deployment detects worse than the model it was made from, check by check."""

from .diagnose import (
    POST_OVERRIDES,
    PRE_OVERRIDES,
    describe_diagnosis,
    diagnose_accuracy,
    list_folder,
    run_accuracy_doctor,
)
from .run import compare_detections

__all__ = [
    "POST_OVERRIDES",
    "PRE_OVERRIDES",
    "compare_detections",
    "describe_diagnosis",
    "diagnose_accuracy",
    "list_folder",
    "run_accuracy_doctor",
]
