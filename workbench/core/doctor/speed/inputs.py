"""The speed doctor's first contact with a deployment: images decoded (or named as bad), the first calls guarded by
a time limit (a callable that raises, hangs or returns something else becomes a finding), then steady-state timing
with the bytes read per call."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ...measure.latency import LatencyConfig, time_calls
from ...models.detector import Detections
from ..findings import Finding, Verdict
from .timing import cycling, describe_error, guarded, read_bytes

STEADY = LatencyConfig(warmup_runs=3, warmup_s=0.2, min_runs=10, min_time_s=0.6, max_windows=4, max_time_s=10.0)


def decode_all(images: Sequence) -> tuple[list[np.ndarray], list[bytes], list[Finding]]:
    """BGR arrays of the images that decode (and their file bytes), and one finding naming those that do not."""
    from ...models.detector import ImageDecodeError, decode

    decoded, encoded, bad = [], [], []
    for index, item in enumerate(images):
        name = str(item) if isinstance(item, (str, Path)) else f"image {index}"
        try:
            if isinstance(item, np.ndarray):
                if item.dtype != np.uint8 or item.ndim != 3 or item.shape[2] != 3 or 0 in item.shape:
                    raise ImageDecodeError(f"{name} is {item.dtype} {item.shape}", "pass HxWx3 uint8 BGR")
                decoded.append(item)
                continue
            data = item if isinstance(item, bytes) else Path(item).read_bytes()
            decoded.append(decode(data, name))
            encoded.append(data)
        except (ImageDecodeError, OSError) as exc:
            bad.append(f"{name}: {str(exc).splitlines()[0]}")
    if not bad:
        return decoded, encoded, []
    verdict = Verdict.CAUSE if not decoded else Verdict.SUSPECT
    title = f"{len(bad)} of {len(images)} images do not decode" + ("; nothing left to time" if not decoded else "")
    fix = "pass JPEG or PNG files, or HxWx3 uint8 BGR arrays (as cv2.imread returns)"
    cause = "no_usable_images" if not decoded else "image_does_not_decode"
    return decoded, encoded, [Finding("images", verdict, title, fix, cause, {"bad": bad[:20]}, strength=1.0)]


def probe(subject, images: list[np.ndarray], timeout_s: float):
    """The first call alone (load + first inference for a spec), then a few more: (first_ms, early calls' ms,
    detections of every image), or a Finding when the deployment raises, hangs or returns something else."""
    early: list[float] = []
    dets: list[Detections] = []
    for index, image in enumerate([images[0], *images]):
        outcome = guarded(lambda image=image: subject.detect(image), timeout_s)
        problem = bad_call(subject, outcome, timeout_s)
        if problem is not None:
            return problem
        early.append(outcome.seconds * 1000)
        if index > 0:
            dets.append(outcome.value)
    return early[0], early[1:4], dets


def bad_call(subject, outcome, timeout_s: float) -> Finding | None:
    if outcome.timed_out:
        return Finding(
            "call",
            Verdict.CAUSE,
            f"the deployment did not answer within {timeout_s:.0f} s (it hangs, or one call is far too slow)",
            "find the blocking call (a lock, a queue that is never fed, a download); a detector answers in ms",
            "deployment_hangs",
            {"timeout_s": timeout_s},
            strength=1.0,
        )
    if outcome.error is not None:
        return Finding(
            "call",
            Verdict.CAUSE,
            f"the deployment raised {describe_error(outcome.error)}",
            "make detect(image) work on an HxWx3 uint8 BGR image first; then time it",
            "deployment_raises",
            {"error": describe_error(outcome.error)},
            strength=1.0,
        )
    if not isinstance(outcome.value, Detections):
        return Finding(
            "call",
            Verdict.CAUSE,
            f"the deployment returned {type(outcome.value).__name__}, not Detections",
            "return workbench.core.models.detector.Detections (Detections.from_rows(rows) from (n, 6) rows)",
            "wrong_output_type",
            {"returned": type(outcome.value).__name__},
            strength=1.0,
        )
    return None


def steady(subject, images: list[np.ndarray], timeout_s: float):
    """Steady-state latency (time_calls' windows), with the bytes read per call; a Finding if it stops answering."""
    counter = {"calls": 0}
    call = cycling(subject.detect, images)

    def counted():
        counter["calls"] += 1
        return call()

    before = read_bytes()
    outcome = guarded(lambda: time_calls(counted, STEADY), max(timeout_s * 3, 60.0))
    after = read_bytes()
    problem = bad_call(subject, outcome, max(timeout_s * 3, 60.0)) if not outcome.ok else None
    if problem is not None:
        return problem
    per_call = (after - before) / counter["calls"] if before is not None and after is not None else None
    return outcome.value, per_call
