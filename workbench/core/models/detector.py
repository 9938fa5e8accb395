"""A deployment as a user has one: an image in, detections out. Declared (`DeploymentSpec`: an artifact, its runtime
options and its pre- and postprocessing) or given as any callable `detect(image) -> Detections`.

`open_detector(spec)` builds the declared one from a runner and plain numpy/OpenCV steps: decode is the caller's
(images are HxWx3 uint8 BGR, as OpenCV reads them), then resize (letterbox or stretch), colour order, scale,
mean/std, layout, the runtime, and NMS with boxes mapped back to the original image's pixels. The defaults are
what an Ultralytics model expects, so `open_detector(DeploymentSpec(artifact=path))` is a correct deployment; each
field is one way a deployment can differ from it (the accuracy doctor's checks look for exactly these).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError, check_imgsz
from .runners import RuntimeOptions, open_runner

COLORS = ("rgb", "bgr")
RESIZES = ("letterbox", "stretch")
LAYOUTS = ("nchw", "nhwc")


@dataclass(frozen=True)
class Preprocessing:
    """How an image becomes the model's input. The defaults are Ultralytics': letterbox with grey 114 padding,
    RGB, x / 255, no mean/std, NCHW float32."""

    color: str = "rgb"  # the channel order fed to the model (images arrive BGR)
    scale: float = 1 / 255  # uint8 values are multiplied by it
    mean: tuple[float, float, float] = (0.0, 0.0, 0.0)  # subtracted after scaling, per channel (in `color` order)
    std: tuple[float, float, float] = (1.0, 1.0, 1.0)  # divided after the mean
    resize: str = "letterbox"  # letterbox: keep the aspect ratio and pad; stretch: resize to a square
    pad_value: int = 114
    layout: str = "nchw"

    def __post_init__(self):
        for name, allowed in (("color", COLORS), ("resize", RESIZES), ("layout", LAYOUTS)):
            if getattr(self, name) not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}", "")
        if not self.scale > 0 or any(s <= 0 for s in self.std):
            raise ConfigError(f"scale and std must be positive, got {self.scale}, {self.std}", "use 1/255 and 1.0")


@dataclass(frozen=True)
class Postprocessing:
    """NMS settings: Ultralytics' predict defaults."""

    conf: float = 0.25
    iou: float = 0.7
    max_det: int = 300


@dataclass(frozen=True)
class Detections:
    """What a deployment answers for one image: boxes x0, y0, x1, y1 in the original image's pixels."""

    boxes: np.ndarray  # (n, 4) float32
    scores: np.ndarray  # (n,) float32
    classes: np.ndarray  # (n,) int

    @classmethod
    def from_rows(cls, rows: np.ndarray) -> Detections:
        """From (n, 6) rows of x0, y0, x1, y1, score, class (what `inference.postprocess` returns)."""
        rows = np.asarray(rows, dtype=np.float32).reshape(-1, 6)
        return cls(rows[:, :4].copy(), rows[:, 4].copy(), rows[:, 5].astype(int))

    def rows(self) -> np.ndarray:
        """(n, 6) rows of x0, y0, x1, y1, score, class."""
        return np.concatenate([self.boxes, self.scores[:, None], self.classes[:, None].astype(np.float32)], axis=1)

    def __len__(self) -> int:
        return len(self.scores)


@dataclass(frozen=True)
class DeploymentSpec:
    """A declared deployment: the artifact, how it runs and how images go in and detections come out."""

    artifact: Path | str
    imgsz: int = 640  # the square input size (a static export's own size)
    threads: int | None = None
    precision: str | None = None  # OpenVINO inference precision hint (f32, bf16, f16); None: the runtime's default
    preprocessing: Preprocessing = field(default_factory=Preprocessing)
    postprocessing: Postprocessing = field(default_factory=Postprocessing)

    def __post_init__(self):
        check_imgsz(self.imgsz)


@dataclass(frozen=True)
class Prepared:
    """One image made ready for the model, with what maps the boxes back."""

    batch: np.ndarray
    original_shape: tuple[int, int]  # (h, w)
    gain: tuple[float, float]  # input pixels per original pixel, x and y
    pad: tuple[float, float]  # (left, top) padding in input pixels


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
