"""YOLO label files: where an image's labels live, and its boxes in normalised or in pixel coordinates."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last /images/ folder becomes /labels/, the suffix .txt."""
    parts = list(Path(image).parts)
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def parse_line(line: str) -> tuple[int, list[float]] | None:
    """(class, values) of one label line, None for a blank line; values are a box or a polygon.

    Raises:
        ValueError: the fields are not numbers.
    """
    fields = line.split()
    if not fields:
        return None
    return int(fields[0]), [float(v) for v in fields[1:]]


def normalised_boxes(image: Path) -> np.ndarray:
    """(n, 5) rows of class, cx, cy, w, h in 0..1 from the image's label file (polygons become their box).

    An image without a label file has no objects. The file is assumed checked (`check_dataset`).
    """
    path = label_path(image)
    rows = []
    if path.is_file():
        for line in path.read_text(errors="replace").splitlines():
            parsed = parse_line(line)
            if parsed is None:
                continue
            cls, values = parsed
            if len(values) != 4:  # a polygon: x0 y0 x1 y1 ...
                xs, ys = values[0::2], values[1::2]
                values = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
            rows.append([cls, *values])
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


@dataclass(frozen=True)
class LabelledImage:
    """An image and its ground truth in pixels of the original image."""

    path: Path
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1
    classes: np.ndarray  # (n,) int


def image_size(image: Path) -> tuple[int, int]:
    """(height, width) read from the file's header, without decoding the pixels."""
    from PIL import Image

    with Image.open(image) as opened:
        width, height = opened.size
    return height, width


def labelled_image(image: Path) -> LabelledImage:
    """The image's label boxes converted to pixel x0, y0, x1, y1."""
    height, width = image_size(image)
    rows = normalised_boxes(image)
    cx, cy, bw, bh = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    return LabelledImage(Path(image), boxes, rows[:, 0].astype(int))
