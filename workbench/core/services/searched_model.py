"""The shipped searched variant: the best feasible trial of a constrained search, carded and recorded in a study.

`ship_searched` reads a finished sweep from its workspace (every trial the ledger holds for the spec's name), picks
the best feasible trial as the search itself does, copies that trial's trained PyTorch weights (the step before
export and quantization) beside the other shipped models and writes its card: the search space, every trial with
its values, where it ran and how long it took, and the chosen trial's recipe. `record_searched` puts it into a
study (`make bench`) with its true lineage, the way `record_student` does for the student.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import WorkbenchError
from ..progress import ProgressFn
from ..store.atomic import staged
from .shipped_models import DEMO_RECIPE, TRAINING_STEPS, dataset_card, metrics_card, reprune

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

SPEC_NAME = "search-student"  # the shipped search space (workbench/recipes/sweeps/search-student.yaml)


class SearchedMismatch(WorkbenchError):
    """The shipped searched variant does not have the architecture its card's recipe gives from the student."""


def ship_searched(
    sweep_workspace: Path | str,
    spec: Path | str,
    out_dir: Path | str,
    *,
    data=None,
    imgsz: int | None = None,
    progress: ProgressFn | None = None,
) -> dict:
    """Ship the best feasible trial of the sweep `spec` found in `sweep_workspace`: weights and card in `out_dir`.

    Args:
        data, imgsz: the generated dataset (a ShapesConfig; the default one) and the size the card's mAP50-95 is
            measured at (the demo model's training imgsz), as for the other shipped models.
    Raises:
        WorkbenchError: no such workspace, no trial of that sweep in it, or no trial that meets the constraints.
    """
    from ..data.generate import ShapesConfig, generate_shapes
    from ..measure.accuracy import AccuracyConfig, evaluate
    from ..models.cards import SEARCHED_NAME, model_card, write_card
    from ..models.checkpoints import load_checkpoint
    from ..store.workspace import Workspace
    from ..sweep.recorded import workspace_sweeps
    from ..sweep.search import best_feasible
    from .recipe_sweeps import SearchSpace

    space = SearchSpace.from_yaml(spec)
    root = Path(sweep_workspace).expanduser()
    if not (root / "workbench.db").is_file():
        raise WorkbenchError(f"{root} holds no workbench ledger", "give the --workspace the sweep ran in")
    workspace = Workspace(root)
    recorded = workspace_sweeps(workspace).get(space.name)
    rows = recorded.trials if recorded else []
    for row in rows:
        row["feasible"] = row["ok"] and space.feasible(row)
    best, why = best_feasible(space, rows)
    if best is None:
        raise WorkbenchError(
            f"sweep {space.name} in {root}: nothing to ship: {why}", "run the search longer, or loosen its constraints"
        )
    trained = _trained_variant(workspace, best["variant_id"])
    root_variant = workspace.lineage(trained.id)[-1]  # the sweep's input model (the student, for the shipped one)
    data, imgsz = data or ShapesConfig(), imgsz or DEMO_RECIPE.imgsz
    data_yaml = generate_shapes(workspace.datasets, data, progress=progress).data_yaml
    accuracy = evaluate(load_checkpoint(workspace.artifact_path(trained.id)), data_yaml, AccuracyConfig(imgsz=imgsz))
    weights = Path(out_dir) / SEARCHED_NAME  # written once everything the card needs is known
    with staged(weights) as tmp:
        shutil.copy2(workspace.artifact_path(trained.id), tmp)
    recipe = space.spec(best["number"], best["params"]).recipe
    recipe["steps"] = [s for s in recipe["steps"] if not set(s) & {"quantize", "export"}]
    card = model_card(
        weights,
        model=weights.name,
        parent=root_variant.name,
        parent_sha256=root_variant.sha256,
        recipe=recipe,
        epochs=trained.params.get("epochs"),
        dataset=dataset_card(data),
        metrics=metrics_card(accuracy, imgsz, per_class=False),
        search=_search_card(space, spec, rows, best),
        trial_seconds=best.get("seconds"),
        history=trained.params.get("history", []),
    )
    write_card(weights, card)
    return card


def shipped_spec() -> Path:
    """The shipped search space the searched variant comes from."""
    from importlib import resources

    return Path(str(resources.files("workbench") / "recipes" / "sweeps" / f"{SPEC_NAME}.yaml"))


def train_searched(out_dir: Path | str, workspace_root: Path | str, *, progress: ProgressFn | None = None) -> dict:
    """Run the shipped constrained search from the shipped student (in process, one trial after another) in
    `workspace_root`, then ship its best feasible trial into `out_dir`; returns the card."""
    from ..data.generate import ShapesConfig, generate_shapes
    from ..models.sources import STUDENT, open_source, record_source
    from ..store.workspace import Workspace
    from ..sweep.search import run_sweep
    from .recipe_sweeps import SearchSpace

    space = SearchSpace.from_yaml(shipped_spec())
    source = open_source(STUDENT)
    workspace = Workspace(workspace_root)
    data_yaml = generate_shapes(workspace.datasets, ShapesConfig(), progress=progress).data_yaml
    run_sweep(workspace, record_source(workspace, source), data_yaml, space, progress=progress)
    return ship_searched(workspace.root, shipped_spec(), out_dir, progress=progress)


def _trained_variant(workspace: Workspace, final_id: int):
    """The last training step's variant (the PyTorch weights) in a trial's lineage."""
    for variant in workspace.lineage(final_id):  # the final variant first, the root last
        if variant.step in TRAINING_STEPS:
            return variant
    raise WorkbenchError(
        f"variant {final_id}'s lineage has no {' or '.join(TRAINING_STEPS)} step",
        "ship a search whose recipe trains",
    )


def _search_card(space, spec: Path | str, rows: list[dict], best: dict) -> dict:
    keep = ("number", "stage", "params", "map50_95", "p50_ms", "p99_ms", "size_mb", "feasible", "error", "worker")
    return {
        "spec": Path(spec).read_text(),
        "name": space.name,
        "method": space.method,
        "objective": {space.direction: space.metric},
        "constraints": space.constraints,
        "chosen_trial": best["number"],
        "trials": [{k: r.get(k) for k in keep} | {"seconds": r.get("seconds")} for r in rows],
        "seconds_total": round(sum(r.get("seconds") or 0 for r in rows), 1),
        "note": "latency in the trials was measured on the machine in trained_on, inside the search; "
        "make bench measures the variant again beside Ultralytics' INT8 export",
    }


def record_searched(workspace: Workspace, student_id: int, progress: ProgressFn | None = None) -> int:
    """Re-prune the (recorded) student as the searched variant's recipe did and record the shipped weights as its
    trained child; returns the searched variant's id. The architecture check catches weights from another recipe."""
    from ..models.cards import searched_card, searched_weights

    card = searched_card()
    pruned, training, expected, shipped = reprune(workspace, student_id, card, searched_weights(), progress)
    if expected != shipped:
        raise SearchedMismatch(
            f"the shipped searched variant has {shipped}, its recipe gives {expected} from the student",
            f"run the search again: workbench sweep workbench/recipes/sweeps/{SPEC_NAME}.yaml --model student",
        )
    params = {
        "shipped": True,
        "search": card["search"]["name"],
        "trial": card["search"]["chosen_trial"],
        "epochs": card["epochs"],
        "card_sha256": card["sha256"],
    }
    return workspace.add_artifact(
        searched_weights(), searched_weights().name, step=training, parent_id=pruned, format="pytorch", params=params
    )


def searched_available() -> bool:
    """Whether the searched variant ships with this install (it is made offline, so a checkout may lack it)."""
    from ..models.cards import searched_weights

    return searched_weights().is_file() and searched_weights().with_suffix(".json").is_file()
