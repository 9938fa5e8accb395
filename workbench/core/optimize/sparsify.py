"""Unstructured magnitude pruning with NNCF (`nncf.prune`) as a recorded step, with what it does and does not buy.

Single weights are set to zero and every tensor keeps its shape: the weights compress better, but a dense runtime
(ONNX Runtime, OpenVINO on CPU) does the same multiply-adds, so latency does not drop. The step records sparsity and
the compressed size, and says so.
"""

from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

from ..errors import ConfigError, check_imgsz
from ..models.checkpoints import record_checkpoint
from ..progress import ProgressFn, emit
from .prune import check_prunable, load_net

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


def magnitude_prune(net, ratio: float, *, local: bool = False, imgsz: int = 640):
    """Zero the smallest-magnitude weights with `nncf.prune`; returns a plain copy of `net` with the zeros baked in.

    The Detect head's output convolutions are left dense. The masks NNCF computes are multiplied into the
    weights of a copy, so the result is an ordinary module that exports like any other.
    """
    import nncf
    import torch
    from nncf.torch.function_hook.pruning.magnitude.modules import UnstructuredPruningMask
    from nncf.torch.function_hook.wrapper import get_hook_storage

    if not 0 < ratio < 1:
        raise ConfigError(f"sparsity ratio must be between 0 and 1 (exclusive), got {ratio}", "use e.g. ratio=0.5")
    check_prunable(net)
    mode = nncf.PruneMode.UNSTRUCTURED_MAGNITUDE_LOCAL if local else nncf.PruneMode.UNSTRUCTURED_MAGNITUDE_GLOBAL
    head = len(net.model) - 1
    outputs = [
        f"model.{head}.{branch}.{i}.{len(seq) - 1}.weight"
        for branch in ("cv2", "cv3")
        for i, seq in enumerate(getattr(net.model[-1], branch))
    ]
    masked = nncf.prune(
        copy.deepcopy(net).eval(),
        mode,
        ratio=ratio,
        examples_inputs=torch.zeros(1, 3, imgsz, imgsz),
        ignored_scope=nncf.IgnoredScope(names=outputs, validate=False),
    )
    baked = copy.deepcopy(net).eval()
    for name, module in get_hook_storage(masked).named_modules():
        if isinstance(module, UnstructuredPruningMask):
            parameter = name.split(".", 1)[1].rsplit("__", 1)[0].replace(":", ".")
            with torch.no_grad():
                baked.get_parameter(parameter).mul_(module.binary_mask)
    return baked


def sparsity(net) -> dict:
    """Share of exactly-zero weights in convolution kernels, and the gzip-compressed size of the weights."""
    import gzip
    import io

    import torch

    total = zeros = 0
    for p in net.parameters():
        if p.dim() > 1:
            total += p.numel()
            zeros += int((p == 0).sum())
    buffer = io.BytesIO()
    torch.save({k: v.half() for k, v in net.state_dict().items() if v.is_floating_point()}, buffer)
    return {
        "sparsity": round(zeros / max(total, 1), 4),
        "weights_fp16_bytes": buffer.tell(),
        "weights_fp16_gzip_bytes": len(gzip.compress(buffer.getvalue(), 6)),
    }


@dataclass(frozen=True)
class SparsifyConfig:
    """Unstructured magnitude pruning (`nncf.prune`): `ratio` of the weights set to zero, globally or per layer."""

    ratio: float = 0.5
    local: bool = False
    imgsz: int = 640

    def __post_init__(self):
        if not 0 < self.ratio < 1:
            raise ConfigError(
                f"sparsity ratio must be between 0 and 1 (exclusive), got {self.ratio}",
                "use e.g. ratio=0.5 to zero half the weights",
            )
        check_imgsz(self.imgsz)


NO_SPEEDUP = (
    "Unstructured sparsity zeroes single weights but keeps every tensor's shape: dense runtimes "
    "(ONNX Runtime, OpenVINO on CPU) do the same multiply-adds, so latency does not drop; the weights "
    "compress better (see weights_fp16_gzip_bytes). Compare the measured latency rows."
)


def sparsify(
    workspace: Workspace,
    parent_id: int,
    config: SparsifyConfig = SparsifyConfig(),
    *,
    progress: ProgressFn | None = None,
) -> int:
    """Magnitude-prune a recorded .pt variant with NNCF; record sparsity and compressed size before and after."""
    net, path = load_net(workspace, parent_id)
    emit(progress, "sparsify", 0, 1, f"ratio {config.ratio}")
    baked = magnitude_prune(net, config.ratio, local=config.local, imgsz=config.imgsz)
    params = {**asdict(config), "before": sparsity(net), "after": sparsity(baked), "note": NO_SPEEDUP}
    emit(progress, "sparsify", 1, 1, f"sparsity {params['after']['sparsity']}")
    return record_checkpoint(
        workspace,
        baked,
        f"{path.stem.rsplit('-', 1)[0]}-sparse{round(config.ratio * 100)}.pt",
        step="sparsify",
        params=params,
        parent_id=parent_id,
    )
