"""Knowledge distillation and plain fine-tuning as recorded steps, through Ultralytics' own trainer.

Distillation uses Ultralytics' built-in teacher/student training (`train(distill_model=..., dis=...)`): the
student's neck features are projected onto the teacher's and pulled towards them, on top of the detection loss.
The teacher must be of the same family (same head type, classes and feature levels); widths may differ, so a
pruned student can learn from its unpruned parent, and a nano model from a small one.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..models.checkpoints import DEFAULT_IMGSZ, check_reloads, checkpoint_imgsz, load_checkpoint, save_checkpoint
from ..progress import ProgressFn
from ..store.atomic import scratch
from .train import TrainConfig

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


@dataclass(frozen=True)
class DistillConfig:
    """Training options of a distillation or fine-tuning step; `weight` is Ultralytics' `dis` loss factor."""

    epochs: int = 10
    imgsz: int | None = None  # None: the size the student was trained at
    batch: int = 16
    lr0: float = 0.004
    weight: float = 6.0
    close_mosaic: int = 3
    seed: int = 0
    baseline: bool = False  # in a recipe: also fine-tune the same student without teacher, for comparison
    nbs: int | None = None  # images per optimizer step (Ultralytics' nominal batch, 64: gradients of 64 / batch
    # batches are accumulated); on a few images set it to `batch`, or an epoch may take no step at all

    def __post_init__(self):
        if self.weight <= 0:
            raise ConfigError(f"distillation weight must be > 0, got {self.weight}", "use e.g. weight=6.0")
        if self.nbs is not None and (isinstance(self.nbs, bool) or not isinstance(self.nbs, int) or self.nbs < 1):
            raise ConfigError(f"nbs must be a whole number >= 1, got {self.nbs!r}", "use the batch size, or leave it")
        self.train_config(self.imgsz or DEFAULT_IMGSZ)  # validates epochs, imgsz, batch

    def train_config(self, imgsz: int | None = None) -> TrainConfig:
        """Ultralytics training arguments; `imgsz` stands in when the config leaves it to the student."""
        return TrainConfig(
            epochs=self.epochs,
            imgsz=self.imgsz or imgsz,
            batch=self.batch,
            lr0=self.lr0,
            warmup_epochs=0,
            close_mosaic=min(self.close_mosaic, self.epochs),
            seed=self.seed,
            extra={} if self.nbs is None else {"nbs": self.nbs},
        )


def head_signature(net) -> dict:
    """What teacher and student must share: head type, classes, feature levels, DFL bins."""
    head = net.model[-1]
    return {
        "head": type(head).__name__,
        "nc": int(head.nc),
        "levels": int(head.nl),
        "reg_max": int(getattr(head, "reg_max", 0)),
        "end2end": bool(getattr(head, "end2end", False)),
    }


def check_teacher(student_net, teacher_net) -> None:
    """Fail before training when the teacher cannot teach this student."""
    student, teacher = head_signature(student_net), head_signature(teacher_net)
    different = {k: (student[k], teacher[k]) for k in student if student[k] != teacher[k]}
    if different:
        detail = ", ".join(f"{k}: student {s} vs teacher {t}" for k, (s, t) in different.items())
        raise ConfigError(
            f"the teacher is of another family ({detail})",
            "distill from a model with the same head and classes (e.g. YOLO11s -> YOLO11n "
            "trained on the same dataset), or fine-tune without a teacher",
        )


def _train_step(
    workspace: Workspace,
    parent_id: int,
    data_yaml,
    config: DistillConfig,
    *,
    teacher_id: int | None,
    step: str,
    progress: ProgressFn | None,
) -> int:
    from ..data.checks import check_dataset
    from .train import train

    student_path = workspace.artifact_path(parent_id)
    teacher_path = workspace.artifact_path(teacher_id) if teacher_id is not None else None
    for path in filter(None, (student_path, teacher_path)):
        if path.suffix != ".pt":
            raise ConfigError(f"{path.name} is not a PyTorch model", "train .pt variants; export afterwards")
    student = load_checkpoint(student_path)
    check_dataset(data_yaml, splits=("train", "val"), model_names=student.model.names)
    if teacher_path is not None:
        check_teacher(student.model, load_checkpoint(teacher_path).model)
    config = replace(config, imgsz=config.imgsz or checkpoint_imgsz(student_path) or DEFAULT_IMGSZ)
    history: list = []

    def write(out: Path) -> None:
        with scratch("distill-") as tmp:
            tuned = Path(tmp) / "tuned.pt"
            result = train(
                student,
                data_yaml,
                tuned,
                config.train_config(),
                teacher=teacher_path,
                distill_weight=config.weight,
                progress=progress,
            )
            history.extend(result.history)
            _strip_training_state(tuned, out)

    name = f"{student_path.stem.rsplit('-', 1)[0]}-{step}{config.epochs}.pt"
    params = {**asdict(config), "teacher_id": teacher_id, "data": str(Path(data_yaml).resolve()), "history": history}
    return workspace.add_artifact(
        write, name, step=step, params=params, parent_id=parent_id, format="pytorch", check=check_reloads
    )


def distill(
    workspace: Workspace,
    student_id: int,
    teacher_id: int,
    data_yaml: Path | str,
    config: DistillConfig = DistillConfig(),
    *,
    progress: ProgressFn | None = None,
) -> int:
    """Train the student variant with the teacher variant's features as an extra target; record the result."""
    return _train_step(
        workspace, student_id, data_yaml, config, teacher_id=teacher_id, step="distill", progress=progress
    )


def finetune(
    workspace: Workspace,
    variant_id: int,
    data_yaml: Path | str,
    config: DistillConfig = DistillConfig(),
    *,
    progress: ProgressFn | None = None,
) -> int:
    """The same training without a teacher: the baseline that distillation has to beat."""
    return _train_step(workspace, variant_id, data_yaml, config, teacher_id=None, step="finetune", progress=progress)


def _strip_training_state(checkpoint: Path, out: Path) -> None:
    """Keep the trained student only (fp32): no optimizer, no teacher, no distillation wrapper."""
    import torch

    state = torch.load(checkpoint, weights_only=False)
    net = (state.get("ema") or state["model"]).float()
    save_checkpoint(getattr(net, "student_model", net), out, note={"train_args": state.get("train_args", {})})
