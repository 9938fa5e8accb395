"""A deployed detector, image in and detections out, in one place: what it takes and answers (`spec`), and the three
ways the workbench runs one, each `detector(image) -> Detections`:

- `numpy_path`: `open_detector(spec)`, a runner between plain numpy/OpenCV steps as the spec declares them;
- `fast_path`: `fast_detector(spec)`, an OpenVINO artifact with its preprocessing compiled into the graph, and
  `detect_stream` for many images in flight;
- `ultralytics_path`: Ultralytics' own letterbox and NMS around a runner (`preprocess`, `postprocess`), and
  `YOLO(exported).predict` as the fast path's baseline (`ultralytics_detector`).
"""

from .fast_path import HINTS, FastDetector, detect_stream, fast_detector, fast_nms, letterbox_u8
from .numpy_path import CheckedDetector, Detector, nms, open_detector, prepare, to_original
from .spec import (
    COLORS,
    LAYOUTS,
    RESIZES,
    DeploymentSpec,
    Detections,
    ImageDecodeError,
    Postprocessing,
    Prepared,
    Preprocessing,
    check_image,
    decode,
)
from .ultralytics_path import Letterboxed, UltralyticsDetector, postprocess, preprocess, ultralytics_detector

__all__ = [
    "COLORS",
    "HINTS",
    "LAYOUTS",
    "RESIZES",
    "CheckedDetector",
    "DeploymentSpec",
    "Detections",
    "Detector",
    "FastDetector",
    "ImageDecodeError",
    "Letterboxed",
    "Postprocessing",
    "Prepared",
    "Preprocessing",
    "UltralyticsDetector",
    "check_image",
    "decode",
    "detect_stream",
    "fast_detector",
    "fast_nms",
    "letterbox_u8",
    "nms",
    "open_detector",
    "postprocess",
    "prepare",
    "preprocess",
    "to_original",
    "ultralytics_detector",
]
