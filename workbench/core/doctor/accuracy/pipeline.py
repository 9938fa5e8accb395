"""The preprocessing and postprocessing checks: the deployment's pipeline against the reference's on the same
images. A declared spec is compared field by field, and each difference is confirmed by measurement (the tensor it
produces, and the agreement with the reference once that field is put back); a callable is compared through its
`preprocess` tensor where given, and from the outside (channel-reversed images, its boxes and classes) otherwise."""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...models.detector import DeploymentSpec, Detections, Detector, prepare
from ..findings import Finding, Verdict
from .run import AGREE, Run, differences, run_on
from .tensors import match_tensor

GAIN = 0.05  # agreement a fix must add to count as the cause (one box in twenty)

# cause id -> (spec fields that carry it, what it means, the fix)
PRE_FIELDS = {
    "layout_nhwc": (
        ("layout",),
        "the input is NHWC but the model takes NCHW",
        "transpose to (1, 3, h, w): layout='nchw'",
    ),
    "wrong_imgsz": (("imgsz",), "the input size differs from the model's", "feed the size the model was exported at"),
    "stretch_resize": (
        ("resize",),
        "images are stretched to a square instead of letterboxed",
        "letterbox: keep the aspect ratio and pad (resize='letterbox')",
    ),
    "letterbox_resize": (("resize",), "images are letterboxed, the model expects them stretched", "resize='stretch'"),
    "pad_value": (
        ("pad_value",),
        "the letterbox pads with another grey than the model was trained with",
        "pad with 114 (Ultralytics' grey)",
    ),
    "channels_swapped": (
        ("color",),
        "BGR images are fed as RGB (channels swapped)",
        "reverse the channels (cv2.cvtColor(image, cv2.COLOR_BGR2RGB)) before the model: color='rgb'",
    ),
    "no_scaling": (("scale",), "pixel values are not divided by 255", "multiply by 1/255 (scale=1/255)"),
    "double_scaling": (("scale",), "pixel values are divided by 255 twice", "divide by 255 once (scale=1/255)"),
    "value_scale": (("scale",), "pixel values are scaled by another factor than 1/255", "scale=1/255"),
    "normalization": (
        ("mean", "std"),
        "a mean/std normalization the model was not trained with is applied",
        "drop the mean/std normalization (mean 0, std 1): Ultralytics models take x / 255",
    ),
}
POST_FIELDS = {
    "conf_threshold_high": ("conf", "the confidence threshold is far higher than the reference's", "lower conf"),
    "conf_threshold_low": ("conf", "the confidence threshold is far lower than the reference's", "raise conf"),
    "nms_iou": ("iou", "the NMS IoU threshold differs from the reference's", "use the reference's iou"),
    "max_det": ("max_det", "at most fewer detections per image are kept than the reference keeps", "raise max_det"),
}


def spec_differences(deployment: DeploymentSpec, reference: DeploymentSpec) -> list[str]:
    """Cause ids of the preprocessing fields where the deployment differs from the reference."""
    dep, ref = deployment.preprocessing, reference.preprocessing
    found = []
    if dep.layout != ref.layout:
        found.append("layout_nhwc")
    if deployment.imgsz != reference.imgsz:
        found.append("wrong_imgsz")
    if dep.resize != ref.resize:
        found.append("stretch_resize" if dep.resize == "stretch" else "letterbox_resize")
    elif dep.resize == "letterbox" and dep.pad_value != ref.pad_value:
        found.append("pad_value")
    if dep.color != ref.color:
        found.append("channels_swapped")
    if not np.isclose(dep.scale, ref.scale, rtol=1e-3):
        ratio = dep.scale / ref.scale
        found.append(
            "no_scaling"
            if np.isclose(ratio, 255, rtol=0.01)
            else "double_scaling"
            if np.isclose(ratio, 1 / 255, rtol=0.01)
            else "value_scale"
        )
    if not (np.allclose(dep.mean, ref.mean) and np.allclose(dep.std, ref.std)):
        found.append("normalization")
    return found


def fixed_spec(deployment: DeploymentSpec, reference: DeploymentSpec, cause: str) -> DeploymentSpec:
    """The deployment with the fields of one cause put back to the reference's."""
    if cause in POST_FIELDS:
        name = POST_FIELDS[cause][0]
        post = replace(deployment.postprocessing, **{name: getattr(reference.postprocessing, name)})
        return replace(deployment, postprocessing=post)
    if cause == "wrong_imgsz":
        return replace(deployment, imgsz=reference.imgsz)
    fields = {f: getattr(reference.preprocessing, f) for f in PRE_FIELDS[cause][0]}
    return replace(deployment, preprocessing=replace(deployment.preprocessing, **fields))


def measure_fix(subject, reference: DeploymentSpec, cause: str, images, ref_dets) -> dict:
    """Agreement with the reference once one cause is fixed (the deployment's own runner, fields put back)."""
    spec = fixed_spec(subject.spec, reference, cause)
    fixed = run_on(_safe(Detector(spec, subject.detector.runner)), images)
    found = differences(ref_dets, fixed)
    return {"agreement": round(found["agreement"], 4), "failed_calls": len(fixed.failures)}


def _safe(detector):
    from .run import CallFailed

    def detect(image):
        try:
            return detector(image)
        except Exception as exc:
            raise CallFailed("deployment_raises", f"{type(exc).__name__}: {str(exc)[:300]}") from exc

    return detect


def judged(check: str, cause: str, meaning: str, fix: str, before: dict, after: dict | None, evidence: dict) -> Finding:
    """A difference as a finding: the cause when fixing it adds agreement or makes failing calls work, else
    suspect (it differs from the reference, but on these images the difference did not change the answers)."""
    gain = (after["agreement"] - before["agreement"]) if after else 0.0
    repairs = bool(after) and before["failed_calls"] > after["failed_calls"]
    verdict = Verdict.CAUSE if gain >= GAIN or repairs else Verdict.SUSPECT
    title = meaning if verdict is Verdict.CAUSE else f"{meaning} (no measurable effect on these images)"
    strength = 1.0 if repairs else max(0.05, min(1.0, gain / max(1e-9, 1 - min(before["agreement"], 0.999))))
    return Finding(check, verdict, title, fix, cause, {**evidence, "before": before}, after, strength=strength)


def preprocessing_check(subject, reference: DeploymentSpec, images, ref_dets, run: Run) -> list[Finding]:
    """One finding per preprocessing difference; an ok finding when there is none."""
    before = _before(ref_dets, run)
    if subject.is_spec:
        return _spec_preprocessing(subject, reference, images, ref_dets, before)
    if subject.preprocess is not None:
        return [_tensor_preprocessing(subject, reference, images, before)]
    return [_probe_channels(subject, images, ref_dets, before)]


def _before(ref_dets, run: Run) -> dict:
    return {"agreement": round(differences(ref_dets, run)["agreement"], 4), "failed_calls": len(run.failures)}


def _spec_preprocessing(subject, reference, images, ref_dets, before) -> list[Finding]:
    causes = spec_differences(subject.spec, reference)
    if not causes:
        return [Finding("preprocessing", Verdict.OK, "preprocessing equals the reference's (every field)")]
    tensor = prepare(images[0], subject.spec.imgsz, subject.spec.preprocessing).batch
    measured = match_tensor(tensor, images[0], reference.imgsz, reference.preprocessing)
    findings = []
    for cause in causes:
        fields, meaning, fix = PRE_FIELDS[cause]
        evidence = {
            "fields": {f: [_field(subject.spec, f), _field(reference, f)] for f in fields},
            "tensor_check": measured,
        }
        after = measure_fix(subject, reference, cause, images, ref_dets)
        findings.append(judged("preprocessing", cause, meaning, fix, before, after, evidence))
    return findings


def _field(spec: DeploymentSpec, name: str):
    return spec.imgsz if name == "imgsz" else getattr(spec.preprocessing, name)


def _tensor_preprocessing(subject, reference, images, before) -> Finding:
    from .run import CallFailed, call_with_limit

    try:
        tensor = call_with_limit(subject.preprocess, images[0].copy(), subject.time_limit_s)
    except CallFailed as failed:
        return Finding(
            "preprocessing",
            Verdict.CAUSE,
            f"the preprocess function fails: {failed.message}",
            "make preprocess(image) return the model's input tensor",
            failed.cause,
            strength=0.9,
        )
    measured = match_tensor(tensor, images[0], reference.imgsz, reference.preprocessing)
    if measured["equal"]:
        return Finding("preprocessing", Verdict.OK, "the preprocess tensor equals the reference's", evidence=measured)
    if not measured["explained"]:
        return Finding(
            "preprocessing",
            Verdict.SUSPECT,
            "the preprocess tensor differs from the reference's in a way no single correction explains",
            "compare your preprocessing with Ultralytics' letterbox, RGB, x / 255, NCHW",
            "preprocessing_differs",
            {**measured, "before": before},
            strength=0.5,
        )
    cause = measured["corrections"][0]
    meaning, fix = PRE_FIELDS.get(cause, ((), cause, ""))[1:]
    words = ", ".join(measured["corrections"])
    return Finding(
        "preprocessing",
        Verdict.CAUSE,
        f"{meaning} (the tensor equals the reference's after: {words})",
        fix,
        cause,
        {**measured, "before": before},
        strength=0.9,
    )


def _probe_channels(subject, images, ref_dets, before) -> Finding:
    """A black box: feed it channel-reversed images; if it then agrees, it swaps the channels itself."""
    note = "pass preprocess= (image -> input tensor) to compare the tensors"
    if before["agreement"] >= AGREE or subject.hung:
        return Finding("preprocessing", Verdict.OK, f"not compared tensor by tensor ({note})", evidence=before)
    probed = run_on(subject, [image[..., ::-1].copy() for image in images])
    after = {"agreement": round(differences(ref_dets, probed)["agreement"], 4), "failed_calls": len(probed.failures)}
    if after["agreement"] >= AGREE and after["agreement"] - before["agreement"] >= GAIN:
        meaning, fix = PRE_FIELDS["channels_swapped"][1:]
        return Finding(
            "preprocessing",
            Verdict.CAUSE,
            meaning + " (it agrees once given channel-reversed images)",
            fix,
            "channels_swapped",
            {"before": before, "probe": "channels reversed"},
            after,
            strength=0.9,
        )
    return Finding("preprocessing", Verdict.OK, f"no channel swap found from the outside ({note})", evidence=before)


def postprocessing_check(
    subject, reference: DeploymentSpec, images, ref_dets, run: Run, prepared_sizes
) -> list[Finding]:
    """Thresholds (declared) and the pattern of the answers: classes shifted, boxes not mapped back, a hidden
    confidence threshold."""
    before = _before(ref_dets, run)
    findings = []
    if subject.is_spec:
        for cause in _post_differences(subject.spec, reference):
            name, meaning, fix = POST_FIELDS[cause]
            after = measure_fix(subject, reference, cause, images, ref_dets)
            evidence = {name: [getattr(subject.spec.postprocessing, name), getattr(reference.postprocessing, name)]}
            findings.append(
                judged("postprocessing", cause, meaning, f"{fix} ({name}={evidence[name][1]})", before, after, evidence)
            )
    found = differences(ref_dets, run)
    if not findings and before["agreement"] < AGREE and run.answered:
        findings += [
            f
            for f in (
                _class_shift(found, ref_dets, run, before),
                _box_mapping(ref_dets, run, prepared_sizes, before),
                _hidden_threshold(found, ref_dets, run, reference, before),
            )
            if f
        ]
    return findings or [
        Finding("postprocessing", Verdict.OK, "postprocessing agrees with the reference's", evidence=before)
    ]


def _post_differences(deployment: DeploymentSpec, reference: DeploymentSpec) -> list[str]:
    dep, ref = deployment.postprocessing, reference.postprocessing
    found = []
    if dep.conf > ref.conf + 0.1:
        found.append("conf_threshold_high")
    elif dep.conf < ref.conf / 2:
        found.append("conf_threshold_low")
    if abs(dep.iou - ref.iou) > 0.1:
        found.append("nms_iou")
    if dep.max_det < ref.max_det:
        found.append("max_det")
    return found


def _class_shift(found: dict, ref_dets, run: Run, before: dict) -> Finding | None:
    deltas = np.array(found["class_deltas"])
    if len(deltas) < 3 or not (deltas != 0).mean() >= 0.8:
        return None
    values, counts = np.unique(deltas, return_counts=True)
    shift = int(values[counts.argmax()])
    if shift == 0 or counts.max() / len(deltas) < 0.8:
        return None
    fixed = _mapped(run, lambda d: Detections(d.boxes, d.scores, d.classes - shift))
    after = {"agreement": round(differences(ref_dets, fixed)["agreement"], 4)}
    return Finding(
        "postprocessing",
        Verdict.CAUSE,
        f"class ids are shifted by {shift:+d} (the boxes match, the classes do not)",
        f"subtract {shift} from the class ids (check the names list and 0/1-based indexing)",
        "class_ids_shifted",
        {"before": before, "shift": shift, "pairs": len(deltas)},
        after,
        strength=0.9,
    )


def _box_mapping(ref_dets, run: Run, prepared_sizes, before: dict) -> Finding | None:
    """Try mapping the deployment's boxes back as the reference would have (letterbox or stretch, normalised,
    xywh); if one makes them agree, the deployment skipped that step."""
    best = None
    for name, transform in _box_transforms(prepared_sizes).items():
        fixed = _mapped(run, transform)
        score = differences(ref_dets, fixed)["agreement"]
        if best is None or score > best[1]:
            best = (name, score)
    if best is None or best[1] < AGREE or best[1] - before["agreement"] < GAIN:
        return None
    words = {
        "letterbox": "boxes are in the letterboxed input's pixels, not mapped back to the original image",
        "stretch": "boxes are in the stretched input's pixels, not mapped back to the original image",
        "normalised": "boxes are normalised to 0..1, not in the original image's pixels",
        "xywh": "boxes are centre x, y, width, height, not x0, y0, x1, y1",
    }
    fix = "map the boxes back: subtract the padding and divide by the gain (Ultralytics' scale_boxes)"
    return Finding(
        "postprocessing",
        Verdict.CAUSE,
        words[best[0].split(":")[0]],
        fix,
        "boxes_not_mapped",
        {"before": before, "mapping": best[0]},
        {"agreement": round(best[1], 4)},
        strength=0.9,
    )


def _box_transforms(prepared_sizes) -> dict:
    """Candidate repairs of unmapped boxes, per image: prepared_sizes[i] is (h, w, imgsz)."""
    from ...models.detector import to_original

    def per_image(function):
        return lambda d, i: Detections(function(d.boxes, *prepared_sizes[i]), d.scores, d.classes)

    def letterbox(boxes, h, w, imgsz):
        ratio = min(imgsz / h, imgsz / w)
        left, top = round((imgsz - round(w * ratio)) / 2 - 0.1), round((imgsz - round(h * ratio)) / 2 - 0.1)
        from ...models.detector import Prepared

        return to_original(boxes, Prepared(np.zeros(0), (h, w), (ratio, ratio), (float(left), float(top))))

    def stretch(boxes, h, w, imgsz):
        return (boxes.reshape(-1, 4) / np.array([imgsz / w, imgsz / h] * 2, np.float32)).astype(np.float32)

    def normalised(boxes, h, w, imgsz):
        return (boxes.reshape(-1, 4) * np.array([w, h, w, h], np.float32)).astype(np.float32)

    def xywh(boxes, h, w, imgsz):
        b = boxes.reshape(-1, 4)
        return np.concatenate([b[:, :2] - b[:, 2:] / 2, b[:, :2] + b[:, 2:] / 2], 1).astype(np.float32)

    return {
        "letterbox": per_image(letterbox),
        "stretch": per_image(stretch),
        "normalised": per_image(normalised),
        "xywh": per_image(xywh),
    }


def _mapped(run: Run, transform) -> Run:
    """The run with each answer transformed (transform(d) or transform(d, index))."""
    import inspect

    two = len(inspect.signature(transform).parameters) == 2
    return Run(
        [
            a if not isinstance(a, Detections) else (transform(a, i) if two else transform(a))
            for i, a in enumerate(run.answers)
        ]
    )


def _hidden_threshold(found: dict, ref_dets, run: Run, reference: DeploymentSpec, before: dict) -> Finding | None:
    """Fewer boxes, none missing above the deployment's lowest score: it filters at a higher confidence."""
    scores = np.concatenate([run.answers[i].scores for i in run.answered])
    if found["extra"] > 0.1 * max(found["deployment"], 1) or found["missing"] == 0:
        return None
    lowest = float(scores.min()) if len(scores) else 1.0
    if lowest < reference.postprocessing.conf + 0.1:
        return None
    filtered = [
        Detections(d.boxes[d.scores >= lowest], d.scores[d.scores >= lowest], d.classes[d.scores >= lowest])
        for d in ref_dets
    ]
    same = differences(filtered, run)["agreement"]
    if same < AGREE:
        return None
    return Finding(
        "postprocessing",
        Verdict.CAUSE,
        f"a confidence threshold of about {lowest:.2f} is applied "
        f"(the reference keeps boxes above {reference.postprocessing.conf})",
        f"lower the confidence threshold to {reference.postprocessing.conf}",
        "conf_threshold_high",
        {"before": before, "lowest_score": lowest, "reference_filtered_agreement": round(same, 4)},
        strength=0.8,
    )
