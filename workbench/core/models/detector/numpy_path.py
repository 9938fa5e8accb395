"""`open_detector`'s deployment: a runner between plain numpy/OpenCV steps. Decode is the caller's (images are HxWx3
uint8 BGR, as OpenCV reads them), then resize (letterbox or stretch), colour order, scale, mean/std, layout, the
runtime, and NMS with boxes mapped back to the original image's pixels, each step as its `DeploymentSpec` says.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..runners import RuntimeOptions, open_runner
from .spec import DeploymentSpec, Detections, Postprocessing, Prepared, Preprocessing, check_image


def prepare(image: np.ndarray, imgsz: int, pre: Preprocessing = Preprocessing()) -> Prepared:
    """The model input for one BGR uint8 image, as `pre` says."""
    import cv2

    h, w = image.shape[:2]
    if pre.resize == "stretch":
        resized = cv2.resize(image, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR)
        gain, pad = (imgsz / w, imgsz / h), (0.0, 0.0)
    else:
        ratio = min(imgsz / h, imgsz / w)
        new_w, new_h = round(w * ratio), round(h * ratio)
        left, top = round((imgsz - new_w) / 2 - 0.1), round((imgsz - new_h) / 2 - 0.1)  # as Ultralytics rounds
        resized = np.full((imgsz, imgsz, 3), pre.pad_value, dtype=np.uint8)
        if (new_w, new_h) != (w, h):
            image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
        resized[top : top + new_h, left : left + new_w] = image
        gain, pad = (ratio, ratio), (float(left), float(top))
    pixels = resized[..., ::-1] if pre.color == "rgb" else resized
    x = pixels.astype(np.float32) * np.float32(pre.scale)
    if pre.mean != (0.0, 0.0, 0.0) or pre.std != (1.0, 1.0, 1.0):
        x = (x - np.asarray(pre.mean, np.float32)) / np.asarray(pre.std, np.float32)
    batch = x[None] if pre.layout == "nhwc" else x.transpose(2, 0, 1)[None]
    return Prepared(np.ascontiguousarray(batch), (h, w), gain, pad)


def to_original(boxes: np.ndarray, prepared: Prepared) -> np.ndarray:
    """Boxes in input pixels mapped to the original image's pixels, clipped to it."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4).copy()
    boxes[:, [0, 2]] = (boxes[:, [0, 2]] - prepared.pad[0]) / prepared.gain[0]
    boxes[:, [1, 3]] = (boxes[:, [1, 3]] - prepared.pad[1]) / prepared.gain[1]
    h, w = prepared.original_shape
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, w)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, h)
    return boxes


def nms(raw: np.ndarray, post: Postprocessing = Postprocessing()) -> np.ndarray:
    """(n, 6) rows of x0, y0, x1, y1, score, class in input pixels from the raw (1, 4 + nc, anchors) output:
    best class per anchor above `conf`, class-aware NMS (OpenCV's), at most `max_det` rows, best first."""
    import cv2

    predictions = np.asarray(raw, dtype=np.float32)[0].T  # (anchors, 4 + nc)
    scores_all = predictions[:, 4:]
    classes = scores_all.argmax(1)
    scores = scores_all[np.arange(len(classes)), classes]
    keep = scores > post.conf
    if not keep.any():
        return np.zeros((0, 6), np.float32)
    boxes, scores, classes = predictions[keep, :4], scores[keep], classes[keep]
    xyxy = np.concatenate([boxes[:, :2] - boxes[:, 2:] / 2, boxes[:, :2] + boxes[:, 2:] / 2], axis=1)
    offset = xyxy + (classes[:, None] * 7680.0)  # class-aware: boxes of other classes never overlap
    xywh = np.concatenate([offset[:, :2], offset[:, 2:] - offset[:, :2]], axis=1)
    chosen = cv2.dnn.NMSBoxes(xywh.tolist(), scores.tolist(), post.conf, post.iou)
    chosen = np.asarray(chosen, dtype=int).reshape(-1)[: post.max_det]
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
    return np.concatenate([xyxy[chosen], scores[chosen, None], classes[chosen, None].astype(np.float32)], axis=1)


class Detector:
    """A declared deployment, loaded: call it with a BGR uint8 image for its `Detections`."""

    def __init__(self, spec: DeploymentSpec, runner):
        self.spec, self.runner = spec, runner

    def __call__(self, image: np.ndarray) -> Detections:
        prepared = prepare(image, self.spec.imgsz, self.spec.preprocessing)
        rows = nms(self.runner(prepared.batch)[0], self.spec.postprocessing)
        rows[:, :4] = to_original(rows[:, :4], prepared)
        return Detections.from_rows(rows)


def open_detector(spec: DeploymentSpec) -> Detector:
    """Load the spec's artifact with its runtime options.

    Raises:
        ConfigError, ArtifactLoadError, RuntimeNotInstalled: as `open_runner` does.
    """
    options = RuntimeOptions(threads=spec.threads, precision=spec.precision)
    return Detector(spec, open_runner(Path(spec.artifact), options))


class CheckedDetector(Detector):
    """`open_detector`'s deployment (the fallback for artifacts other than OpenVINO), with the image checked."""

    def __call__(self, image: np.ndarray) -> Detections:
        return super().__call__(check_image(image))
