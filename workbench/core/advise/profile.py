"""What the advisor knows of a model: GFLOPs, parameters and activation sizes at an input size, and its accuracy."""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import ConfigError
from ..store.evaluation_sets import NOT_MEASURED, choose_set, rows_on, summarize

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

BYTES = {"fp32": 4, "fp16": 2, "bf16": 2, "int8": 1}
# Memory a runtime holds besides the model (its libraries, arenas, a CUDA context): rough sizes, for the fit check
RUNTIME_BASE_MB = {"openvino": 80, "onnxruntime": 40, "tensorrt": 400, "litert": 15, "pytorch": 350, "torchscript": 350}


@dataclass(frozen=True)
class ModelProfile:
    """A PyTorch model at one input size (exports of it compute the same graph)."""

    name: str
    imgsz: int
    gflops: float
    params: int
    peak_activation_elements: int  # the largest layer output
    activation_elements: int  # all layer outputs of one forward pass: an upper bound on what is held at once
    variant_id: int | None = None
    map50_95: float | None = None  # measured here at this size or the nearest, if the ledger has it
    map_set: str | None = None  # the evaluation set it was measured on (or "not measured on this set")

    def weights_mb(self, precision: str) -> float:
        return self.params * BYTES.get(precision, 4) / 1e6

    def memory_mb(self, precision: str, runtime: str) -> float:
        """Peak memory estimate: weights, two of the largest activations (a layer's input and output) at the
        precision (int8 models keep some activations in float: counted at 2 bytes), and the runtime's own."""
        activation_bytes = max(BYTES.get(precision, 4), 2)
        activations = 2 * self.peak_activation_elements * activation_bytes / 1e6
        return self.weights_mb(precision) + activations + RUNTIME_BASE_MB.get(runtime, 100)


def profile_net(net, imgsz: int, name: str, *, variant_id: int | None = None, map50_95=None) -> ModelProfile:
    """The profile of an `nn.Module` (an Ultralytics DetectionModel) at `imgsz`."""
    from ..models.summary import activation_stats, model_stats

    stats, activations = model_stats(net, imgsz), activation_stats(net, imgsz)
    return ModelProfile(
        name,
        imgsz,
        stats["gflops"],
        stats["params"],
        activations["peak_activation_elements"],
        activations["activation_elements"],
        variant_id,
        map50_95,
    )


@lru_cache(maxsize=32)
def _profile_file(path: str, mtime_ns: int, imgsz: int) -> ModelProfile:
    from ..models.checkpoints import load_checkpoint

    return profile_net(load_checkpoint(path).model, imgsz, Path(path).stem)


def profile_variant(workspace: Workspace, variant_id: int, imgsz: int, evaluation_set=None) -> ModelProfile:
    """The profile of a recorded variant: its own model if it is PyTorch, else its nearest PyTorch ancestor's, with
    the mAP50-95 measured for it on `evaluation_set` (a key, name or SetSummary; None: the ancestor's default set)
    at `imgsz` or the size nearest it, where the ledger has one."""
    for ancestor in workspace.lineage(variant_id):
        if ancestor.is_pytorch and ancestor.path:
            path = workspace.root / ancestor.path
            base = _profile_file(str(path), path.stat().st_mtime_ns, imgsz)
            name = workspace.variant(variant_id).name
            measured, chosen = _measured_map(workspace, ancestor.id, imgsz, evaluation_set)
            shown = (chosen.name if measured is not None else NOT_MEASURED) if chosen else None
            return replace(base, name=name, variant_id=variant_id, map50_95=measured, map_set=shown)
    raise ConfigError(f"variant {variant_id} has no PyTorch model in its lineage", "pick a variant made from a .pt")


def _measured_map(workspace: Workspace, model_id: int, imgsz: int, evaluation_set=None) -> tuple[float | None, object]:
    """The mAP50-95 of the PyTorch variant itself on one evaluation set at the size nearest `imgsz` (float
    precision: the model's own accuracy, before any quantization), and the set."""
    measured = workspace.ledger.measurements(variant_id=model_id, kind="accuracy")
    chosen = choose_set(summarize(measured), evaluation_set)
    rows = [m for m in rows_on(measured, chosen) if m.metrics.get("map50_95") is not None]
    if not rows:
        return None, chosen
    nearest = min(rows, key=lambda m: (abs(int(m.context.get("imgsz") or 0) - imgsz), -m.id))
    return float(nearest.metrics["map50_95"]), chosen


def pytorch_variants(workspace: Workspace) -> list[int]:
    """The ids of every PyTorch variant in the ledger: the distinct models there are to deploy."""
    return [v.id for v in workspace.ledger.variants() if v.is_pytorch and v.path]
