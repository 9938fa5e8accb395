"""Drift of production traffic: the served images and detections, window by window, against the variant's validation
images and the reference detections on them.

The image statistics are those the accuracy doctor's data check uses (`data.image_shift`: `image_features`,
`drift_table`, their thresholds and shift names), so a drift alert and a diagnosis name a shift alike. Two
differences, both because a server sees decoded pixels under a time budget:

- the features are computed on a strided sub-sample of about `SIDE` pixels a side (a view, no resampling: noise
  keeps its sigma) while `size` and `aspect` come from the full image; the reference goes through the same
  function, so the two sides stay comparable. About 0.5 ms per image at 320-640 px on one core.
- `jpeg_quality` is left out: a decoded image carries no quantization tables.

Given the reference detector (`probe=`), a check also runs the doctor's channel probe on a few of the window's
images: a channel swap hardly moves colour statistics of natural photos.

The outputs are compared too: detections per image and the box scores by the same SMD and KS rule, and the class
mix by its total variation distance (with a chi-square p-value as evidence).
"""

from __future__ import annotations

import json
import math
import threading
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...data import image_shift  # the statistics, thresholds and shift names the doctor's data check uses too
from ...errors import ConfigError

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

SIDE = 160  # pixels a side the image features are computed on
OUTPUT_SHIFTS = {
    ("detections_per_image", -1): "fewer_detections",
    ("detections_per_image", 1): "more_detections",
    ("score", -1): "lower_scores",
    ("score", 1): "higher_scores",
}


def monitored_features(image: np.ndarray) -> dict[str, float]:
    """The doctor's image features of one BGR uint8 image, on a strided sub-sample (see the module's docstring)."""
    h, w = image.shape[:2]
    step = max(1, round(max(h, w) / SIDE))
    small = image if step == 1 else np.ascontiguousarray(image[::step, ::step])
    features = image_shift.image_features(small)
    features.update(size=float(math.sqrt(h * w)), aspect=float(w / h))
    del features["jpeg_quality"]
    return features


def detection_arrays(detections) -> tuple[np.ndarray, np.ndarray]:
    """(scores, classes) of a `Detections`, a mapping with "scores" and "classes", or (n, 6) rows."""
    if detections is None:
        return np.zeros(0, np.float64), np.zeros(0, np.int64)
    if isinstance(detections, Mapping):
        scores, classes = detections.get("scores", ()), detections.get("classes", ())
    elif hasattr(detections, "scores"):
        scores, classes = detections.scores, detections.classes
    else:
        rows = np.asarray(detections, np.float64).reshape(-1, 6)
        scores, classes = rows[:, 4], rows[:, 5]
    return np.asarray(scores, np.float64).reshape(-1), np.asarray(classes, np.float64).reshape(-1).astype(np.int64)


@dataclass(frozen=True)
class ReferenceStats:
    """What the variant sees and answers on its validation images: per-image features, detections per image, the
    scores of every box and the boxes per class."""

    features: tuple[dict, ...]
    counts: tuple[int, ...]
    scores: tuple[float, ...]
    classes: dict[int, int]
    source: str = ""

    def save(self, path: Path | str) -> Path:
        path = Path(path)
        path.write_text(json.dumps({**asdict(self), "classes": {str(k): v for k, v in self.classes.items()}}))
        return path

    @classmethod
    def load(cls, path: Path | str) -> ReferenceStats:
        data = json.loads(Path(path).read_text())
        return cls(
            tuple(data["features"]),
            tuple(data["counts"]),
            tuple(data["scores"]),
            {int(k): int(v) for k, v in data["classes"].items()},
            data.get("source", ""),
        )


def reference_stats(images: Iterable, detections: Sequence, *, source: str = "") -> ReferenceStats:
    """The reference of a variant from its validation images (BGR arrays or paths) and its detections on them.

    Raises:
        ConfigError: fewer than 2 readable images, or not one detections per image.
    """
    arrays = [_read(i) for i in images]
    if len(arrays) != len(detections):
        raise ConfigError(f"{len(arrays)} images but {len(detections)} detections", "pass one detections per image")
    kept = [(a, d) for a, d in zip(arrays, detections, strict=True) if a is not None]
    if len(kept) < 2:
        raise ConfigError("the drift reference needs at least 2 readable images", "pass the variant's val images")
    found = [detection_arrays(d) for _, d in kept]
    return ReferenceStats(
        tuple(monitored_features(a) for a, _ in kept),
        tuple(len(s) for s, _ in found),
        tuple(float(x) for s, _ in found for x in s),
        dict(Counter(int(c) for _, cs in found for c in cs)),
        source,
    )


def reference_from_detector(images: Iterable, detect: Callable, *, source: str = "") -> ReferenceStats:
    """`reference_stats` with the detections of `detect(image)` (the variant's own detector) on each image."""
    arrays = [a for a in (_read(i) for i in images) if a is not None]
    return reference_stats(arrays, [detect(a) for a in arrays], source=source)


def _read(image) -> np.ndarray | None:
    if isinstance(image, np.ndarray):
        return image
    import cv2

    return cv2.imread(str(image), cv2.IMREAD_COLOR)


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted: the doctor's SMD and KS rule (|SMD| >= smd with KS p < family_p / tests,
    or |SMD| >= large_smd with p < family_p), the class mix by total variation distance, and the fewest images a
    check needs."""

    smd: float = image_shift.DRIFT_SMD
    large_smd: float = image_shift.CAUSE_SMD
    family_p: float = image_shift.FAMILY_P
    class_tvd: float = 0.2
    min_images: int = 8
    min_boxes: int = 20


@dataclass(frozen=True)
class FeatureDrift:
    """One feature of one window against the reference."""

    name: str
    kind: str  # "input" or "output"
    statistic: str  # "smd" or "tvd"
    value: float
    threshold: float
    p_value: float | None
    production: float
    reference: float
    drifted: bool
    looks_like: str | None = None


@dataclass(frozen=True)
class DriftReport:
    """One check: per-feature drift, the worst drifted feature and the shift it looks like."""

    window: int
    images: int
    features: dict[str, FeatureDrift] = field(default_factory=dict)

    @property
    def drifted(self) -> list[str]:
        return [name for name, f in self.features.items() if f.drifted]

    @property
    def worst(self) -> FeatureDrift | None:
        """The drifted input feature furthest from the reference, else the furthest drifted output feature."""
        drifted = [f for f in self.features.values() if f.drifted]
        if any(f.name == "channel_order" for f in drifted):  # as the doctor: a swap explains the colour drift too
            return self.features["channel_order"]
        inputs = [f for f in drifted if f.kind == "input"] or drifted
        return max(inputs, key=lambda f: abs(f.value) / f.threshold) if inputs else None

    @property
    def looks_like(self) -> str | None:
        worst = self.worst
        return worst.looks_like if worst is not None else None

    def as_dict(self) -> dict:
        return {
            "window": self.window,
            "images": self.images,
            "drifted": self.drifted,
            "looks_like": self.looks_like,
            "worst_feature": self.worst.name if self.worst else None,
            "features": {name: asdict(f) for name, f in self.features.items()},
        }


@dataclass
class _Window:
    """What one window collected: per-image features, detections per image, box scores, boxes per class, and a few
    images kept for the channel probe."""

    features: list[dict] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)
    scores: list[np.ndarray] = field(default_factory=list)
    classes: Counter = field(default_factory=Counter)
    images: list[np.ndarray] = field(default_factory=list)

    @property
    def size(self) -> int:
        return max(len(self.features), len(self.counts))

    def copy(self) -> _Window:
        return _Window([*self.features], [*self.counts], [*self.scores], Counter(self.classes), [*self.images])


class DriftMonitor:
    """Collects production images and detections in tumbling windows of `window` images and checks each full window
    against the reference; thread-safe.

    Args:
        reference: the variant's `ReferenceStats`.
        window: images per window; a check runs when one fills (and on demand with `check()`).
        every: use every k-th image offered (1: all), to bound the cost on busy servers.
        thresholds: when a feature counts as drifted.
        probe: the reference detector (`detect(image) -> Detections`): with it, each check also runs the doctor's
            channel probe on `probe_images` images of the window (a channel swap hardly moves colour statistics
            on natural photos); None: no probe.
    """

    def __init__(
        self,
        reference: ReferenceStats,
        *,
        window: int = 200,
        every: int = 1,
        thresholds: DriftThresholds = DriftThresholds(),
        probe: Callable | None = None,
        probe_images: int = 8,
    ):
        if window < thresholds.min_images or every < 1 or probe_images < 2:
            raise ConfigError(
                f"window must be >= {thresholds.min_images} images, every >= 1 and probe_images >= 2, got {window}, "
                f"{every} and {probe_images}",
                "pass a larger window",
            )
        self.reference, self.window, self.every, self.thresholds = reference, window, every, thresholds
        self.probe, self.probe_images = probe, probe_images
        self._lock = threading.Lock()
        self._seen = 0
        self._windows = 0
        self._alerted: set[int] = set()
        self.latest: DriftReport | None = None
        self._current = _Window()

    def update(self, image: np.ndarray | None, detections=None) -> DriftReport | None:
        """Add one production request (its decoded BGR image and its detections, either may be None); returns the
        report when this request completed a window, else None."""
        with self._lock:
            self._seen += 1
            if (self._seen - 1) % self.every:
                return None
        features = monitored_features(image) if image is not None else None  # outside the lock: the costly part
        scores, classes = detection_arrays(detections)
        with self._lock:
            current = self._current
            if features is not None:
                if self.probe is not None and len(current.images) < self.probe_images:
                    if len(current.features) % max(1, self.window // self.probe_images) == 0:  # spread over the window
                        current.images.append(image)
                current.features.append(features)
            if detections is not None:  # a request without detections says nothing about the outputs
                current.counts.append(len(scores))
                current.scores.append(scores)
                current.classes.update(classes.tolist())
            if current.size < self.window:
                return None
            index, self._windows, self._current = self._windows, self._windows + 1, _Window()
        return self._check(current, index)  # outside the lock: requests go on while the window is checked

    def check(self) -> DriftReport:
        """The current (possibly partial) window against the reference; features with too few images are left out."""
        with self._lock:
            current, index = self._current.copy(), self._windows
        return self._check(current, index)

    def _check(self, window: _Window, index: int) -> DriftReport:
        features = {}
        if len(window.features) >= self.thresholds.min_images:
            features.update(self._input_drift(window))
        if len(window.images) >= 2:
            features["channel_order"] = self._channel_probe(window.images)
        if len(window.counts) >= self.thresholds.min_images:
            features.update(self._output_drift(window))
        report = DriftReport(index, window.size, features)
        with self._lock:
            if self.latest is None or self.latest.window <= index:
                self.latest = report
        return report

    def _input_drift(self, window: _Window) -> dict[str, FeatureDrift]:
        table = image_shift.drift_table(window.features, list(self.reference.features))  # as the doctor compares
        tests = len(table) - len([n for n in table if n in image_shift.QUIET])
        out = {}
        for name, row in table.items():
            drifted = name not in image_shift.QUIET and self._drifted(row["smd"], row["ks_p"], tests)
            shift = image_shift.SHIFT_OF.get((name, 1 if row["smd"] > 0 else -1), "other") if drifted else None
            out[name] = FeatureDrift(
                name, "input", "smd", row["smd"], self.thresholds.smd, row["ks_p"], row["production"],
                row["training"], drifted, shift,
            )  # fmt: skip
        return out

    def _channel_probe(self, images: list[np.ndarray]) -> FeatureDrift:
        """The doctor's channel probe: is the reference detector more confident on the images channel-reversed?"""
        as_given = image_shift.model_response(self.probe, images)
        reversed_ = image_shift.model_response(self.probe, [image[..., ::-1].copy() for image in images])
        gain = round(reversed_["mean_score"] - as_given["mean_score"], 4)
        drifted = gain > image_shift.SWAP_GAIN
        return FeatureDrift(
            "channel_order", "input", "score_gain", gain, image_shift.SWAP_GAIN, None, reversed_["mean_score"],
            as_given["mean_score"], drifted, "bgr_swap" if drifted else None,
        )  # fmt: skip

    def _output_drift(self, window: _Window) -> dict[str, FeatureDrift]:
        reference, t = self.reference, self.thresholds
        samples = {
            "detections_per_image": (np.array(window.counts, np.float64), np.array(reference.counts, np.float64)),
            "score": (np.concatenate(window.scores) if window.scores else np.zeros(0), np.array(reference.scores)),
        }
        out = {}
        for name, (p, r) in samples.items():
            if min(len(p), len(r)) < (t.min_images if name == "detections_per_image" else t.min_boxes):
                continue
            d, pvalue = image_shift.smd(p, r), image_shift.ks_pvalue(p, r)
            drifted = self._drifted(d, pvalue, 3)
            shift = OUTPUT_SHIFTS[(name, 1 if d > 0 else -1)] if drifted else None
            out[name] = FeatureDrift(
                name, "output", "smd", round(d, 3), t.smd, round(pvalue, 5), round(float(p.mean()), 3),
                round(float(r.mean()), 3), drifted, shift,
            )  # fmt: skip
        mix = _class_mix(window.classes, Counter(reference.classes), t)
        if mix is not None:
            out["class_mix"] = mix
        return out

    def _drifted(self, d: float, pvalue: float, tests: int) -> bool:
        t = self.thresholds
        return bool(
            (abs(d) >= t.smd and pvalue < t.family_p / tests) or (abs(d) >= t.large_smd and pvalue < t.family_p)
        )

    def record_alert(self, workspace: Workspace, variant_id: int, report: DriftReport) -> int | None:
        """Store a drifted report in the ledger as a measurement of kind "drift_alert" of `variant_id`, with its
        evidence; at most once per window. Returns the measurement's id, or None when nothing was recorded."""
        if not report.drifted:
            return None
        with self._lock:
            if report.window in self._alerted:
                return None
            self._alerted.add(report.window)
        metrics = {**report.as_dict(), "sentence": alert_sentence(report)}
        context = {
            "status": "ok",
            "reference": self.reference.source,
            "reference_images": len(self.reference.features),
            "window_images": self.window,
            "every": self.every,
            "thresholds": asdict(self.thresholds),
        }
        return workspace.ledger.add_measurement(variant_id, "drift_alert", metrics, context)


def alert_sentence(report: DriftReport) -> str:
    """One sentence: what drifted in the window and what it looks like."""
    worst = report.worst
    if worst is None:
        return f"window {report.window}: no drift in {report.images} images"
    return (
        f"window {report.window}: production traffic drifted in {', '.join(report.drifted)} over {report.images} "
        f"images (worst {worst.name}, {worst.statistic} {worst.value:+.2f}); it looks like '{worst.looks_like}'"
    )


def _class_mix(production: Counter, reference: Counter, t: DriftThresholds) -> FeatureDrift | None:
    if min(sum(production.values()), sum(reference.values())) < t.min_boxes:
        return None
    names = sorted(set(production) | set(reference))
    p = np.array([production[n] for n in names], np.float64)
    r = np.array([reference[n] for n in names], np.float64)
    shares, expected = p / p.sum(), r / r.sum()
    tvd = float(0.5 * np.abs(shares - expected).sum())
    pvalue = _chi2_pvalue(p, r)
    drifted = tvd >= t.class_tvd and (pvalue is None or pvalue < t.family_p)
    top = int(np.argmax(np.abs(shares - expected)))  # production/reference: the share of the class that moved most
    return FeatureDrift(
        "class_mix", "output", "tvd", round(tvd, 3), t.class_tvd, pvalue, round(float(shares[top]), 3),
        round(float(expected[top]), 3), bool(drifted), f"class_mix (class {names[top]})" if drifted else None,
    )  # fmt: skip


def _chi2_pvalue(p: np.ndarray, r: np.ndarray) -> float | None:
    """The chi-square test of the two class histograms (scipy where installed; None without it)."""
    if len(p) < 2:
        return None
    try:
        from scipy.stats import chi2_contingency
    except ImportError:
        return None
    return round(float(chi2_contingency(np.stack([p, r]) + 0.5).pvalue), 5)
