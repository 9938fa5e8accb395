"""Measuring as the front ends ask for it: each latency row stored with the advisor's estimate of it beside it.

`measure()` (measure/) and `run_recipe()` (optimize/) record what they are told and know nothing of the advisor; the
estimate of a row comes from advise/estimate.py and is handed in here, the layer that composes the two. The public
`workbench.measure` and `workbench.run_recipe`, the panels, the CLI, the demo and the bench measure through these,
so every row they record carries the estimate made before it and how far off it was.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..advise.estimate import estimate_for_row
from ..measure import measure as measuring
from ..measure.plan import MeasurePlan
from ..progress import ProgressFn

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

    from ..optimize.recipes import PipelineResult, Recipe


def measure(
    workspace: Workspace,
    variant_id: int,
    plan: MeasurePlan = MeasurePlan(),
    data_yaml: Path | str | None = None,
    *,
    progress: ProgressFn | None = None,
) -> list[int]:
    """Measure one variant as `plan` says and record every result (or failure) in the ledger; each latency row
    stores the advisor's estimate of it (made from the rows recorded before it) and its error.

    Args:
        data_yaml: the dataset whose `plan.split` accuracy, stage breakdown and parity use (needed for those).
    Returns:
        the measurement ids, in the order recorded.
    Raises:
        ConfigError: the plan needs data and none was given.
        Cancelled: from `progress`; what this call recorded is removed again first.
    """
    return measuring.measure(workspace, variant_id, plan, data_yaml, estimate=estimate_for_row, progress=progress)


def run_recipe(workspace: Workspace, recipe: Recipe, model_id: int, data_yaml: Path | str, **options) -> PipelineResult:
    """`optimize.recipes.run_recipe` with the advisor's estimate beside each latency row: the steps run in order,
    each step's variants recorded and measured before the next starts.

    Args:
        options: `measure_input` (measure the starting model too; default True) and `progress`.
    Raises:
        PipelineError: a step failed; the variants of the steps before it are kept.
    """
    from ..optimize import recipes  # loaded when a recipe runs, not when a measurement does

    return recipes.run_recipe(workspace, recipe, model_id, data_yaml, estimate=estimate_for_row, **options)
