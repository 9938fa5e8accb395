"""The shipped demo model: how it is trained, and its card (recipe, data, versions, accuracy, sha256)."""

from __future__ import annotations

import json
import platform
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from .accuracy import AccuracyConfig, evaluate
from .atomic import sha256, size_bytes, staged
from .data.generate import GENERATOR_VERSION, ShapesConfig, generate_shapes
from .environment import cpu_info, library_versions
from .progress import ProgressFn
from .train import TrainConfig, train

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
    from .models import load_model

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
