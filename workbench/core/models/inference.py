"""End-to-end inference on real images: decode, preprocess (letterbox), run, postprocess (NMS), per stage.

Pre- and post-processing are Ultralytics' own (LetterBox, non_max_suppression, scale_boxes), so what is timed
and compared here is what an Ultralytics deployment does.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import WorkbenchError
from ..measure.latency import LatencyConfig, LatencyStats, time_calls

STAGES = ("decode", "preprocess", "inference", "postprocess")


class ImageDecodeError(WorkbenchError):
    """An image file does not decode."""


@dataclass(frozen=True)
class Letterboxed:
    batch: np.ndarray  # (1, 3, imgsz, imgsz) float32 RGB in [0, 1]
    original_shape: tuple[int, int]  # (h, w) of the decoded image


def decode(data: bytes, name: str = "image") -> np.ndarray:
    """BGR uint8 image from encoded bytes."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ImageDecodeError(f"{name} does not decode as an image", "pass a JPEG or PNG file")
    return image


def preprocess(image: np.ndarray, imgsz: int) -> Letterboxed:
    """Ultralytics' letterbox to `imgsz` x `imgsz`, BGR to RGB, HWC to NCHW, scaled to [0, 1]."""
    from ultralytics.data.augment import LetterBox

    boxed = LetterBox((imgsz, imgsz), auto=False)(image=image)
    batch = np.ascontiguousarray(boxed[..., ::-1].transpose(2, 0, 1)[None], dtype=np.float32) / 255
    return Letterboxed(batch, image.shape[:2])


def postprocess(raw: list[np.ndarray], boxed: Letterboxed, *, conf: float = 0.25, iou: float = 0.7,
                max_det: int = 300) -> np.ndarray:
    """NMS on the raw (1, 4 + nc, anchors) output; rows of (x0, y0, x1, y1, conf, cls) in original pixels."""
    import torch
    from ultralytics.utils.nms import non_max_suppression
    from ultralytics.utils.ops import scale_boxes

    detections = non_max_suppression(torch.from_numpy(np.asarray(raw[0], dtype=np.float32)), conf, iou,
                                     max_det=max_det)[0]
    detections[:, :4] = scale_boxes(boxed.batch.shape[2:], detections[:, :4], boxed.original_shape)
    return detections.numpy()


def stage_breakdown(runner, images: list[Path], imgsz: int, config: LatencyConfig = LatencyConfig(), *,
                    clock=time.perf_counter) -> dict[str, LatencyStats]:
    """Latency of each stage on real images (file bytes read beforehand, so disk I/O is not counted)."""
    if not images:
        raise ImageDecodeError("no images for the stage breakdown", "pass at least one JPEG or PNG file")
    encoded = [(Path(p).name, Path(p).read_bytes()) for p in images]
    decoded = [decode(data, name) for name, data in encoded]
    boxed = [preprocess(image, imgsz) for image in decoded]
    raws = [runner(b.batch) for b in boxed]
    cursor = {"i": 0}

    def cycling(fn):
        def call():
            i = cursor["i"] % len(encoded)
            cursor["i"] += 1
            return fn(i)
        return call

    jobs = {
        "decode": lambda i: decode(encoded[i][1], encoded[i][0]),
        "preprocess": lambda i: preprocess(decoded[i], imgsz),
        "inference": lambda i: runner(boxed[i].batch),
        "postprocess": lambda i: postprocess(raws[i], boxed[i]),
    }
    return {stage: time_calls(cycling(jobs[stage]), config, clock=clock) for stage in STAGES}
