"""What a deployed detector takes and answers: a BGR uint8 image in (decoded here, checked here), `Detections` out,
and the declared deployment (`DeploymentSpec`: an artifact, its runtime options, its pre- and postprocessing).

The defaults are what an Ultralytics model expects, so `open_detector(DeploymentSpec(artifact=path))` is a correct
deployment; each field is one way a deployment can differ from it (the accuracy doctor's checks look for exactly
these).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, WorkbenchError, check_imgsz

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
        """From (n, 6) rows of x0, y0, x1, y1, score, class (what `ultralytics_path.postprocess` returns)."""
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


class ImageDecodeError(WorkbenchError):
    """An image file does not decode."""


def decode(data: bytes, name: str = "image") -> np.ndarray:
    """BGR uint8 image from encoded bytes."""
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None:
        raise ImageDecodeError(f"{name} does not decode as an image", "pass a JPEG or PNG file")
    return image


def check_image(image) -> np.ndarray:
    """An image as every detector takes it: HxWx3 uint8 BGR (as `cv2.imread` returns it), contiguous.

    Raises:
        ConfigError: anything else, saying what was given.
    """
    ok = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    if not ok or image.shape[0] < 1 or image.shape[1] < 1:
        given = (
            f"an array of shape {image.shape} and dtype {image.dtype}"
            if isinstance(image, np.ndarray)
            else f"a {type(image).__name__}"
        )
        raise ConfigError(
            f"a detector takes an HxWx3 uint8 BGR image, got {given}",
            "decode the file with cv2.imread (or workbench.core.models.detector.decode) and pass the array",
        )
    return image if image.flags.c_contiguous else np.ascontiguousarray(image)
