"""The mAP of raw detections (what accuracy runs and accuracy-controlled quantization score) counts what it should."""

from pathlib import Path

import numpy as np

from workbench.core.measure.mean_ap import LabelledImage, map50_95, match


def _image(boxes, classes):
    return LabelledImage(Path("x.jpg"), np.array(boxes, float).reshape(-1, 4), np.array(classes, int))


def test_perfect_detections_score_one():
    truth = _image([[10, 10, 50, 50], [60, 60, 90, 95]], [0, 1])
    dets = np.array([[10, 10, 50, 50, 0.9, 0], [60, 60, 90, 95, 0.8, 1]])
    assert map50_95([dets], [truth])["map50_95"] > 0.99


def test_loose_boxes_count_at_low_thresholds_only():
    truth = _image([[0, 0, 100, 100]], [0])
    loose = np.array([[0, 0, 100, 76, 0.9, 0]])  # IoU 0.76: a hit at 0.50 ... 0.75
    correct = match(loose, truth)
    assert correct[0, :6].all() and not correct[0, 6:].any()
    scores = map50_95([loose], [truth])
    assert scores["map50"] > 0.99 and 0.5 < scores["map50_95"] < 0.7


def test_wrong_class_and_duplicates_are_false_positives():
    truth = _image([[0, 0, 100, 100]], [0])
    assert not match(np.array([[0, 0, 100, 100, 0.9, 1]]), truth).any()
    twice = match(np.array([[0, 0, 100, 100, 0.9, 0], [0, 0, 100, 100, 0.8, 0]]), truth)
    assert twice[0].all() and not twice[1].any()
    assert map50_95([np.zeros((0, 6))], [truth])["map50_95"] == 0.0
