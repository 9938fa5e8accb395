"""Scenes of coloured shapes on photo backgrounds: sampled once in normalised coordinates, rendered at any size."""

from __future__ import annotations

import math

import numpy as np

from . import backgrounds

CLASSES = ("circle", "triangle", "square", "star")
MIN_VISIBLE = 0.55  # a placement may hide at most 45% of any earlier shape (truncation by the border included)
_GRID = 128  # resolution of the masks used to accept or reject a placement


def sample_scene(rng: np.random.Generator, *, photos: tuple[str, ...] = backgrounds.SEEN) -> dict:
    """Draw one scene: a background crop, 1-8 shapes, noise, blur and JPEG quality."""
    scene = {
        "background": backgrounds.sample_crop(rng, photos),
        "shapes": [],
        "noise": float(rng.uniform(0, 6)),
        "blur": float(rng.uniform(0.3, 1.2)) if rng.random() < 0.4 else 0.0,
        "quality": int(rng.integers(80, 96)),
    }
    visible: list[np.ndarray] = []  # what is still visible of each accepted shape, on the coarse grid
    areas: list[float] = []  # full area, truncation by the image border counts as hidden
    for _ in range(int(rng.integers(1, 9))):
        for _attempt in range(20):
            shape = _sample_shape(rng)
            mask, area = _mask(shape, _GRID), _area(shape, _GRID)
            if mask.sum() < MIN_VISIBLE * area or not _placement_ok(visible, areas, mask):
                continue
            visible = [v * (1 - mask) for v in visible] + [mask]
            areas.append(area)
            scene["shapes"].append(shape)
            break
    return scene


def _sample_shape(rng: np.random.Generator) -> dict:
    cls = int(rng.integers(len(CLASSES)))
    hue, sat, val = rng.uniform(0, 180), rng.uniform(90, 255), rng.uniform(70, 255)
    return {
        "cls": cls,
        "center": [float(rng.uniform(0.04, 0.96)), float(rng.uniform(0.04, 0.96))],
        "size": float(math.exp(rng.uniform(math.log(0.08), math.log(0.42)))),
        "angle": float(rng.uniform(0, 2 * math.pi)),
        "aspect": float(rng.uniform(0.75, 1.33)),
        "inner": float(rng.uniform(0.38, 0.55)),
        "jitter": rng.uniform(-0.08, 0.08, size=(3, 2)).tolist(),
        "hsv": [float(hue), float(sat), float(val)],
        "outline": float(rng.uniform(0.02, 0.07)) if rng.random() < 0.4 else 0.0,
        "alpha": float(rng.uniform(0.8, 1.0)),
    }


def _unit_polygon(shape: dict) -> np.ndarray:
    """Vertices around (0, 0) with outer radius about 1, before rotation."""
    kind, a = CLASSES[shape["cls"]], shape["aspect"]
    if kind == "circle":
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t) * a, np.sin(t) / a], 1) * 0.9
    if kind == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) * [0.7 * a, 0.7 / a]
    if kind == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(t), np.sin(t)], 1) + np.asarray(shape["jitter"])
    t = np.pi / 2 + np.arange(10) * np.pi / 5  # star: alternate outer and inner radius
    r = np.where(np.arange(10) % 2 == 0, 1.0, shape["inner"])
    return np.stack([np.cos(t) * r, np.sin(t) * r], 1)


def polygon(shape: dict, size: int) -> np.ndarray:
    """Pixel vertices of `shape` in an image of `size` x `size`."""
    c, s = math.cos(shape["angle"]), math.sin(shape["angle"])
    points = _unit_polygon(shape) @ np.array([[c, s], [-s, c]])
    return (points * shape["size"] / 2 + shape["center"]) * size


def _mask(shape: dict, size: int) -> np.ndarray:
    """Anti-aliased coverage in [0, 1] of `shape` at `size` pixels."""
    import cv2

    canvas = np.zeros((size, size), np.uint8)
    cv2.fillPoly(canvas, [np.round(polygon(shape, size) * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return canvas.astype(np.float32) / 255


def _area(shape: dict, size: int) -> float:
    """Polygon area in pixels (shoelace), whether or not it lies inside the image."""
    x, y = polygon(shape, size).T
    return float(abs(np.dot(x, np.roll(y, 1)) - np.dot(y, np.roll(x, 1))) / 2)


def _placement_ok(visible: list[np.ndarray], areas: list[float], new: np.ndarray) -> bool:
    """Every earlier shape keeps MIN_VISIBLE of its full area once `new` lies on top."""
    return all((v * (1 - new)).sum() >= MIN_VISIBLE * a for v, a in zip(visible, areas, strict=True))


def render(scene: dict, size: int) -> tuple[np.ndarray, list[tuple[int, list[float]]]]:
    """Draw the scene at `size` pixels.

    Returns:
        the float32 BGR image before noise, and YOLO labels (class, [cx, cy, w, h]) of each shape's visible part.
    """
    import cv2

    image = backgrounds.render_crop(scene["background"], size)
    masks = []
    for shape in scene["shapes"]:
        mask = _mask(shape, size)[..., None] * shape["alpha"]
        colour = cv2.cvtColor(np.uint8([[shape["hsv"]]]), cv2.COLOR_HSV2BGR)[0, 0].astype(np.float32)
        image = image * (1 - mask) + colour * mask
        if shape["outline"]:
            edge = np.zeros((size, size), np.uint8)
            width = max(1, round(shape["outline"] * shape["size"] * size))
            pts = np.round(polygon(shape, size) * 16).astype(np.int32)
            cv2.polylines(edge, [pts], True, 255, width, cv2.LINE_AA, shift=4)
            edge = edge.astype(np.float32)[..., None] / 255 * shape["alpha"]
            image = image * (1 - edge) + colour * 0.45 * edge
        masks.append(_mask(shape, size))
    return image, _visible_boxes(scene["shapes"], masks, size)


def _visible_boxes(shapes: list[dict], masks: list[np.ndarray], size: int) -> list[tuple[int, list[float]]]:
    labels = []
    for i, (shape, mask) in enumerate(zip(shapes, masks, strict=True)):
        visible = mask.copy()
        for later in masks[i + 1 :]:
            visible *= 1 - later
        ys, xs = np.nonzero(visible > 0.5)
        if len(xs) < 4:
            continue
        x0, x1, y0, y1 = xs.min(), xs.max() + 1, ys.min(), ys.max() + 1
        labels.append((shape["cls"], [(x0 + x1) / 2 / size, (y0 + y1) / 2 / size, (x1 - x0) / size, (y1 - y0) / size]))
    return labels


def finish(image: np.ndarray, scene: dict, rng: np.random.Generator, size: int) -> np.ndarray:
    """Sensor noise and lens blur, then uint8; blur scales with the render size."""
    import cv2

    if scene["blur"]:
        image = cv2.GaussianBlur(image, (0, 0), scene["blur"] * size / 320)
    image = image + rng.normal(0, scene["noise"], image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)
