"""Does each planted speed fault hurt on this CPU? The lab measures it before the fault is used.

A fault is slow only on some machines: forcing f32 costs 1.6x on a CPU with native bf16 and nothing on an Intel
Xeon where OpenVINO's f32 is its fastest precision; more threads than cores cost nothing where ONNX Runtime's
threads do not spin. `measure_hurt(lab, name)` times the faulty deployment beside the same deployment with only
the planted cause removed, in alternating rounds (`compare_calls`), and judges the ratio with the doctor's own
rule (`measure.paired.ratio_bound`: the 95% lower bound at or above `CAUSE_RATIO`). A fault that does not hurt
here is reported as "not slow on this CPU" with its figures, one that cannot be built here (no slower precision
hint) says why, and one whose rounds disagree is "inconclusive (busy machine)".
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from ...environment import cpu_info, usable_cores
from ...measure.paired import FAILS, HOLDS, RatioBound
from ...models.detector import DeploymentSpec, open_detector
from ..speed.timing import CAUSE_RATIO, compare_calls, cycling, guarded
from .speed import FAULTS, IMGSZ, LabCase, LabUnavailable, LazyNoWarmup, SpeedLab, warmed_detector

HURTS, NOT_SLOW, UNSURE = "hurts here", "not slow on this CPU", "inconclusive (busy machine)"
OFFLINE_IMAGES = 16  # one offline pass: this many images


@dataclass(frozen=True)
class Hurt:
    """One planted fault measured against its fixed counterpart on this machine."""

    fault: str
    cause: str
    against: str  # the counterpart, in words
    fault_ms: float | None = None
    fixed_ms: float | None = None
    bound: RatioBound | None = None
    reason: str = ""  # why it was not measured (the fault cannot be built on this CPU)

    @property
    def verdict(self) -> str:
        if self.bound is None:
            return NOT_SLOW
        judged = self.bound.verdict(CAUSE_RATIO)
        return HURTS if judged == HOLDS else NOT_SLOW if judged == FAILS else UNSURE

    @property
    def hurts(self) -> bool:
        return self.verdict == HURTS

    def row(self) -> dict:
        """The table row: the two p50s, the ratio, its 95% lower bound and the verdict."""
        b = self.bound
        return {
            "fault": self.fault,
            "planted cause": self.cause,
            "fault p50 ms": None if self.fault_ms is None else round(self.fault_ms, 2),
            "fixed p50 ms": None if self.fixed_ms is None else round(self.fixed_ms, 2),
            "ratio": None if b is None else round(b.ratio, 2),
            "95% low": None if b is None else round(b.low, 2),
            "rounds": "" if b is None else f"{b.spread[0]:.2f}-{b.spread[1]:.2f}",
            "hurts here": self.verdict,
            "compared with": self.reason or self.against,
        }


def measure_hurt(lab: SpeedLab, name: str, *, rounds: int = 5, round_s: float = 0.1) -> Hurt:
    """Time fault `name` of `FAULTS` beside its fixed counterpart in alternating rounds, in a worker thread (the
    doctor's `guarded`, which releases the caller's OpenMP pool). A fault that cannot be built here is not slow.

    Raises:
        KeyError: `name` is not a fault of the lab (see `FAULTS`).
    """
    builder, cause = FAULTS[name]
    try:
        case = builder(lab)
    except LabUnavailable as exc:
        return Hurt(name, cause, "", reason=f"not built here: {exc}")
    fault, fixed, words = _pair(lab, name, case)
    kwargs = {"rounds": rounds, "round_s": round_s, "discard": 1, "min_calls": 2, "warm_calls": 1}
    outcome = guarded(lambda: compare_calls({"fault": fault, "fixed": fixed}, **kwargs), 300)
    if not outcome.ok:
        raise outcome.error or TimeoutError(f"measuring {name} took over 300 s")
    result = outcome.value
    return Hurt(name, cause, words, result.p50_ms["fault"], result.p50_ms["fixed"], result.bound("fault", "fixed"))


def _pair(lab: SpeedLab, name: str, case: LabCase) -> tuple[Callable, Callable, str]:
    """The fault as a no-argument call, its counterpart (the same deployment with only the planted cause removed),
    and the counterpart in words."""
    images = lab.images()

    def each_image(detect_or_spec) -> Callable:
        detect = open_detector(detect_or_spec) if isinstance(detect_or_spec, DeploymentSpec) else detect_or_spec
        return cycling(detect, images)

    def spec_with(**change) -> DeploymentSpec:
        return replace(case.deployment, **change)

    ov, onnx, cores = lab.artifact("openvino"), lab.artifact("onnx"), usable_cores()
    if name == "no_warmup":  # the fault is the first request: a fresh deployment's first call, each time
        first = cycling(lambda image: LazyNoWarmup(ov)(image), images)
        return first, each_image(warmed_detector(lab)), "the same deployment loaded and warmed at start-up"
    if name == "synchronous_offline":
        return _offline_pair(case.deployment, images)
    fixed, words = {
        "loaded_every_call": (lambda: DeploymentSpec(onnx, imgsz=IMGSZ), "the ONNX Runtime session opened once"),
        "oversubscribed_threads": (lambda: spec_with(threads=cores), f"ONNX Runtime with {cores} threads"),
        "slow_precision": (lambda: spec_with(precision=None), "OpenVINO's default precision at the same size"),
        "python_preprocess": (lambda: DeploymentSpec(ov, imgsz=IMGSZ), "the vectorised letterbox, same model"),
        "pytorch_eager": (lambda: DeploymentSpec(ov, imgsz=IMGSZ, threads=cores), "OpenVINO, same size, threads"),
        "imgsz_too_large": (lambda: spec_with(imgsz=IMGSZ), f"the same OpenVINO model at imgsz {IMGSZ}"),
    }[name]
    return each_image(case.deployment), each_image(fixed()), words


def _offline_pair(spec: DeploymentSpec, images) -> tuple[Callable, Callable, str]:
    """One image at a time over a batch of files, against the fastest of the doctor's throughput candidates here
    (OpenVINO's async queue, batches of 8, the fast path's stream), each timed once first."""
    from ...models.detector import detect_stream
    from ...models.runners import RuntimeOptions, open_runner
    from ..speed.levers import STREAM, _async_pass, _batched_pass, _fast_stream

    batch = (list(images) * OFFLINE_IMAGES)[:OFFLINE_IMAGES]
    sequential = open_detector(spec)
    queued = open_runner(
        spec.artifact, RuntimeOptions(threads=usable_cores(), precision=spec.precision, hint="throughput")
    )
    options = {"async queue": lambda: _async_pass(queued, spec, batch)}
    if sequential.runner.input_shape[0] == -1:
        options["batch 8"] = lambda: _batched_pass(sequential, batch, 8)
        stream = _fast_stream(spec)
        if stream is not None:
            options[STREAM] = lambda: detect_stream(stream, batch)
    quick = compare_calls(options, rounds=1, round_s=0.0, warm_calls=1, discard=0, min_calls=2)
    best = quick.fastest()
    words = f"{best} over the same {OFFLINE_IMAGES} images (the fastest of {', '.join(options)} here)"
    return (lambda: [sequential(i) for i in batch]), options[best], words


def fault_hurts(lab: SpeedLab, name: str) -> Hurt:
    """Whether fault `name` hurts on this machine, measured once per lab (kept with the lab)."""
    if name not in lab.measured_hurts:
        lab.measured_hurts[name] = measure_hurt(lab, name)
    return lab.measured_hurts[name]


def fault_hurt_table(lab: SpeedLab, names=None) -> dict:
    """Every planted fault (or `names`) measured on this machine: its rows and the machine they hold for."""
    hurts = [fault_hurts(lab, name) for name in (names or FAULTS)]
    cpu = cpu_info()
    context = {
        "cpu": cpu["model"],
        "isa": cpu["isa"],
        "usable_cores": usable_cores(),
        "imgsz": IMGSZ,
        "rule": f"hurts here: the 95% lower bound of the per-round ratio (seeded bootstrap) >= {CAUSE_RATIO}x",
    }
    return {"rows": [h.row() for h in hurts], "context": context}


def hurt_table_text(table: dict) -> str:
    """The table as fixed-width text, headed by the machine it was measured on."""
    rows, ctx = table["rows"], table["context"]
    columns = list(rows[0]) if rows else []
    cells = [[("-" if row[c] is None else str(row[c])) for c in columns] for row in rows]
    widths = [max([len(c), *(len(r[i]) for r in cells)]) for i, c in enumerate(columns)]

    def line(values) -> str:
        return "  ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)).rstrip()

    head = f"Planted speed faults on {ctx['cpu']} ({ctx['usable_cores']} usable cores; {', '.join(ctx['isa'])})"
    return "\n".join([head, ctx["rule"], "", line(columns), *(line(r) for r in cells)])
