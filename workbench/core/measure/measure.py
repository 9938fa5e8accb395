"""The one entry point every caller measures a recorded variant through: `measure(workspace, variant_id, plan)`.

A plan resolves into rows (image size x OpenVINO precision hint). Each row opens the artifact once, with the row's
precision and threads, and that one runner serves the row's latency, stage breakdown, accuracy and parity. Every
result lands in the ledger with its context; a row that cannot run (artifact does not load, shape not accepted,
runtime missing, image does not decode) is recorded as a failed measurement with its cause, and the rest goes on.

A latency row can carry an estimate of itself made before it was timed (`estimate=`: the advisor's estimator, handed
in by the layer that composes the two), so how far the estimates are off is recorded as the ledger grows.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..data.checks import list_images
from ..data.identity import evaluation_set
from ..environment import gemm_gflops
from ..errors import Cancelled, ConfigError, WorkbenchError
from ..models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz
from ..models.runners import ArtifactLoadError, Runtime, example_input, open_runner, runtime_for
from ..progress import ProgressFn, emit
from ..store.evaluation_sets import CONTEXT_KEY as EVALUATION_SET
from ..store.records import Variant
from .accuracy import AccuracyConfig, runner_accuracy
from .latency import measure_throughput, time_calls
from .parity import ParityConfig, compare
from .plan import MeasurePlan
from .stages import stage_breakdown

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

CONVERSIONS = ("export", "quantize")  # steps whose output should compute what its parent computes: parity applies


class RowEstimator(Protocol):
    """What a latency row is estimated by before it is recorded: the row's settings in, the estimate out (a dict
    with at least `p50_ms`; empty when nothing can be estimated), from the rows already in the ledger."""

    def __call__(
        self, workspace: Workspace, variant_id: int, runtime: str, precision: str | None, imgsz: int,
        gflops: float | None, threads: int | None, gemm: float | None,
    ) -> dict: ...  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One setting a variant is measured in: an input size and, for OpenVINO, a precision hint."""

    imgsz: int
    precision: str | None


def measure(
    workspace: Workspace,
    variant_id: int,
    plan: MeasurePlan = MeasurePlan(),
    data_yaml: Path | str | None = None,
    *,
    estimate: RowEstimator | None = None,
    progress: ProgressFn | None = None,
) -> list[int]:
    """Measure one variant as `plan` says and record every result (or failure) in the ledger.

    Args:
        data_yaml: the dataset whose `plan.split` accuracy, stage breakdown and parity use (needed for those).
        estimate: estimates each latency row before it is recorded; its answer, with how far off it was
            (`error_pct`), is stored in the row's metrics under "estimate". None: no estimate is stored.
    Returns:
        the measurement ids, in the order recorded.
    Raises:
        ConfigError: the plan needs data and none was given.
        Cancelled: from `progress`; what this call recorded is removed again first.
    """
    if data_yaml is None and (plan.accuracy or plan.parity or plan.stage_images):
        raise ConfigError("accuracy, parity and the stage breakdown need a dataset", "pass data_yaml=")
    variant = workspace.variant(variant_id)
    path = workspace.artifact_path(variant_id)
    ids: list[int] = []
    try:
        for row in plan_rows(workspace, variant, plan):
            ids += _measure_row(workspace, variant, path, row, plan, data_yaml, ids, estimate, progress)
    except Cancelled:
        workspace.ledger.remove_measurements(ids)  # a cancelled run leaves the ledger as it was
        raise
    return ids


def plan_rows(workspace: Workspace, variant: Variant, plan: MeasurePlan) -> list[Row]:
    """The rows a plan gives for a variant: its own size if it is a static export, else the plan's or its training
    size; each OpenVINO precision hint of the plan for OpenVINO artifacts."""
    static = static_imgsz(variant)
    sizes = (static,) if static else (plan.imgsz or (native_imgsz(workspace, variant.id),))
    openvino = runtime_for(workspace.artifact_path(variant.id)) is Runtime.OPENVINO
    precisions = plan.precisions if openvino else (None,)
    return [Row(size, precision) for size in sizes for precision in precisions]


def static_imgsz(variant: Variant) -> int | None:
    """The input size an exported variant was made for (None for PyTorch models and dynamic exports)."""
    if variant.is_pytorch or variant.params.get("dynamic"):
        return None
    value = variant.params.get("imgsz") or variant.params.get("export_imgsz")
    return int(value) if value else None


def native_imgsz(workspace: Workspace, variant_id: int) -> int:
    """The size a variant's model was trained at: its own checkpoint's, or its nearest PyTorch ancestor's."""
    for ancestor in workspace.lineage(variant_id):
        if ancestor.is_pytorch and ancestor.path:
            return checkpoint_imgsz(workspace.root / ancestor.path) or DEFAULT_IMGSZ
    return DEFAULT_IMGSZ


def _measure_row(workspace: Workspace, variant, path, row, plan, data_yaml, done_ids, estimate, progress) -> list[int]:
    options = plan.options(row.precision)
    context = {"runtime": str(runtime_for(path)), "imgsz": row.imgsz, "batch": 1, "options": asdict(options)}
    emit(progress, "latency", 0, 1, f"{path.name} {context['runtime']} {row.imgsz}px {row.precision or ''}".strip())
    try:
        runner = open_runner(path, options)
    except Cancelled:
        raise
    except (WorkbenchError, OSError) as exc:
        kinds = [k for k in ("latency", "accuracy") if getattr(plan, k)]
        return [_record_failure(workspace, variant.id, kind, exc, context) for kind in kinds]
    context.update({"runtime": str(runner.runtime), "precision": runner.precision, **runner.context})
    ids = []
    if plan.latency:
        ids.append(_latency(workspace, variant, runner, row, plan, data_yaml, context, estimate, progress))
    if plan.accuracy and not _accuracy_done(workspace, done_ids + ids, row, plan, context):
        ids.append(_accuracy(workspace, variant, runner, row, plan, data_yaml, context, progress))
    parents = workspace.lineage(variant.id)[1:2]
    if plan.parity and parents and variant.step in CONVERSIONS:
        ids.append(_parity(workspace, variant, parents[0], runner, row, plan, data_yaml, context, progress))
    return ids


def _latency(workspace: Workspace, variant, runner, row, plan, data_yaml, context, estimate, progress) -> int:
    timing = plan.timing()
    context = {**context, **{k: getattr(timing, k) for k in ("warmup_runs", "warmup_s", "min_runs", "min_time_s")}}
    try:
        x = example_input(runner, row.imgsz)
        if tuple(x.shape) != (1, 3, row.imgsz, row.imgsz):
            raise ArtifactLoadError(
                f"{runner.path.name} is exported for input {tuple(x.shape)}, not {(1, 3, row.imgsz, row.imgsz)}",
                "export it at this imgsz, or with dynamic=True",
            )
        runner(x)  # a shape the artifact refuses fails here, before timing
        if runner.internal_ms is not None:
            runner.internal_ms.clear()
        stats = time_calls(lambda: runner(x), timing)
        gflops = variant_gflops(workspace, variant.id, row.imgsz)
        metrics = {
            **stats.summary(),
            "samples_ms": stats.samples_ms,
            "load_ms": runner.load_ms,
            "gflops": gflops,
            "gops_per_s": gflops / (stats.p50_ms / 1000) if gflops else None,
            "machine_gemm_gflops": gemm_gflops(runner.context.get("threads") or 1),
        }
        if estimate is not None:
            metrics["estimate"] = _estimate(estimate, workspace, variant, runner, row, metrics, stats.p50_ms)
        if runner.internal_ms:  # the runtime's own time of the measured runs: p50 minus it is the call overhead
            internal = float(np.median(runner.internal_ms[-stats.runs :]))
            metrics.update(runtime_internal_p50_ms=internal, call_overhead_ms=stats.p50_ms - internal)
        if plan.stage_images:
            images = list_images(data_yaml, plan.split)[: plan.stage_images]
            metrics["stages"] = {name: s.summary() for name, s in stage_breakdown(runner, images, row.imgsz).items()}
        if plan.throughput_jobs:
            throughput = measure_throughput(runner, x, jobs=plan.throughput_jobs, seconds=min(plan.seconds, 5.0))
            metrics["throughput"] = asdict(throughput)
    except Cancelled:
        raise
    except (WorkbenchError, OSError) as exc:
        return _record_failure(workspace, variant.id, "latency", exc, context)
    emit(progress, "latency", 1, 1, f"{runner.path.name} p50 {stats.p50_ms:.1f} ms")
    return workspace.ledger.add_measurement(variant.id, "latency", metrics, {**context, "status": "ok"})


def _estimate(
    estimator: RowEstimator, workspace: Workspace, variant, runner, row, metrics, measured_p50_ms: float
) -> dict:
    """What the estimator said for this row from the rows recorded before it, and how far off it was."""
    threads = runner.context.get("threads")
    estimate = estimator(
        workspace, variant.id, str(runner.runtime), runner.precision, row.imgsz, metrics["gflops"], threads,
        metrics["machine_gemm_gflops"],
    )  # fmt: skip
    if estimate:
        estimate["error_pct"] = 100 * (estimate["p50_ms"] - measured_p50_ms) / measured_p50_ms
    return estimate


def _accuracy_imgsz(row: Row, plan: MeasurePlan, variant: Variant) -> int:
    """The row's own size, or the plan's accuracy size where the artifact accepts it."""
    return row.imgsz if static_imgsz(variant) else (plan.accuracy_imgsz or row.imgsz)


def _accuracy_context(row, plan, data_yaml, context, variant) -> dict:
    return {
        **context,
        "imgsz": _accuracy_imgsz(row, plan, variant),
        "latency_imgsz": row.imgsz,
        "split": plan.split,
        "images": plan.accuracy_images,
        "data_yaml": str(data_yaml),
        "conf": AccuracyConfig.conf,
        "iou": AccuracyConfig.iou,
        "path": "workbench runner",
    }


def _accuracy_done(workspace: Workspace, ids, row, plan, context) -> bool:
    """True when this call already measured accuracy at the same size and precision (several latency sizes)."""
    wanted = plan.accuracy_imgsz
    if wanted is None or not ids:
        return False
    earlier = workspace.ledger.measurements(ids=ids)
    return any(
        m.kind == "accuracy" and m.context.get("imgsz") == wanted and m.context.get("precision") == context["precision"]
        for m in earlier
    )


def _accuracy(workspace: Workspace, variant, runner, row, plan, data_yaml, context, progress) -> int:
    context = _accuracy_context(row, plan, data_yaml, context, variant)
    config = AccuracyConfig(imgsz=context["imgsz"], split=plan.split, images=plan.accuracy_images)
    try:
        identity = evaluation_set(data_yaml, plan.split, plan.accuracy_images, context["imgsz"])
        context[EVALUATION_SET] = identity.as_context()  # what it was measured on: only like is put beside like
        result = runner_accuracy(runner, data_yaml, config, names=_names(workspace, variant.id), progress=progress)
    except Cancelled:
        raise
    except (WorkbenchError, OSError) as exc:
        return _record_failure(workspace, variant.id, "accuracy", exc, context)
    return workspace.ledger.add_measurement(variant.id, "accuracy", result.metrics(), {**context, "status": "ok"})


def _parity(workspace: Workspace, variant, parent, runner, row, plan, data_yaml, context, progress) -> int:
    images = list_images(data_yaml, plan.split)[: plan.parity_images]
    config = ParityConfig(imgsz=row.imgsz, images=len(images))
    context = {**context, "parent_id": parent.id, "images": len(images), "conf": config.conf}
    try:
        reference = open_runner(workspace.artifact_path(parent.id), plan.options("f32"))
        context.update(parent_runtime=str(reference.runtime), parent_precision=reference.precision)
        result = compare(reference, runner, images, config, progress=progress)
    except Cancelled:
        raise
    except (WorkbenchError, OSError) as exc:
        return _record_failure(workspace, variant.id, "parity", exc, context)
    return workspace.ledger.add_measurement(variant.id, "parity", result.metrics(), {**context, "status": "ok"})


def _record_failure(workspace: Workspace, variant_id: int, kind: str, error: Exception, context: dict) -> int:
    problem = getattr(error, "problem", f"{type(error).__name__}: {error}")
    fix = getattr(error, "fix", "")
    metrics = {"error": problem, "fix": fix}
    return workspace.ledger.add_measurement(variant_id, kind, metrics, {**context, "status": "failed"})


def variant_gflops(workspace: Workspace, variant_id: int, imgsz: int) -> float | None:
    """GFLOPs per image of a variant at `imgsz`, from its nearest PyTorch ancestor (exports keep the graph)."""
    for ancestor in workspace.lineage(variant_id):
        if ancestor.is_pytorch and ancestor.path:
            path = workspace.root / ancestor.path
            return _gflops(str(path), path.stat().st_mtime_ns, imgsz)
    return None


@lru_cache(maxsize=64)
def _gflops(path: str, mtime_ns: int, imgsz: int) -> float:
    from ..models.checkpoints import load_checkpoint
    from ..models.summary import model_stats

    return model_stats(load_checkpoint(path).model, imgsz)["gflops"]


def _names(workspace: Workspace, variant_id: int) -> dict[int, str] | None:
    """The classes of the variant's model, from the nearest PyTorch ancestor (exports carry the same)."""
    for ancestor in workspace.lineage(variant_id):
        if ancestor.is_pytorch and ancestor.path:
            return _class_names(str(workspace.root / ancestor.path))
    return None


@lru_cache(maxsize=64)
def _class_names(path: str) -> dict[int, str]:
    from ..models.checkpoints import load_checkpoint

    return dict(load_checkpoint(path).names)
