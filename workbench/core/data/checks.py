"""Checks of a YOLO detection dataset before any long step touches it; every problem is named with its file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from .labels import label_path, parse_line

IMAGE_SUFFIXES = {".bmp", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"}
MAX_PIXELS = 50_000_000  # header check: a small PNG may declare a giant canvas that takes GBs to decode
_TOL = 1e-3  # rounding slack for normalised coordinates
_SHOWN = 5  # problems listed in one error message


@dataclass
class DatasetSummary:
    """What a checked dataset holds; `resolved` is the data YAML content with absolute paths."""

    yaml_path: Path
    names: dict[int, str]
    images: dict[str, int] = field(default_factory=dict)
    instances: dict[str, int] = field(default_factory=dict)
    resolved: dict = field(default_factory=dict)

    def write_resolved(self, folder: Path) -> Path:
        """Write the resolved YAML into `folder`, so Ultralytics sees exactly the paths that were checked."""
        import yaml

        out = Path(folder) / self.yaml_path.name
        out.write_text(yaml.safe_dump(self.resolved, sort_keys=False))
        return out


def check_dataset(
    data_yaml: Path | str, *, splits: tuple[str, ...] = ("train", "val"), model_names: dict[int, str] | None = None
) -> DatasetSummary:
    """Check a data YAML and the images and labels of `splits`.

    Raises:
        DatasetError: naming the file (and line) at fault and the fix; up to five problems are listed.
    """
    yaml_path = Path(data_yaml).expanduser()
    data = _read_yaml(yaml_path)
    names = _names(data, yaml_path)
    if model_names is not None and len(model_names) != len(names):
        raise DatasetError(
            f"{yaml_path} has {len(names)} classes ({_preview(names)}) but the model predicts "
            f"{len(model_names)} ({_preview(model_names)})",
            "evaluate the model on a dataset with its own classes, or fine-tune it on this one first",
        )
    root = _root(data, yaml_path)
    summary = DatasetSummary(yaml_path, names, resolved={**data, "path": str(root), "names": names})
    for split in splits:
        images = _split_images(data, split, root, yaml_path)
        summary.resolved[split] = [str(p) for p in _split_sources(data[split], root)]
        summary.images[split] = len(images)
        summary.instances[split] = _check_split(images, len(names), split, yaml_path)
    return summary


def list_images(data_yaml: Path | str, split: str) -> list[Path]:
    """The image files of one split, sorted (folders are walked, .txt lists read)."""
    yaml_path = Path(data_yaml).expanduser()
    data = _read_yaml(yaml_path)
    return _split_images(data, split, _root(data, yaml_path), yaml_path)


def _read_yaml(path: Path) -> dict:
    import yaml

    if not path.is_file():
        raise DatasetError(f"data YAML {path} does not exist", "pass the path of your dataset's data YAML")
    try:
        data = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise DatasetError(f"data YAML {path} does not parse: {exc}", "fix the YAML syntax") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"data YAML {path} is not a mapping", "give it keys path, train, val and names")
    return data


def _names(data: dict, path: Path) -> dict[int, str]:
    names = data.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not isinstance(names, dict) or not names:
        raise DatasetError(f"data YAML {path} has no class names", "add 'names: {0: first, 1: second, ...}'")
    if sorted(names) != list(range(len(names))):
        raise DatasetError(
            f"class ids in {path} are not 0..{len(names) - 1}: {sorted(names)}",
            "number the classes 0, 1, 2, ... without gaps",
        )
    return {int(k): str(v) for k, v in names.items()}


def _root(data: dict, yaml_path: Path) -> Path:
    given = data.get("path")
    if not given:
        return yaml_path.parent.resolve()
    root = Path(given).expanduser()
    if not root.is_absolute():  # relative to the YAML file first (portable), then to the working folder
        root = next((c for c in (yaml_path.parent / root, root) if c.is_dir()), yaml_path.parent / root)
    if not root.is_dir():
        raise DatasetError(
            f"data YAML {yaml_path}: 'path: {given}' points at nothing ({root.resolve()})",
            "make 'path' the dataset folder, absolute or relative to the YAML file",
        )
    return root.resolve()


def _split_sources(entry, root: Path) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    return [(root / str(e)).resolve() if not Path(str(e)).is_absolute() else Path(str(e)) for e in entries]


def _split_images(data: dict, split: str, root: Path, yaml_path: Path) -> list[Path]:
    if not data.get(split):
        raise DatasetError(f"data YAML {yaml_path} has no '{split}' entry", f"add '{split}: images/{split}'")
    images: list[Path] = []
    for source in _split_sources(data[split], root):
        if source.is_dir():
            images += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif source.is_file() and source.suffix == ".txt":
            images += [
                (source.parent / line.strip()).resolve() for line in source.read_text().splitlines() if line.strip()
            ]
        else:
            raise DatasetError(
                f"the '{split}' split of {yaml_path} points at nothing: {source}",
                f"make '{split}' a folder of images (or a .txt list) relative to 'path'",
            )
    if not images:
        raise DatasetError(
            f"the '{split}' split of {yaml_path} is empty (no images in {data[split]})",
            f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) into it",
        )
    return images


def _check_split(images: list[Path], nc: int, split: str, yaml_path: Path) -> int:
    problems: list[str] = []
    instances = labelled = 0
    for image in images:
        problems += _check_image(image)
        labels = label_path(image)
        if labels.is_file():
            labelled += 1
            found, errors = _check_labels(labels, nc)
            instances += found
            problems += errors
    if not labelled:
        problems.insert(
            0, f"no label files for the {len(images)} '{split}' images (expected e.g. {label_path(images[0])})"
        )
    if problems:
        shown = "\n    ".join(problems[:_SHOWN])
        more = f"\n    ... and {len(problems) - _SHOWN} more" if len(problems) > _SHOWN else ""
        raise DatasetError(
            f"{len(problems)} problem(s) in the '{split}' split of {yaml_path}:\n    {shown}{more}",
            "labels are 'class cx cy w h' per line, class in 0..nc-1, coordinates in 0..1 "
            "with the box inside the image; images must decode",
        )
    return instances


def _check_image(path: Path) -> list[str]:
    import warnings

    from PIL import Image

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as image:  # reads the header only
                width, height = image.size
    except Image.DecompressionBombError:
        return [f"{path}: declares more pixels than Pillow will decode (a decompression bomb)"]
    except Exception as exc:  # PIL raises several types for unreadable files
        return [f"{path}: does not decode ({type(exc).__name__})"]
    if width * height > MAX_PIXELS:
        return [f"{path}: declares {width}x{height} pixels, more than the {MAX_PIXELS:,} allowed"]
    return []


def _check_labels(path: Path, nc: int) -> tuple[int, list[str]]:
    errors, count = [], 0
    for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1):
        where = f"{path}:{number}"
        try:
            parsed = parse_line(line)
        except ValueError:
            errors.append(f"{where}: not numbers: {line.strip()!r}")
            continue
        if parsed is None:
            continue
        cls, values = parsed
        if len(values) != 4 and (len(values) < 6 or len(values) % 2):
            errors.append(f"{where}: expected 'class cx cy w h', got {len(values) + 1} fields")
        elif not 0 <= cls < nc:
            errors.append(f"{where}: class id {cls} is outside 0..{nc - 1}")
        elif len(values) == 4 and not _box_inside(values):
            errors.append(f"{where}: box {values} lies outside the image (coordinates must be normalised 0..1)")
        else:
            count += 1
    return count, errors


def _box_inside(box: list[float]) -> bool:
    cx, cy, w, h = box
    return (
        w > 0
        and h > 0
        and cx - w / 2 >= -_TOL
        and cy - h / 2 >= -_TOL
        and cx + w / 2 <= 1 + _TOL
        and cy + h / 2 <= 1 + _TOL
    )


def _preview(names: dict[int, str]) -> str:
    shown = ", ".join(list(names.values())[:4])
    return shown + (", ..." if len(names) > 4 else "")
