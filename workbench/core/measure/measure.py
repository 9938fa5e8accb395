"""Measure recorded variants: latency (with stages and throughput), accuracy and parity, each into the ledger.

A row that fails (artifact does not load, shape not accepted, runtime missing, image does not decode) is
recorded as a failed measurement with its cause, and the study goes on with the other rows.
"""

from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict
from functools import lru_cache, partial
from pathlib import Path

import numpy as np

from ..environment import gemm_gflops, usable_cores
from ..errors import Cancelled, WorkbenchError
from ..models.inference import stage_breakdown
from ..models.runners import ArtifactLoadError, RuntimeOptions, example_input, open_runner, runtime_for
from ..progress import ProgressFn, emit
from .accuracy import AccuracyConfig, evaluate
from .latency import LatencyConfig, measure_throughput, time_calls
from .parity import ParityConfig, compare


def variant_gflops(workspace, variant_id: int, imgsz: int) -> float | None:
    """GFLOPs per image of a variant at `imgsz`, from its nearest PyTorch ancestor (exports keep the graph)."""
    for row in workspace.ledger.lineage(variant_id):
        if row["path"] and row["path"].endswith(".pt"):
            return _gflops(str(workspace.root / row["path"]), imgsz)
    return None


@lru_cache(maxsize=64)
def _gflops(path: str, imgsz: int) -> float:
    from ..models.sources import load_model, model_info

    return model_info(load_model(path), imgsz)["gflops"]


def _record_failure(workspace, variant_id: int, kind: str, error: Exception, context: dict) -> int:
    problem = getattr(error, "problem", str(error))
    fix = getattr(error, "fix", "")
    return workspace.ledger.add_measurement(variant_id, kind, {"error": problem, "fix": fix},
                                            {**context, "status": "failed"})


def measure_latency(workspace, variant_id: int, options: RuntimeOptions = RuntimeOptions(), *, imgsz: int = 640,
                    batch: int = 1, config: LatencyConfig = LatencyConfig(), images: list[Path] | None = None,
                    throughput_jobs: int = 0, throughput_s: float = 2.0, progress: ProgressFn | None = None) -> int:
    """Time one variant under one runtime setting and record it (or the failure) as a `latency` measurement.

    Args:
        options: threads, OpenVINO precision hint, performance hint, streams, ORT graph optimization.
        imgsz, batch: input shape; a static artifact must match it.
        config: warm-up and run sizing.
        images: real images for the decode / preprocess / inference / postprocess breakdown (batch 1 only).
        throughput_jobs: when > 0, also measure asynchronous throughput with that many requests in flight,
            for `throughput_s` seconds.
    Returns:
        the measurement id.
    """
    path = workspace.artifact_path(variant_id)
    context = {"imgsz": imgsz, "batch": batch, "options": asdict(options), "warmup_runs": config.warmup_runs,
               "warmup_s": config.warmup_s, "min_runs": config.min_runs, "min_time_s": config.min_time_s}
    try:
        context["runtime"] = runtime_for(path)
        emit(progress, "latency", 0, 1, f"{path.name} {context['runtime']} {imgsz}px")
        runner = open_runner(path, options)
        context.update({"runtime": runner.runtime, "precision": runner.precision, **runner.context})
        x = example_input(runner, imgsz, batch)
        if tuple(x.shape) != (batch, 3, imgsz, imgsz):
            raise ArtifactLoadError(f"{path.name} is exported for input {tuple(x.shape)}, not "
                                    f"{(batch, 3, imgsz, imgsz)}", "export it at this imgsz and batch, or dynamic")
        runner(x)  # a shape the artifact refuses fails here, before timing
        if runner.internal_ms is not None:
            runner.internal_ms.clear()
        stats = time_calls(lambda: runner(x), config)
        gflops = variant_gflops(workspace, variant_id, imgsz)
        metrics = {**stats.summary(), "samples_ms": stats.samples_ms, "load_ms": runner.load_ms, "gflops": gflops,
                   "gops_per_s": gflops * batch / (stats.p50_ms / 1000) if gflops else None,
                   "machine_gemm_gflops": gemm_gflops(options.thread_count)}
        if runner.internal_ms:  # the runtime's own time of the measured runs: p50 minus it is the call overhead
            internal = float(np.median(runner.internal_ms[-stats.runs:]))
            metrics.update(runtime_internal_p50_ms=internal, call_overhead_ms=stats.p50_ms - internal)
        if images and batch == 1:
            stages = stage_breakdown(runner, images, imgsz, LatencyConfig(warmup_runs=2, warmup_s=0.2, min_runs=10,
                                                                          min_time_s=0.5))
            metrics["stages"] = {name: s.summary() for name, s in stages.items()}
        if throughput_jobs:
            metrics["throughput"] = asdict(measure_throughput(runner, x, jobs=throughput_jobs, seconds=throughput_s))
    except Cancelled:
        raise  # a cancel is not a failed measurement: nothing is recorded
    except (WorkbenchError, OSError) as exc:
        return _record_failure(workspace, variant_id, "latency", exc, context)
    emit(progress, "latency", 1, 1, f"{path.name} p50 {stats.p50_ms:.1f} ms")
    return workspace.ledger.add_measurement(variant_id, "latency", metrics, {**context, "status": "ok"})


@contextmanager
def _openvino_precision(precision: str | None):
    """Make Ultralytics' OpenVINO backend compile with an explicit precision hint for the duration."""
    if precision is None:
        yield
        return
    from ultralytics.nn.autobackend import AutoBackend
    from ultralytics.nn.backends.openvino import OpenVINOBackend

    class HintedOpenVINOBackend(OpenVINOBackend):
        def load_model(self, weight):
            super().load_model(weight)
            xml = Path(weight) if Path(weight).is_file() else next(Path(weight).glob("*.xml"))
            core = self.ov.Core()
            config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
            self.compile_model = partial(core.compile_model, device_name="CPU", config=config)
            self.ov_compiled_model = self.compile_model(core.read_model(str(xml)))

    original = AutoBackend._BACKEND_MAP["openvino"]
    AutoBackend._BACKEND_MAP["openvino"] = HintedOpenVINOBackend
    try:
        yield
    finally:
        AutoBackend._BACKEND_MAP["openvino"] = original


def accuracy_context(config: AccuracyConfig, data_yaml: Path | str, options: RuntimeOptions = RuntimeOptions(),
                     **extra) -> dict:
    """The context an accuracy measurement is stored with."""
    return {"imgsz": config.imgsz, "split": config.split, "batch": config.batch, "conf": config.conf,
            "iou": config.iou, "device": config.device, "threads": config.threads or usable_cores(),
            "data_yaml": str(data_yaml), "options": asdict(options), **extra}


def evaluate_variant(workspace, variant_id: int, data_yaml: Path | str, config: AccuracyConfig = AccuracyConfig(),
                     options: RuntimeOptions = RuntimeOptions(), *, progress: ProgressFn | None = None) -> int:
    """mAP of a variant in its own runtime (OpenVINO with the given precision hint); recorded as `accuracy`."""
    path = workspace.artifact_path(variant_id)
    context = accuracy_context(config, data_yaml, options)
    try:
        context["runtime"] = runtime_for(path)
        context["precision"] = open_runner(path, options).precision  # what this setting computes in
        from ..models.sources import load_model

        with _openvino_precision(options.precision if context["runtime"] == "openvino" else None):
            result = evaluate(load_model(path), data_yaml, config, progress=progress)
    except Cancelled:
        raise
    except WorkbenchError as exc:
        return _record_failure(workspace, variant_id, "accuracy", exc, context)
    return workspace.ledger.add_measurement(variant_id, "accuracy", result.metrics(), {**context, "status": "ok"})


def check_parity(workspace, child_id: int, images: list[Path], config: ParityConfig = ParityConfig(), *,
                 parent_id: int | None = None, options: RuntimeOptions = RuntimeOptions(precision="f32"),
                 progress: ProgressFn | None = None) -> int:
    """Compare a variant with its parent (or `parent_id`) on real images; recorded as `parity`.

    The child runs with `options` (OpenVINO f32 by default, so the export itself is checked, not bf16).
    """
    parent_id = parent_id or workspace.ledger.lineage(child_id)[1]["id"]
    context = {"parent_id": parent_id, "imgsz": config.imgsz, "images": config.images, "conf": config.conf}
    try:
        parent = open_runner(workspace.artifact_path(parent_id), RuntimeOptions())
        child_path = workspace.artifact_path(child_id)
        child = open_runner(child_path, options if runtime_for(child_path) == "openvino" else RuntimeOptions())
        context.update(parent_runtime=parent.runtime, child_runtime=child.runtime, child_precision=child.precision)
        result = compare(parent, child, images, config, progress=progress)
    except Cancelled:
        raise
    except WorkbenchError as exc:
        return _record_failure(workspace, child_id, "parity", exc, context)
    return workspace.ledger.add_measurement(child_id, "parity", result.metrics(), {**context, "status": "ok"})
