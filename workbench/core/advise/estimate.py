"""The latency estimator: a model's GFLOPs, a target's peak compute and an efficiency learned from measurements.

    p50 ms = overhead + 1000 * GFLOPs / (peak GOP/s * efficiency);   p99 = p50 * tail

Efficiency (the share of peak a runtime gets at a precision), overhead (per-call time no FLOP explains) and tail
(p99 / p50) are fitted per runtime and precision from this machine's latency rows in the ledger. The peak of a
row is its threads' share of this CPU's peak (`cpu_peak`: cores x clock x operations per cycle, as the catalog's
CPU entries are derived), so rows taken at different threads compare, and an efficiency learned here applies to
the catalog's CPUs on the same scale (where the kernel reports no clock, the row's measured GEMM rate). Where no
row exists the priors below are used and the estimate says so. Rows a catalog target's own sweep worker timed
(`workbench worker --target ID`: the row's context names the target) are fitted for that target alone, at its
catalog peak (`learn_targets`): its estimates then come from its own measurements. `cross_check` estimates every
measured row from the others (leaving out the row's own variant and size) and reports the error: how far to trust
the estimates for machines the workbench cannot measure.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..environment import cpu_info
from .cpu_peak import cpu_peak_gops

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
# Priors: the share of peak and the per-call overhead where nothing was measured. CPU: near what ONNX Runtime and
# OpenVINO got of the derived peak on the development machine (a 2-core Xeon with AMX, 2026-12: fp32 0.67-0.79;
# bf16 and int8 far below their AMX peaks, so the priors for CPUs with other units are guesses between). GPUs and
# accelerators: assumed, not measured here: vendors' dense peaks that small detectors at batch 1 reach a fraction
# of (many small convolutions, memory-bound layers, layers handed back to the host).
PRIOR_EFFICIENCY = {
    "cpu": {"fp32": 0.60, "bf16": 0.15, "fp16": 0.15, "int8": 0.15},
    "gpu": {"fp32": 0.20, "fp16": 0.10, "bf16": 0.10, "int8": 0.06},
    "npu": {"fp16": 0.10, "int8": 0.06, "fp32": 0.05, "bf16": 0.05},
    "tpu": {"int8": 0.03, "fp32": 0.01, "fp16": 0.01, "bf16": 0.01},
}
PRIOR_OVERHEAD_MS = {"cpu": 0.5, "gpu": 1.0, "npu": 2.0, "tpu": 3.0}  # launch, copies, host-side layers
PRIOR_TAIL = 1.3  # p99 / p50 where nothing was measured


def precision_class(used: str | None) -> str:
    """The compute precision behind a runner's reported one: 'int8+bf16' computes mostly in int8, 'f32' is fp32,
    'w8a32' (int8 weights, float activations) computes in fp32."""
    text = (used or "fp32").lower()
    if text.startswith("int8") or text in ("i8", "u8"):
        return "int8"
    return {"f32": "fp32", "f16": "fp16", "w8a32": "fp32"}.get(text, text if text in PRECISIONS else "fp32")


def row_peak_gops(precision: str, threads: int | None, gemm_gflops: float | None) -> float | None:
    """The peak a row ran against: `threads` of this CPU at `precision` (a precision without a native unit, bf16 on
    a CPU without it, counts at the fp32 rate); without a clock, the measured GEMM rate x `cpu_peak_factor`."""
    derived = cpu_peak_gops(precision, threads or 1) or cpu_peak_gops("fp32", threads or 1)
    if derived is not None:
        return derived[0]
    return float(gemm_gflops) * cpu_peak_factor(precision, cpu_info()["isa"]) if gemm_gflops else None


def cpu_peak_factor(precision: str, isa: list[str] | tuple[str, ...] | set[str]) -> float:
    """A CPU's peak at `precision` relative to its fp32 peak, from its ISA flags, where no clock is known: int8 x4
    with VNNI or AMX (x2 without); bf16 and fp16 x2 only where the CPU computes them natively."""
    flags = set(isa)
    if precision == "int8":
        return 4.0 if flags & {"avx512_vnni", "avx_vnni", "amx_int8"} else 2.0
    if precision == "bf16":
        return 2.0 if flags & {"avx512_bf16", "amx_bf16"} else 1.0
    if precision == "fp16":
        return 2.0 if flags & {"avx512_fp16", "amx_fp16"} else 1.0
    return 1.0


@dataclass(frozen=True)
class Observation:
    """One measured latency row of this machine, reduced to what the estimator learns from."""

    measurement_id: int
    variant_id: int
    runtime: str
    precision: str  # the precision class (see `precision_class`)
    imgsz: int
    gflops: float
    peak_gops: float  # this CPU's peak at the row's precision and threads (see `row_peak_gops`)
    p50_ms: float
    p99_ms: float
    used: str = ""  # the precision as the runner reported it ('int8+bf16'): rows fit on it first

    @property
    def ideal_ms(self) -> float:
        """The time at 100% of peak."""
        return 1000 * self.gflops / self.peak_gops


@dataclass(frozen=True)
class Efficiency:
    """What a runtime gets of a device's peak at a precision, and where that figure comes from."""

    runtime: str
    precision: str
    efficiency: float  # share of peak
    overhead_ms: float
    tail: float  # p99 / p50
    rows: int  # measured rows it was fitted on; 0 for a prior
    basis: str  # "learned from N rows on <CPU>" or "prior (not measured)"

    def p50_ms(self, gflops: float, peak_gops: float) -> float:
        return self.overhead_ms + 1000 * gflops / (peak_gops * self.efficiency)


def prior(runtime: str, precision: str, device: str = "cpu") -> Efficiency:
    table = PRIOR_EFFICIENCY.get(device, PRIOR_EFFICIENCY["cpu"])
    return Efficiency(
        runtime, precision, table.get(precision, 0.05), PRIOR_OVERHEAD_MS.get(device, 1.0), PRIOR_TAIL, 0, "prior"
    )


def observations(workspace: Workspace) -> list[Observation]:
    """This machine's successful, stable latency rows that carry GFLOPs. Rows from another CPU model are left out
    (their peaks are not this machine's), and rows whose timing windows disagreed (`stable` false: the machine was
    busy) teach the estimator noise, not speed."""
    here = cpu_info()["model"]
    cpus = {f["id"]: f["data"].get("cpu", {}).get("model") for f in workspace.ledger.fingerprints()}
    found = []
    for m in _usable_rows(workspace):
        if m.context.get("target") or cpus.get(m.fingerprint_id) != here:
            continue
        precision = precision_class(m.context.get("precision"))
        peak = row_peak_gops(precision, m.context.get("threads"), m.metrics.get("machine_gemm_gflops"))
        if peak is not None:
            found.append(_observation(m, precision, peak))
    return found


def target_observations(workspace: Workspace, targets) -> dict[str, list[Observation]]:
    """The rows timed on catalog targets' own workers, by target id, each with that target's peak at its precision
    (rows of a target not in `targets`, or at a precision it has no peak for, are left out)."""
    by_id = {t.id: t for t in targets}
    found: dict[str, list[Observation]] = {}
    for m in _usable_rows(workspace):
        target = by_id.get(m.context.get("target"))
        precision = precision_class(m.context.get("precision"))
        peak = target.peak_gops(precision) if target is not None else None
        if peak:
            found.setdefault(target.id, []).append(_observation(m, precision, peak))
    return found


def learn_targets(workspace: Workspace, targets) -> dict[tuple[str, str, str], Efficiency]:
    """A fitted Efficiency for every (target id, runtime, precision) its own worker measured."""
    names = {t.id: t.name for t in targets}
    learned = {}
    for target_id, rows in target_observations(workspace, targets).items():
        for runtime, precision in sorted({(r.runtime, r.precision) for r in rows}):
            fitted = fit(rows, runtime, precision, cpu=names[target_id])
            basis = fitted.basis.replace("learned from", "measured on the target:", 1)
            learned[(target_id, runtime, precision)] = Efficiency(**{**fitted.__dict__, "basis": basis})
    return learned


def _usable_rows(workspace: Workspace):
    """Successful latency rows with GFLOPs whose timing windows agreed (`stable` false: the machine was busy)."""
    for m in workspace.ledger.measurements(kind="latency"):
        if m.ok and m.metrics.get("gflops") and "p50_ms" in m.metrics and m.metrics.get("stable") is not False:
            yield m


def _observation(m, precision: str, peak: float) -> Observation:
    p50 = float(m.metrics["p50_ms"])
    return Observation(
        m.id, m.variant_id, str(m.context.get("runtime")), precision, int(m.context.get("imgsz") or 0),
        float(m.metrics["gflops"]), peak, p50, float(m.metrics.get("p99_ms") or p50),
        str(m.context.get("precision") or precision),
    )  # fmt: skip


def fit(rows: list[Observation], runtime: str, precision: str, cpu: str = "this CPU") -> Efficiency | None:
    """Efficiency, overhead and tail for one runtime and precision from measured rows (None without rows).

    `precision` is a class ('int8': every int8 row) or a runner's own spelling ('int8+bf16': those rows only).

    With sizes far enough apart (ideal times differing by 1.5x or more) both the overhead and the efficiency are
    fitted (least squares, overhead kept in 0..the fastest row); otherwise the prior overhead is kept.
    """
    rows = [r for r in rows if r.runtime == runtime and precision in (r.precision, r.used)]
    if not rows:
        return None
    xs, ys = [r.ideal_ms for r in rows], [r.p50_ms for r in rows]
    overhead = prior(runtime, precision).overhead_ms
    if len(rows) >= 2 and max(xs) >= 1.5 * min(xs):
        mean_x, mean_y = statistics.fmean(xs), statistics.fmean(ys)
        slope = sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys, strict=True)) / sum(
            (x - mean_x) ** 2 for x in xs
        )
        overhead = mean_y - slope * mean_x
    overhead = min(max(overhead, 0.0), 0.9 * min(ys))
    slope = statistics.median((y - overhead) / x for x, y in zip(xs, ys, strict=True))
    tail = statistics.median(r.p99_ms / r.p50_ms for r in rows)
    basis = f"learned from {len(rows)} row{'s' * (len(rows) != 1)} on {cpu}"
    return Efficiency(runtime, precision, 1 / slope, overhead, max(tail, 1.0), len(rows), basis)


def learn(rows: list[Observation]) -> dict[tuple[str, str], Efficiency]:
    """A fitted Efficiency for every (runtime, precision) the rows hold."""
    cpu = cpu_info()["model"]
    keys = sorted({(r.runtime, r.precision) for r in rows})
    return {key: fit(rows, *key, cpu=cpu) for key in keys}


def cross_check(rows: list[Observation], *, leave_out: str = "size") -> list[dict]:
    """Every row estimated from the other rows, beside its measurement.

    Args:
        leave_out: "size" leaves out the row's own variant at the row's size (every repeat of it);
            "variant" leaves out every row of the row's variant: the estimate for a model never measured.
    Returns:
        one dict a row: measurement_id, variant_id, runtime, precision, imgsz, measured and estimated p50 ms,
        error_pct (estimate minus measurement, in % of the measurement) and the basis of the estimate.
    """
    checks = []
    for row in rows:
        if leave_out == "variant":
            others = [r for r in rows if r.variant_id != row.variant_id]
        else:
            others = [r for r in rows if (r.variant_id, r.imgsz) != (row.variant_id, row.imgsz)]
        efficiency = _fit_or_prior(others, row.runtime, row.used or row.precision)
        estimated = efficiency.p50_ms(row.gflops, row.peak_gops)
        checks.append(
            {
                "measurement_id": row.measurement_id,
                "variant_id": row.variant_id,
                "runtime": row.runtime,
                "precision": row.used or row.precision,
                "imgsz": row.imgsz,
                "measured_p50_ms": row.p50_ms,
                "estimated_p50_ms": estimated,
                "error_pct": 100 * (estimated - row.p50_ms) / row.p50_ms,
                "basis": efficiency.basis,
            }
        )
    return checks


def _fit_or_prior(rows, runtime: str, used: str, cpu: str = "this CPU") -> Efficiency:
    """The fit on rows of the runner's own precision, else on its precision class, else the prior."""
    klass = precision_class(used)
    return fit(rows, runtime, used, cpu) or fit(rows, runtime, klass, cpu) or prior(runtime, klass)


def median_abs_error_pct(checks: list[dict]) -> float | None:
    """The median of |error_pct| over checked rows (None without rows)."""
    return statistics.median(abs(c["error_pct"]) for c in checks) if checks else None


def estimate_for_row(
    workspace: Workspace, variant_id: int, runtime: str, precision: str, imgsz: int, gflops, threads, gemm
):
    """The estimate of a row about to be recorded, from the rows already in the ledger (not this variant at this
    size), to store beside its measurement."""
    peak = row_peak_gops(precision_class(precision), threads, gemm)
    if not gflops or not peak:
        return {}
    rows = [r for r in observations(workspace) if (r.variant_id, r.imgsz) != (variant_id, imgsz)]
    efficiency = _fit_or_prior(rows, runtime, precision or "fp32", cpu_info()["model"])
    p50 = efficiency.p50_ms(float(gflops), peak)
    return {
        "p50_ms": p50,
        "p99_ms": p50 * efficiency.tail,
        "efficiency": efficiency.efficiency,
        "overhead_ms": efficiency.overhead_ms,
        "peak_gops": peak,
        "basis": efficiency.basis,
    }
