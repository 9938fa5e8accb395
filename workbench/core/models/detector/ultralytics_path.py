"""Ultralytics' own path: its letterbox and NMS around any runner (`preprocess`, `postprocess`), and
`YOLO(exported).predict` on one image as a user runs it (`ultralytics_detector`), the fast path's baseline.

Pre- and post-processing are Ultralytics' own (LetterBox, non_max_suppression, scale_boxes), so what is timed
and compared with them is what an Ultralytics deployment does.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...errors import check_imgsz
from .spec import Detections, Postprocessing, check_image


@dataclass(frozen=True)
class Letterboxed:
    batch: np.ndarray  # (1, 3, imgsz, imgsz) float32 RGB in [0, 1]
    original_shape: tuple[int, int]  # (h, w) of the decoded image
    gain: float = 1.0  # input pixels per original pixel
    pad: tuple[int, int] = (0, 0)  # (left, top) padding in input pixels

    def to_input(self, boxes: np.ndarray) -> np.ndarray:
        """x0, y0, x1, y1 boxes in original pixels mapped into the letterboxed input (as Ultralytics maps labels)."""
        boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * self.gain
        return boxes + np.array([self.pad[0], self.pad[1], self.pad[0], self.pad[1]], dtype=np.float64)


def preprocess(image: np.ndarray, imgsz: int) -> Letterboxed:
    """Ultralytics' letterbox to `imgsz` x `imgsz`, BGR to RGB, HWC to NCHW, scaled to [0, 1]."""
    from ultralytics.data.augment import LetterBox

    letterbox = LetterBox((imgsz, imgsz), auto=False)
    params = letterbox.get_params({"img": image})
    boxed = letterbox.apply_image({"img": image}, params)["img"]
    batch = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255
    return Letterboxed(batch, image.shape[:2], float(params["ratio"][0]), (int(params["left"]), int(params["top"])))


def postprocess(
    raw: list[np.ndarray],
    boxed: Letterboxed,
    *,
    conf: float = 0.25,
    iou: float = 0.7,
    max_det: int = 300,
    multi_label: bool = False,
    to_original: bool = True,
) -> np.ndarray:
    """NMS on the raw (1, 4 + nc, anchors) output; rows of (x0, y0, x1, y1, conf, cls) in original pixels.

    `multi_label` keeps every class above `conf` for a box and `to_original=False` leaves the boxes unclipped in
    input pixels: both as Ultralytics' validator does when it scores mAP.
    """
    import torch
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    detections = non_max_suppression(
        torch.from_numpy(np.asarray(raw[0], dtype=np.float32)), conf, iou, max_det=max_det, multi_label=multi_label
    )[0]
    if to_original:
        detections[:, :4] = scale_boxes(boxed.batch.shape[2:], detections[:, :4], boxed.original_shape)
    return detections.numpy()


@dataclass
class UltralyticsDetector:
    """Ultralytics' own path on one image: `YOLO(exported).predict(image)`, verbose off, same NMS settings."""

    model: object  # the ultralytics YOLO
    imgsz: int
    post: Postprocessing = Postprocessing()

    def __call__(self, image: np.ndarray) -> Detections:
        result = self.model.predict(
            check_image(image),
            imgsz=self.imgsz,
            conf=self.post.conf,
            iou=self.post.iou,
            max_det=self.post.max_det,
            device="cpu",
            verbose=False,
        )[0]
        boxes = result.boxes
        return Detections(
            boxes.xyxy.numpy().astype(np.float32),
            boxes.conf.numpy().astype(np.float32),
            boxes.cls.numpy().astype(int),
        )

    @property
    def precision(self) -> str | None:
        """What its OpenVINO graph computes in (after the first call has loaded it); None for other runtimes."""
        from ..runners import openvino_precision, runtime_precisions

        backend = getattr(getattr(getattr(self.model, "predictor", None), "model", None), "backend", None)
        compiled = getattr(backend, "ov_compiled_model", None)
        return openvino_precision(runtime_precisions(compiled)) if compiled is not None else None


def ultralytics_detector(path: Path | str, imgsz: int, post: Postprocessing = Postprocessing()) -> UltralyticsDetector:
    """The baseline: an exported artifact loaded as users load it, `YOLO(path)` (through the workbench's offline,
    safe loader, which opens the artifact with its runtime first so a broken file fails here).

    Raises:
        ModelNotFoundError, ModelLoadError: as `sources.load_model` does.
    """
    from ..sources import load_model

    return UltralyticsDetector(load_model(path), check_imgsz(imgsz), post)
