"""The generated dataset: deterministic, valid YOLO labels, varied scenes, domain-shifted copies."""

import json

import numpy as np
import pytest

from workbench.core.data import shapes
from workbench.core.data.checks import check_dataset
from workbench.core.data.generate import SHIFTS, ShapesConfig, generate_shapes, generate_shift, sample_scene
from workbench.core.errors import ConfigError


def _files(root, sub):
    """The generated files: not the label caches Ultralytics writes beside them when another test trains on them."""
    return sorted(p for p in (root / sub).rglob("*") if p.is_file() and p.suffix != ".cache")


def test_same_seed_gives_identical_files(tmp_path, tiny_dataset):
    again = generate_shapes(tmp_path, tiny_dataset.config)
    for sub in ("images", "labels"):
        a, b = _files(tiny_dataset.root, sub), _files(again.root, sub)
        assert [p.name for p in a] == [p.name for p in b]
        assert all(x.read_bytes() == y.read_bytes() for x, y in zip(a, b, strict=True))


def test_another_seed_gives_other_images(tmp_path, tiny_dataset):
    other = generate_shapes(tmp_path, ShapesConfig(seed=4, train=8, val=8, imgsz=64))
    first = tiny_dataset.root / "images" / "val" / "val_00000.jpg"
    assert first.read_bytes() != (other.root / "images" / "val" / "val_00000.jpg").read_bytes()


def test_small_sets_are_prefixes_of_large_ones(tmp_path, tiny_dataset):
    small = generate_shapes(tmp_path, ShapesConfig(seed=3, train=2, val=3, imgsz=64))
    for path in _files(small.root, "images"):
        assert path.read_bytes() == (tiny_dataset.root / path.relative_to(small.root)).read_bytes()


def test_labels_pass_the_dataset_checks(tiny_dataset):
    summary = check_dataset(tiny_dataset.data_yaml)
    assert summary.images == {"train": 8, "val": 8}
    assert summary.instances["train"] >= 8 and summary.names == dict(enumerate(shapes.CLASSES))


def test_scenes_vary_in_class_count_scale_colour_and_overlap():
    scenes = [sample_scene(0, "train", i) for i in range(60)]
    objects = [s for scene in scenes for s in scene["shapes"]]
    assert {s["cls"] for s in objects} == set(range(len(shapes.CLASSES)))
    sizes = [s["size"] for s in objects]
    assert min(sizes) < 0.12 and max(sizes) > 0.3
    assert len({round(s["hsv"][0] / 20) for s in objects}) >= 7
    counts = {len(scene["shapes"]) for scene in scenes}
    assert min(counts) <= 2 and max(counts) >= 6
    assert {scene["background"]["photo"] for scene in scenes} == {"bus", "zidane", "china", "flower"}
    _, labels = shapes.render(scenes[0], 64)
    assert labels


def test_occluded_shapes_keep_most_of_their_area_visible():
    for index in range(30):
        scene = sample_scene(1, "train", index)
        masks = [shapes._mask(s, 128) for s in scene["shapes"]]
        for i, shape in enumerate(scene["shapes"]):
            visible = masks[i].copy()
            for later in masks[i + 1 :]:
                visible *= 1 - later
            assert visible.sum() >= shapes.MIN_VISIBLE * shapes._area(shape, 128) * 0.9  # AA slack


def test_reuse_skips_generation_when_the_manifest_matches(tmp_path):
    config = ShapesConfig(seed=5, train=2, val=2, imgsz=64)
    first = generate_shapes(tmp_path, config)
    stamp = (first.root / "images" / "train" / "train_00000.jpg").stat().st_mtime_ns
    events = []
    generate_shapes(tmp_path, config, progress=events.append)
    assert not events
    assert (first.root / "images" / "train" / "train_00000.jpg").stat().st_mtime_ns == stamp
    manifest = json.loads((first.root / "manifest.json").read_text())
    assert manifest["config"]["seed"] == 5 and manifest["instances"]["val"] >= 2


@pytest.mark.parametrize("shift", SHIFTS)
def test_each_shift_keeps_the_scene_and_changes_the_pixels(tiny_dataset, shift):
    import cv2

    data_yaml = generate_shift(tiny_dataset, shift)
    summary = check_dataset(data_yaml, splits=("val",))
    assert summary.images["val"] == 8
    base = tiny_dataset.root / "images" / "val" / "val_00001.jpg"
    moved = data_yaml.parent / "images" / "val" / "val_00001.jpg"
    a, b = cv2.imread(str(base)), cv2.imread(str(moved))
    if shift == "lowres":
        assert b.shape[0] < a.shape[0]
        b = cv2.resize(b, a.shape[:2][::-1])
    assert np.abs(a.astype(int) - b.astype(int)).mean() > 3
    base_labels = (tiny_dataset.root / "labels" / "val" / "val_00001.txt").read_text().split()
    moved_labels = (data_yaml.parent / "labels" / "val" / "val_00001.txt").read_text().split()
    assert base_labels[::5] == moved_labels[::5]  # same classes in the same order


def test_invalid_configs_are_refused():
    with pytest.raises(ConfigError, match="at least 1"):
        ShapesConfig(train=0)
    with pytest.raises(ConfigError, match="imgsz"):
        ShapesConfig(imgsz=8)


def test_the_noisy_shift_takes_any_float_image_and_is_deterministic():
    """A float image whose first value is below 0 (as a generated image can be before clipping) gets its noise,
    the same noise every time."""
    from workbench.core.data.generate import apply_shift

    image = np.full((8, 8, 3), 100.0, np.float32)
    image[0, 0, 0] = -3.5
    first, again = apply_shift(image, "noisy", 8), apply_shift(image, "noisy", 8)
    assert np.array_equal(first, again) and not np.array_equal(first, image)
