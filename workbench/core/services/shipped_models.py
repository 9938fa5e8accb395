"""The shipped demo model: how it is trained, and its card (recipe, data, versions, accuracy, sha256)."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from ..data.generate import GENERATOR_VERSION, ShapesConfig, generate_shapes
from ..environment import cpu_info, library_versions
from ..measure.accuracy import AccuracyConfig, evaluate
from ..optimize.train import TrainConfig, train
from ..progress import ProgressFn
from ..store.atomic import sha256, size_bytes, staged

ARCHITECTURE = "yolo11n.yaml"
WEIGHTS_NAME = "yolo11n-shapes.pt"
DEMO_DATA = ShapesConfig(seed=0, train=800, val=200, imgsz=320)
DEMO_RECIPE = TrainConfig(epochs=60, imgsz=320, batch=16, optimizer="AdamW", lr0=0.005, warmup_epochs=1,
                          close_mosaic=5, seed=0)


def train_demo_model(out_dir: Path | str, data_root: Path | str, *, recipe: TrainConfig = DEMO_RECIPE,
                     data: ShapesConfig = DEMO_DATA, progress: ProgressFn | None = None) -> dict:
    """Generate the dataset, train YOLO11n from scratch, evaluate it, write weights and card into `out_dir`.

    Returns:
        the card; its mAP is measured on the val split at the training imgsz.
    """
    from ..models.sources import load_model

    out_dir = Path(out_dir)
    dataset = generate_shapes(data_root, data, progress=progress)
    weights = out_dir / WEIGHTS_NAME
    result = train(load_model(ARCHITECTURE), dataset.data_yaml, weights, recipe, progress=progress)
    accuracy = evaluate(load_model(weights), dataset.data_yaml, AccuracyConfig(imgsz=recipe.imgsz),
                        progress=progress)
    card = {
        "model": WEIGHTS_NAME,
        "architecture": ARCHITECTURE,
        "dataset": {**asdict(data), "generator_version": GENERATOR_VERSION, "name": data.name},
        "recipe": asdict(recipe),
        "imgsz": recipe.imgsz,
        "epochs": result.epochs,
        "seed": recipe.seed,
        "metrics": {"split": "val", "imgsz": recipe.imgsz, "map50": round(accuracy.map50, 4),
                    "map50_95": round(accuracy.map50_95, 4), "precision": round(accuracy.precision, 4),
                    "recall": round(accuracy.recall, 4), "per_class": accuracy.per_class},
        "train_seconds": round(result.seconds, 1),
        "history": result.history,
        "sha256": sha256(weights),
        "size_bytes": size_bytes(weights),
        "versions": library_versions(),
        "trained_on": {"cpu": cpu_info()["model"], "cores": cpu_info()["usable_cores"], "os": platform.platform()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    with staged(out_dir / Path(WEIGHTS_NAME).with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return card


STUDENT_RECIPE = "demo-best"
STUDENT_STEPS = 2  # prune and fine-tune: the quantize step runs where the student is used (make bench)
TRAINING_STEPS = ("distill", "finetune")


def student_card_data(weights: Path, parent_sha256: str, history: list[dict], seconds: float,
                      accuracy) -> dict:
    """The card of a pruned student of the demo model, trained back by the student recipe."""
    from ..optimize.recipes import Recipe

    recipe = Recipe.load(STUDENT_RECIPE).to_dict()
    recipe["steps"] = recipe["steps"][:STUDENT_STEPS]
    return {"model": weights.name, "parent_sha256": parent_sha256, "recipe": recipe, "epochs": len(history),
            "dataset": {**asdict(DEMO_DATA), "generator_version": GENERATOR_VERSION, "name": DEMO_DATA.name},
            "metrics": {"split": "val", "imgsz": DEMO_RECIPE.imgsz, "map50": round(accuracy.map50, 4),
                        "map50_95": round(accuracy.map50_95, 4)},
            "train_seconds": round(seconds, 1), "history": history, "sha256": sha256(weights),
            "size_bytes": size_bytes(weights), "versions": library_versions(),
            "trained_on": {"cpu": cpu_info()["model"], "cores": cpu_info()["usable_cores"], "os": platform.platform()},
            "created": datetime.now(UTC).isoformat(timespec="seconds")}


def train_student(out_dir: Path | str, workspace_root: Path | str, *, progress: ProgressFn | None = None) -> dict:
    """Prune the demo model and train it back (recipe demo-best without its quantize step); write weights and card."""
    import shutil

    from ..models.sources import demo_weights, load_model, student_weights
    from ..optimize.recipes import MeasureSpec, Recipe, run_recipe
    from ..store.workspace import Workspace

    workspace = Workspace(workspace_root)
    dataset = generate_shapes(workspace.datasets, DEMO_DATA, progress=progress)
    parent = workspace.add_artifact(demo_weights(), demo_weights().name, step="source", format="pt")
    full = Recipe.load(STUDENT_RECIPE)
    recipe = Recipe(full.steps[:STUDENT_STEPS], MeasureSpec(latency_imgsz=(), accuracy=False), full.name)
    result = run_recipe(workspace, recipe, parent, dataset.data_yaml, measure_input=False, progress=progress)
    params = workspace.variants().set_index("id")["params"]
    trained = [step for step in result.steps if step.kind in TRAINING_STEPS]
    history = [row for step in trained for row in params.loc[step.variants[-1]]["history"]]
    weights = Path(out_dir) / student_weights().name
    with staged(weights) as tmp:
        shutil.copy2(workspace.artifact_path(result.final_id), tmp)
    accuracy = evaluate(load_model(weights), dataset.data_yaml, AccuracyConfig(imgsz=DEMO_RECIPE.imgsz))
    card = student_card_data(weights, sha256(demo_weights()), history, sum(s.seconds for s in trained), accuracy)
    with staged(weights.with_suffix(".json")) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return card
