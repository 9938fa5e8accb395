"""Accuracy of a detector on a YOLO dataset through Ultralytics' own validator."""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.checks import check_dataset
from ..environment import usable_cores
from ..errors import ConfigError
from ..progress import ProgressFn, emit


@dataclass(frozen=True)
class AccuracyConfig:
    imgsz: int = 320
    batch: int = 16
    split: str = "val"
    conf: float = 0.001  # Ultralytics' validation defaults: low threshold, so the whole PR curve counts
    iou: float = 0.7
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads; None: every usable core

    def __post_init__(self):
        if self.imgsz < 32 or self.imgsz % 32:
            raise ConfigError(f"imgsz must be a multiple of 32 and >= 32, got {self.imgsz}", "use e.g. 320 or 640")
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}", "use e.g. 16")


@dataclass(frozen=True)
class AccuracyResult:
    map50: float
    map50_95: float
    precision: float
    recall: float
    images: int
    instances: int
    per_class: list[dict] = field(default_factory=list)
    speed_ms: dict = field(default_factory=dict)  # Ultralytics' per-image stage times during validation

    def metrics(self) -> dict:
        """Flat dict for the ledger."""
        return asdict(self)


def evaluate(model, data_yaml: Path | str, config: AccuracyConfig = AccuracyConfig(), *,
             progress: ProgressFn | None = None) -> AccuracyResult:
    """mAP50, mAP50-95, precision, recall and per-class AP of `model` on one split of `data_yaml`.

    Args:
        model: an Ultralytics `YOLO` object (any format Ultralytics loads).
        data_yaml: a YOLO data YAML; checked first, so a bad dataset fails with a clear message.
        config: image size, batch, split, thresholds.
        progress: receives one event per validation batch.
    """
    summary = check_dataset(data_yaml, splits=(config.split,), model_names=_names(model))
    total = -(-summary.images[config.split] // config.batch)

    def on_batch(validator):
        emit(progress, "evaluate", validator.batch_i + 1, total)

    def on_start(validator):
        import torch

        torch.set_num_threads(config.threads or usable_cores())  # Ultralytics' select_device set cores - 1

    model.add_callback("on_val_start", on_start)
    model.add_callback("on_val_batch_end", on_batch)
    try:
        with tempfile.TemporaryDirectory(prefix="workbench-val-") as tmp:
            data = summary.write_resolved(Path(tmp))
            metrics = model.val(data=str(data), imgsz=config.imgsz, batch=config.batch, split=config.split,
                                conf=config.conf, iou=config.iou, device=config.device, workers=0, plots=False,
                                save_json=False, verbose=False, project=tmp, name="val", exist_ok=True)
    finally:
        model.callbacks["on_val_start"].remove(on_start)
        model.callbacks["on_val_batch_end"].remove(on_batch)
    precision, recall, map50, map50_95 = (float(v) for v in metrics.mean_results())
    per_class = [{"class": row["Class"], "images": int(row["Images"]), "instances": int(row["Instances"]),
                  "precision": row["Box-P"], "recall": row["Box-R"], "map50": row["mAP50"],
                  "map50_95": row["mAP50-95"]} for row in metrics.summary()]
    return AccuracyResult(map50=map50, map50_95=map50_95, precision=precision, recall=recall,
                          images=summary.images[config.split], instances=summary.instances[config.split],
                          per_class=per_class, speed_ms={k: float(v) for k, v in metrics.speed.items()})


def _names(model) -> dict[int, str] | None:
    names = getattr(model, "names", None)
    return dict(names) if names else None
