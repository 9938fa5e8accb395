"""The accuracy doctor: why does a deployment detect worse than the model it was made from?

`diagnose_accuracy` runs the deployment (a declared `DeploymentSpec`, or the user's own `detect(image)` callable)
and a correct reference on the same production images, then one check per item of the deployment guide:

- data: production images against the training distribution (`data`);
- preprocessing and postprocessing: the pipeline against the reference's (`pipeline`, `tensors`);
- environment: versions, runtime and the precision actually executed (`artifact`);
- stages: decode, preprocessing, inference, postprocessing compared one by one (`stages`);
- re-export: an export or quantization fault told apart from a pipeline fault (`artifact`);
- controlled test: mAP on a labelled control set, else agreement with the reference's pseudo-labels
  (`control`).

Each check gives a `Finding` (verdict, evidence, fix, cause id, and the metric after the fix where it can be
applied here); the `Diagnosis` ranks them and names the most likely cause. Bad input (an image that does not
decode, a callable that raises, hangs past `time_limit_s` or returns the wrong thing) becomes a finding; a check
that fails unexpectedly becomes a suspect finding naming the error, so the doctor itself never crashes on the
deployment's account. A reference that does not load is the caller's error and raises.

`run_accuracy_doctor` is the same doctor from CLI-like inputs (a model, a folder of production images, an optional
data YAML, the deployment's preprocessing and postprocessing as overrides of the Ultralytics defaults), and
`describe_diagnosis` the diagnosis as lines of text for a terminal.
"""

from __future__ import annotations

import time
import traceback
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ...errors import ConfigError, WorkbenchError
from ...models.detector import DeploymentSpec, Detector, Postprocessing, Preprocessing, open_detector
from ..findings import Diagnosis, Finding, Verdict
from .run import AGREE, GuardedDeployment, differences, read_images, run_on

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

MAX_IMAGES = 16
TRAINING_IMAGES = 16
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
PRE_OVERRIDES = ("color", "scale", "mean", "std", "resize", "pad_value", "layout")
POST_OVERRIDES = ("conf", "iou", "max_det")


def diagnose_accuracy(
    deployment,
    reference: DeploymentSpec,
    images,
    *,
    preprocess=None,
    artifact=None,
    labelled=None,
    training_images=None,
    reference_weights=None,
    workspace: Workspace | None = None,
    out_dir=None,
    time_limit_s: float = 10,
    max_images: int = MAX_IMAGES,
    reexport_budget_s: float = 120,
) -> Diagnosis:
    """Diagnose why `deployment` answers differently from `reference` on `images`.

    Args:
        deployment: a `DeploymentSpec`, or any callable `detect(image) -> Detections` (BGR uint8 in).
        reference: a correct `DeploymentSpec` (the variant the deployment was derived from, default pre/post).
        images: production image paths (unlabelled); the first `max_images` are used.
        preprocess, artifact: for a callable, its own image -> input tensor function and the artifact that
            tensor feeds; they let the doctor compare tensors and stages.
        labelled: a data YAML whose val split is the labelled control set (mAP per class).
        training_images: image paths of the training distribution for the data check; default: the first
            images of `labelled`'s train split.
        reference_weights: the .pt the reference was exported from, for re-exports (default: the reference's
            artifact when it is a .pt).
        workspace: where the reference's validation environment is looked up (ledger fingerprints).
        out_dir: where side-by-side evidence pictures are written.
        time_limit_s: how long one call of the user's callable may take before it counts as hung.
    Raises:
        ConfigError: the reference does not load or is not a DeploymentSpec.
    """
    started = time.perf_counter()
    reference_detector = _open_reference(reference)
    decoded, paths, unreadable = read_images(list(images)[:max_images])
    findings = [_images_finding(unreadable, len(decoded))] if unreadable or not decoded else []
    if not decoded:
        return Diagnosis.of("accuracy", findings, str(getattr(deployment, "artifact", deployment)))
    try:
        subject = GuardedDeployment.of(deployment, preprocess=preprocess, artifact=artifact, time_limit_s=time_limit_s)
    except (WorkbenchError, TypeError) as exc:
        findings.append(_load_failure(exc))
        return Diagnosis.of("accuracy", findings, str(getattr(deployment, "artifact", deployment)))
    ref_dets = [reference_detector(image) for image in decoded]
    run = run_on(subject, decoded)
    findings.append(_run_finding(run, ref_dets))
    given = {
        "training_images": training_images,
        "labelled": labelled,
        "workspace": workspace,
        "reference_weights": reference_weights,
        "reexport_budget_s": reexport_budget_s,
    }
    findings += _checks(subject, reference_detector, decoded, paths, ref_dets, run, given)
    pictures = _pictures(out_dir, decoded, paths, ref_dets, run)
    if pictures:
        findings = [_with_pictures(f, pictures) if f is _top(findings) else f for f in findings]
    context = {
        "images": len(decoded),
        "unreadable": len(unreadable),
        "reference": str(reference.artifact),
        "reference_imgsz": reference.imgsz,
        "agreement_threshold": AGREE,
        "pictures": list(pictures),
        "seconds": round(time.perf_counter() - started, 2),
    }
    return Diagnosis.of("accuracy", findings, subject.name, context)


def _checks(subject, reference_detector, decoded, paths, ref_dets, run, given: dict) -> list[Finding]:
    """Every check after the first run, each guarded so that one failing check is reported, not raised."""
    from .artifact import artifact_check, environment_check
    from .control import controlled_test
    from .data import data_check
    from .pipeline import postprocessing_check, preprocessing_check
    from .stages import stages_check

    reference = reference_detector.spec
    imgsz = subject.spec.imgsz if subject.is_spec else reference.imgsz
    sizes = [(image.shape[0], image.shape[1], imgsz) for image in decoded]
    training = _training_images(given["training_images"], given["labelled"])
    checks = (
        ("data", lambda: [data_check(decoded, paths, training, reference_detector)]),
        ("preprocessing", lambda: preprocessing_check(subject, reference, decoded, ref_dets, run)),
        ("postprocessing", lambda: postprocessing_check(subject, reference, decoded, ref_dets, run, sizes)),
        ("environment", lambda: [environment_check(subject, reference_detector, given["workspace"])]),
        ("stages", lambda: [stages_check(subject, reference_detector, decoded, ref_dets, run)]),
        (
            "re-export",
            lambda: [
                artifact_check(
                    subject,
                    reference_detector,
                    given["reference_weights"],
                    decoded,
                    paths,
                    ref_dets,
                    budget_s=given["reexport_budget_s"],
                )
            ],
        ),
        (
            "controlled test",
            lambda: [controlled_test(subject, reference_detector, given["labelled"], ref_dets, run, paths)],
        ),
    )
    findings = []
    for name, check in checks:
        findings += _guarded(name, check)
    return findings


def _guarded(name: str, check) -> list[Finding]:
    try:
        return check()
    except Exception as exc:  # a check's own failure is reported, never raised
        where = traceback.extract_tb(exc.__traceback__)[-1]
        return [
            Finding(
                name,
                Verdict.SUSPECT,
                f"the {name} check could not run: {type(exc).__name__}: {str(exc)[:300]}",
                "see the error; the other checks still ran",
                "check_failed",
                {"error": f"{type(exc).__name__}: {exc}"[:1000], "at": f"{Path(where.filename).name}:{where.lineno}"},
                strength=0.01,
            )
        ]


def _open_reference(reference) -> Detector:
    if not isinstance(reference, DeploymentSpec):
        raise ConfigError(
            f"the reference must be a DeploymentSpec, got {type(reference).__name__}",
            "pass DeploymentSpec(artifact=the model the deployment was made from, imgsz=its size)",
        )
    try:
        return open_detector(reference)
    except WorkbenchError as exc:
        raise ConfigError(
            f"the reference does not load: {exc.problem}", exc.fix or "check the reference's path"
        ) from exc


def _training_images(training_images, labelled) -> list[Path] | None:
    if training_images is not None:
        return [Path(p) for p in training_images][:TRAINING_IMAGES]
    if labelled is None:
        return None
    from ...data.checks import list_images

    try:
        return list_images(labelled, "train")[:TRAINING_IMAGES]
    except WorkbenchError:
        return None


def _images_finding(unreadable: list[dict], readable: int) -> Finding:
    verdict = Verdict.CAUSE if not readable else Verdict.SUSPECT
    return Finding(
        "images",
        verdict,
        f"{len(unreadable)} image(s) do not decode ({unreadable[0]['image']}: {unreadable[0]['error']})",
        "pass JPEG or PNG files that OpenCV reads; the doctor skipped the others",
        "image_unreadable",
        {"unreadable": unreadable[:20], "readable": readable},
        strength=0.3,
    )


def _load_failure(exc: Exception) -> Finding:
    problem, fix = getattr(exc, "problem", str(exc)), getattr(exc, "fix", "")
    return Finding(
        "run",
        Verdict.CAUSE,
        f"the deployment does not load: {problem}",
        fix or "pass a DeploymentSpec or a callable detect(image) -> Detections",
        "deployment_does_not_load",
        {"error": f"{type(exc).__name__}: {problem}"},
        strength=1.0,
    )


def _run_finding(run, ref_dets) -> Finding:
    """The symptom: did the deployment answer, and does it agree with the reference?"""
    found = differences(ref_dets, run)
    evidence = {k: v for k, v in found.items() if k != "class_deltas"}
    failures = run.failures
    if failures:
        first = failures[0]
        evidence["errors"] = sorted({f.message for f in failures})[:5]
        words = {"deployment_hangs": "hangs", "deployment_raises": "raises", "wrong_output": "returns the wrong thing"}
        fixes = {
            "deployment_hangs": "find what blocks (a lock, a queue, a server that does not answer); the doctor did "
            "not wait for it",
            "deployment_raises": "fix the error it raises (see the evidence)",
            "wrong_output": "return Detections (boxes xyxy in original pixels, scores, classes) or (n, 6) rows",
        }
        return Finding(
            "run",
            Verdict.CAUSE,
            f"the deployment {words[first.cause]} on {len(failures)} of {len(run.answers)} images: {first.message}",
            fixes[first.cause],
            first.cause,
            evidence,
            strength=0.6,
        )
    if found["agreement"] >= AGREE:
        return Finding(
            "run", Verdict.OK, f"the deployment agrees with the reference ({found['agreement']:.3f})", evidence=evidence
        )
    return Finding(
        "run",
        Verdict.SUSPECT,
        f"the deployment disagrees with the reference (agreement {found['agreement']:.3f}: {found['missing']} "
        f"missing, {found['extra']} extra, {found['class_flips']} class flips)",
        "see the other findings for why",
        "disagrees_with_reference",
        evidence,
        strength=0.1,
    )


def _pictures(out_dir, decoded, paths, ref_dets, run) -> tuple[str, ...]:
    if out_dir is None:
        return ()
    from .control import write_pictures

    try:
        return write_pictures(out_dir, decoded, paths, ref_dets, run)
    except (OSError, ValueError):  # an unwritable folder costs the pictures, not the diagnosis
        return ()


def _top(findings: list[Finding]) -> Finding | None:
    ranked = Diagnosis.of("accuracy", findings).findings
    return ranked[0] if ranked else None


def _with_pictures(finding: Finding, pictures: tuple[str, ...]) -> Finding:
    return replace(finding, pictures=finding.pictures + pictures)


def run_accuracy_doctor(
    model,
    data=None,
    images_dir=None,
    *,
    reference=None,
    imgsz: int | None = None,
    training_dir=None,
    workspace: Workspace | None = None,
    out_dir=None,
    time_limit_s: float = 10,
    **overrides,
) -> Diagnosis:
    """Diagnose the deployment of `model` with the given overrides against its correct deployment.

    Args:
        model: the deployed artifact (.pt, .onnx, OpenVINO folder, .torchscript, .tflite) or 'demo'.
        data: a data YAML: its val split is the labelled control set, its train split the training distribution.
        images_dir: a folder of production images (default: the data's val images).
        reference: the artifact the deployment was derived from (default: `model` itself with the default
            pipeline); a .pt reference is also what re-exports start from.
        imgsz: the deployment's input size (default: the model's own: a static export's, else its training size).
        training_dir: a folder of training images for the data check (default: the data's train split).
        overrides: the deployment's preprocessing (color, scale, mean, std, resize, pad_value, layout) and
            postprocessing (conf, iou, max_det), as `Preprocessing` and `Postprocessing` name them.
    Raises:
        ConfigError: an unknown override, no images, or a model that does not resolve.
    """
    unknown = sorted(set(overrides) - set(PRE_OVERRIDES) - set(POST_OVERRIDES))
    if unknown:
        raise ConfigError(f"unknown option(s) {', '.join(unknown)}", f"use {', '.join(PRE_OVERRIDES + POST_OVERRIDES)}")
    artifact = _artifact(model)
    reference_artifact = _artifact(reference) if reference is not None else artifact
    reference_spec = DeploymentSpec(reference_artifact, imgsz=_own_imgsz(reference_artifact))
    deployment = DeploymentSpec(
        artifact,
        imgsz=imgsz or _own_imgsz(artifact),
        preprocessing=replace(Preprocessing(), **_picked(overrides, PRE_OVERRIDES)),
        postprocessing=replace(Postprocessing(), **_picked(overrides, POST_OVERRIDES)),
    )
    images = _images(images_dir, data)
    training = list_folder(training_dir) if training_dir is not None else None
    weights = reference_artifact if str(reference_artifact).endswith(".pt") else None
    return diagnose_accuracy(
        deployment,
        reference_spec,
        images,
        labelled=data,
        training_images=training,
        reference_weights=weights,
        workspace=workspace,
        out_dir=out_dir,
        time_limit_s=time_limit_s,
    )


def _picked(overrides: dict, names) -> dict:
    picked = {k: v for k, v in overrides.items() if k in names and v is not None}
    for key in ("mean", "std"):
        if key in picked:
            picked[key] = tuple(float(v) for v in picked[key])
    return picked


def _artifact(model) -> Path:
    from ...models.sources import SourceKind, resolve

    source = resolve(model)
    if source.kind not in (SourceKind.DEMO, SourceKind.WEIGHTS, SourceKind.EXPORTED):
        raise ConfigError(f"{model} is not a model file here", "pass a .pt, an export, or 'demo'")
    return Path(source.ref)


def _own_imgsz(artifact: Path) -> int:
    """A static export's input size, else the size the .pt was trained at, else 640."""
    from ...models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz
    from ...models.runners import RuntimeOptions, open_runner

    if artifact.suffix == ".pt":
        return checkpoint_imgsz(artifact) or DEFAULT_IMGSZ
    shape = open_runner(artifact, RuntimeOptions(threads=1)).input_shape
    return int(shape[2]) if len(shape) == 4 and shape[2] > 0 else DEFAULT_IMGSZ


def list_folder(folder) -> list[Path]:
    """The image files of a folder, sorted.

    Raises:
        ConfigError: the folder does not exist or holds no image.
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise ConfigError(f"{folder} is not a folder", "pass the folder that holds the production images")
    found = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not found:
        raise ConfigError(f"{folder} holds no image ({', '.join(IMAGE_SUFFIXES)})", "pass a folder of images")
    return found


def _images(images_dir, data) -> list[Path]:
    if images_dir is not None:
        return list_folder(images_dir)
    if data is None:
        raise ConfigError("no production images", "pass --images DIR (or --data DATA.yaml to use its val images)")
    from ...data.checks import list_images

    return list_images(data, "val")


def describe_diagnosis(diagnosis: Diagnosis) -> str:
    """The diagnosis as text: the sentence, then one line per finding (verdict, check, title, fix, after)."""
    lines = [diagnosis.sentence(), ""]
    for finding in diagnosis.findings:
        lines.append(f"{finding.verdict.value:12s} {finding.check:16s} {finding.title}")
        if finding.verdict.value != "ok" and finding.fix:
            lines.append(f"{'':29s} fix: {finding.fix}")
        if finding.after:
            lines.append(f"{'':29s} after the fix: {finding.after}")
        for picture in finding.pictures:
            lines.append(f"{'':29s} picture: {picture}")
    return "\n".join(lines)
