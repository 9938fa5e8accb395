"""YOLO label files: where an image's labels live, and its boxes in normalised or in pixel coordinates."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import DatasetError

_BOM = b"\xef\xbb\xbf"
_NEWLINE = re.compile(r"\r\n|\r|\n")
# characters str.splitlines() (and so Ultralytics) breaks lines at, but editors do not show as a new line
_HIDDEN_BREAKS = re.compile("[\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029\r\n]")
_FORMAT = "labels are 'class cx cy w h' per line (or 'class x1 y1 x2 y2 x3 y3 ...' for a polygon), numbers in 0..1"


class LabelError(DatasetError, ValueError):
    """A label file or one of its lines is malformed (a ValueError too, as `parse_line` raised before)."""


def label_path(image: Path) -> Path:
    """Ultralytics' rule: the last /images/ folder becomes /labels/, the suffix .txt."""
    parts = list(Path(image).parts)
    if "images" in parts:
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "labels"
    return Path(*parts).with_suffix(".txt")


def _short(text: str, limit: int = 40) -> str:
    """repr of `text`, cut to about `limit` characters so a huge line cannot make a huge message."""
    return repr(text) if len(text) <= limit else repr(text[:limit]) + f"... ({len(text)} characters)"


def parse_line(line: str, where: str = "") -> tuple[int, list[float]] | None:
    """(class, values) of one label line, None for a blank line; values are a box (4) or a polygon (6, 8, ...).

    `where` (such as 'labels/x.txt:3') starts the error message. Numbers are read as Python and NumPy read them,
    but must be finite; the class must be a whole number (its range is the dataset checker's business).

    Raises:
        LabelError: the line is not a box or a polygon of finite numbers; names `where`, the field and the fix.
    """
    at = f"{where}: " if where else ""
    line = line.rstrip("\r\n")
    if found := _HIDDEN_BREAKS.search(line):
        raise LabelError(
            f"{at}holds the control character U+{ord(found.group()):04X}, which Ultralytics reads as a line break",
            "put each label on its own line, separated by plain newlines",
        )
    fields = line.split()
    if not fields:
        return None
    if len(fields) != 5 and (len(fields) < 7 or len(fields) % 2 == 0):
        raise LabelError(
            f"{at}expected 'class cx cy w h' (5 fields) or a polygon of at least 3 points (7, 9, ... fields), "
            f"got {len(fields)} fields",
            _FORMAT,
        )
    numbers = []
    for index, text in enumerate(fields):
        what = "the class id" if index == 0 else f"field {index + 1}"
        try:
            value = float(text)
        except ValueError:
            raise LabelError(f"{at}{what} {_short(text)} is not a number", _FORMAT) from None
        if not math.isfinite(value):
            raise LabelError(f"{at}{what} {_short(text)} is not a finite number", _FORMAT)
        numbers.append(value)
    if not numbers[0].is_integer():
        raise LabelError(f"{at}the class id {_short(fields[0])} is not a whole number", _FORMAT)
    try:
        cls = int(fields[0])  # exact for long integers, which float() rounds
    except ValueError:
        cls = int(numbers[0])
    return cls, numbers[1:]


def read_label_lines(path: Path) -> list[tuple[int, str]]:
    """(line number, text) of each line of a label file, numbered as an editor shows them (\\n, \\r\\n or \\r).

    A UTF-8 byte-order mark is skipped, as Ultralytics skips it.

    Raises:
        LabelError: the file cannot be read or is not UTF-8 text; names the file and the line.
    """
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise LabelError(f"{path}: cannot be read ({exc.strerror or exc})", "check the file's permissions") from None
    if data.startswith(_BOM):
        data = data[len(_BOM) :]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = len(_NEWLINE.findall(data[: exc.start].decode("utf-8"))) + 1
        raise LabelError(
            f"{path}:{line}: is not UTF-8 text (byte 0x{data[exc.start]:02x})",
            "save the label file as plain text (ASCII or UTF-8): " + _FORMAT,
        ) from None
    return list(enumerate(_NEWLINE.split(text), 1))


def normalised_boxes(image: Path) -> np.ndarray:
    """(n, 5) rows of class, cx, cy, w, h in 0..1 from the image's label file (polygons become their box).

    An image without a label file has no objects. The file is meant to be checked first (`check_dataset`), which
    also checks the ranges; this only refuses what cannot be read as boxes.

    Raises:
        LabelError: a line is not a box or polygon of numbers, or the file is not text; names the file and line.
    """
    path = label_path(image)
    rows = []
    if path.is_file():
        for number, line in read_label_lines(path):
            parsed = parse_line(line, f"{path}:{number}")
            if parsed is None:
                continue
            cls, values = parsed
            if len(values) != 4:  # a polygon: x0 y0 x1 y1 ...
                xs, ys = values[0::2], values[1::2]
                values = [(min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2, max(xs) - min(xs), max(ys) - min(ys)]
            rows.append([cls, *values])
    return np.array(rows, dtype=np.float64).reshape(-1, 5)


@dataclass(frozen=True)
class LabelledImage:
    """An image and its ground truth in pixels of the original image."""

    path: Path
    boxes: np.ndarray  # (n, 4) x0, y0, x1, y1
    classes: np.ndarray  # (n,) int


def image_size(image: Path) -> tuple[int, int]:
    """(height, width) read from the file's header, without decoding the pixels.

    Raises:
        DatasetError: the file is missing or not an image Pillow can open.
    """
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(image) as opened:
                width, height = opened.size
    except Exception as exc:  # Pillow raises several types for unreadable files
        raise DatasetError(
            f"{image}: cannot be opened as an image ({type(exc).__name__})", "replace the file or remove it"
        ) from exc
    return height, width


def labelled_image(image: Path) -> LabelledImage:
    """The image's label boxes converted to pixel x0, y0, x1, y1.

    Raises:
        DatasetError: the image does not open or its label file does not read (see `normalised_boxes`).
    """
    height, width = image_size(image)
    rows = normalised_boxes(image)
    cx, cy, bw, bh = rows[:, 1] * width, rows[:, 2] * height, rows[:, 3] * width, rows[:, 4] * height
    boxes = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], 1)
    return LabelledImage(Path(image), boxes, rows[:, 0].astype(int))
