"""Size of a model: parameters and GFLOPs at an input size (Ultralytics' counters), layers and class names."""

from __future__ import annotations


def model_stats(net, imgsz: int) -> dict:
    """Parameters and GFLOPs of a module at a square input size."""
    from ultralytics.utils.torch_utils import get_flops, get_num_params

    return {"params": int(get_num_params(net)), "gflops": round(float(get_flops(net, imgsz)), 3)}


def model_info(model, imgsz: int = 640) -> dict:
    """Parameters, GFLOPs at `imgsz`, layer count and class names of an Ultralytics `YOLO` model."""
    net = model.model
    return {
        **model_stats(net, imgsz),
        "imgsz": imgsz,
        "layers": len(list(net.modules())),
        "names": dict(net.names),
        "task": model.task,
    }


def activation_stats(net, imgsz: int) -> dict:
    """Sizes of what one forward pass at `imgsz` holds in memory, from forward hooks on the leaf modules.

    `peak_activation_elements` is the largest single layer output; `activation_elements` the sum over all leaf
    outputs (an upper bound: runtimes free most of them early). Counted in elements: bytes depend on the precision.
    """
    import torch

    sizes: list[int] = []

    def record(_module, _inputs, output):
        tensors = output if isinstance(output, list | tuple) else [output]
        sizes.append(sum(t.numel() for t in tensors if isinstance(t, torch.Tensor)))

    leaves = [m for m in net.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    try:
        with torch.inference_mode():
            parameter = next(net.parameters())
            net.eval()(torch.zeros(1, 3, imgsz, imgsz, dtype=parameter.dtype, device=parameter.device))
    finally:
        for hook in hooks:
            hook.remove()
    return {
        "input_elements": 3 * imgsz * imgsz,
        "peak_activation_elements": max(sizes, default=0),
        "activation_elements": sum(sizes),
    }
