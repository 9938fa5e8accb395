"""Write the generated shapes dataset (YOLO format + data YAML) and its domain-shifted copies to disk."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, DatasetError
from ..progress import ProgressFn, emit
from ..store.atomic import staged
from . import backgrounds, shapes

GENERATOR_VERSION = 1
_SPLIT_IDS = {"train": 0, "val": 1}
SHIFTS = ("dark", "bright", "blur", "noisy", "bgr_swap", "lowres", "unseen_background")
"""Domain shifts of the val split: same scenes, one condition changed."""


@dataclass(frozen=True)
class ShapesConfig:
    """What to generate. Image k of a split is the same whatever the split sizes, so small sets are prefixes."""

    seed: int = 0
    train: int = 800
    val: int = 200
    imgsz: int = 320

    def __post_init__(self):
        if self.train < 1 or self.val < 1:
            raise ConfigError(
                f"train and val need at least 1 image each, got {self.train} and {self.val}", "pass train>=1 and val>=1"
            )
        if not 32 <= self.imgsz <= 4096:
            raise ConfigError(f"imgsz must lie in 32..4096, got {self.imgsz}", "pick an image size such as 320")

    @property
    def name(self) -> str:
        return f"shapes-s{self.seed}-{self.train}x{self.val}-{self.imgsz}px"


@dataclass(frozen=True)
class ShapesDataset:
    """A generated dataset on disk."""

    root: Path
    config: ShapesConfig

    @property
    def data_yaml(self) -> Path:
        return self.root / "data.yaml"


def check_fits_shapes(names: dict[int, str], model: str) -> None:
    """Refuse, before anything is generated, a model whose classes are not the shapes dataset's.

    Raises:
        DatasetError: naming the model's classes and the dataset's, and pointing to --data.
    """
    found = list(names.values())
    if found != list(shapes.CLASSES):
        raise DatasetError(
            f"{model} predicts {len(found)} classes ({', '.join(map(str, found[:4]))}, ...), the generated demo "
            f"dataset has {', '.join(shapes.CLASSES)}",
            "pass your model's own data YAML (--data DATA.yaml), or use 'demo'",
        )


def scene_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random stream of one image: independent of how many images are generated."""
    return np.random.default_rng([seed, _SPLIT_IDS[split], index])


def generate_shapes(
    root: Path | str, config: ShapesConfig = ShapesConfig(), *, progress: ProgressFn | None = None
) -> ShapesDataset:
    """Generate the dataset under `root/config.name`, or reuse it when an identical one is already there.

    Args:
        root: parent folder, such as the workspace's `datasets/`.
        config: seed, split sizes and image size.
        progress: receives one event per image.
    Returns:
        the dataset, with `data_yaml` ready for Ultralytics.
    """
    dataset = ShapesDataset(Path(root).resolve() / config.name, config)
    manifest = _manifest(config)
    if _manifest_matches(dataset.root, manifest):
        return dataset
    total = config.train + config.val
    with staged(dataset.root) as tmp:
        done = 0
        counts = {}
        for split, n in (("train", config.train), ("val", config.val)):
            counts[split] = 0
            for index in range(n):
                scene = sample_scene(config.seed, split, index)
                counts[split] += _write_image(
                    tmp, split, f"{split}_{index:05d}", scene, config.imgsz, scene_rng(config.seed, split, index)
                )
                done += 1
                emit(progress, "generate dataset", done, total)
        _write_yaml(tmp, dataset.root, train=dataset.root / "images" / "train", val="images/val")
        (tmp / "manifest.json").write_text(json.dumps({**manifest, "instances": counts}, indent=2))
    return dataset


def sample_scene(seed: int, split: str, index: int, *, photos: tuple[str, ...] = backgrounds.SEEN) -> dict:
    """The scene of image `index` of `split`; drawn before any rendering so every shift sees the same layout."""
    return shapes.sample_scene(scene_rng(seed, split, index), photos=photos)


def generate_shift(dataset: ShapesDataset, shift: str, *, progress: ProgressFn | None = None) -> Path:
    """Write a copy of the val split under one domain shift; reuse it when present. Returns its data YAML."""
    if shift not in SHIFTS:
        raise ConfigError(f"unknown shift {shift!r}", f"choose one of {', '.join(SHIFTS)}")
    config = dataset.config
    folder = dataset.root / "shifts" / shift
    manifest = {**_manifest(config), "shift": shift}
    if _manifest_matches(folder, manifest):
        return folder / "data.yaml"
    with staged(folder) as tmp:
        count = 0
        for index in range(config.val):
            scene = sample_scene(config.seed, "val", index)
            if shift == "unseen_background":
                rng = np.random.default_rng([config.seed, 99, index])
                scene["background"] = backgrounds.sample_crop(rng, backgrounds.UNSEEN)
            size = max(32, round(config.imgsz * 0.4)) if shift == "lowres" else config.imgsz
            count += _write_image(
                tmp, "val", f"val_{index:05d}", scene, size, scene_rng(config.seed, "val", index), shift=shift
            )
            emit(progress, f"generate shift {shift}", index + 1, config.val)
        _write_yaml(tmp, folder, train=dataset.root / "images" / "train", val="images/val")
        (tmp / "manifest.json").write_text(json.dumps({**manifest, "instances": {"val": count}}, indent=2))
    return folder / "data.yaml"


def apply_shift(image: np.ndarray, shift: str | None, size: int) -> np.ndarray:
    """Change one imaging condition of a float32 BGR image (before noise)."""
    import cv2

    if shift == "dark":
        return 255 * (np.clip(image, 0, 255) / 255) ** 2.2 * 0.6
    if shift == "bright":
        return image * 1.4 + 70
    if shift == "blur":
        return cv2.GaussianBlur(image, (0, 0), 2.5 * size / 320)
    if shift == "noisy":
        rng = np.random.default_rng(abs(int(image[0, 0, 0] * 1000)))  # a float pixel can be below 0
        return image + rng.normal(0, 25, image.shape).astype(np.float32)
    if shift == "bgr_swap":
        return image[..., ::-1]
    return image


def _write_image(
    folder: Path, split: str, stem: str, scene: dict, size: int, rng: np.random.Generator, shift: str | None = None
) -> int:
    import cv2

    image, labels = shapes.render(scene, size)
    image = shapes.finish(apply_shift(image, shift, size), scene, rng, size)
    ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, scene["quality"]])
    if not ok:
        raise RuntimeError(f"JPEG encoding failed for {stem}")
    for sub, suffix, data in (
        ("images", ".jpg", jpeg.tobytes()),
        ("labels", ".txt", "".join(_label_line(c, b) for c, b in labels).encode()),
    ):
        path = folder / sub / split / f"{stem}{suffix}"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return len(labels)


def _label_line(cls: int, box: list[float]) -> str:
    return f"{cls} " + " ".join(f"{v:.6f}" for v in box) + "\n"


def _write_yaml(tmp: Path, final: Path, *, train: Path, val: str) -> None:
    import yaml

    data = {"path": str(final), "train": str(train), "val": val, "names": dict(enumerate(shapes.CLASSES))}
    (tmp / "data.yaml").write_text(yaml.safe_dump(data, sort_keys=False))


def _manifest(config: ShapesConfig) -> dict:
    return {
        "generator": "workbench.shapes",
        "version": GENERATOR_VERSION,
        "config": asdict(config),
        "classes": list(shapes.CLASSES),
    }


def _manifest_matches(folder: Path, manifest: dict) -> bool:
    try:
        found = json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError):
        return False
    return all(found.get(k) == v for k, v in manifest.items())
