"""The environment and re-export checks: is the fault in how the artifact was made (export settings, quantization)
or in where it runs (library versions, the precision actually executed), rather than in the pipeline around it?

Re-export: the deployment's artifact is first run with the reference's own pre- and postprocessing. If it then
agrees with the reference, the artifact is sound and the fault is in the pipeline. If not, the reference's weights
are re-exported to the same format in fp32 (static at the same size), then with one setting changed at a time
(simplify off, another ONNX opset, dynamic shape), and each re-export's parity with the reference is measured
(`measure.parity`), within a time budget: an fp32 re-export that passes while the deployment fails points at the
deployment's precision (int8 quantization, fp16) or its original export settings. For an INT8 ONNX deployment the
rest of the budget locates the layers whose quantization hurts most and keeps them in float (`layers`).
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from ...environment import fingerprint
from ...measure.parity import ParityConfig, compare
from ...models.detector import Detector
from ...store.atomic import scratch
from ...store.records import Format
from ..findings import Finding, Verdict
from .run import AGREE, differences, run_on

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

OTHER_OPSET = 17  # Ultralytics exports opset 18 with torch 2.14; 17 predates opset 18's Resize and Reduce changes
REEXPORTS = (
    ("fp32", {}),
    ("fp32, simplify off", {"simplify": False}),
    (f"fp32, opset {OTHER_OPSET}", {"opset": OTHER_OPSET}),  # ONNX only
    ("fp32, dynamic", {"dynamic": True}),
)


def runners_of(subject, reference_detector):
    """The deployment's runner (None for a callable without artifact) and the reference's."""
    if subject.is_spec:
        return subject.detector.runner, reference_detector.runner
    if subject.artifact is not None:
        from ...models.runners import open_runner

        try:
            return open_runner(subject.artifact), reference_detector.runner
        except Exception:  # reported as unknown precision
            return None, reference_detector.runner
    return None, reference_detector.runner


def environment_check(subject, reference_detector, workspace: Workspace | None = None) -> Finding:
    """Library versions, runtime, executed precision and CPU flags against the reference's validation."""
    runner, ref_runner = runners_of(subject, reference_detector)
    now = fingerprint()
    evidence = {
        "deployment": _executed(runner),
        "reference": _executed(ref_runner),
        "libraries": {k: v for k, v in now["libraries"].items() if v},
        "isa": now["cpu"]["isa"],
    }
    problems = []
    if runner is not None and runner.precision != ref_runner.precision:
        problems.append(
            (
                "precision_executed",
                f"the deployment computes in {runner.precision}, the reference in {ref_runner.precision}",
                "run in the reference's precision (OpenVINO: precision='f32')",
            )
        )
    recorded = _recorded(workspace, reference_detector.spec.artifact) if workspace is not None else None
    if recorded:
        evidence["validated_with"] = recorded
        changed = {
            k: [v, now["libraries"].get(k)]
            for k, v in recorded["libraries"].items()
            if v and now["libraries"].get(k) != v
        }
        isa = sorted(set(recorded["isa"]) ^ set(now["cpu"]["isa"]))
        if changed or isa:
            evidence.update(changed_libraries=changed, changed_isa=isa)
            problems.append(
                (
                    "environment_changed",
                    f"the environment differs from the one the reference was "
                    f"validated in ({', '.join(changed) or 'CPU flags ' + ', '.join(isa)})",
                    "validate again here, or pin the library versions the reference was validated with",
                )
            )
    else:
        evidence["validated_with"] = "this process (no workspace measurement of the reference)"
    if not problems:
        return Finding(
            "environment", Verdict.OK, "runtime precision and environment match the reference's", evidence=evidence
        )
    cause, title, fix = problems[0]
    return Finding("environment", Verdict.SUSPECT, title, fix, cause, evidence, strength=0.4)


def _executed(runner) -> dict | None:
    if runner is None:
        return None
    return {"runtime": runner.runtime, "precision": runner.precision, "input_shape": list(runner.input_shape)}


def _recorded(workspace: Workspace, artifact) -> dict | None:
    """The fingerprint and precision recorded with the reference's latest ok accuracy measurement in the ledger."""
    target = Path(artifact).resolve()
    for variant in workspace.ledger.variants(newest_first=True):
        if variant.path is None or (workspace.root / variant.path).resolve() != target:
            continue
        rows = [m for m in workspace.ledger.measurements(variant_id=variant.id, kind="accuracy") if m.ok]
        prints = {f["id"]: f["data"] for f in workspace.ledger.fingerprints()}
        if rows and rows[-1].fingerprint_id in prints:
            data = prints[rows[-1].fingerprint_id]
            return {
                "libraries": data["libraries"],
                "isa": data["cpu"]["isa"],
                "precision": rows[-1].context.get("precision"),
                "measurement": rows[-1].id,
            }
    return None


def artifact_check(
    subject, reference_detector, reference_weights, images, paths, ref_dets, *, budget_s: float = 120.0
) -> Finding:
    """Separate an export or quantization fault from a pipeline fault (see the module's docstring)."""
    runner, ref_runner = runners_of(subject, reference_detector)
    reference = reference_detector.spec
    if runner is None:
        return Finding("re-export", Verdict.OK, "not checked: the callable names no artifact (pass artifact=)")
    artifact = Path(runner.path)
    if artifact.resolve() == Path(reference.artifact).resolve():
        return Finding("re-export", Verdict.OK, "the deployment runs the reference's own artifact")
    static = runner.input_shape[2] if len(runner.input_shape) == 4 and runner.input_shape[2] > 0 else reference.imgsz
    own = replace(reference, artifact=artifact, imgsz=int(static))
    alone = differences(ref_dets, run_on(_tolerant(Detector(own, runner)), images))
    evidence = {
        "artifact": artifact.name,
        "precision": runner.precision,
        "alone_agreement": round(alone["agreement"], 4),
    }
    if alone["agreement"] >= AGREE:
        return Finding(
            "re-export",
            Verdict.OK,
            "the artifact agrees with the reference when given the reference's "
            "pre- and postprocessing: any fault is in the pipeline, not the export",
            evidence=evidence,
        )
    started = time.monotonic()
    with scratch("doctor-reexport-") as tmp:
        found = _reexport(runner, reference_detector, reference_weights, paths, evidence, budget_s, Path(tmp))
        if found.cause != "int8_quantization":
            return found
        from .layers import quantized_layers

        left = budget_s - (time.monotonic() - started)
        weights = _weights(reference_weights, reference)
        return quantized_layers(found, own, reference_detector, weights, images, ref_dets, Path(tmp), left)


def _weights(weights, reference) -> Path | None:
    if weights:
        return Path(weights)
    return Path(reference.artifact) if str(reference.artifact).endswith(".pt") else None


def _tolerant(detector):
    from .pipeline import _safe

    return _safe(detector)


def _precision_cause(precision: str) -> tuple[str, str, str]:
    if "int8" in precision:
        return (
            "int8_quantization",
            "the INT8 quantization broke the model (the fp32 export of the same weights "
            "agrees): calibration images unlike the real ones, or layers that do not tolerate int8",
            "re-quantize with a few hundred calibration images from the training/production distribution, or "
            "keep the sensitive layers in float (NNCF accuracy control: max_drop=0.01)",
        )
    if precision in ("fp16", "bf16"):
        return (
            "reduced_precision",
            f"the {precision} artifact differs from the fp32 export of the same weights",
            "deploy the fp32 export, or keep the head in fp32",
        )
    return (
        "export_settings",
        "the artifact differs from a fresh fp32 export of the same weights (its export settings or exporter version)",
        "re-export the weights with the workbench (ExportConfig defaults)",
    )


def _reexport(runner, reference_detector, weights, paths, evidence, budget_s: float, folder: Path) -> Finding:
    cause, title, fix = _precision_cause(runner.precision)
    weights = _weights(weights, reference_detector.spec)
    try:
        fmt = Format.of_path(runner.path)
    except ValueError:
        fmt = None
    if weights is None or fmt in (None, Format.PYTORCH):
        evidence["reexport"] = (
            "not run: no reference .pt to re-export (pass reference_weights=)"
            if weights is None
            else "not run: the deployment is a .pt"
        )
        verdict = Verdict.CAUSE if "int8" in runner.precision else Verdict.SUSPECT
        return Finding(
            "re-export",
            verdict,
            title if verdict is Verdict.CAUSE else "the artifact itself disagrees with the reference",
            fix,
            cause if verdict is Verdict.CAUSE else "artifact_differs",
            evidence,
            strength=0.6,
        )
    tried = _try_reexports(weights, fmt, reference_detector, paths, budget_s, folder)
    evidence["reexports"] = tried
    passed = [t for t in tried if t.get("verdict") == "pass"]
    if passed and passed[0]["settings"] == "fp32":
        after = {"match_rate": passed[0]["match_rate"], "mean_iou": passed[0]["mean_iou"]}
        return Finding("re-export", Verdict.CAUSE, title, fix, cause, evidence, after, strength=0.85)
    if passed:
        setting = passed[0]["settings"]
        return Finding(
            "re-export",
            Verdict.CAUSE,
            f"the export fails parity unless exported with {setting}",
            f"re-export with {setting}",
            "export_settings",
            evidence,
            {"match_rate": passed[0]["match_rate"]},
            strength=0.7,
        )
    return Finding(
        "re-export",
        Verdict.CAUSE if tried else Verdict.SUSPECT,
        f"no re-export in {fmt.value} agrees with the reference: the runtime or the format itself is at fault here",
        "deploy another runtime, or report the mismatch with the parity evidence",
        "export_fault",
        evidence,
        strength=0.6,
    )


def _try_reexports(weights: Path, fmt: Format, reference_detector, paths, budget_s: float, folder: Path) -> list[dict]:
    from ...models.export import ExportConfig, export_artifact
    from ...models.runners import open_runner

    start, tried = time.monotonic(), []
    reference, ref_runner = reference_detector.spec, reference_detector.runner
    for index, (name, change) in enumerate(REEXPORTS):
        if "opset" in change and fmt is not Format.ONNX:
            continue
        if time.monotonic() - start > budget_s:
            tried.append({"settings": name, "verdict": "skipped", "reason": f"past the {budget_s:g} s budget"})
            continue
        config = ExportConfig(format=fmt.value, imgsz=reference.imgsz, **change)
        try:
            out = export_artifact(weights, config, folder / f"re{index}{_suffix(fmt)}")
            result = compare(
                ref_runner, open_runner(out), list(paths), ParityConfig(imgsz=reference.imgsz, images=len(paths))
            )
        except Exception as exc:  # an export that fails is evidence too
            tried.append({"settings": name, "verdict": "error", "error": f"{type(exc).__name__}: {str(exc)[:200]}"})
            continue
        tried.append(
            {
                "settings": name,
                "verdict": result.verdict,
                "match_rate": round(result.match_rate, 4),
                "mean_iou": round(result.mean_iou, 4),
                "max_abs_diff": round(result.max_abs_diff, 5),
            }
        )
        if result.verdict == "pass":
            break
    return tried


def _suffix(fmt: Format) -> str:
    return {
        Format.ONNX: ".onnx",
        Format.OPENVINO: "_openvino_model",
        Format.TORCHSCRIPT: ".torchscript",
        Format.TFLITE: ".tflite",
    }[fmt]
