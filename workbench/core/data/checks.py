"""Checks of a YOLO detection dataset before any long step touches it; every problem is named with its file."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DatasetError
from ..options import shown as _show
from .labels import LabelError, label_path, parse_line, read_label_lines

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
    """The image files of one split, sorted (folders are walked, .txt lists read).

    Raises:
        DatasetError: the data YAML or the split cannot be read; names the file (and line) and the fix.
    """
    yaml_path = Path(data_yaml).expanduser()
    data = _read_yaml(yaml_path)
    return _split_images(data, split, _root(data, yaml_path), yaml_path)


class _Data(dict):
    """A data YAML's top-level mapping, with the line each key is on (for error messages)."""

    lines: dict = {}


def _at(data: dict, yaml_path: Path, key: str) -> str:
    """'data.yaml:LINE' of `key` where known, else the YAML's path."""
    line = getattr(data, "lines", {}).get(key)
    return f"{yaml_path}:{line}" if line else str(yaml_path)


def _kind(value) -> str:
    return {str: "text", int: "a number", float: "a number", bool: "true/false", list: "a list", dict: "a mapping"}.get(
        type(value), type(value).__name__
    )


def _read_yaml(path: Path) -> dict:
    import yaml

    try:
        is_file, is_dir = path.is_file(), path.is_dir()
    except (OSError, ValueError) as exc:
        raise DatasetError(
            f"data YAML {path} cannot be opened ({exc})", "pass the path of your dataset's data YAML"
        ) from exc
    if is_dir:
        raise DatasetError(f"data YAML {path} is a folder", f"pass the data YAML inside it, e.g. {path / 'data.yaml'}")
    if not is_file:
        raise DatasetError(f"data YAML {path} does not exist", "pass the path of your dataset's data YAML")
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise DatasetError(f"data YAML {path} cannot be read ({exc.strerror or exc})", "check its permissions") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            f"{path}:{line}: data YAML is not UTF-8 text (byte 0x{raw[exc.start]:02x})", "save it as UTF-8 text"
        ) from None
    fix = "fix the YAML there: a data YAML holds plain keys and values (path, train, val, names)"
    try:
        _refuse_deep_nesting(text, path, fix)  # before PyYAML recurses once per level
        data = yaml.safe_load(text)  # safe: plain data only, never Python objects
        top = yaml.compose(text, Loader=yaml.SafeLoader) if isinstance(data, dict) else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p) or type(exc).__name__
        if "python/" in problem:
            fix = "remove the '!!python/...' tag: data YAMLs hold plain values and Python objects are never built"
        raise DatasetError(f"{where}: data YAML does not parse: {problem}", fix) from None
    except yaml.YAMLError as exc:
        raise DatasetError(f"data YAML {path} does not parse: {_show(str(exc))}", fix) from None
    except RecursionError:
        raise DatasetError(f"data YAML {path} nests lists or mappings too deeply to read", fix) from None
    except ValueError as exc:  # e.g. a date such as 2020-02-30, or an integer of too many digits
        raise DatasetError(f"data YAML {path} holds a value YAML cannot read: {_show(str(exc))}", fix) from None
    if not isinstance(data, dict):
        raise DatasetError(
            f"data YAML {path} is not a mapping (its top level is {_kind(data)}: {_show(data)})",
            "give it keys path, train, val and names",
        )
    data = _Data(data)
    data.lines = {
        k.value: k.start_mark.line + 1 for k, _ in getattr(top, "value", []) if isinstance(k, yaml.ScalarNode)
    }
    return data


_MAX_DEPTH = 64  # nested lists and mappings in a data YAML; real ones nest two or three


def _refuse_deep_nesting(text: str, path: Path, fix: str) -> None:
    import yaml

    depth = 0
    for event in yaml.parse(text, Loader=yaml.SafeLoader):  # a flat stream of events: no recursion
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > _MAX_DEPTH:
                raise DatasetError(
                    f"{path}:{event.start_mark.line + 1}: data YAML nests lists or mappings more than "
                    f"{_MAX_DEPTH} deep",
                    fix,
                )
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


MAX_CLASSES = 100_000  # class names made up from 'nc' alone


def _whole(value) -> int | None:
    """`value` as an int where it is a whole number (Ultralytics takes 4, 4.0 and '4' for nc), else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        return None
    return int(number) if number.is_integer() else None


def _names(data: dict, path: Path) -> dict[int, str]:
    names, example = data.get("names"), "'names: [first, second, ...]' (or 'names: {0: first, 1: second}')"
    nc = None
    if data.get("nc") is not None:
        nc = _whole(data["nc"])
        if nc is None or nc < 1:
            raise DatasetError(
                f"{_at(data, path, 'nc')}: 'nc' must be a whole number of classes, at least 1, got {_show(data['nc'])}",
                "set nc to the number of classes, or delete it and list the classes in 'names'",
            )
    if names is None and nc is not None:
        if nc > MAX_CLASSES:
            raise DatasetError(
                f"{_at(data, path, 'nc')}: 'nc: {nc}' without names would make {nc:,} classes", f"add {example}"
            )
        names = [f"class_{i}" for i in range(nc)]  # as Ultralytics names them
    if isinstance(names, list):
        names = dict(enumerate(names))
    if names is None:
        raise DatasetError(f"data YAML {path} has no class names", f"add {example}")
    where = _at(data, path, "names")
    if not isinstance(names, dict):
        raise DatasetError(
            f"{where}: 'names' is {_kind(names)} ({_show(names)}), not a list of names", f"write {example}"
        )
    if not names:
        raise DatasetError(f"{where}: 'names' is empty", f"list the classes: {example}")
    ids = {k: _class_id(k) for k in names}
    bad = [k for k, i in ids.items() if i is None]
    if bad or len(set(ids.values())) != len(ids) or sorted(ids.values()) != list(range(len(ids))):
        shown = _show(bad) if bad else _show(sorted(ids.values()))
        raise DatasetError(
            f"{where}: class ids in 'names' must be 0..{len(names) - 1} once each, got {shown}",
            "number the classes 0, 1, 2, ... without gaps, or give 'names' as a list",
        )
    for key, value in names.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise DatasetError(
                f"{where}: class {ids[key]} is named by {_kind(value)} ({_show(value)}), not a name",
                "give each class a name, quoted if it looks like a number or a date",
            )
    if nc is not None and nc != len(names):
        raise DatasetError(
            f"{_at(data, path, 'nc')}: 'nc: {nc}' but 'names' lists {len(names)} classes",
            "make nc the number of names, or delete nc",
        )
    return {ids[k]: str(v) for k, v in names.items()}


def _class_id(key) -> int | None:
    if isinstance(key, bool):
        return None
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.isascii() and key.isdigit():  # Ultralytics takes '0' for 0
        return int(key)
    return None


def _path_problem(text: str) -> str | None:
    """Why `text` cannot be a path on this system, or None."""
    import os

    if "\x00" in text:
        return "holds a NUL character"
    try:
        encoded = os.fsencode(text)
    except UnicodeError:
        return "holds characters that cannot be written in a file name here"
    if any(len(part) > 255 for part in encoded.split(b"/")):
        return "has a folder or file name longer than 255 bytes"
    if len(encoded) >= 4096:
        return "is longer than the 4096 bytes a path may have"
    return None


def _is(kind: str, path: Path) -> bool:
    try:
        return path.is_dir() if kind == "dir" else path.is_file()
    except (OSError, ValueError):
        return False


def _root(data: dict, yaml_path: Path) -> Path:
    given = data.get("path")
    if given is None or given == "":
        return yaml_path.parent.resolve()
    where, fix = _at(data, yaml_path, "path"), "make 'path' the dataset folder, absolute or relative to the YAML file"
    if not isinstance(given, str):
        raise DatasetError(f"{where}: 'path' is {_kind(given)} ({_show(given)}), not a folder", fix)
    if problem := _path_problem(given):
        raise DatasetError(f"{where}: 'path: {_show(given)}' {problem}", fix)
    try:
        root = Path(given).expanduser()
    except RuntimeError:  # ~user of a user that does not exist here
        raise DatasetError(f"{where}: 'path: {given}' names the home of a user unknown here", fix) from None
    if not root.is_absolute():  # relative to the YAML file first (portable), then to the working folder
        root = next((c for c in (yaml_path.parent / root, root) if _is("dir", c)), yaml_path.parent / root)
    if not _is("dir", root):
        found = "a file, not a folder" if _is("file", root) else "nothing"
        raise DatasetError(f"{where}: 'path: {given}' points at {found} ({_resolved(root)})", fix)
    return root.resolve()


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, ValueError, RuntimeError):
        return path


def _split_sources(entry, root: Path) -> list[Path]:
    entries = entry if isinstance(entry, list) else [entry]
    return [_resolved(root / str(e)) if not Path(str(e)).is_absolute() else Path(str(e)) for e in entries]


def _split_images(data: dict, split: str, root: Path, yaml_path: Path) -> list[Path]:
    entry, where = data.get(split), _at(data, yaml_path, split)
    fix = f"make '{split}' a folder of images (or a .txt list of them) relative to 'path', or a list of those"
    if entry is None or entry == "" or entry == []:
        raise DatasetError(f"data YAML {yaml_path} has no '{split}' entry", f"add '{split}: images/{split}'")
    for item in entry if isinstance(entry, list) else [entry]:
        if not isinstance(item, str):
            raise DatasetError(f"{where}: the '{split}' split holds {_kind(item)} ({_show(item)}), not a path", fix)
        if problem := _path_problem(item):
            raise DatasetError(f"{where}: the '{split}' entry {_show(item)} {problem}", fix)
    images: list[Path] = []
    for source in _split_sources(entry, root):
        if _is("dir", source):
            try:
                images += sorted(p for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            except OSError as exc:
                raise DatasetError(f"{where}: the '{split}' folder {source} cannot be read ({exc})", fix) from exc
        elif _is("file", source) and source.suffix.lower() == ".txt":
            images += _listed_images(source, split, yaml_path)
        else:
            found = "a file that is neither an image folder nor a .txt list" if _is("file", source) else "nothing"
            raise DatasetError(f"{where}: the '{split}' split of {yaml_path} points at {found}: {source}", fix)
    if not images:
        raise DatasetError(
            f"{where}: the '{split}' split of {yaml_path} is empty (no images in {_show(entry)})",
            f"put images ({', '.join(sorted(IMAGE_SUFFIXES))}) into it",
        )
    return images


def _listed_images(source: Path, split: str, yaml_path: Path) -> list[Path]:
    """The images a .txt list names, one per line, relative to the list's folder."""
    fix = "list one image path per line, relative to the list's folder, as UTF-8 text"
    try:
        raw = source.read_bytes()
    except OSError as exc:
        raise DatasetError(f"{source}: the '{split}' list of {yaml_path} cannot be read ({exc})", fix) from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise DatasetError(
            f"{source}:{line}: the '{split}' list of {yaml_path} is not UTF-8 text (byte 0x{raw[exc.start]:02x})", fix
        ) from None
    images = []
    for number, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        if problem := _path_problem(line.strip()):
            raise DatasetError(f"{source}:{number}: the '{split}' list of {yaml_path}: this line {problem}", fix)
        images.append(_resolved(source.parent / line.strip()))
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
        if not _is("file", path):
            return [f"{path}: does not exist (or is not a file)"]
        return [f"{path}: does not decode ({type(exc).__name__})"]
    if width * height > MAX_PIXELS:
        return [f"{path}: declares {width}x{height} pixels, more than the {MAX_PIXELS:,} allowed"]
    return []


def _check_labels(path: Path, nc: int) -> tuple[int, list[str]]:
    """(good rows, problems) of one label file; every problem starts with 'file:line:'."""
    try:
        lines = read_label_lines(path)
    except LabelError as exc:
        return 0, [exc.problem]
    errors, count, first = [], 0, {}  # first box line and first polygon line, for files that mix them
    for number, line in lines:
        where = f"{path}:{number}"
        try:
            parsed = parse_line(line, where)
        except LabelError as exc:
            errors.append(exc.problem)
            continue
        if parsed is None:
            continue
        cls, values = parsed
        kind = "box" if len(values) == 4 else "polygon"
        first.setdefault(kind, number)
        if not 0 <= cls < nc:
            errors.append(f"{where}: class id {cls} is outside 0..{nc - 1}")
        elif kind == "box" and not _box_inside(values):
            errors.append(f"{where}: box {values} lies outside the image (coordinates must be normalised 0..1)")
        elif kind == "polygon" and not all(-_TOL <= v <= 1 + _TOL for v in values):
            errors.append(f"{where}: a polygon point lies outside the image (coordinates must be normalised 0..1)")
        else:
            count += 1
    if len(first) == 2:
        errors.append(
            f"{path}:{max(first.values())}: a {'box' if first['box'] > first['polygon'] else 'polygon'} in a file "
            f"whose line {min(first.values())} is a {'polygon' if first['box'] > first['polygon'] else 'box'}: "
            "Ultralytics refuses files that mix boxes and polygons (write every object of the file the same way)"
        )
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
