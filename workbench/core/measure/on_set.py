"""Measure a variant's accuracy on an evaluation set the ledger already holds, so it can stand beside the others.

`measure_on(workspace, variant_id, evaluation_set)` reads the set's files again from where they were measured,
checks they are still the same files (their content hash), and measures through the one entry point, `measure`,
at the sizes the set was measured at (a static export: its own size) and in the precisions the variant was
already measured in.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..data.identity import evaluation_set as identify
from ..errors import ConfigError
from ..progress import ProgressFn
from ..store.evaluation_sets import SetSummary, choose_set, key_of, workspace_sets
from .measure import measure
from .plan import MeasurePlan

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


def measure_on(
    workspace: Workspace,
    variant_id: int,
    evaluation_set=None,
    *,
    imgsz: int | None = None,
    data_yaml: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> list[int]:
    """Measure the accuracy of `variant_id` on `evaluation_set` and record it; returns the new measurement ids.

    Args:
        evaluation_set: a set's key, name or digest prefix, a `SetSummary` or `EvaluationSet`; None: the set with
            the most variants measured on it.
        imgsz: the size to measure at; None: each size the set was measured at.
        data_yaml: where the set's files are now, when they moved since (checked by their content hash).
    Raises:
        ConfigError: no such set, the set's files cannot be found, or they changed since it was measured.
    """
    workspace.variant(variant_id)  # an unknown id fails here, naming it
    chosen = choose_set(workspace_sets(workspace), evaluation_set)
    if chosen is None:
        raise ConfigError(
            "no accuracy is recorded on any evaluation set yet, so there is none to measure on",
            "measure one variant with measure(workspace, variant_id, MeasurePlan(...), data_yaml) first",
        )
    source = _checked_source(chosen, data_yaml)
    plan = MeasurePlan(
        latency=False,
        accuracy=True,
        imgsz=(imgsz,) if imgsz else chosen.sizes,
        precisions=_precisions(workspace, variant_id),
        split=chosen.split,
        accuracy_images=chosen.images,
    )
    ids = measure(workspace, variant_id, plan, source, progress=progress)
    landed = [key_of(m) for m in workspace.ledger.measurements(ids=ids) if m.ok]
    if landed and any(key != chosen.key for key in landed):  # the files changed while it ran
        raise ConfigError(
            f"the files of {chosen.name} changed while variant {variant_id} was measured on them",
            "measure again once nothing writes to the dataset",
        )
    return ids


def _checked_source(chosen: SetSummary, data_yaml: Path | str | None) -> Path:
    """The data YAML to read the set from, its files proven to be the set's."""
    if not chosen.known:
        raise ConfigError(
            "rows of the 'set unknown' were recorded before sets were: nothing says which files they read",
            "pick a named set, or measure every variant again on one dataset",
        )
    source = Path(data_yaml or chosen.data_yaml or "")
    if not source.is_file():
        raise ConfigError(
            f"the data YAML of {chosen.name} is not at {source}",
            "pass data_yaml= where the same files are now (their content is checked)",
        )
    found = identify(source, chosen.split, chosen.images)
    if found.key != chosen.key:
        raise ConfigError(
            f"{source}'s {chosen.split} split is not {chosen.name}: its first {chosen.images} images and labels "
            f"hash to {found.digest[:6]}, not {chosen.digest[:6]}",
            "restore the files it was measured on, or measure every variant on the files as they are now",
        )
    return source


def _precisions(workspace: Workspace, variant_id: int) -> tuple[str | None, ...]:
    """The OpenVINO precision hints this variant was measured with before (f32 when none)."""
    hints = []
    for m in workspace.ledger.measurements(variant_id=variant_id):
        if m.ok and m.kind in ("latency", "accuracy") and m.context.get("runtime") == "openvino":
            hint = (m.context.get("options") or {}).get("precision", "f32")
            if hint not in hints:
                hints.append(hint)
    return tuple(hints) or ("f32",)
