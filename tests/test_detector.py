"""A declared deployment: its preprocessing options each change the input as stated, boxes map back to the
original image, the NMS agrees with Ultralytics', and the default spec detects what Ultralytics' path detects."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core.errors import ConfigError
from workbench.core.models.detector import (
    DeploymentSpec,
    Detections,
    Postprocessing,
    Preprocessing,
    nms,
    open_detector,
    prepare,
    to_original,
)


def _image(h=48, w=96):
    image = np.zeros((h, w, 3), np.uint8)
    image[..., 0] = 200  # blue in BGR
    return image


def test_the_default_is_ultralytics_letterbox_rgb_over_255():
    from workbench.core.models.detector import preprocess

    image = np.random.default_rng(0).integers(0, 255, (50, 90, 3), dtype=np.uint8)
    mine, theirs = prepare(image, 64), preprocess(image, 64)
    assert mine.batch.shape == theirs.batch.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(mine.batch, theirs.batch, atol=1e-6)
    assert mine.pad == theirs.pad and mine.gain[0] == pytest.approx(theirs.gain)


def test_each_preprocessing_option_changes_the_input_as_stated():
    image = _image()
    base = prepare(image, 64).batch
    assert base[0, 2].max() == pytest.approx(200 / 255)  # blue is the third channel in RGB
    bgr = prepare(image, 64, Preprocessing(color="bgr")).batch
    assert bgr[0, 0].max() == pytest.approx(200 / 255)
    raw = prepare(image, 64, Preprocessing(scale=1.0)).batch
    assert raw.max() == 200
    stretched = prepare(image, 64, Preprocessing(resize="stretch"))
    assert stretched.pad == (0.0, 0.0) and stretched.gain == (64 / 96, 64 / 48)
    assert (stretched.batch[0, 1] != 114 / 255).all()  # no grey bars
    nhwc = prepare(image, 64, Preprocessing(layout="nhwc")).batch
    assert nhwc.shape == (1, 64, 64, 3)
    normalised = prepare(image, 64, Preprocessing(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))).batch
    np.testing.assert_allclose(normalised, (base - 0.5) / 0.25, atol=1e-6)
    with pytest.raises(ConfigError, match="color"):
        Preprocessing(color="yuv")


def test_boxes_map_back_to_the_original_pixels():
    prepared = prepare(_image(48, 96), 64)  # gain 2/3, 16 px of padding above and below
    inside = np.array([[0, 16, 64, 48]], np.float32)  # the whole letterboxed image
    np.testing.assert_allclose(to_original(inside, prepared), [[0, 0, 96, 48]], atol=1e-4)
    stretched = prepare(_image(48, 96), 64, Preprocessing(resize="stretch"))
    np.testing.assert_allclose(to_original(np.array([[0, 0, 64, 64]]), stretched), [[0, 0, 96, 48]], atol=1e-4)


def test_nms_agrees_with_ultralytics():
    import torch
    from ultralytics.utils.nms import non_max_suppression

    rng = np.random.default_rng(1)
    anchors, classes = 400, 3
    centres = rng.uniform(10, 90, (anchors, 2))
    sizes = rng.uniform(5, 30, (anchors, 2))
    scores = rng.uniform(0, 1, (anchors, classes)) ** 3
    raw = np.concatenate([centres, sizes, scores], axis=1).T[None].astype(np.float32)
    mine = nms(raw, Postprocessing(conf=0.25, iou=0.7))
    theirs = non_max_suppression(torch.from_numpy(raw), 0.25, 0.7)[0].numpy()
    assert len(mine) == len(theirs)
    np.testing.assert_allclose(mine[np.lexsort(mine.T[::-1])], theirs[np.lexsort(theirs.T[::-1])], atol=1e-4)
    assert nms(raw, Postprocessing(conf=0.9999)).shape == (0, 6)


def test_detections_round_trip_rows():
    rows = np.array([[1, 2, 3, 4, 0.5, 2]], np.float32)
    found = Detections.from_rows(rows)
    assert len(found) == 1 and found.classes.tolist() == [2]
    np.testing.assert_array_equal(found.rows(), rows)


def test_the_default_spec_detects_what_ultralytics_path_detects(tmp_path, tiny_dataset):
    import cv2

    from workbench.core.measure.parity import match_boxes
    from workbench.core.models.cards import demo_weights
    from workbench.core.models.detector import postprocess, preprocess
    from workbench.core.models.runners import RuntimeOptions, open_runner

    low = Postprocessing(conf=0.05)  # a 64 px input finds little above the default threshold
    detector = open_detector(DeploymentSpec(demo_weights(), imgsz=64, threads=1, postprocessing=low))
    runner = open_runner(demo_weights(), RuntimeOptions(threads=1))
    images = sorted((tiny_dataset.root / "images" / "val").glob("*.jpg"))[:4]
    found = 0
    for path in images:
        image = cv2.imread(str(path))
        boxed = preprocess(image, 64)
        theirs = postprocess(runner(boxed.batch), boxed, conf=0.05)
        mine = detector(image)
        assert len(match_boxes(theirs, mine.rows(), 0.95)) == len(theirs) == len(mine)
        found += len(mine)
    assert found > 0
