"""Plotly figures (pure functions returning go.Figure) and a self-contained offline HTML report."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ..store.atomic import staged

LABEL_COLOUR = (80, 220, 80)  # BGR: ground truth
PREDICTION_COLOUR = (255, 80, 255)  # BGR: model output


@dataclass(frozen=True)
class Section:
    title: str
    body: str  # HTML
    note: str = ""  # a plain-language sentence on how to read it


def per_class_figure(per_class: Sequence[dict], title: str = "Accuracy per class"):
    """Grouped bars of mAP50 and mAP50-95 for each class, with the instance count in the hover."""
    import plotly.graph_objects as go

    classes = [row["class"] for row in per_class]
    fig = go.Figure()
    for key, label in (("map50", "mAP50"), ("map50_95", "mAP50-95")):
        fig.add_bar(name=label, x=classes, y=[row[key] for row in per_class],
                    customdata=[row["instances"] for row in per_class],
                    hovertemplate="%{x}: %{y:.3f}<br>%{customdata} instances<extra>" + label + "</extra>")
    fig.update_layout(title=title, barmode="group", yaxis={"range": [0, 1], "title": "average precision"},
                      template="plotly_white", height=380, legend={"orientation": "h", "y": -0.15})
    return fig


def history_figure(history: Sequence[dict], title: str = "Training history"):
    """Validation mAP and training losses per epoch."""
    from plotly.subplots import make_subplots

    epochs = [row["epoch"] for row in history]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("validation mAP", "training loss"))
    for key, label in (("metrics/mAP50(B)", "mAP50"), ("metrics/mAP50-95(B)", "mAP50-95")):
        fig.add_scatter(x=epochs, y=[row.get(key) for row in history], name=label, row=1, col=1)
    for key in ("train/box_loss", "train/cls_loss", "train/dfl_loss"):
        fig.add_scatter(x=epochs, y=[row.get(key) for row in history], name=key.split("/")[1], row=1, col=2)
    fig.update_layout(title=title, template="plotly_white", height=360)
    fig.update_xaxes(title_text="epoch")
    return fig


def draw_boxes(image: np.ndarray, boxes: Sequence[tuple], colour: tuple[int, int, int],
               names: dict[int, str] | None = None) -> np.ndarray:
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
        cells.append(f'<figure><img alt="{html.escape(caption)}" src="data:image/jpeg;base64,{data}">'
                     f"<figcaption>{html.escape(caption)}</figcaption></figure>")
    return f'<div class="grid">{"".join(cells)}</div>'


def prediction_grid_html(model, paths: Sequence[Path], *, imgsz: int, conf: float = 0.25) -> str:
    """Images with their label boxes (green, when a YOLO label file exists) and the model's boxes (magenta)."""
    import cv2

    if not paths:
        return "<p><em>no images</em></p>"
    results = model.predict([str(p) for p in paths], imgsz=imgsz, conf=conf, device="cpu", verbose=False)
    images, captions = [], []
    for path, result in zip(paths, results, strict=True):
        image = cv2.imread(str(path))
        labels = _label_boxes(Path(path), *image.shape[:2])
        boxes = result.boxes
        predicted = [(int(c), *xyxy, float(p)) for c, xyxy, p in
                     zip(boxes.cls.tolist(), boxes.xyxy.tolist(), boxes.conf.tolist(), strict=True)]
        image = draw_boxes(draw_boxes(image, labels, LABEL_COLOUR), predicted, PREDICTION_COLOUR, model.names)
        images.append(image)
        captions.append(f"{Path(path).name}: {len(labels)} labelled, {len(predicted)} found")
    return image_grid_html(images, captions)


def _label_boxes(image_path: Path, height: int, width: int) -> list[tuple]:
    from ..data.checks import label_path

    labels = label_path(image_path)
    if not labels.is_file():
        return []
    boxes = []
    for line in labels.read_text().splitlines():
        if len(fields := line.split()) == 5:
            c, x, y, w, h = map(float, fields)
            boxes.append((int(c), (x - w / 2) * width, (y - h / 2) * height, (x + w / 2) * width,
                          (y + h / 2) * height))
    return boxes


def table_html(rows: Sequence[dict], columns: Sequence[str] | None = None, *, digits: int = 4) -> str:
    """A plain HTML table; floats rounded to `digits`."""
    if not rows:
        return "<p><em>nothing recorded</em></p>"
    columns = list(columns or rows[0].keys())

    def cell(value) -> str:
        if isinstance(value, float):
            return f"{value:.{digits}f}"
        return html.escape("" if value is None else str(value))

    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = "".join("<tr>" + "".join(f"<td>{cell(row.get(c))}</td>" for c in columns) + "</tr>" for row in rows)
    return f'<div class="scroll"><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table></div>'


def figure_html(fig) -> str:
    """A figure's div; plotly.js itself is inlined once per page by `write_report`."""
    return fig.to_html(full_html=False, include_plotlyjs=False, config={"displaylogo": False, "responsive": True})


_STYLE = """
body{font-family:system-ui,sans-serif;margin:2rem auto;max-width:1100px;color:#222;padding:0 1rem}
h1{margin-bottom:.2rem} .meta{color:#666} section{margin:2rem 0} .note{color:#555;font-size:.95rem}
table{border-collapse:collapse;font-size:.9rem} th,td{border:1px solid #ddd;padding:.25rem .6rem;text-align:left}
th{background:#f4f4f4} .scroll{overflow-x:auto;max-width:100%}
.grid{display:flex;flex-wrap:wrap;gap:.6rem} figure{margin:0}
figcaption{font-size:.8rem;color:#555;text-align:center} pre{background:#f7f7f7;padding:.6rem;overflow-x:auto}
"""


def write_report(path: Path | str, title: str, sections: Sequence[Section], *, subtitle: str = "") -> Path:
    """Write one self-contained HTML page (plotly.js inlined, images as data URIs): it opens offline."""
    from plotly.offline import get_plotlyjs

    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    parts = [f"<section><h2>{html.escape(s.title)}</h2>"
             + (f'<p class="note">{html.escape(s.note)}</p>' if s.note else "") + s.body + "</section>"
             for s in sections]
    page = (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style><script>{get_plotlyjs()}</script></head><body>"
            f'<h1>{html.escape(title)}</h1><p class="meta">{html.escape(subtitle)} · generated {stamp}</p>'
            + "".join(parts) + "</body></html>")
    path = Path(path)
    with staged(path) as tmp:
        tmp.write_text(page, encoding="utf-8")
    return path
