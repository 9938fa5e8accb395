"""The shipped models (the demo YOLO11n, its pruned student, the searched variant) and the JSON cards that travel
with model files."""

from __future__ import annotations

import json
import platform
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path

from ..environment import cpu_info, library_versions
from ..store.atomic import sha256, size_bytes, staged

DEMO_NAME = "yolo11n-shapes.pt"
STUDENT_NAME = "yolo11n-shapes-p30-student.pt"
SEARCHED_NAME = "yolo11n-shapes-searched.pt"


def demo_weights() -> Path:
    """The shipped demo model: a YOLO11n trained on the generated shapes dataset."""
    return Path(str(resources.files("workbench") / "assets" / "demo" / DEMO_NAME))


def demo_card() -> dict:
    """The JSON card of the shipped demo model: recipe, dataset, versions, accuracy, sha256."""
    return read_card(demo_weights())


def student_weights() -> Path:
    """The shipped pruned student: the demo model pruned 30% and trained back (recipe demo-best)."""
    return demo_weights().with_name(STUDENT_NAME)


def student_card() -> dict:
    """The student's card: the recipe that made it, its parent's sha256, training history, accuracy."""
    return read_card(student_weights())


def searched_weights() -> Path:
    """The shipped searched variant: the student pruned again and fine-tuned, the best feasible trial of the
    constrained search `workbench/recipes/sweeps/search-student.yaml`."""
    return demo_weights().with_name(SEARCHED_NAME)


def searched_card() -> dict:
    """The searched variant's card: the search space, every trial, the time spent, the chosen trial's recipe."""
    return read_card(searched_weights())


def read_card(weights: Path) -> dict:
    return json.loads(Path(weights).with_suffix(".json").read_text())


def model_card(weights: Path, **fields) -> dict:
    """A card for a model file: `fields` first, then the file's sha256 and size, the library versions, the machine
    it was made on and the date."""
    cpu = cpu_info()
    return {
        **fields,
        "sha256": sha256(weights),
        "size_bytes": size_bytes(weights),
        "versions": library_versions(),
        "trained_on": {"cpu": cpu["model"], "cores": cpu["usable_cores"], "os": platform.platform()},
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def write_card(weights: Path, card: dict) -> Path:
    """Write the card beside the weights (same name, .json), staged."""
    path = Path(weights).with_suffix(".json")
    with staged(path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return path
