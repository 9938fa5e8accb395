"""Which correction makes a deployment's input tensor equal to the reference's: layout, size, geometry (letterbox or
stretch, pad value), channel order, and the value transform (x255, /255, mean/std), found by trying each candidate
geometry and channel order and fitting a per-channel affine map from the deployment's values to the reference's."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...models.detector import Preprocessing, prepare

TENSOR_TOLERANCE = 2 / 255  # mean absolute residual below which two tensors hold the same image (two grey levels)
EQUAL_TOLERANCE = 1.5 / 255  # max absolute difference below which two tensors are equal (interpolation rounding)
GEOMETRIES = (("letterbox", 114), ("stretch", 114), ("letterbox", 0), ("letterbox", 128), ("letterbox", 255))
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def as_nchw(tensor) -> tuple[np.ndarray | None, list[str], str]:
    """The tensor as a float (1, 3, h, w) array, the corrections that took, and a problem (or '')."""
    x = np.asarray(tensor)
    if hasattr(tensor, "numpy") and not isinstance(tensor, np.ndarray):
        x = tensor.detach().cpu().numpy() if hasattr(tensor, "detach") else tensor.numpy()
    if x.dtype.kind not in "fiu":
        return None, [], f"the tensor has dtype {x.dtype}, not a number type"
    x = x.astype(np.float32)
    if x.ndim == 3:
        x = x[None]
    if x.ndim != 4 or x.shape[0] != 1:
        return None, [], f"the tensor has shape {tuple(x.shape)}, expected (1, 3, h, w)"
    corrections = []
    if x.shape[1] != 3 and x.shape[-1] == 3:
        x, corrections = x.transpose(0, 3, 1, 2), ["layout_nhwc"]
    if x.shape[1] != 3:
        return None, [], f"the tensor has shape {tuple(x.shape)}: no axis of 3 colour channels"
    return np.ascontiguousarray(x), corrections, ""


def fit_affine(candidate: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Per-channel a, b minimising |a * candidate + b - target|; with the mean absolute residual."""
    scales, offsets, residual = [], [], 0.0
    for c in range(3):
        u, v = candidate[0, c].ravel().astype(np.float64), target[0, c].ravel().astype(np.float64)
        spread = u.std()
        a = float(((u - u.mean()) * (v - v.mean())).mean() / spread**2) if spread > 1e-12 else 0.0
        b = float(v.mean() - a * u.mean())
        scales.append(a)
        offsets.append(b)
        residual += float(np.abs(a * u + b - v).mean()) / 3
    return np.array(scales), np.array(offsets), residual


def value_corrections(scales: np.ndarray, offsets: np.ndarray) -> list[str]:
    """Name the value transform that maps the deployment's values to the reference's [0, 1] RGB."""
    if np.allclose(scales, 1, rtol=0.02) and np.allclose(offsets, 0, atol=0.01):
        return []
    if np.allclose(scales, 1 / 255, rtol=0.02) and np.allclose(offsets, 0, atol=0.01):
        return ["no_scaling"]  # values left in 0..255
    if np.allclose(scales, 255, rtol=0.02) and np.allclose(offsets, 0, atol=0.01):
        return ["double_scaling"]  # divided by 255 twice
    return ["normalization"]


def match_tensor(tensor, image: np.ndarray, imgsz: int, reference: Preprocessing = Preprocessing()) -> dict:
    """What makes `tensor` (the deployment's input for `image`) equal to the reference's input.

    Returns a dict with `equal` (no correction needed), `corrections` (cause ids, most basic first: layout,
    size, geometry, channels, values), the residual after them, and the fitted mean/std in [0, 1] units.
    """
    x, corrections, problem = as_nchw(tensor)
    if x is None:
        return {"equal": False, "corrections": ["wrong_tensor"], "problem": problem, "explained": False}
    expected = prepare(image, imgsz, reference).batch
    size = x.shape[2:]
    if tuple(size) != (imgsz, imgsz):
        corrections.append("wrong_imgsz")
    if not corrections and x.shape == expected.shape and float(np.abs(x - expected).max()) <= EQUAL_TOLERANCE:
        return {"equal": True, "corrections": [], "max_abs_diff": float(np.abs(x - expected).max()), "explained": True}
    best = None
    for resize, pad in GEOMETRIES:
        geometry = replace(reference, resize=resize, pad_value=pad)
        square = size[0] == size[1]
        target = (
            prepare(image, int(size[0]), geometry).batch
            if square
            else _at_size(prepare(image, imgsz, geometry).batch, size)
        )
        for reversed_ in (False, True):
            candidate = x[:, ::-1] if reversed_ else x
            scales, offsets, residual = fit_affine(candidate, target)
            if best is None or residual < best[0] - 1e-6:
                best = (residual, resize, pad, reversed_, scales, offsets)
    residual, resize, pad, reversed_, scales, offsets = best
    if resize != reference.resize:
        corrections.append("stretch_resize" if resize == "stretch" else "letterbox_resize")
    elif pad != reference.pad_value:
        corrections.append("pad_value")
    if reversed_:
        corrections.append("channels_swapped")
    corrections += value_corrections(scales, offsets)
    return {
        "equal": False,
        "corrections": corrections,
        "explained": residual <= TENSOR_TOLERANCE,
        "residual": round(residual, 5),
        "shape": list(np.asarray(x).shape),
        "geometry": {"resize": resize, "pad_value": pad},
        "fitted_mean": [round(float(b), 4) for b in offsets],  # the deployment computed (x - mean) / std
        "fitted_std": [round(float(a), 4) for a in scales],
    }


def _at_size(batch: np.ndarray, size) -> np.ndarray:
    """The reference batch resized to the deployment's spatial size (to compare a wrong-size tensor's content)."""
    import cv2

    if tuple(batch.shape[2:]) == tuple(size):
        return batch
    h, w = int(size[0]), int(size[1])
    planes = [cv2.resize(batch[0, c], (w, h), interpolation=cv2.INTER_LINEAR) for c in range(3)]
    return np.stack(planes)[None]
