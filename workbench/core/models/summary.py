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
