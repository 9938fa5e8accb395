"""Background photographs that ship inside installed packages, and random crops of them."""

from __future__ import annotations

import importlib.util
from functools import cache
from pathlib import Path

import numpy as np

from ..errors import DatasetError

# name -> (package, path inside the package). All come with the workbench's own dependencies.
PHOTOS = {
    "bus": ("ultralytics", "assets/bus.jpg"),
    "zidane": ("ultralytics", "assets/zidane.jpg"),
    "china": ("sklearn", "datasets/images/china.jpg"),
    "flower": ("sklearn", "datasets/images/flower.jpg"),
    "grace_hopper": ("matplotlib", "mpl-data/sample_data/grace_hopper.jpg"),
}
SEEN = ("bus", "zidane", "china", "flower")  # train and val backgrounds
UNSEEN = ("grace_hopper",)  # only in the "unseen backgrounds" shift


def photo_path(name: str) -> Path:
    """Locate a shipped photo without importing its package."""
    package, relative = PHOTOS[name]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise DatasetError(
            f"background photo {name!r} needs the package {package!r}, which is not installed",
            "reinstall the workbench with its dependencies: pip install -e .",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / relative
    if not path.is_file():
        raise DatasetError(f"background photo {path} is missing from {package}", f"reinstall {package}")
    return path


@cache
def load_photo(name: str) -> np.ndarray:
    """The photo as a BGR uint8 array (cached; read-only)."""
    import cv2

    image = cv2.imread(str(photo_path(name)), cv2.IMREAD_COLOR)
    if image is None:
        raise DatasetError(f"background photo {photo_path(name)} does not decode", "reinstall its package")
    image.setflags(write=False)
    return image


def sample_crop(rng: np.random.Generator, names: tuple[str, ...]) -> dict:
    """A crop description in normalised photo coordinates, independent of output size."""
    name = names[int(rng.integers(len(names)))]
    side = float(rng.uniform(0.35, 1.0))
    aspect = float(rng.uniform(0.8, 1.25))
    w, h = min(1.0, side * aspect), min(1.0, side / aspect)
    return {
        "photo": name,
        "box": [float(rng.uniform(0, 1 - w)), float(rng.uniform(0, 1 - h)), w, h],
        "flip": bool(rng.random() < 0.5),
        "gain": float(rng.uniform(0.75, 1.2)),
        "bias": float(rng.uniform(-20, 20)),
    }


def render_crop(crop: dict, size: int) -> np.ndarray:
    """Cut, resize and tone the crop into a float32 BGR image of `size` x `size`."""
    import cv2

    photo = load_photo(crop["photo"])
    ph, pw = photo.shape[:2]
    x, y, w, h = crop["box"]
    x0, y0 = int(x * pw), int(y * ph)
    x1, y1 = max(x0 + 2, int((x + w) * pw)), max(y0 + 2, int((y + h) * ph))
    patch = cv2.resize(photo[y0:y1, x0:x1], (size, size), interpolation=cv2.INTER_AREA)
    if crop["flip"]:
        patch = patch[:, ::-1]
    return patch.astype(np.float32) * crop["gain"] + crop["bias"]
