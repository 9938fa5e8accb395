"""The shipped models: how the demo YOLO11n and its pruned student are trained, carded, and recorded in a study."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.generate import GENERATOR_VERSION, ShapesConfig, generate_shapes
from ..errors import WorkbenchError
from ..measure.accuracy import AccuracyConfig, evaluate
from ..models.cards import (
    DEMO_NAME,
    demo_weights,
    model_card,
    student_card,
    student_weights,
    write_card,
)
from ..optimize.train import TrainConfig, train
from ..progress import ProgressFn
from ..store.atomic import sha256, staged

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

ARCHITECTURE = "yolo11n.yaml"
DEMO_RECIPE = TrainConfig(
    epochs=60, imgsz=320, batch=16, optimizer="AdamW", lr0=0.005, warmup_epochs=1, close_mosaic=5, seed=0
)
STUDENT_RECIPE = "demo-best"
STUDENT_STEPS = 2  # prune and fine-tune: the quantize step runs where the student is used (demo, make bench)
TRAINING_STEPS = ("distill", "finetune")


def dataset_card(data: ShapesConfig) -> dict:
    return {**asdict(data), "generator_version": GENERATOR_VERSION, "name": data.name}


def metrics_card(accuracy, imgsz: int, *, per_class: bool) -> dict:
    metrics = {
        "split": "val",
        "imgsz": imgsz,
        "map50": round(accuracy.map50, 4),
        "map50_95": round(accuracy.map50_95, 4),
    }
    if per_class:
        metrics.update(
            precision=round(accuracy.precision, 4), recall=round(accuracy.recall, 4), per_class=accuracy.per_class
        )
    return metrics


def train_demo_model(
    out_dir: Path | str,
    data_root: Path | str,
    *,
    recipe: TrainConfig = DEMO_RECIPE,
    data: ShapesConfig = ShapesConfig(),
    progress: ProgressFn | None = None,
) -> dict:
    """Generate the dataset, train YOLO11n from scratch, evaluate it, write weights and card into `out_dir`.

    Returns:
        the card; its mAP is measured by Ultralytics' validator on the val split at the training imgsz.
    """
    from ..models.checkpoints import load_checkpoint, load_yolo

    dataset = generate_shapes(data_root, data, progress=progress)
    weights = Path(out_dir) / DEMO_NAME
    result = train(load_yolo(ARCHITECTURE), dataset.data_yaml, weights, recipe, progress=progress)
    accuracy = evaluate(load_checkpoint(weights), dataset.data_yaml, AccuracyConfig(imgsz=recipe.imgsz))
    card = model_card(
        weights,
        model=DEMO_NAME,
        architecture=ARCHITECTURE,
        dataset=dataset_card(data),
        recipe=asdict(recipe),
        imgsz=recipe.imgsz,
        epochs=result.epochs,
        seed=recipe.seed,
        metrics=metrics_card(accuracy, recipe.imgsz, per_class=True),
        train_seconds=round(result.seconds, 1),
        history=result.history,
    )
    write_card(weights, card)
    return card


def train_student(out_dir: Path | str, workspace_root: Path | str, *, progress: ProgressFn | None = None) -> dict:
    """Prune the demo model and train it back (recipe demo-best without its quantize step); write weights and card."""
    from ..models.checkpoints import load_checkpoint
    from ..models.sources import open_source, record_source
    from ..optimize.recipes import Recipe, run_recipe
    from ..store.workspace import Workspace

    full = Recipe.load(STUDENT_RECIPE)
    workspace = Workspace(workspace_root)
    dataset = generate_shapes(workspace.datasets, ShapesConfig(), progress=progress)
    parent = record_source(workspace, open_source("demo", data_yaml=dataset.data_yaml))
    recipe = Recipe(full.steps[:STUDENT_STEPS], None, full.name)  # measured where the student is used
    result = run_recipe(workspace, recipe, parent, dataset.data_yaml, measure_input=False, progress=progress)
    trained = [step for step in result.steps if step.kind in TRAINING_STEPS]
    history = [row for step in trained for row in workspace.variant(step.variants[-1]).params["history"]]
    weights = Path(out_dir) / student_weights().name
    with staged(weights) as tmp:
        shutil.copy2(workspace.artifact_path(result.final_id), tmp)
    accuracy = evaluate(load_checkpoint(weights), dataset.data_yaml, AccuracyConfig(imgsz=DEMO_RECIPE.imgsz))
    recipe_data = full.to_dict()
    recipe_data["steps"] = recipe_data["steps"][:STUDENT_STEPS]
    card = model_card(
        weights,
        model=weights.name,
        parent_sha256=sha256(demo_weights()),
        recipe=recipe_data,
        epochs=len(history),
        dataset=dataset_card(ShapesConfig()),
        metrics=metrics_card(accuracy, DEMO_RECIPE.imgsz, per_class=False),
        train_seconds=round(sum(s.seconds for s in trained), 1),
        history=history,
    )
    write_card(weights, card)
    return card


def reprune(
    workspace: Workspace, parent_id: int, card: dict, weights: Path, progress: ProgressFn | None = None
) -> tuple:
    """Prune `parent_id` as `card`'s recipe did. Returns the pruned variant's id, the recipe's training step, and
    the parameter and GFLOPs counts at 640 of the re-pruned model and of the shipped `weights` (equal: same
    architecture)."""
    from ..models.checkpoints import load_checkpoint
    from ..models.summary import model_stats
    from ..optimize.prune import PruneConfig, prune

    steps = card["recipe"]["steps"]
    prune_options = next(step["prune"] for step in steps if "prune" in step)
    training = next(kind for step in steps for kind in step if kind in TRAINING_STEPS)
    pruned = prune(workspace, parent_id, PruneConfig(**prune_options), progress=progress)
    expected = model_stats(load_checkpoint(workspace.artifact_path(pruned)).model, 640)
    return pruned, training, expected, model_stats(load_checkpoint(weights).model, 640)


class StudentMismatch(WorkbenchError):
    """The shipped student does not have the architecture its recipe produces from this parent."""


@dataclass(frozen=True)
class StudentVariants:
    parent: int
    pruned: int
    student: int


def record_student(workspace: Workspace, parent_id: int, progress: ProgressFn | None = None) -> StudentVariants:
    """Re-prune the parent as the student's recipe did and record the shipped student as its trained child.

    The lineage in the ledger is then the true one (parent -> prune -> the training step), and the check that the
    re-pruned architecture equals the shipped student's catches a student trained from another parent or recipe.
    """
    card = student_card()
    pruned, training, expected, shipped = reprune(workspace, parent_id, card, student_weights(), progress)
    if expected != shipped:
        raise StudentMismatch(
            f"the shipped student has {shipped}, its recipe gives {expected} from this parent",
            "retrain it: workbench optimize --recipe demo-best",
        )
    params = {
        "shipped": True,
        "recipe": card["recipe"]["name"],
        "epochs": card["epochs"],
        "card_sha256": card["sha256"],
    }
    student = workspace.add_artifact(
        student_weights(), student_weights().name, step=training, parent_id=pruned, format="pytorch", params=params
    )
    return StudentVariants(parent_id, pruned, student)
