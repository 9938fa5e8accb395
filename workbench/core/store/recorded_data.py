"""The data YAML the ledger recorded for a variant: what the doctor diagnoses on and drift is measured against."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


def recorded_data(workspace: Workspace, variant_id: int) -> Path | None:
    """The data YAML the ledger knows for the variant: its own or an ancestor's newest measurement's, else a
    step's data parameter (calibration, training); None when nothing recorded one that still exists."""
    for variant in workspace.lineage(variant_id):
        measured = [m.context.get("data_yaml") for m in workspace.ledger.measurements(variant_id=variant.id)]
        for candidate in [*reversed(measured), variant.params.get("data_yaml"), variant.params.get("data")]:
            if isinstance(candidate, str) and candidate.endswith((".yaml", ".yml")) and Path(candidate).is_file():
                return Path(candidate)
    return None
