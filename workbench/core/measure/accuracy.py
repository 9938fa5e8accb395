"""Accuracy (mAP) of a detector on a YOLO dataset: through the workbench's runners, or Ultralytics' own validator.

`runner_accuracy` is the measurement path: an artifact runs in its own runtime, precision and threads, on images
letterboxed as Ultralytics' validator letterboxes them for an exported model, and is scored with the validator's
matching and curves (`mean_ap`). `evaluate` runs `YOLO(...).val()` itself; it is the reference the runner path is
tested against, and what `workbench evaluate` and the shipped models' cards report.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from ..data.checks import check_dataset, list_images
from ..environment import torch_threads, usable_cores
from ..errors import ConfigError, check_imgsz
from ..progress import ProgressFn, emit
from ..store.atomic import scratch


@dataclass(frozen=True)
class AccuracyConfig:
    """Validation settings; the thresholds are Ultralytics' validation defaults (the whole PR curve counts)."""

    imgsz: int | None = None  # None: the size the model was trained at
    batch: int = 16  # Ultralytics' validator only; runners take one image at a time
    split: str = "val"
    images: int | None = None  # the first N images of the split (None: all of them)
    conf: float = 0.001
    iou: float = 0.7
    max_det: int = 300
    device: str = "cpu"
    threads: int | None = None  # torch CPU threads for the validator; None: every usable core

    def __post_init__(self):
        if self.imgsz is not None:
            check_imgsz(self.imgsz)
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}", "use e.g. 16")
        if self.images is not None and self.images < 1:
            raise ConfigError(f"images must be >= 1 (or None for the whole split), got {self.images}", "use e.g. 200")


@dataclass(frozen=True)
class AccuracyResult:
    map50: float
    map50_95: float
    precision: float
    recall: float
    images: int
    instances: int
    per_class: list[dict] = field(default_factory=list)
    speed_ms: dict = field(default_factory=dict)  # per-image stage times while validating

    def metrics(self) -> dict:
        """Flat dict for the ledger."""
        return asdict(self)


def runner_accuracy(
    runner,
    data_yaml: Path | str,
    config: AccuracyConfig,
    *,
    names: dict[int, str] | None = None,
    progress: ProgressFn | None = None,
) -> AccuracyResult:
    """mAP of a loaded runner (any runtime) on one split, at `config.imgsz`, one image at a time.

    Args:
        runner: from `open_runner`; its runtime, precision and threads are what is measured.
        names: the model's classes, checked against the dataset's (count) and used to label per-class rows.
    """
    from ..data.labels import LabelledImage
    from ..models.detector import decode, postprocess, preprocess
    from .mean_ap import read_labelled, score

    if config.imgsz is None:
        raise ConfigError("runner accuracy needs an imgsz", "pass AccuracyConfig(imgsz=...)")
    summary = check_dataset(data_yaml, splits=(config.split,), model_names=names)
    images = list_images(data_yaml, config.split)[: config.images]
    labelled = read_labelled(images)
    truths, detections, seconds = [], [], {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    for index, (path, truth) in enumerate(zip(images, labelled, strict=True)):
        t0 = time.perf_counter()
        boxed = preprocess(decode(Path(path).read_bytes(), Path(path).name), config.imgsz)
        t1 = time.perf_counter()
        raw = runner(boxed.batch)
        t2 = time.perf_counter()
        # scored in the model's input pixels, predictions unclipped: what Ultralytics' validator compares
        detections.append(
            postprocess(
                raw,
                boxed,
                conf=config.conf,
                iou=config.iou,
                max_det=config.max_det,
                multi_label=True,
                to_original=False,
            )
        )
        truths.append(LabelledImage(truth.path, boxed.to_input(truth.boxes), truth.classes))
        seconds["preprocess"] += t1 - t0
        seconds["inference"] += t2 - t1
        seconds["postprocess"] += time.perf_counter() - t2
        emit(progress, "accuracy", index + 1, len(images))
    result = score(detections, truths, names or summary.names)
    return AccuracyResult(
        map50=result["map50"],
        map50_95=result["map50_95"],
        precision=result["precision"],
        recall=result["recall"],
        images=len(images),
        instances=int(sum(len(t.classes) for t in truths)),
        per_class=result["per_class"],
        speed_ms={k: 1000 * v / max(len(images), 1) for k, v in seconds.items()},
    )


def evaluate(
    model, data_yaml: Path | str, config: AccuracyConfig = AccuracyConfig(), *, progress: ProgressFn | None = None
) -> AccuracyResult:
    """mAP50, mAP50-95, precision, recall and per-class AP of `model` through Ultralytics' validator.

    Args:
        model: an Ultralytics `YOLO` object (any format Ultralytics loads).
        data_yaml: a YOLO data YAML; checked first, so a bad dataset fails with a clear message.
        config: image size (None: the model's training size), batch, split, thresholds.
        progress: receives one event per validation batch.
    """
    from ..models.checkpoints import DEFAULT_IMGSZ, training_imgsz

    if config.imgsz is None:
        config = replace(config, imgsz=training_imgsz(model) or DEFAULT_IMGSZ)
    if config.images is not None:
        raise ConfigError("Ultralytics' validator runs on a whole split", "leave images=None, or measure a subset")
    summary = check_dataset(data_yaml, splits=(config.split,), model_names=_names(model))
    total = -(-summary.images[config.split] // config.batch)
    threads = config.threads or usable_cores()

    def on_batch(validator):
        emit(progress, "evaluate", validator.batch_i + 1, total)

    def on_start(validator):
        import torch

        torch.set_num_threads(threads)  # Ultralytics' select_device has just set cores - 1

    model.add_callback("on_val_start", on_start)
    model.add_callback("on_val_batch_end", on_batch)
    try:
        with scratch("val-") as tmp, torch_threads():
            data = summary.write_resolved(Path(tmp))
            metrics = model.val(
                data=str(data),
                imgsz=config.imgsz,
                batch=config.batch,
                split=config.split,
                conf=config.conf,
                iou=config.iou,
                max_det=config.max_det,
                device=config.device,
                workers=0,
                plots=False,
                save_json=False,
                verbose=False,
                project=tmp,
                name="val",
                exist_ok=True,
            )
    finally:
        model.callbacks["on_val_start"].remove(on_start)
        model.callbacks["on_val_batch_end"].remove(on_batch)
    precision, recall, map50, map50_95 = (float(v) for v in metrics.mean_results())
    per_class = [
        {
            "class": row["Class"],
            "images": int(row["Images"]),
            "instances": int(row["Instances"]),
            "precision": row["Box-P"],
            "recall": row["Box-R"],
            "map50": row["mAP50"],
            "map50_95": row["mAP50-95"],
        }
        for row in metrics.summary()
    ]
    return AccuracyResult(
        map50=map50,
        map50_95=map50_95,
        precision=precision,
        recall=recall,
        images=summary.images[config.split],
        instances=summary.instances[config.split],
        per_class=per_class,
        speed_ms={k: float(v) for k, v in metrics.speed.items()},
    )


def _names(model) -> dict[int, str] | None:
    names = getattr(model, "names", None)
    return dict(names) if names else None
