"""mAP50-95 of raw detector outputs on a list of labelled images, for loops that cannot use Ultralytics' validator.

NNCF's accuracy-controlled quantization calls a metric on a compiled model many times; this computes the same
metric as Ultralytics' validator (greedy IoU matching at 10 thresholds, `ap_per_class`) from plain arrays.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    boxes: np.ndarray  # (n, 4) xyxy in pixels of the original image
    classes: np.ndarray  # (n,)


def read_labelled(images: list[Path]) -> list[LabelledImage]:
    """Images with their YOLO labels converted to pixel xyxy boxes."""
    import cv2

    from ..data.checks import label_path

    out = []
    for path in images:
        h, w = cv2.imread(str(path), cv2.IMREAD_UNCHANGED).shape[:2]
        text = label_path(path).read_text() if label_path(path).exists() else ""
        rows = np.array([line.split() for line in text.splitlines() if line.strip()], dtype=np.float64).reshape(-1, 5)
        cx, cy, bw, bh = rows[:, 1] * w, rows[:, 2] * h, rows[:, 3] * w, rows[:, 4] * h
        boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
        out.append(LabelledImage(Path(path), boxes, rows[:, 0].astype(int)))
    return out


def _iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(rb - lt, 0, None).prod(2)
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    return inter / (area(a)[:, None] + area(b)[None] - inter + 1e-9)


def match(detections: np.ndarray, truth: LabelledImage) -> np.ndarray:
    """(D, 10) booleans: detection j (sorted by confidence) is a true positive at each IoU threshold."""
    correct = np.zeros((len(detections), len(IOU_THRESHOLDS)), bool)
    if not len(detections) or not len(truth.boxes):
        return correct
    iou = _iou(truth.boxes, detections[:, :4]) * (truth.classes[:, None] == detections[None, :, 5])
    claimed = np.zeros((len(truth.boxes), len(IOU_THRESHOLDS)), bool)
    for j in np.flatnonzero((iou >= IOU_THRESHOLDS[0]).any(0)):
        available = np.where(claimed, 0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, range(len(IOU_THRESHOLDS))] >= IOU_THRESHOLDS
        claimed[k, range(len(IOU_THRESHOLDS))] |= correct[j]
    return correct


def map50_95(detections: list[np.ndarray], truths: list[LabelledImage]) -> dict:
    """mAP50-95 and mAP50 over images; `detections` rows are (x0, y0, x1, y1, conf, cls), one array per image."""
    from ultralytics.utils.metrics import ap_per_class

    tp, conf, pred_cls, target_cls = [], [], [], []
    for dets, truth in zip(detections, truths, strict=True):
        order = np.argsort(-dets[:, 4], kind="stable") if len(dets) else []
        dets = dets[order] if len(dets) else dets.reshape(0, 6)
        tp.append(match(dets, truth))
        conf.append(dets[:, 4])
        pred_cls.append(dets[:, 5])
        target_cls.append(truth.classes)
    if not sum(len(t) for t in target_cls):
        return {"map50_95": 0.0, "map50": 0.0}
    ap = ap_per_class(np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls),
                      np.concatenate(target_cls))[5]
    return {"map50_95": float(ap.mean()) if ap.size else 0.0, "map50": float(ap[:, 0].mean()) if ap.size else 0.0}
