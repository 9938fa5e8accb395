"""Quantization-aware training of YOLO with NNCF on PyTorch, fine-tuned with Ultralytics' detection loss.

NNCF inserts fake-quantizers into the PyTorch model (calibrated like post-training INT8), then a few epochs of
training with Ultralytics' data pipeline and loss let the weights adapt to the rounding. The head's box decoding
stays out of the quantized graph: the model is quantized through a view that ends at the head's raw outputs,
and the decoding ops that export adds later have no quantizers, so they run in float.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.calibration import MIN_CALIBRATION_IMAGES, ImageSet
from ..errors import ConfigError, check_imgsz
from ..models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz, load_checkpoint, record_checkpoint
from ..progress import ProgressFn, emit
from ..store.atomic import scratch

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


@dataclass(frozen=True)
class QATConfig:
    """Quantize with NNCF, then fine-tune `epochs` with Ultralytics' loss; export at `export_imgsz`."""

    epochs: int = 2
    imgsz: int | None = None  # training size; None: the size the parent was trained at
    batch: int = 16
    lr0: float = 1e-4
    calibration_images: int = 300
    calibration_split: str = "train"
    preset: str = "mixed"
    export_imgsz: int | None = None  # None: the size the parent was trained at
    formats: tuple = ("openvino", "onnx")
    compare_ptq: bool = True  # also post-training INT8 of the same parent with the same calibration, side by side
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "formats", tuple(self.formats))
        if self.epochs < 1:
            raise ConfigError(f"epochs must be >= 1, got {self.epochs}", "use e.g. epochs=2")
        if self.calibration_images < MIN_CALIBRATION_IMAGES:
            raise ConfigError(
                f"{self.calibration_images} calibration images are too few", f"use at least {MIN_CALIBRATION_IMAGES}"
            )
        for name in ("imgsz", "export_imgsz"):
            if getattr(self, name) is not None:
                check_imgsz(getattr(self, name), name)
        unknown = set(self.formats) - {"openvino", "onnx"}
        if unknown or not self.formats:
            raise ConfigError(
                f"QAT exports to openvino and/or onnx, not {sorted(unknown) or 'nothing'}",
                "use formats=('openvino', 'onnx')",
            )


def _raw_view():
    """A module running an Ultralytics DetectionModel up to the head's raw box and class maps (or, in export
    mode, through the decoding). Defined lazily so that importing this module loads no torch."""
    from torch import nn

    class Decode(nn.Module):
        """The head's box decoding in a scope of its own, so no quantizer name matches its operations."""

        def __init__(self, head):
            super().__init__()
            self.head = [head]  # a list: not registered as a child, its parameters stay with the network

        def forward(self, raw):
            return self.head[0]._inference(raw)

    class RawOutputs(nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net
            self.decoder = Decode(net.model[-1])
            self.decode = False

        def forward(self, x):
            saved = []
            for layer in self.net.model[:-1]:
                if layer.f != -1:
                    x = saved[layer.f] if isinstance(layer.f, int) else [x if j == -1 else saved[j] for j in layer.f]
                x = layer(x)
                saved.append(x if layer.i in self.net.save else None)
            head = self.net.model[-1]
            feats = [x if j == -1 else saved[j] for j in head.f]
            raw = head.forward_head(feats, **head.one2many)
            if self.decode:
                return self.decoder(raw)
            return raw["boxes"], raw["scores"], *feats

    return RawOutputs


def quantize_for_training(net, calibration: ImageSet, imgsz: int, preset: str, progress: ProgressFn | None = None):
    """Insert NNCF fake-quantizers calibrated on the images; returns the wrapped model."""
    import nncf
    import torch

    from .quantize import _batch

    net.eval()
    view = _raw_view()(net)
    count = len(calibration.paths)

    def transform(item):
        index, path = item
        emit(progress, "calibrate", index + 1, count)
        return torch.from_numpy(_batch(path, imgsz))

    dataset = nncf.Dataset(list(enumerate(calibration.paths)), transform)
    return nncf.quantize(view, dataset, subset_size=count, preset=getattr(nncf.QuantizationPreset, preset.upper()))


def _loader(data_yaml: Path, config: QATConfig):
    """Ultralytics' training dataset and loader (augmentation as in its trainer, mosaic off for a short run)."""
    from ultralytics.cfg import get_cfg
    from ultralytics.data import build_dataloader, build_yolo_dataset
    from ultralytics.data.utils import check_det_dataset

    args = get_cfg(
        overrides={
            "imgsz": config.imgsz,
            "batch": config.batch,
            "mosaic": 0.0,
            "seed": config.seed,
            "cache": False,
            "workers": 0,
        }
    )
    data = check_det_dataset(str(data_yaml))
    dataset = build_yolo_dataset(args, data["train"], config.batch, data, mode="train")
    return args, build_dataloader(dataset, config.batch, 0, shuffle=True, pin_memory=False, device="cpu")


def finetune_quantized(qmodel, data_yaml: Path, config: QATConfig, *, progress: ProgressFn | None = None) -> list:
    """Train the fake-quantized model with Ultralytics' detection loss; returns the mean loss per epoch."""
    import torch
    from ultralytics.utils.loss import v8DetectionLoss

    net = qmodel.net
    args, loader = _loader(data_yaml, config)
    net.args = args  # the loss reads its box / cls / dfl gains from here
    criterion = v8DetectionLoss(net)
    optimizer = torch.optim.AdamW([p for p in qmodel.parameters() if p.requires_grad], lr=config.lr0)
    history, total = [], config.epochs * len(loader)
    torch.manual_seed(config.seed)
    for epoch in range(config.epochs):
        qmodel.train()
        losses = []
        for step, batch in zip(range(len(loader)), loader, strict=False):  # the loader repeats forever
            batch["img"] = batch["img"].float() / 255
            boxes, scores, *feats = qmodel(batch["img"])
            loss, _ = criterion({"boxes": boxes, "scores": scores, "feats": feats}, batch)
            optimizer.zero_grad()
            loss.sum().backward()
            torch.nn.utils.clip_grad_norm_(qmodel.parameters(), 10.0)
            optimizer.step()
            losses.append(float(loss.sum()) / len(batch["img"]))
            emit(progress, "qat", epoch * len(loader) + step + 1, total, f"epoch {epoch + 1}/{config.epochs}")
        history.append({"epoch": epoch + 1, "loss": round(sum(losses) / len(losses), 5)})
    qmodel.eval()
    return history


EXPORT_NOTE = (
    "The QAT-trained weights are exported through NNCF post-training INT8 on the same calibration "
    "images: converting NNCF's fake-quantized PyTorch graph to OpenVINO fails on this stack (tracing "
    "shifts the quantizer positions in the attention block; torch.export stops on a data-dependent "
    "guard), so the learned quantizer ranges are recalibrated rather than carried over."
)


def qat(
    workspace: Workspace,
    parent_id: int,
    data_yaml: Path | str,
    config: QATConfig = QATConfig(),
    *,
    progress: ProgressFn | None = None,
) -> dict:
    """Quantization-aware training of a recorded .pt variant, then INT8 exports.

    Records the QAT-trained weights (step "qat") and one INT8 child per format (step "quantize"); with
    `compare_ptq`, also the post-training INT8 of the parent under the same options.
    Returns:
        {"qat": id, "openvino": id, "onnx": id, "ptq_openvino": id, ...} for the formats asked for.
    """
    from ..data.checks import check_dataset
    from .quantize import QuantizeConfig, quantize

    path = workspace.artifact_path(parent_id)
    if path.suffix != ".pt":
        raise ConfigError(f"variant {parent_id} is {path.name}; QAT trains PyTorch models", "pick a .pt variant")
    net = load_checkpoint(path).model.float().eval()
    trained_at = checkpoint_imgsz(path) or DEFAULT_IMGSZ
    config = replace(config, imgsz=config.imgsz or trained_at, export_imgsz=config.export_imgsz or trained_at)
    summary = check_dataset(data_yaml, splits=("train", "val"), model_names=net.names)
    calibration = ImageSet.from_data(
        data_yaml, config.calibration_split, config.calibration_images, minimum=MIN_CALIBRATION_IMAGES
    )
    start = time.perf_counter()
    qmodel = quantize_for_training(net, calibration, config.imgsz, config.preset, progress)
    with scratch("qat-") as tmp:
        history = finetune_quantized(qmodel, summary.write_resolved(Path(tmp)), config, progress=progress)
    params = {
        **asdict(config),
        "calibration": calibration.record(),
        "history": history,
        "seconds": round(time.perf_counter() - start, 1),
        "export": EXPORT_NOTE,
    }
    trained = record_checkpoint(
        workspace,
        qmodel.net,
        f"{path.stem.rsplit('-', 1)[0]}-qat{config.epochs}.pt",
        step="qat",
        params=params,
        parent_id=parent_id,
    )
    ids = {"qat": trained}
    for fmt in config.formats:
        options = QuantizeConfig(
            format=fmt,
            imgsz=config.export_imgsz,
            preset=config.preset,
            calibration_images=config.calibration_images,
            calibration_split=config.calibration_split,
        )
        ids[fmt] = quantize(workspace, trained, data_yaml, options, progress=progress)
        if config.compare_ptq:
            ids[f"ptq_{fmt}"] = quantize(workspace, parent_id, data_yaml, options, progress=progress)
    return ids
