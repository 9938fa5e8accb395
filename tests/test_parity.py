"""Agreement of two deployments' detections (measure.parity): one function, three named uses, each with its own
IoU threshold, matching and formula, checked on boxes small enough to count by hand."""

from __future__ import annotations

import numpy as np
import pytest

from workbench.core.measure.parity import (
    BY_IOU,
    BY_SCORE,
    MATCHED_OVER_MAX,
    agreement,
    matched_in,
    matched_over_max,
    mean_image_f1,
    pooled_f1,
)
from workbench.core.models.detector import Detections


def _dets(*boxes) -> Detections:
    """Detections from (x0, y0, x1, y1, score, class) tuples."""
    return Detections.from_rows(np.array(boxes, np.float32).reshape(-1, 6))


NONE = _dets()
OURS = [_dets((0, 0, 10, 10, 0.9, 0), (20, 20, 30, 30, 0.8, 0)), NONE, _dets((0, 0, 10, 10, 0.9, 1))]
THEIRS = [_dets((0, 0, 10, 10, 0.7, 0)), NONE, _dets((0, 0, 10, 10, 0.9, 2))]  # one match, nothing, a class flip


def test_each_use_has_its_own_formula():
    assert mean_image_f1(OURS, THEIRS) == pytest.approx((2 / 3 + 1.0 + 0.0) / 3)  # per image, then the mean
    assert pooled_f1(OURS, THEIRS) == pytest.approx(2 * 1 / 5)  # 1 pair over 3 + 2 boxes, pooled
    assert matched_over_max(OURS, THEIRS) == pytest.approx(1 / 3)  # 1 pair over max(2, 1) + max(1, 1)
    assert agreement(OURS, THEIRS, iou=0.9, formula=MATCHED_OVER_MAX) == matched_over_max(OURS, THEIRS)


def test_nothing_found_and_no_images():
    assert mean_image_f1([NONE], [NONE]) == pooled_f1([NONE], [NONE]) == matched_over_max([NONE], [NONE]) == 1.0
    assert mean_image_f1([], []) == 1.0 and matched_over_max([], []) == 1.0
    assert pooled_f1([], []) == 0.0  # the accuracy doctor: no image answered is no agreement
    assert mean_image_f1([OURS[0]], [NONE]) == 0.0
    with pytest.raises(ValueError):
        mean_image_f1(OURS, THEIRS[:2])  # the lists pair image by image


def test_the_matching_rule_and_the_threshold_are_part_of_each_use():
    a = _dets((0, 0, 10, 10, 0.9, 0), (0, 0, 10, 6.3, 0.5, 1))  # the better-scored box overlaps less
    c = _dets((0, 0, 10, 6, 0.9, 0))  # IoU 0.6 with the first (same class), 0.95 with the second (other class)
    assert matched_in(a, c, 0.5, BY_SCORE).matched == 1  # same class first, best score first
    assert matched_in(a, c, 0.5, BY_IOU).matched == 0  # highest IoU first, whatever the class: a class flip
    assert mean_image_f1([a], [c]) == pytest.approx(2 / 3) and pooled_f1([a], [c]) == 0.0
    assert mean_image_f1([a], [c], iou=0.7) == 0.0  # 0.6 is under the threshold
    with pytest.raises(ValueError, match="formula"):
        agreement([a], [c], iou=0.5, formula="f2")
    with pytest.raises(ValueError, match="matching"):
        agreement([a], [c], iou=0.5, formula=MATCHED_OVER_MAX, matching="hungarian")
