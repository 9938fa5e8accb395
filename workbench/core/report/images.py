"""Images for reports: label and prediction boxes drawn with OpenCV's built-in font, inline JPEG thumbnails."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..environment import torch_threads

LABEL_COLOUR = (80, 220, 80)  # BGR: ground truth
PREDICTION_COLOUR = (255, 80, 255)  # BGR: model output


def draw_boxes(
    image: np.ndarray, boxes: Sequence[tuple], colour: tuple[int, int, int], names: dict[int, str] | None = None
) -> np.ndarray:
    """Draw (cls, x0, y0, x1, y1[, conf]) pixel boxes with OpenCV's built-in font (no font files needed)."""
    import cv2

    out = image.copy()
    for box in boxes:
        cls, x0, y0, x1, y1 = (int(round(v)) for v in box[:5])
        cv2.rectangle(out, (x0, y0), (x1, y1), colour, 1, cv2.LINE_AA)
        text = (names or {}).get(cls, str(cls)) + (f" {box[5]:.2f}" if len(box) > 5 else "")
        cv2.putText(out, text, (x0 + 2, max(10, y0 + 10)), cv2.FONT_HERSHEY_SIMPLEX, 0.33, colour, 1, cv2.LINE_AA)
    return out


def image_grid_html(images: Sequence[np.ndarray], captions: Sequence[str], *, quality: int = 85) -> str:
    """Inline JPEG thumbnails (base64) with captions; no external files."""
    import cv2

    cells = []
    for image, caption in zip(images, captions, strict=True):
        ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
        data = base64.b64encode(jpeg.tobytes()).decode() if ok else ""
        cells.append(
            f'<figure><img alt="{html.escape(caption)}" src="data:image/jpeg;base64,{data}">'
            f"<figcaption>{html.escape(caption)}</figcaption></figure>"
        )
    return f'<div class="grid">{"".join(cells)}</div>'


def prediction_grid_html(model, paths: Sequence[Path], *, imgsz: int, conf: float = 0.25) -> str:
    """Images with their label boxes (green, when a YOLO label file exists) and the model's boxes (magenta)."""
    import cv2

    from ..data.labels import labelled_image

    if not paths:
        return "<p><em>no images</em></p>"
    with torch_threads():  # Ultralytics' predictor lowers torch's thread count for the process
        results = model.predict([str(p) for p in paths], imgsz=imgsz, conf=conf, device="cpu", verbose=False)
    images, captions = [], []
    for path, result in zip(paths, results, strict=True):
        truth = labelled_image(Path(path))
        labels = [(int(c), *box) for c, box in zip(truth.classes, truth.boxes.tolist(), strict=True)]
        boxes = result.boxes
        predicted = [
            (int(c), *xyxy, float(p))
            for c, xyxy, p in zip(boxes.cls.tolist(), boxes.xyxy.tolist(), boxes.conf.tolist(), strict=True)
        ]
        image = draw_boxes(
            draw_boxes(cv2.imread(str(path)), labels, LABEL_COLOUR), predicted, PREDICTION_COLOUR, model.names
        )
        images.append(image)
        captions.append(f"{Path(path).name}: {len(labels)} labelled, {len(predicted)} found")
    return image_grid_html(images, captions)
