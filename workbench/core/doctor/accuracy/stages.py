"""The stages check: decode, preprocessing, inference and postprocessing of a few images, compared stage by stage
with the reference, naming the first stage that differs.

Tolerances: decode is the doctor's own for both (cv2, BGR uint8); preprocessing tensors are equal within 1.5 grey
levels (1.5 / 255, what another resize interpolation's rounding gives); inference compares the raw outputs of both
models on the *reference's* input (so a preprocessing difference does not hide or cause an inference one): scores
within 0.05 and, on the anchors the reference is confident about (score > its conf), boxes within 2 input pixels
(fp32 runtimes agree to 1e-3; bf16/fp16 to about 0.02); postprocessing runs the deployment's NMS and box mapping
on the reference's raw output and compares the detections (agreement >= 0.9).
"""

from __future__ import annotations

import numpy as np

from ...models.detector import Detections, nms, prepare, to_original
from ..findings import Finding, Verdict
from .run import AGREE, CallFailed, Run, call_with_limit, differences
from .tensors import EQUAL_TOLERANCE

SCORE_TOLERANCE = 0.05
BOX_TOLERANCE_PX = 2.0
SAMPLE = 2


def stages_check(subject, reference_detector, images, ref_dets, run: Run) -> Finding:
    """Stage-by-stage comparison on the first `SAMPLE` images."""
    images, ref_dets = images[:SAMPLE], ref_dets[:SAMPLE]
    stages = {"decode": {"differs": False, "note": "the same decoded BGR image is given to both"}}
    ref_spec = reference_detector.spec
    ref_inputs = [prepare(image, ref_spec.imgsz, ref_spec.preprocessing) for image in images]
    stages["preprocessing"] = _preprocessing(subject, images, ref_inputs)
    runner = subject.detector.runner if subject.is_spec else _artifact_runner(subject)
    ref_raws = [reference_detector.runner(p.batch)[0] for p in ref_inputs]
    stages["inference"] = _inference(runner, ref_inputs, ref_raws, ref_spec.postprocessing.conf)
    visible = subject.is_spec or subject.preprocess is not None
    stages["postprocessing" if visible else "end_to_end"] = _postprocessing(
        subject, ref_inputs, ref_raws, ref_dets, run
    )
    first = next((name for name, stage in stages.items() if stage.get("differs")), None)
    evidence = {"images": len(images), "stages": stages, "first_difference": first}
    if first is None:
        return Finding("stages", Verdict.OK, "every stage compared agrees with the reference", evidence=evidence)
    return Finding(
        "stages",
        Verdict.SUSPECT,
        f"the first stage that differs from the reference is {first}",
        f"look at the {first} stage (the other checks name what in it differs)",
        f"differs_at_{first}",
        evidence,
        strength=0.3,
    )


def _artifact_runner(subject):
    if subject.artifact is None:
        return None
    from ...models.runners import open_runner

    try:
        return open_runner(subject.artifact)
    except Exception:  # reported by the stage as not compared
        return None


def _preprocessing(subject, images, ref_inputs) -> dict:
    if subject.is_spec:
        tensors = [prepare(image, subject.spec.imgsz, subject.spec.preprocessing).batch for image in images]
    elif subject.preprocess is not None:
        try:
            tensors = [np.asarray(call_with_limit(subject.preprocess, i.copy(), subject.time_limit_s)) for i in images]
        except CallFailed as failed:
            return {"differs": True, "note": f"preprocess failed: {failed.message}"}
    else:
        return {"differs": False, "note": "not compared: the callable's input tensor is not visible (pass preprocess=)"}
    diffs = []
    for tensor, ref in zip(tensors, ref_inputs, strict=True):
        if tensor.shape != ref.batch.shape:
            return {"differs": True, "shape": list(tensor.shape), "reference_shape": list(ref.batch.shape)}
        diffs.append(float(np.abs(tensor.astype(np.float32) - ref.batch).max()))
    return {"differs": max(diffs) > EQUAL_TOLERANCE, "max_abs_diff": max(diffs), "tolerance": EQUAL_TOLERANCE}


def _inference(runner, ref_inputs, ref_raws, conf: float) -> dict:
    if runner is None:
        return {"differs": False, "note": "not compared: no artifact to run (pass artifact=)"}
    score_diff, box_diff = 0.0, 0.0
    for prepared, ref_raw in zip(ref_inputs, ref_raws, strict=True):
        try:
            raw = runner(prepared.batch)[0]
        except Exception as exc:
            return {"differs": True, "note": f"the deployment's model does not take the reference's input: {exc}"[:400]}
        if raw.shape != ref_raw.shape:
            return {"differs": True, "shape": list(raw.shape), "reference_shape": list(ref_raw.shape)}
        score_diff = max(score_diff, float(np.abs(raw[0, 4:] - ref_raw[0, 4:]).max()))
        confident = ref_raw[0, 4:].max(0) > conf
        if confident.any():
            box_diff = max(box_diff, float(np.abs(raw[0, :4, confident] - ref_raw[0, :4, confident]).max()))
    differs = score_diff > SCORE_TOLERANCE or box_diff > BOX_TOLERANCE_PX
    return {
        "differs": differs,
        "score_max_abs_diff": score_diff,
        "box_max_abs_diff_px": box_diff,
        "tolerances": {"score": SCORE_TOLERANCE, "box_px": BOX_TOLERANCE_PX},
    }


def _postprocessing(subject, ref_inputs, ref_raws, ref_dets, run: Run) -> dict:
    if subject.is_spec:
        answers = []
        for prepared, raw in zip(ref_inputs, ref_raws, strict=True):
            rows = nms(raw, subject.spec.postprocessing)
            rows[:, :4] = to_original(rows[:, :4], prepared)
            answers.append(Detections.from_rows(rows))
        found = differences(ref_dets, Run(answers))
        note = "the deployment's NMS and box mapping on the reference's raw output"
    else:
        found = differences(ref_dets, Run(run.answers[: len(ref_dets)]))
        note = "end to end (the callable's postprocessing is not visible)"
    return {"differs": found["agreement"] < AGREE, "agreement": round(found["agreement"], 4), "note": note}
