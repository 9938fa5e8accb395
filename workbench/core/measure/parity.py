"""Parity of an exported variant against its parent: raw tensors and IoU-matched detections, per image."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from ..errors import ConfigError
from ..models.inference import decode, postprocess, preprocess
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
