"""The lab: deliberately broken and slow deployments of the demo model, each with the cause a doctor must name."""

from .accuracy import Quantizer, build_accuracy_lab
from .speed import LabUnavailable, SpeedLab
from .speed_hurts import fault_hurt_table

__all__ = ["LabUnavailable", "Quantizer", "SpeedLab", "build_accuracy_lab", "fault_hurt_table"]
