"""Structured (channel) pruning with Torch-Pruning's dependency graph, as a recorded step.

Structured pruning removes whole channels: the model gets smaller and, on a dense runtime, faster where the
new widths suit the hardware (hence `round_to`). The Detect head's outputs are kept intact and the attention
blocks' heads are not cut. A pruned model stays an Ultralytics model: it trains, validates, exports and reloads.
Unstructured pruning (single weights set to zero) is `sparsify`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError, WorkbenchError, check_imgsz
from ..models.checkpoints import checkpoint_imgsz, load_checkpoint, record_checkpoint, save_checkpoint
from ..models.summary import model_stats
from ..progress import ProgressFn, emit
from ..store.atomic import scratch

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


class PruningError(WorkbenchError):
    """The pruner cannot handle this model."""


@dataclass(frozen=True)
class PruneConfig:
    """Channel pruning options.

    ratio: share of channels removed from each prunable layer (0 < ratio < 1).
    stage_ratios: per-layer overrides by Ultralytics layer index, e.g. {"9": 0.2, "10": 0.0} keeps the
        SPPF/attention stage wider; layers not named use `ratio`.
    steps: prune in this many equal steps; with `finetune_epochs` > 0 the model is fine-tuned between steps.
    round_to: channel counts are rounded to a multiple of this (SIMD-friendly widths run faster).
    importance: "l2" or "l1" weight magnitude, or "bn" (BatchNorm scale).
    """

    ratio: float = 0.3
    stage_ratios: dict = field(default_factory=dict)
    steps: int = 1
    round_to: int = 8
    importance: str = "l2"
    imgsz: int = 640  # example input for the dependency graph and the FLOPs count
    finetune_epochs: int = 0
    finetune_imgsz: int | None = None  # None: the size the parent was trained at

    def __post_init__(self):
        object.__setattr__(self, "stage_ratios", {str(k): float(v) for k, v in self.stage_ratios.items()})
        if not 0 < self.ratio < 1:
            raise ConfigError(
                f"pruning ratio must be between 0 and 1 (exclusive), got {self.ratio}",
                "use e.g. ratio=0.3 to remove 30% of the channels",
            )
        for index, value in self.stage_ratios.items():
            if not 0 <= value < 1:
                raise ConfigError(
                    f"stage_ratios[{index}] must be in [0, 1), got {value}",
                    "use 0 to keep a layer whole, e.g. stage_ratios={'10': 0}",
                )
        if self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}", "use steps=1 for one-shot pruning")
        if self.round_to < 1:
            raise ConfigError(f"round_to must be >= 1, got {self.round_to}", "use 8 or 16")
        if self.importance not in _IMPORTANCE:
            raise ConfigError(f"unknown importance {self.importance!r}", f"choose from {', '.join(_IMPORTANCE)}")
        check_imgsz(self.imgsz)
        if self.finetune_imgsz is not None:
            check_imgsz(self.finetune_imgsz, "finetune_imgsz")
        if self.finetune_epochs < 0:
            raise ConfigError(f"finetune_epochs cannot be negative, got {self.finetune_epochs}", "use 0 for none")


_IMPORTANCE = ("l2", "l1", "bn")


def _importance(name: str):
    import torch_pruning as tp

    if name == "bn":
        return tp.importance.BNScaleImportance()
    return tp.importance.MagnitudeImportance(p=2 if name == "l2" else 1)


def check_prunable(net) -> None:
    """Fail before any work when the model is not an Ultralytics detector the pruner understands."""
    from ultralytics.nn.modules.head import Detect
    from ultralytics.nn.tasks import DetectionModel

    if not isinstance(net, DetectionModel) or not isinstance(net.model[-1], Detect):
        raise PruningError(
            f"{type(net).__name__} is not an Ultralytics detection model with a Detect head",
            "prune a YOLOv8 / YOLO11 detection model (.pt or YAML)",
        )
    if getattr(net.model[-1], "end2end", False):
        raise PruningError(
            "end-to-end (NMS-free) heads such as YOLO26 / YOLOv10 are not supported by the pruner",
            "prune a YOLOv8 or YOLO11 model",
        )


def _ignored(net) -> list:
    """The Detect head's output convolutions (boxes, classes), its DFL, and attention internals (heads tie channels).

    The head's hidden convolutions stay prunable: at nano size they hold a large share of the FLOPs.
    """
    from ultralytics.nn.modules.block import Attention

    head = net.model[-1]
    ignored = [branch[-1] for branch in (*head.cv2, *head.cv3)] + [head.dfl]
    ignored += [m for m in net.modules() if isinstance(m, Attention)]
    return ignored


def _ratio_dict(net, config: PruneConfig) -> dict:
    return {net.model[int(index)]: value for index, value in config.stage_ratios.items()}


def channel_prune(net, config: PruneConfig, *, finetune=None, progress: ProgressFn | None = None):
    """Prune an Ultralytics `DetectionModel` in place (after making its split blocks prunable) and return it.

    Args:
        finetune: called with the model after each step but the last when `config.steps` > 1.
    """
    import torch
    import torch_pruning as tp

    from .split_free import make_split_free

    check_prunable(net)
    for index in config.stage_ratios:
        if not str(index).isdigit() or int(index) >= len(net.model) - 1:
            raise ConfigError(
                f"stage_ratios names layer {index!r}, which is not a prunable layer index",
                f"use layer indices 0..{len(net.model) - 2} (the Detect head follows the global ratio; "
                "its outputs are never cut)",
            )
    net.eval()
    for p in net.parameters():
        p.requires_grad_(True)
    make_split_free(net)
    example = torch.zeros(1, 3, config.imgsz, config.imgsz)
    try:
        pruner = tp.pruner.MetaPruner(
            net,
            example,
            importance=_importance(config.importance),
            pruning_ratio=config.ratio,
            pruning_ratio_dict=_ratio_dict(net, config) or None,
            iterative_steps=config.steps,
            ignored_layers=_ignored(net),
            round_to=config.round_to,
        )
        for step in range(config.steps):
            emit(progress, "prune", step, config.steps, f"step {step + 1}/{config.steps}")
            pruner.step()
            net.eval()
            with torch.no_grad():
                net(example)  # the pruned graph must still run end to end
            if finetune is not None and step < config.steps - 1:
                finetune(net)
    except WorkbenchError:
        raise
    except (RuntimeError, IndexError, ValueError) as exc:
        raise PruningError(
            f"Torch-Pruning could not prune this model: {type(exc).__name__}: {exc}",
            "lower the ratio, or keep the failing stage with stage_ratios={'N': 0}",
        ) from exc
    emit(progress, "prune", config.steps, config.steps, "done")
    return net


def load_net(workspace: Workspace, parent_id: int):
    """The float PyTorch module of a recorded .pt variant, in eval mode, and its path."""
    path = workspace.artifact_path(parent_id)
    if path.suffix != ".pt":
        raise ConfigError(
            f"variant {parent_id} is {path.name}; pruning works on PyTorch models",
            "prune the .pt variant, then export it",
        )
    return load_checkpoint(path).model.float().eval(), path


def prune(
    workspace: Workspace,
    parent_id: int,
    config: PruneConfig = PruneConfig(),
    *,
    data_yaml: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> int:
    """Channel-prune a recorded .pt variant; record the pruned model (params, GFLOPs before and after) as its child.

    With `config.steps` > 1 and `config.finetune_epochs` > 0 the model is fine-tuned on `data_yaml` between steps.
    """
    if config.steps > 1 and config.finetune_epochs and data_yaml is None:
        raise ConfigError("fine-tuning between pruning steps needs a dataset", "pass data_yaml=")
    net, path = load_net(workspace, parent_id)
    check_prunable(net)
    before = model_stats(net, config.imgsz)
    finetune = None
    if config.steps > 1 and config.finetune_epochs:
        imgsz = config.finetune_imgsz or checkpoint_imgsz(path) or config.imgsz

        def finetune(module):
            _finetune_in_place(module, data_yaml, config.finetune_epochs, imgsz, progress)

    net = channel_prune(net, config, finetune=finetune, progress=progress)
    after = model_stats(net, config.imgsz)
    params = {**asdict(config), "before": before, "after": after}
    return record_checkpoint(
        workspace,
        net,
        f"{path.stem.rsplit('-', 1)[0]}-pruned{round(config.ratio * 100)}.pt",
        step="prune",
        params=params,
        parent_id=parent_id,
    )


def _finetune_in_place(net, data_yaml, epochs: int, imgsz: int, progress) -> None:
    import torch

    from .train import TrainConfig, train

    with scratch("prune-ft-") as tmp:
        start, tuned = Path(tmp) / "step.pt", Path(tmp) / "tuned.pt"
        save_checkpoint(net, start)
        train(load_checkpoint(start), data_yaml, tuned, TrainConfig(epochs=epochs, imgsz=imgsz), progress=progress)
        state = torch.load(tuned, weights_only=False)
        net.load_state_dict((state.get("ema") or state["model"]).float().state_dict())
