"""Training and fine-tuning through Ultralytics' trainer, with progress events and a staged result."""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from ..data.checks import check_dataset
from ..environment import torch_threads, usable_cores
from ..errors import ConfigError, check_imgsz
from ..progress import ProgressFn, emit
from ..store.atomic import scratch, staged


@dataclass(frozen=True)
class TrainConfig:
    """Ultralytics training arguments the workbench sets on purpose; `extra` passes any other one through."""

    epochs: int = 10
    imgsz: int = 320
    batch: int = 16
    optimizer: str = "AdamW"
    lr0: float = 0.01
    warmup_epochs: float = 0.0  # Ultralytics' default 3 wastes most of a short run
    close_mosaic: int = 3
    seed: int = 0
    workers: int = 2  # data loader processes; Ultralytics uses 0 on CPU whatever is asked
    cache: bool = True  # decoded images in RAM: small datasets, fewer JPEG decodes per epoch
    threads: int | None = None  # torch CPU threads; None: every usable core (Ultralytics alone uses cores - 1)
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}", "use e.g. 10")
        check_imgsz(self.imgsz)
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}", "use e.g. 16")

    def arguments(self) -> dict:
        args = {k: v for k, v in asdict(self).items() if k not in ("extra", "threads")}
        args["cache"] = "ram" if self.cache else False
        return {**args, "deterministic": True, "amp": False, "plots": False, "val": True, **self.extra}


@dataclass(frozen=True)
class TrainResult:
    weights: Path
    seconds: float
    epochs: int
    history: list[dict]  # one row per epoch: losses and validation metrics


def keeping_trainer():
    """Ultralytics' detection trainer, except that a loaded model is fine-tuned as it is.

    The default trainer rebuilds the network from its YAML and copies matching weights into it, which silently
    undoes pruning (the YAML still names the original widths) and drops split-free blocks.
    """
    import torch
    from ultralytics.models.yolo.detect import DetectionTrainer

    class KeepArchitectureTrainer(DetectionTrainer):
        def get_model(self, cfg=None, weights=None, verbose=True):
            if isinstance(weights, torch.nn.Module):
                head = weights.model[-1]
                if getattr(head, "nc", self.data["nc"]) != self.data["nc"]:
                    raise ConfigError(
                        f"the model detects {head.nc} classes but the dataset has {self.data['nc']}",
                        "fine-tune on a dataset with the model's classes, or retrain from its YAML",
                    )
                return self.set_model_names_for_load(weights.float())
            return super().get_model(cfg=cfg, weights=weights, verbose=verbose)

    return KeepArchitectureTrainer


def train(
    model,
    data_yaml: Path | str,
    out: Path,
    config: TrainConfig = TrainConfig(),
    *,
    device: str = "cpu",
    teacher: Path | str | None = None,
    distill_weight: float = 6.0,
    progress: ProgressFn | None = None,
) -> TrainResult:
    """Train `model` (an Ultralytics YOLO) on `data_yaml`; the best weights land at `out` (a .pt path).

    A model loaded from a checkpoint keeps its architecture (pruned widths included). With `teacher` (a .pt of
    the same family), Ultralytics' built-in distillation adds a feature loss weighted by `distill_weight`.
    Nothing is written at `out` unless training completes; Ultralytics' run folder is temporary.
    """
    summary = check_dataset(data_yaml, splits=("train", "val"))
    per_epoch = -(-summary.images["train"] // config.batch)
    total = config.epochs * per_epoch
    history: list[dict] = []
    batches = 0

    def on_batch(trainer):
        nonlocal batches
        batches += 1
        emit(progress, "train", batches, total, f"epoch {trainer.epoch + 1}/{config.epochs}")

    def on_epoch(trainer):
        row = {k: float(v) for k, v in trainer.metrics.items()}
        if "val/box_loss" in row:  # Ultralytics' final re-validation of best.pt reports no losses: skip it
            losses = trainer.label_loss_items(trainer.tloss, prefix="train")
            history.append({"epoch": trainer.epoch + 1, **row, **{k: float(v) for k, v in losses.items()}})

    def on_start(trainer):
        import torch

        torch.set_num_threads(config.threads or usable_cores())  # after Ultralytics' select_device lowered it

    callbacks = {"on_train_start": on_start, "on_train_batch_end": on_batch, "on_fit_epoch_end": on_epoch}
    for event, callback in callbacks.items():
        model.add_callback(event, callback)
    start = time.perf_counter()
    try:
        with (
            scratch("train-") as tmp,
            staged(Path(out)) as target,
            torch_threads(),  # Ultralytics' trainer lowers torch's thread count for the process: put it back after
        ):
            data = summary.write_resolved(Path(tmp))
            distill = {"distill_model": str(teacher), "dis": distill_weight} if teacher else {}
            model.train(
                data=str(data),
                device=device,
                project=tmp,
                name="run",
                exist_ok=True,
                verbose=False,
                trainer=keeping_trainer(),
                **config.arguments(),
                **distill,
            )
            best = Path(tmp) / "run" / "weights" / "best.pt"
            shutil.move(best, target)  # may cross file systems
    finally:
        for event, callback in callbacks.items():
            model.callbacks[event].remove(callback)
    return TrainResult(Path(out), time.perf_counter() - start, len(history), history)
