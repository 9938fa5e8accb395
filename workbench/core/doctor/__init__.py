"""Troubleshooting: the accuracy doctor and the speed doctor, and the lab of deliberately broken deployments.

`accuracy/` asks why a deployment detects worse than the model it was made from, `speed/` why inference is slow;
`lab/` plants the faults both must name. `findings` is what every doctor reports in: a `Finding` per check, ranked
into a `Diagnosis`; `on_variant` runs a doctor on a recorded variant and records what it found.
"""

from .findings import Diagnosis, Finding, Verdict

__all__ = ["Diagnosis", "Finding", "Verdict"]
