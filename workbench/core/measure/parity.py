"""Parity of an exported variant against its parent: raw tensors and IoU-matched detections, per image; and the
agreement of two deployments' detections, one function whose IoU threshold, matching and formula are arguments.

Three agreements are in use, each under its own name so that a figure says how it was computed:
- `mean_image_f1` (the speed doctor, IoU 0.5): per image, F1 of same-class boxes matched greedily best score first;
  the mean over images.
- `pooled_f1` (the accuracy doctor, IoU 0.5): boxes matched one-to-one by IoU whatever their class, pairs of the
  same class counted; F1 pooled over all images.
- `matched_over_max` (the bench's end-to-end check, IoU 0.9): the same pairs over the larger box count, pooled.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..models.detector import decode, postprocess, preprocess
from ..progress import ProgressFn, emit
from .boxes import box_iou


@dataclass(frozen=True)
class ParityConfig:
    imgsz: int = 640
    images: int = 20
    conf: float = 0.25
    iou_match: float = 0.5  # a child box matches a parent box of the same class above this IoU
    min_match_rate: float = 0.99  # verdict thresholds
    min_mean_iou: float = 0.95
    worst: int = 5

    def __post_init__(self):
        if self.images < 1:
            raise ConfigError(f"parity needs at least one image, got {self.images}", "use e.g. images=20")


@dataclass(frozen=True)
class ParityResult:
    images: int
    max_abs_diff: float  # over all raw output elements
    mean_abs_diff: float
    cosine: float  # of the flattened raw outputs, worst image
    parent_boxes: int
    child_boxes: int
    match_rate: float  # matched / max(parent, child) boxes, over all images
    mean_iou: float  # over matched pairs
    score_mae: float  # mean |conf difference| over matched pairs
    class_agreement: float  # share of matched pairs whose classes agree
    verdict: str  # "pass" or "fail", with the thresholds in `reason`
    reason: str
    worst_images: list[dict] = field(default_factory=list)

    def metrics(self) -> dict:
        return asdict(self)


def match_boxes(parent: np.ndarray, child: np.ndarray, iou_threshold: float) -> list[tuple[int, int, float]]:
    """Greedy one-to-one matching by IoU, highest first; pairs of (parent index, child index, IoU)."""
    iou = box_iou(parent[:, :4], child[:, :4])
    pairs = []
    while iou.size and iou.max() >= iou_threshold:
        i, j = np.unravel_index(int(iou.argmax()), iou.shape)
        pairs.append((int(i), int(j), float(iou[i, j])))
        iou[i, :], iou[:, j] = -1, -1
    return pairs


MEAN_IMAGE_F1, POOLED_F1, MATCHED_OVER_MAX = "mean_image_f1", "pooled_f1", "matched_over_max"
BY_SCORE, BY_IOU = "same_class_by_score", "by_iou_then_class"  # how one image's boxes are paired


@dataclass(frozen=True)
class Matched:
    """One image: boxes on each side and how many pairs of the same class were matched between them."""

    matched: int
    ours: int
    theirs: int


def matched_in(ours, theirs, iou: float, matching: str = BY_IOU) -> Matched:
    """Pair one image's detections (`Detections`) at IoU >= `iou`.

    BY_IOU: one-to-one by IoU, highest first, whatever the class (`match_boxes`); pairs of the same class count.
    BY_SCORE: our boxes best score first, each to the box of the same class it overlaps most, if that box is free.
    """
    if not len(ours) or not len(theirs):
        return Matched(0, len(ours), len(theirs))
    if matching == BY_IOU:
        pairs = match_boxes(ours.rows(), theirs.rows(), iou)
        return Matched(sum(int(ours.classes[i] == theirs.classes[j]) for i, j, _ in pairs), len(ours), len(theirs))
    if matching != BY_SCORE:
        raise ValueError(f"unknown matching {matching!r}: use {BY_IOU!r} or {BY_SCORE!r}")
    overlap = box_iou(np.asarray(ours.boxes, float), np.asarray(theirs.boxes, float))
    overlap = overlap * (np.asarray(ours.classes)[:, None] == np.asarray(theirs.classes)[None, :])
    matched, used = 0, set()
    for i in np.argsort(-np.asarray(ours.scores)):
        j = int(overlap[i].argmax())
        if overlap[i, j] >= iou and j not in used:
            used.add(j)
            matched += 1
    return Matched(matched, len(ours), len(theirs))


def agreement_of(images: Sequence[Matched], formula: str) -> float:
    """The agreement of images already matched, by `formula`:

    MEAN_IMAGE_F1: the mean over images of 2 matched / (ours + theirs), 1.0 for an image where both found nothing
        (and for no images).
    POOLED_F1: 2 matched / (ours + theirs) summed over images; 1.0 where no image holds a box, 0.0 for no images.
    MATCHED_OVER_MAX: matched / max(ours, theirs) summed over images; 1.0 where no image holds a box.
    """
    if formula == MEAN_IMAGE_F1:
        scores = [2 * m.matched / (m.ours + m.theirs) if m.ours + m.theirs else 1.0 for m in images]
        return float(np.mean(scores)) if scores else 1.0
    if formula == POOLED_F1:
        boxes = sum(m.ours + m.theirs for m in images)
        return 2 * sum(m.matched for m in images) / boxes if boxes else (1.0 if images else 0.0)
    if formula == MATCHED_OVER_MAX:
        total = sum(max(m.ours, m.theirs) for m in images)
        return sum(m.matched for m in images) / total if total else 1.0
    raise ValueError(f"unknown agreement formula {formula!r}: use {MEAN_IMAGE_F1}, {POOLED_F1} or {MATCHED_OVER_MAX}")


def agreement(ours: Sequence, theirs: Sequence, *, iou: float, formula: str, matching: str = BY_IOU) -> float:
    """How far two deployments' detections on the same images agree: each image paired by `matching` at IoU >= `iou`
    (`matched_in`), the images scored by `formula` (`agreement_of`)."""
    return agreement_of([matched_in(a, b, iou, matching) for a, b in zip(ours, theirs, strict=True)], formula)


def mean_image_f1(ours: Sequence, theirs: Sequence, iou: float = 0.5) -> float:
    """The speed doctor's agreement: per-image F1 of same-class boxes matched best score first, the mean."""
    return agreement(ours, theirs, iou=iou, formula=MEAN_IMAGE_F1, matching=BY_SCORE)


def pooled_f1(ours: Sequence, theirs: Sequence, iou: float = 0.5) -> float:
    """The accuracy doctor's agreement: F1 of same-class pairs matched by IoU, pooled over the images."""
    return agreement(ours, theirs, iou=iou, formula=POOLED_F1)


def matched_over_max(ours: Sequence, theirs: Sequence, iou: float = 0.9) -> float:
    """The bench's end-to-end match rate: same-class pairs matched by IoU over the larger box count, pooled."""
    return agreement(ours, theirs, iou=iou, formula=MATCHED_OVER_MAX)


def compare(
    parent_runner,
    child_runner,
    images: list[Path],
    config: ParityConfig = ParityConfig(),
    *,
    progress: ProgressFn | None = None,
) -> ParityResult:
    """Run both runners on the same preprocessed images and compare tensors and detections."""
    if not images:
        raise ConfigError("parity needs images", "pass the val images of the dataset")
    max_diff, diffs, cosines = 0.0, [], []
    totals = {"parent": 0, "child": 0, "matched": 0, "same_class": 0}
    ious, score_errors, per_image = [], [], []
    for index, path in enumerate(images[: config.images]):
        boxed = preprocess(decode(Path(path).read_bytes(), Path(path).name), config.imgsz)
        raw_p, raw_c = parent_runner(boxed.batch)[0], child_runner(boxed.batch)[0]
        delta = np.abs(raw_p.astype(np.float64) - raw_c.astype(np.float64))
        max_diff, diffs = max(max_diff, float(delta.max())), diffs + [float(delta.mean())]
        cosines.append(_cosine(raw_p, raw_c))
        det_p = postprocess([raw_p], boxed, conf=config.conf)
        det_c = postprocess([raw_c], boxed, conf=config.conf)
        pairs = match_boxes(det_p, det_c, config.iou_match)
        same = sum(det_p[i, 5] == det_c[j, 5] for i, j, _ in pairs)
        totals["parent"] += len(det_p)
        totals["child"] += len(det_c)
        totals["matched"] += len(pairs)
        totals["same_class"] += same
        ious += [iou for *_, iou in pairs]
        score_errors += [abs(float(det_p[i, 4] - det_c[j, 4])) for i, j, _ in pairs]
        denominator = max(len(det_p), len(det_c))
        per_image.append(
            {
                "image": Path(path).name,
                "parent_boxes": len(det_p),
                "child_boxes": len(det_c),
                "match_rate": len(pairs) / denominator if denominator else 1.0,
                "mean_iou": float(np.mean([p[2] for p in pairs])) if pairs else (1.0 if not denominator else 0.0),
                "max_abs_diff": float(delta.max()),
            }
        )
        emit(progress, "parity", index + 1, min(config.images, len(images)))
    denominator = max(totals["parent"], totals["child"])
    match_rate = totals["matched"] / denominator if denominator else 1.0
    mean_iou = float(np.mean(ious)) if ious else (1.0 if not denominator else 0.0)
    ok = match_rate >= config.min_match_rate and mean_iou >= config.min_mean_iou
    worst = sorted(per_image, key=lambda r: (r["match_rate"], r["mean_iou"], -r["max_abs_diff"]))[: config.worst]
    return ParityResult(
        images=len(per_image),
        max_abs_diff=max_diff,
        mean_abs_diff=float(np.mean(diffs)),
        cosine=float(min(cosines)),
        parent_boxes=totals["parent"],
        child_boxes=totals["child"],
        match_rate=match_rate,
        mean_iou=mean_iou,
        score_mae=float(np.mean(score_errors)) if score_errors else 0.0,
        class_agreement=totals["same_class"] / totals["matched"] if totals["matched"] else 1.0,
        verdict="pass" if ok else "fail",
        reason=(
            f"match rate {match_rate:.3f} (needs >= {config.min_match_rate}), mean IoU {mean_iou:.3f} "
            f"(needs >= {config.min_mean_iou})"
        ),
        worst_images=worst,
    )


def _cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.astype(np.float64).ravel(), b.astype(np.float64).ravel()
    norm = np.linalg.norm(a) * np.linalg.norm(b)
    return float(a @ b / norm) if norm else 1.0
