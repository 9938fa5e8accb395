"""mAP of raw detections against labelled images, computed as Ultralytics' validator computes it.

Matching is the validator's own rule (detections in descending confidence claim the best unclaimed label of their
class, at each of 10 IoU thresholds 0.50..0.95), and the curves are Ultralytics' `ap_per_class`, so a model run
through the workbench's runners scores what `YOLO(...).val()` scores on the same images and preprocessing.
"""

from __future__ import annotations

import numpy as np

from ..data.labels import LabelledImage, labelled_image
from .boxes import box_iou

IOU_THRESHOLDS = np.linspace(0.5, 0.95, 10)


def read_labelled(images) -> list[LabelledImage]:
    """Images with their YOLO labels converted to pixel xyxy boxes."""
    return [labelled_image(path) for path in images]


def match(detections: np.ndarray, truth: LabelledImage) -> np.ndarray:
    """(D, 10) booleans: detection j (sorted by confidence) is a true positive at each IoU threshold."""
    correct = np.zeros((len(detections), len(IOU_THRESHOLDS)), bool)
    if not len(detections) or not len(truth.boxes):
        return correct
    iou = box_iou(truth.boxes, detections[:, :4]) * (truth.classes[:, None] == detections[None, :, 5])
    claimed = np.zeros((len(truth.boxes), len(IOU_THRESHOLDS)), bool)
    for j in np.flatnonzero((iou >= IOU_THRESHOLDS[0]).any(0)):
        available = np.where(claimed, 0, iou[:, j, None])
        k = available.argmax(0)
        correct[j] = available[k, range(len(IOU_THRESHOLDS))] >= IOU_THRESHOLDS
        claimed[k, range(len(IOU_THRESHOLDS))] |= correct[j]
    return correct


def score(detections: list[np.ndarray], truths: list[LabelledImage], names: dict[int, str] | None = None) -> dict:
    """mAP50-95, mAP50, precision, recall and per-class rows over images.

    `detections` holds one (n, 6) array per image: x0, y0, x1, y1, conf, cls in the image's pixels.
    """
    from ultralytics.utils.metrics import ap_per_class

    tp, conf, pred_cls, target_cls = [], [], [], []
    for dets, truth in zip(detections, truths, strict=True):
        dets = dets[np.argsort(-dets[:, 4], kind="stable")] if len(dets) else np.zeros((0, 6))
        tp.append(match(dets, truth))
        conf.append(dets[:, 4])
        pred_cls.append(dets[:, 5])
        target_cls.append(truth.classes)
    targets = np.concatenate(target_cls) if target_cls else np.zeros(0)
    if not len(targets):
        return {"map50_95": 0.0, "map50": 0.0, "precision": 0.0, "recall": 0.0, "per_class": []}
    _, _, p, r, _, ap, classes, *_ = ap_per_class(
        np.concatenate(tp), np.concatenate(conf), np.concatenate(pred_cls), targets
    )
    names = names or {}
    per_class = [
        {
            "class": names.get(int(c), str(int(c))),
            "images": int(sum(int(c) in t.classes for t in truths)),
            "instances": int((targets == c).sum()),
            "precision": float(p[i]),
            "recall": float(r[i]),
            "map50": float(ap[i, 0]),
            "map50_95": float(ap[i].mean()),
        }
        for i, c in enumerate(classes)
    ]
    return {
        "map50_95": float(ap.mean()),
        "map50": float(ap[:, 0].mean()),
        "precision": float(p.mean()),
        "recall": float(r.mean()),
        "per_class": per_class,
    }


def map50_95(detections: list[np.ndarray], truths: list[LabelledImage]) -> dict:
    """Only the two headline figures of `score` (what NNCF's accuracy control maximises)."""
    result = score(detections, truths)
    return {"map50_95": result["map50_95"], "map50": result["map50"]}
