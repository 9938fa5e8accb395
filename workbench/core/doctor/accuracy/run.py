"""Running the deployment under diagnosis and the reference on the same images, safely, and comparing what they
answer: the user's own callable runs in a worker thread with a time limit and its answers are checked for type and
shape, so a callable that raises, hangs or returns nonsense becomes a clear finding instead of a crash."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...measure.parity import POOLED_F1, Matched, agreement_of, match_boxes
from ...models.detector import DeploymentSpec, Detections, Detector, ImageDecodeError, decode, open_detector

AGREE = 0.9  # agreement (F1 of class-aware IoU>=0.5 matches) above which two deployments answer the same
MATCH_IOU = 0.5  # a deployment box matches a reference box above this IoU (the parity check's threshold)


class CallFailed(Exception):
    """The deployment's callable did not answer an image: it raised, hung or returned the wrong thing."""

    def __init__(self, cause: str, message: str):
        self.cause, self.message = cause, message
        super().__init__(message)


def call_with_limit(function, argument, time_limit_s: float):
    """`function(argument)` in a daemon thread; CallFailed('deployment_hangs') when it runs past the limit (the
    thread is left behind, never waited on), CallFailed('deployment_raises') when it raises."""
    box: dict = {}

    def work():
        try:
            box["value"] = function(argument)
        except BaseException as exc:  # the user's code may raise anything; it is reported, not re-raised
            box["error"] = exc

    worker = threading.Thread(target=work, name="doctor-call", daemon=True)
    worker.start()
    worker.join(time_limit_s)
    if worker.is_alive():
        raise CallFailed("deployment_hangs", f"the call did not return within {time_limit_s:g} s")
    if "error" in box:
        exc = box["error"]
        raise CallFailed("deployment_raises", f"{type(exc).__name__}: {str(exc)[:400]}")
    return box.get("value")


def as_detections(value) -> Detections:
    """The callable's answer as Detections: a Detections, or (n, 6) rows; CallFailed('wrong_output') otherwise."""
    if isinstance(value, Detections):
        boxes, scores, classes = (np.asarray(a) for a in (value.boxes, value.scores, value.classes))
        if boxes.reshape(-1, 4).shape[0] != len(scores) or len(scores) != len(classes):
            raise CallFailed("wrong_output", f"Detections of inconsistent lengths {boxes.shape}, {scores.shape}")
        return Detections(boxes.reshape(-1, 4).astype(np.float32), scores.astype(np.float32), classes.astype(int))
    if isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[1] == 6:
        return Detections.from_rows(value)
    shape = getattr(value, "shape", None)
    raise CallFailed(
        "wrong_output",
        f"returned {type(value).__name__}{'' if shape is None else f' of shape {tuple(shape)}'}, "
        "expected Detections (or (n, 6) rows of x0, y0, x1, y1, score, class)",
    )


@dataclass
class GuardedDeployment:
    """The deployment under diagnosis, called under guard: a declared spec (opened as a Detector) or the user's own
    callable, held to a time limit, its errors and wrong answers turned into `CallFailed`."""

    name: str
    detect: object  # image -> Detections
    spec: DeploymentSpec | None = None
    detector: Detector | None = None
    preprocess: object = None  # the user's image -> tensor, when given
    artifact: Path | None = None  # what the user's tensor feeds, when given
    time_limit_s: float = 10.0
    hung: bool = False  # after one hang the callable is not called again

    @classmethod
    def of(cls, deployment, *, preprocess=None, artifact=None, time_limit_s: float = 10.0) -> GuardedDeployment:
        if isinstance(deployment, DeploymentSpec):
            detector = open_detector(deployment)
            return cls(str(Path(deployment.artifact).name), detector, deployment, detector, time_limit_s=time_limit_s)
        if not callable(deployment):
            raise TypeError(f"the deployment must be a DeploymentSpec or a callable, got {type(deployment).__name__}")
        name = getattr(deployment, "__name__", type(deployment).__name__)
        art = Path(artifact) if artifact is not None else None
        return cls(name, deployment, None, None, preprocess, art, time_limit_s)

    @property
    def is_spec(self) -> bool:
        return self.spec is not None

    def __call__(self, image: np.ndarray) -> Detections:
        """Detections for one image, or CallFailed."""
        if self.hung:
            raise CallFailed("deployment_hangs", "skipped: an earlier call hung")
        if self.is_spec:
            try:
                return self.detect(image)
            except Exception as exc:
                raise CallFailed("deployment_raises", f"{type(exc).__name__}: {str(exc)[:400]}") from exc
        try:
            return as_detections(call_with_limit(self.detect, image.copy(), self.time_limit_s))
        except CallFailed as failed:
            self.hung = self.hung or failed.cause == "deployment_hangs"
            raise


@dataclass
class Run:
    """One deployment's answers on the images: Detections, or the CallFailed, per image."""

    answers: list = field(default_factory=list)

    @property
    def failures(self) -> list[CallFailed]:
        return [a for a in self.answers if isinstance(a, CallFailed)]

    @property
    def answered(self) -> list[int]:
        return [i for i, a in enumerate(self.answers) if isinstance(a, Detections)]


def run_on(detect, images: list[np.ndarray]) -> Run:
    """Call `detect` on every image; a failure is kept in its place."""
    run = Run()
    for image in images:
        try:
            run.answers.append(detect(image))
        except CallFailed as failed:
            run.answers.append(failed)
    return run


def read_images(paths) -> tuple[list[np.ndarray], list[Path], list[dict]]:
    """Decoded BGR images, their paths, and the files that did not decode (with why)."""
    images, kept, unreadable = [], [], []
    for path in paths:
        path = Path(path)
        try:
            images.append(decode(path.read_bytes(), path.name))
            kept.append(path)
        except (OSError, ImageDecodeError) as exc:
            unreadable.append({"image": path.name, "error": str(getattr(exc, "problem", exc))})
    return images, kept, unreadable


def compare_detections(reference: Detections, candidate: Detections) -> dict:
    """Counts of one image's detection-level differences, pairs matched by IoU ignoring class."""
    pairs = match_boxes(reference.rows(), candidate.rows(), MATCH_IOU) if len(reference) and len(candidate) else []
    same = [(i, j) for i, j, _ in pairs if reference.classes[i] == candidate.classes[j]]
    return {
        "reference": len(reference),
        "deployment": len(candidate),
        "matched": len(same),
        "class_flips": len(pairs) - len(same),
        "missing": len(reference) - len(pairs),
        "extra": len(candidate) - len(pairs),
        "score_shift": [float(candidate.scores[j] - reference.scores[i]) for i, j in same],
        "class_deltas": [int(candidate.classes[j] - reference.classes[i]) for i, j, _ in pairs],
    }


def differences(reference: list[Detections], run: Run) -> dict:
    """Detection-level differences over the images both answered, and their agreement (F1 of same-class matches:
    1.0 when both found nothing)."""
    totals = {"images": 0, "reference": 0, "deployment": 0, "matched": 0, "class_flips": 0, "missing": 0, "extra": 0}
    shifts, deltas, images = [], [], []
    for index in run.answered:
        found = compare_detections(reference[index], run.answers[index])
        totals["images"] += 1
        for key in ("reference", "deployment", "matched", "class_flips", "missing", "extra"):
            totals[key] += found[key]
        shifts += found["score_shift"]
        deltas += found["class_deltas"]
        images.append(Matched(found["matched"], found["reference"], found["deployment"]))
    totals["agreement"] = agreement_of(images, POOLED_F1)  # `measure.parity.pooled_f1` of the answered images
    totals["score_shift"] = float(np.mean(shifts)) if shifts else 0.0
    totals["class_deltas"] = deltas
    return totals
