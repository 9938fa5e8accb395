"""The speed doctor's levers: threads, inference engine, precision executed, throughput mode, input size and model
size, each measured side by side with the deployment as it is (`compare_calls`) and judged by the factor it saves.

Each lever returns one `Finding`. Its `strength` is the share of time the lever alone would save (measured against
the same engine at the recommended settings, so two levers never claim the same saving), its `evidence` holds the
table and `recommend` (DeploymentSpec fields) / `recommend_words` for the doctor's recommended configuration.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from ...environment import cpu_info, usable_cores
from ...models.detector import detect_stream, fast_detector, nms, open_detector, prepare, to_original
from ...models.runners import RuntimeOptions, installed, open_runner
from ..findings import Finding, Verdict
from .profile import check_profile
from .timing import (
    CAUSE_RATIO,
    SUSPECT_RATIO,
    compare_calls,
    cycling,
    describe_error,
    inconclusive_title,
    strength,
)

ENGINES = ("pytorch", "onnxruntime", "openvino")
STREAM = "fast path stream"  # the throughput lever's candidate: detect_stream over fast_detector, batches of 8
BF16_FLAGS = {"avx512_bf16", "amx_bf16"}
FP16_FLAGS = {"avx512_fp16", "amx_fp16"}
INT8_FLAGS = {"avx512_vnni", "avx_vnni", "amx_int8"}
MIN_SECONDS = {"threads": 3, "engine": 8, "precision": 5, "profile": 3, "throughput": 5, "imgsz": 5, "model_size": 25}


def _compare(study, candidates: dict):
    return compare_calls(candidates, rounds=study.rounds, round_s=study.round_s)


def _ok(check: str, title: str, fix: str = "", **evidence) -> Finding:
    return Finding(check, Verdict.OK, title, fix, None, evidence)


def _judged(check, bound, cause, title, fix, evidence, *, after=None, total=None, ok_title=None, inferred=False):
    """Judge a lever by `bound` (its per-round ratios and their bootstrap bounds, `Comparison.bound`): cause where
    the 95% lower bound is at or above CAUSE_RATIO (and the deployment as a whole would gain as much), suspect where
    it is above SUSPECT_RATIO (or the cause is only inferred from timing), inconclusive where the median reaches
    CAUSE_RATIO but the rounds disagree too much to say, else ok (with the evidence)."""
    ratio, low = bound.ratio, bound.low
    total = ratio if total is None else total
    evidence = {**evidence, "bound": bound.as_dict()}
    if low >= CAUSE_RATIO and total >= CAUSE_RATIO:
        verdict = Verdict.SUSPECT if inferred else Verdict.CAUSE
    elif ratio >= CAUSE_RATIO and total >= CAUSE_RATIO:
        plain = {k: v for k, v in evidence.items() if "recommend" not in k}
        return Finding(check, Verdict.INCONCLUSIVE, inconclusive_title(title, bound), fix, None, plain, after)
    elif low >= SUSPECT_RATIO and total >= SUSPECT_RATIO:
        verdict = Verdict.SUSPECT
    else:
        plain = {k: v for k, v in evidence.items() if "recommend" not in k}
        return Finding(check, Verdict.OK, ok_title or title, "", None, plain)
    return Finding(
        check, verdict, title, fix, cause, evidence, after, strength=strength(ratio) * (0.5 if inferred else 1)
    )


def _own(study, spec):
    """The deployment's pipeline as a no-argument call: the deployment itself where the doctor built it from
    `spec`, else `spec` opened beside it (a callable's own code around the model is not what this lever changes)."""
    if study.subject.declared:
        return study.baseline
    return cycling(open_detector(spec), study.images)


def check_threads(study) -> Finding:
    """More threads than usable cores (oversubscription), or fewer than there are."""
    spec, usable = study.subject.spec, usable_cores()
    if spec is None:
        return _ok(
            "threads", "threads: not visible in a black box", f"give the runtime {usable} threads", usable=usable
        )
    asked = spec.threads or usable
    if asked == usable:
        return _ok("threads", f"{asked} threads on {usable} usable cores", threads=asked, usable_cores=usable)
    fixed = open_detector(replace(spec, threads=usable))
    name = f"{usable} threads"
    result = _compare(study, {"deployment": _own(study, spec), name: cycling(fixed, study.images)})
    ratio = result.ratio("deployment", name)
    cause = "oversubscribed_threads" if asked > usable else "too_few_threads"
    how = "more threads than" if asked > usable else "fewer threads than the"
    title = f"{asked} threads on {usable} usable cores ({how} cores): {usable} threads run {ratio:.2f}x as fast"
    evidence = {**result.evidence(), "threads": asked, "usable_cores": usable, "ratio": round(ratio, 2)}
    evidence |= {"recommend": {"threads": usable}}
    fix = f"set threads={usable} (the cores this process may use, os.sched_getaffinity)"
    after = {"p50_ms": round(result.p50_ms[name], 2)}
    ok_title = f"{asked} threads on {usable} usable cores: {usable} threads within {ratio:.2f}x (no measured cost)"
    bound = result.bound("deployment", name)
    return _judged("threads", bound, cause, title, fix, evidence, after=after, ok_title=ok_title)


def check_engine(study) -> Finding:
    """The same model in PyTorch eager, ONNX Runtime and OpenVINO, end to end, at the recommended threads."""
    base = study.base_spec()
    if base is None or study.reference is None:
        return _ok("engine", "engine: not measured", "pass reference_model= (the deployment's .pt) to compare engines")
    detectors = {}
    for runtime in (r for r in ENGINES if installed(r)):
        spec = replace(base, artifact=study.artifact_for(runtime), threads=usable_cores(), precision=None)
        detectors[runtime] = open_detector(spec)
    calls = {"deployment": study.baseline, **{r: cycling(d, study.images) for r, d in detectors.items()}}
    result = _compare(study, calls)
    best, own = result.fastest(list(detectors)), study.subject.runtime
    evidence = {**result.evidence(), "runtime": own, "fastest": best}
    evidence |= {"recommend": {"artifact": str(detectors[best].spec.artifact), "threads": usable_cores()}}
    total = result.ratio("deployment", best)
    if own is None:  # a black box: which engine does it time like?
        own = min(detectors, key=lambda r: abs(np.log(result.p50_ms[r] / result.p50_ms["deployment"])))
        if result.ratio("deployment", own) > 1.35 or result.ratio(own, "deployment") > 1.35:
            own = None
        evidence["times_like"] = own
    if own == best or own not in detectors:
        verdict = f"{best} is the fastest engine here ({result.p50_ms[best]:.1f} ms)"
        return _ok("engine", verdict, **{k: v for k, v in evidence.items() if "recommend" not in k})
    ratio = result.ratio(own, best)
    after = {"p50_ms": round(result.p50_ms[best], 2), **study.accuracy(detectors[best])}
    inferred = study.subject.runtime is None  # a black box's engine is inferred from its timing
    title = (
        f"{'the deployment times like the model in ' if inferred else 'the model runs in '}{own}, "
        f"{ratio:.1f}x slower than {best} "
        f"on this machine ({result.p50_ms[own]:.1f} ms against {result.p50_ms[best]:.1f} ms end to end)"
    )
    fix = f"export to {best} and run it there ({detectors[best].spec.artifact})"
    ok_title = f"{own} and {best} within {ratio:.2f}x here ({result.p50_ms[best]:.1f} ms)"
    return _judged(
        "engine",
        result.bound(own, best),
        "slow_engine",
        title,
        fix,
        evidence,
        after=after,
        total=total,
        ok_title=ok_title,
        inferred=inferred,
    )


def check_precision(study) -> Finding:
    """The precision actually executed, against each OpenVINO hint this CPU runs (f32, bf16 where native, f16)."""
    isa, runner, spec = set(cpu_info()["isa"]), study.subject.runner, study.subject.spec
    executed = runner.precision if runner is not None else None
    int8 = "; int8 (NNCF post-training quantization) runs on VNNI/AMX here" if isa & INT8_FLAGS else ""
    if spec is None or study.subject.runtime != "openvino" or runner is None:
        title = f"executes {executed or 'an unknown precision'} in {study.subject.runtime or 'a black box'}"
        return _ok("precision", title, "OpenVINO picks bf16 by itself on CPUs with native bf16" + int8)
    hints = ["f32", *(["bf16"] if isa & BF16_FLAGS else []), "f16"]
    detectors = {h: open_detector(replace(spec, precision=h)) for h in hints if h != spec.precision}
    calls = {"deployment": _own(study, spec), **{f"hint {h}": cycling(d, study.images) for h, d in detectors.items()}}
    result = _compare(study, calls)
    executed_by = {"deployment": executed, **{f"hint {h}": d.runner.precision for h, d in detectors.items()}}
    best = _plainest(result, executed_by)
    evidence = {**result.evidence(), "hint": spec.precision, "executed": executed_by, "isa": sorted(isa)}
    if best == "deployment":
        title = f"hint {spec.precision or 'default'} executes {executed}: the fastest here"
        return _ok("precision", title, int8[2:], **evidence)
    ratio = result.ratio("deployment", best)
    hint = best.removeprefix("hint ")
    if ratio < SUSPECT_RATIO:
        title = f"hint {spec.precision or 'default'} executes {executed}: other hints within {ratio:.2f}x"
        return _ok("precision", title, int8[2:], **evidence)
    after = {"p50_ms": round(result.p50_ms[best], 2), **study.accuracy(detectors[hint])}
    evidence |= {"recommend": {"precision": hint}}
    title = f"precision hint {spec.precision or 'default'} executes {executed}, {ratio:.1f}x slower than {hint} "
    title += f"({executed_by[best]}): {_why(spec.precision, executed, isa)}"
    bound = result.bound("deployment", best)
    return _judged("precision", bound, "slow_precision", title, f"set precision={hint!r}" + int8, evidence, after=after)


def _plainest(result, executed_by: dict) -> str:
    """The fastest candidate, preferring among those within 5% of it one whose hint names what it executes (on a
    CPU without fp16, the f16 hint runs as bf16: recommend bf16, not f16)."""
    fastest = result.fastest()
    if fastest == "deployment":
        return fastest
    close = [n for n, ms in result.p50_ms.items() if ms <= 1.05 * result.p50_ms[fastest]]
    named = [n for n in close if n.startswith("hint ") and executed_by.get(n) in (n[5:], n[5:].replace("f", "fp"))]
    return fastest if fastest in named or not named else min(named, key=result.p50_ms.get)


def _why(hint, executed, isa) -> str:
    if executed == "fp16" and not isa & FP16_FLAGS:
        return "this CPU has no native fp16 (no AVX-512 FP16), so f16 is emulated"
    if executed == "fp16" and "amx_bf16" in isa and "amx_fp16" not in isa:
        return "f16 runs on AVX-512 FP16 vector units here, bf16 on the AMX tiles"
    if executed == "fp32" and isa & BF16_FLAGS:
        return "this CPU computes bf16 natively (AMX / AVX-512 BF16) but f32 was forced"
    return "another precision is faster on this CPU"


def check_throughput(study) -> Finding:
    """Images per second one at a time against OpenVINO's AsyncInferQueue (THROUGHPUT hint) and a batch of 8."""
    base, artifact = study.base_spec(), study.artifact_for("openvino")
    if base is None or artifact is None:
        return _ok("throughput", "throughput: not measured", "pass reference_model= to compare OpenVINO's async queue")
    own_ov = study.subject.runtime == "openvino"
    spec = replace(base, artifact=artifact, threads=usable_cores(), precision=base.precision if own_ov else None)
    sequential = open_detector(spec)
    queued = open_runner(artifact, RuntimeOptions(threads=usable_cores(), precision=spec.precision, hint="throughput"))
    images = (study.images * 16)[:16]  # two batches of 8
    calls = {
        "deployment": lambda: [study.baseline() for _ in images],
        "one at a time": lambda: [sequential(i) for i in images],
        "async queue": lambda: _async_pass(queued, spec, images),
    }
    if sequential.runner.input_shape[0] == -1:
        calls["batch 8"] = lambda: _batched_pass(sequential, images, 8)
        stream = _fast_stream(spec)
        if stream is not None:
            calls[STREAM] = lambda: detect_stream(stream, images)
    result = _compare(study, calls)
    fps = {name: round(len(images) * 1000 / ms, 1) for name, ms in result.p50_ms.items()}
    best = max((n for n in fps if n not in ("deployment", "one at a time")), key=fps.get)
    total = fps[best] / fps["deployment"]
    evidence = {**result.evidence(), "images_per_s": fps, "scenario": study.scenario, "requests": _jobs(queued)}
    title = f"{best}: {fps[best]:.0f} images/s against {fps['deployment']:.0f} one at a time ({total:.1f}x)"
    if study.scenario == "single":
        return _ok("throughput", f"scenario single (latency counts): {title}", "for a stream or a batch, use " + best)
    hint_words = "THROUGHPUT hint, " if best in ("async queue", STREAM) else ""
    evidence |= {"recommend_words": [f"{best} ({hint_words}{study.scenario})"]}
    fix = {
        "async queue": f"for the {study.scenario} scenario, keep {_jobs(queued)} requests in flight with OpenVINO's "
        "AsyncInferQueue and PERFORMANCE_HINT=THROUGHPUT (preprocess the next image while the last one infers)",
        "batch 8": f"for the {study.scenario} scenario, run batches of 8 images",
        STREAM: f"for the {study.scenario} scenario, stream the images through the workbench's fast path: "
        "detect_stream(fast_detector(spec, hint='throughput', streams=2, batch=8), images) (workbench.core.models."
        "fast_path: letterbox in uint8, preprocessing in the OpenVINO graph, batches of 8 in an AsyncInferQueue)",
    }[best]
    ok_title = f"{study.scenario} scenario: {title}; little to gain here"
    title = f"synchronous one-at-a-time processing for the {study.scenario} scenario; {title}"
    after = {"images_per_s": fps[best]}
    bound = result.bound("one at a time", best)
    return _judged(
        "throughput", bound, "synchronous_processing", title, fix, evidence, after=after, total=total, ok_title=ok_title
    )


def _fast_stream(spec):
    """The fast path compiled for a stream (THROUGHPUT hint, 2 streams, batches of 8), or None where the artifact
    cannot be compiled that way."""
    from ...errors import WorkbenchError

    try:
        return fast_detector(spec, hint="throughput", streams=2, batch=8)
    except WorkbenchError:
        return None


def _jobs(runner) -> int:
    return max(2, int(runner.context.get("optimal_requests") or 2))


def _async_pass(runner, spec, images) -> list:
    """Every image through an AsyncInferQueue: prepared in this thread, NMS in the queue's callback."""
    queue, out = runner.async_queue(_jobs(runner)), []

    def done(request, prepared):
        rows = nms(request.get_output_tensor(0).data.copy(), spec.postprocessing)
        rows[:, :4] = to_original(rows[:, :4], prepared)
        out.append(rows)

    queue.set_callback(done)
    for image in images:
        prepared = prepare(image, spec.imgsz, spec.preprocessing)
        queue.start_async({0: prepared.batch}, prepared)
    queue.wait_all()
    return out


def _batched_pass(detector, images, size: int) -> list:
    spec, out = detector.spec, []
    for start in range(0, len(images), size):
        prepared = [prepare(i, spec.imgsz, spec.preprocessing) for i in images[start : start + size]]
        raw = detector.runner(np.concatenate([p.batch for p in prepared]))[0]
        for index, p in enumerate(prepared):
            rows = nms(raw[index : index + 1], spec.postprocessing)
            rows[:, :4] = to_original(rows[:, :4], p)
            out.append(rows)
    return out


def check_imgsz(study) -> Finding:
    """Smaller input sizes side by side, with the accuracy at each: what each millisecond costs."""
    base = study.base_spec()
    if base is None:
        return _ok("imgsz", "input size: not measured", "pass reference_model= to sweep input sizes")
    artifact = base.artifact
    runner = study.subject.runner
    if runner is not None and runner.input_shape[2] > 0 or study.subject.spec is None:
        artifact = study.artifact_for("openvino")  # a static export runs one size only: sweep the reference
    sizes = sorted({max(64, round(base.imgsz * f / 32) * 32) for f in (0.25, 0.5, 0.75)} - {base.imgsz})
    sizes = [s for s in sizes if s < base.imgsz]
    if not sizes:
        return _ok("imgsz", f"imgsz {base.imgsz}: no smaller size to try", imgsz=base.imgsz)
    detectors = {s: open_detector(replace(base, artifact=artifact, imgsz=s)) for s in sizes}
    own = study.subject.detect if study.subject.declared else open_detector(replace(base, artifact=artifact))
    calls = {f"imgsz {s}": cycling(d, study.images) for s, d in detectors.items()}
    result = _compare(study, {"deployment": cycling(own, study.images), **calls})
    accuracy = {base.imgsz: study.accuracy(own), **{s: study.accuracy(d) for s, d in detectors.items()}}
    table = [
        {"imgsz": s, "p50_ms": round(result.p50_ms["deployment" if s == base.imgsz else f"imgsz {s}"], 2), **a}
        for s, a in sorted(accuracy.items())
    ]
    kept = [s for s in sizes if _accuracy_kept(accuracy[s], accuracy[base.imgsz])]
    evidence = {**result.evidence(), "sizes": table}
    if not kept:
        return _ok("imgsz", f"imgsz {base.imgsz}: every smaller size loses accuracy", "", **evidence)
    best = min(kept, key=lambda s: result.p50_ms[f"imgsz {s}"])
    ratio = result.ratio("deployment", f"imgsz {best}")
    if study.subject.spec is None:  # a black box's own input size is unknown: show the trade-off, name nothing
        title = f"the model at imgsz {best} runs {ratio:.1f}x as fast as at {base.imgsz} ({_words(accuracy[best])})"
        return _ok("imgsz", title, "if your deployment runs at a larger size, try this one", **evidence)
    evidence |= {"recommend": {"imgsz": best}}
    title = f"imgsz {base.imgsz} is larger than needed: {best} runs {ratio:.1f}x as fast at {_words(accuracy[best])}"
    title += f" (against {_words(accuracy[base.imgsz])})"
    after = {"p50_ms": table[[r["imgsz"] for r in table].index(best)]["p50_ms"], **accuracy[best]}
    ok_title = f"imgsz {base.imgsz}: a smaller size saves little here ({ratio:.2f}x at {best})"
    return _judged(
        "imgsz",
        result.bound("deployment", f"imgsz {best}"),
        "imgsz_too_large",
        title,
        f"deploy at imgsz={best}",
        evidence,
        after=after,
        ok_title=ok_title,
    )


def _accuracy_kept(candidate: dict, baseline: dict) -> bool:
    if "map50_95" in candidate:
        return candidate["map50_95"] >= baseline["map50_95"] - max(0.01, 0.05 * baseline["map50_95"])
    return candidate["agreement"] >= 0.85


def _words(accuracy: dict) -> str:
    key, value = next(iter(accuracy.items()))
    return f"mAP50-95 {value:.3f}" if key == "map50_95" else f"agreement {value:.2f} with the deployment"


def check_model_size(study) -> Finding:
    """The deployment's model against the shipped pruned student (same classes) and a bigger architecture
    (random weights: latency only), all in OpenVINO at the deployment's size."""
    from ...models.cards import demo_weights, student_weights
    from .timing import random_weights

    base = study.base_spec()
    if base is None or study.reference is None:
        return _ok("model_size", "model size: not measured", "pass reference_model= to compare model sizes")
    models = {"deployment's model": study.reference}
    if study.reference.resolve() == demo_weights().resolve():
        models["pruned student"] = student_weights()
    models["yolo11s (random weights)"] = random_weights("yolo11s.yaml", study.exports.folder)
    detectors = {}
    for name, weights in models.items():
        artifact = study.exports.get(weights, "openvino", study.imgsz)
        detectors[name] = open_detector(replace(base, artifact=artifact, threads=usable_cores(), precision=None))
    result = _compare(study, {name: cycling(d, study.images) for name, d in detectors.items()})
    accuracy = {n: study.accuracy(d) for n, d in detectors.items() if "random" not in n}
    evidence = {**result.evidence(), "accuracy": accuracy}
    student = "pruned student"
    if student in detectors and "map50_95" in accuracy.get(student, {}):
        ratio = result.ratio("deployment's model", student)
        if _accuracy_kept(accuracy[student], accuracy["deployment's model"]):
            evidence |= {"recommend": {"artifact": str(detectors[student].spec.artifact)}}
            title = f"the pruned student runs {ratio:.1f}x as fast at {_words(accuracy[student])}"
            after = {"p50_ms": round(result.p50_ms[student], 2), **accuracy[student]}
            return _judged(
                "model_size",
                _capped(result.bound("deployment's model", student), CAUSE_RATIO - 0.01),
                "smaller_model_enough",
                title,
                "deploy the pruned student",
                evidence,
                after=after,
                ok_title=title,
            )
    summary = ", ".join(f"{n} {ms:.1f} ms" for n, ms in result.p50_ms.items())
    return _ok(
        "model_size", f"model sizes in OpenVINO: {summary}", "a smaller model trades accuracy for ms", **evidence
    )


def _capped(bound, most: float):
    """A bound whose median and bounds are at most `most`: a lever that may be a suspect but never the cause."""
    return replace(bound, ratio=min(bound.ratio, most), low=min(bound.low, most), high=min(bound.high, most))


LEVERS = {  # in the order they are measured: the cheap and the most telling first
    "threads": check_threads,
    "engine": check_engine,
    "precision": check_precision,
    "profile": check_profile,
    "throughput": check_throughput,
    "imgsz": check_imgsz,
    "model_size": check_model_size,
}


def run_levers(study, names) -> list[Finding]:
    """Each lever in turn while the budget lasts; one that fails or no longer fits is reported, not raised."""
    findings = []
    for name in names:
        if study.left() < MIN_SECONDS.get(name, 3):
            findings.append(_ok(name, f"{name}: skipped, the doctor's budget is spent", "raise budget_s"))
            continue
        try:
            findings.append(study.call(lambda name=name: LEVERS[name](study), name))
        except TimeoutError as exc:
            findings.append(
                Finding(
                    name,
                    Verdict.SUSPECT,
                    str(exc),
                    "check the deployment for blocking calls",
                    "deployment_hangs",
                    strength=0.5,
                )
            )
            break
        except Exception as exc:  # a lever that cannot run here (export, runtime missing) must not stop the rest
            findings.append(_ok(name, f"{name}: not measured ({describe_error(exc)})", "see the error"))
    return findings
