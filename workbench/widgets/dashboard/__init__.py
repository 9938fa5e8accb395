"""The comparison dashboard: the variants side by side (`comparison`), the evaluation set their mAP was measured on
(`evaluation_set`) and a recorded sweep's front (`sweep_front`)."""

from .comparison import Dashboard

__all__ = ["Dashboard"]
