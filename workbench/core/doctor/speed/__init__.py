"""The speed doctor: why inference is slow, and what each lever of the deployment guide would save here."""

from .diagnose import SCENARIOS, diagnose_speed, run_speed_doctor

__all__ = ["SCENARIOS", "diagnose_speed", "run_speed_doctor"]
