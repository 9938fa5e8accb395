"""Where the time of one image goes: per stage (decode, preprocess, inference, postprocess) beside the deployment's
end-to-end call, and per layer from the runtime's own profiler (OpenVINO performance counters, ONNX Runtime
profiling, the PyTorch profiler).

A deployment that exposes `preprocess(image)` has it timed beside the reference `prepare`; for a black box the
reference pipeline's stages are timed beside it, to show what inference alone costs.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path

from ...environment import usable_cores
from ...models.detector import decode, nms, open_detector, prepare, to_original
from ..findings import Finding, Verdict
from .timing import CAUSE_RATIO, compare_calls, cycling, inconclusive_title, strength

TOP_LAYERS = 5


def check_profile(study) -> Finding:
    """Stages and top layers; names a slow preprocessing where the deployment exposes it."""
    detector = _pipeline(study)
    if detector is None:
        return Finding("profile", Verdict.OK, "profile: no pipeline to profile", "pass reference_model=")
    spec, runner = detector.spec, detector.runner
    prepared = [prepare(i, spec.imgsz, spec.preprocessing) for i in study.images]
    raws = [runner(p.batch)[0] for p in prepared]
    calls = {
        "end to end": study.baseline,
        "preprocess": cycling(lambda i: prepare(i, spec.imgsz, spec.preprocessing), study.images),
        "inference": cycling(lambda p: runner(p.batch), prepared),
        "postprocess": cycling(lambda pair: _post(pair, spec), list(zip(raws, prepared, strict=True))),
    }
    if study.encoded:
        calls["decode"] = cycling(decode, study.encoded)
    if study.subject.preprocess is not None:
        calls["deployment preprocess"] = cycling(study.subject.preprocess, study.images)
    result = compare_calls(calls, rounds=study.rounds, round_s=study.round_s / 2)
    ms = result.p50_ms
    evidence = {**result.evidence(), "stages_of": _named(detector, study), "layers": _layers_safely(runner, prepared)}
    if "deployment preprocess" in ms:
        return _preprocess_verdict(ms, evidence, result.bound("deployment preprocess", "preprocess"))
    inside = ms["preprocess"] + ms["inference"] + ms["postprocess"]
    title = (
        f"{ms['end to end']:.1f} ms end to end; the pipeline's preprocess {ms['preprocess']:.2f}, inference "
        f"{ms['inference']:.2f}, postprocess {ms['postprocess']:.2f} ms"
    )
    outside = ms["end to end"] / inside if inside > 0 else 1.0
    if study.subject.spec is None and outside >= CAUSE_RATIO:
        title += f": {ms['end to end'] - inside:.1f} ms of each call is spent outside the model's own pipeline"
        fix = "profile your code around the model (image copies, conversions, per-call set-up)"
        return Finding("profile", Verdict.SUSPECT, title, fix, "slow_code_around_model", evidence, strength=0.3)
    return Finding("profile", Verdict.OK, title, "", None, evidence)


def _preprocess_verdict(ms: dict, evidence: dict, bound) -> Finding:
    own, reference, total = ms["deployment preprocess"], ms["preprocess"], ms["end to end"]
    ratio = own / reference if reference > 0 else 1.0
    share = own / total if total > 0 else 0.0
    saving = total / max(total - own + reference, 1e-6)
    evidence |= {"preprocess_ratio": round(ratio, 1), "preprocess_share": round(share, 2), "bound": bound.as_dict()}
    title = (
        f"preprocessing takes {own:.1f} ms of {total:.1f} ms ({share:.0%}), {ratio:.0f}x what a vectorised "
        f"letterbox (cv2.resize + numpy) takes ({reference:.2f} ms)"
    )
    if ratio >= CAUSE_RATIO and share >= 0.3 and bound.low < CAUSE_RATIO:  # the rounds disagree: a busy machine
        fix = "replace any per-pixel Python loop with cv2.resize and whole-array numpy, then run the doctor again"
        return Finding("profile", Verdict.INCONCLUSIVE, inconclusive_title(title, bound), fix, None, evidence)
    if ratio >= CAUSE_RATIO and share >= 0.3:
        fix = "replace the Python loop with cv2.resize and whole-array numpy (detector.prepare does it)"
        after = {"p50_ms": round(total - own + reference, 2)}
        return Finding(
            "profile", Verdict.CAUSE, title, fix, "slow_preprocess", evidence, after, strength=strength(saving)
        )
    return Finding("profile", Verdict.OK, title, "", None, evidence)


def _post(pair, spec):
    raw, prepared = pair
    rows = nms(raw, spec.postprocessing)
    rows[:, :4] = to_original(rows[:, :4], prepared)
    return rows


def _pipeline(study):
    """The deployment's own loaded pipeline where it has one, else the reference model in OpenVINO."""
    detect = study.subject.detect
    if getattr(detect, "runner", None) is not None and getattr(detect, "spec", None) is not None:
        return detect
    base = study.base_spec()
    artifact = study.artifact_for("openvino") if base is not None else None
    if artifact is None:
        return None
    return open_detector(replace(base, artifact=artifact, threads=usable_cores(), precision=None))


def _named(detector, study) -> str:
    own = detector is study.subject.detect
    return f"{'the deployment' if own else 'the reference pipeline'} ({detector.runner.runtime})"


def _layers_safely(runner, prepared) -> list[dict] | dict:
    try:
        return top_layers(runner, prepared[0].batch)
    except Exception as exc:  # a profiler missing or refusing this artifact must not hide the stages
        return {"error": f"{type(exc).__name__}: {str(exc)[:200]}"}


def top_layers(runner, batch, runs: int = 3) -> list[dict]:
    """The layers that take the most time, from the runtime's own profiler, ms per inference."""
    profile = {"openvino": _openvino_layers, "onnxruntime": _onnxruntime_layers, "pytorch": _pytorch_layers}
    if runner.runtime not in profile:
        return []
    totals = profile[runner.runtime](runner, batch, runs)
    ranked = sorted(totals.items(), key=lambda kv: -kv[1]["ms"])[:TOP_LAYERS]
    return [{"layer": name, **info, "ms": round(info["ms"] / runs, 3)} for name, info in ranked]


def _openvino_layers(runner, batch, runs) -> dict:
    """OpenVINO performance counters (PERF_COUNT) of a compile with the runner's threads and precision."""
    import openvino as ov

    path = runner.path
    xml = path if path.suffix == ".xml" else next(path.glob("*.xml"))
    config = {"PERF_COUNT": True, "INFERENCE_NUM_THREADS": runner.context.get("threads", usable_cores())}
    if runner.context.get("precision_hint"):
        config["INFERENCE_PRECISION_HINT"] = runner.context["precision_hint"]
    request = ov.Core().compile_model(str(xml), "CPU", config).create_infer_request()
    request.infer({0: batch})
    totals: dict = {}
    for _ in range(runs):
        request.infer({0: batch})
        for info in request.profiling_info:
            entry = totals.setdefault(info.node_name, {"type": info.node_type, "exec": info.exec_type, "ms": 0.0})
            entry["ms"] += info.real_time.total_seconds() * 1000
    return totals


def _onnxruntime_layers(runner, batch, runs) -> dict:
    """ONNX Runtime's own profiling (enable_profiling): kernel time per node."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as folder:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "ort")
        options.intra_op_num_threads = runner.context.get("threads", usable_cores())
        session = ort.InferenceSession(str(runner.path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        for _ in range(runs):
            session.run(None, {name: batch})
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict = {}
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            node = event["name"].removesuffix("_kernel_time")
            entry = totals.setdefault(node, {"type": event.get("args", {}).get("op_name", ""), "ms": 0.0})
            entry["ms"] += event.get("dur", 0) / 1000
    return totals


def _pytorch_layers(runner, batch, runs) -> dict:
    """The PyTorch profiler's operators by self CPU time."""
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU]) as recorded:
        for _ in range(runs):
            runner(batch)
    return {
        event.key: {"type": "aten op", "ms": event.self_cpu_time_total / 1000, "calls": event.count}
        for event in recorded.key_averages()
    }
