"""The speed doctor: why is inference slow, and what would each lever of the deployment guide save here.

`diagnose_speed(deployment, images)` first times the deployment as it is (the first call apart, then steady p50 and
p99), then measures each lever side by side with it on the same machine, in alternating blocks: warm-up, inference
engine, asynchronous or batched processing (for the scenario stated), where the time goes (stages and layers),
the precision actually executed, threads, model size and input size. Each lever is a `Finding` with the numbers
before and after and, where accuracy can change, the accuracy after. A lever is named the cause only where its
saving holds across the alternating rounds: the seeded bootstrap's 95% lower bound of the per-round ratio
(`measure.paired.ratio_bound`) at or above `CAUSE_RATIO` (1.5x). A saving of 1.5x on average whose rounds disagree
(a busy machine) is `inconclusive`, with the spread; `Diagnosis.sentence()` names the worst and the configuration
that fixes it.

A deployment is a `DeploymentSpec` (the doctor loads it, so its first call includes loading) or any callable
`detect(image) -> Detections`, a black box. A callable that raises, returns something else or hangs, and images
that do not decode, give a clear finding, never an exception.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...environment import cpu_info, usable_cores
from ...models.detector import DeploymentSpec, Detections, open_detector
from ..findings import Diagnosis, Finding, Verdict
from .inputs import decode_all, probe, steady
from .timing import ROUNDS, ExportCache, cycling, guarded, strength

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

SCENARIOS = ("single", "stream", "server", "offline")
LOAD_BYTES = 1_000_000  # read per call above this (and a good share of the artifact): the model is loaded each call
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")


class LazyDetector:
    """A declared deployment that loads on its first call, so the doctor's first call is load + first inference."""

    def __init__(self, spec: DeploymentSpec):
        self.spec, self._detector = spec, None

    @property
    def runner(self):
        return self._detector.runner if self._detector is not None else None

    def __call__(self, image: np.ndarray) -> Detections:
        if self._detector is None:
            self._detector = open_detector(self.spec)
        return self._detector(image)


@dataclass
class TimedDeployment:
    """The deployment the speed doctor times: its detect call and what it lets the doctor see inside."""

    name: str
    detect: Callable[[np.ndarray], Detections]
    spec: DeploymentSpec | None = None  # declared, or exposed by the callable as `.spec`
    preprocess: Callable | None = None  # exposed by the callable as `.preprocess(image)`
    declared: bool = False  # the doctor built it from a spec

    @property
    def runner(self):
        return getattr(self.detect, "runner", None)

    @property
    def runtime(self) -> str | None:
        if self.runner is not None:
            return self.runner.runtime
        if self.spec is not None:
            from ...models.runners import runtime_for

            return runtime_for(Path(self.spec.artifact)).value
        return None


@dataclass
class Study:
    """Everything the levers share: the subject, its images, its measured baseline and the budget."""

    subject: TimedDeployment
    images: list[np.ndarray]
    encoded: list[bytes]  # the images' file bytes where they came as files (for the decode stage)
    baseline: Callable[[], object]
    baseline_dets: list[Detections]
    steady: object  # LatencyStats
    first_ms: float
    early_ms: list[float]
    reference: Path | None
    imgsz: int
    scenario: str
    data_yaml: Path | None
    deadline: float
    exports: ExportCache
    accuracy_images: int = 8
    round_s: float = 0.15
    rounds: int = ROUNDS
    notes: dict = field(default_factory=dict)

    def left(self) -> float:
        return self.deadline - time.perf_counter()

    @property
    def threads(self) -> int:
        spec = self.subject.spec
        return spec.threads if spec is not None and spec.threads else usable_cores()

    def base_spec(self) -> DeploymentSpec | None:
        """The spec candidates are derived from: the deployment's own, else the reference model's."""
        if self.subject.spec is not None:
            return self.subject.spec
        return DeploymentSpec(self.reference, imgsz=self.imgsz) if self.reference is not None else None

    def artifact_for(self, runtime: str) -> Path | None:
        """The deployment's model in `runtime`: its own artifact if it is in it, else an export of the reference."""
        from ...models.runners import runtime_for

        spec = self.subject.spec
        if spec is not None and runtime_for(Path(spec.artifact)).value == runtime:
            return Path(spec.artifact)
        if self.reference is None:
            return None
        if runtime == "pytorch":
            return self.reference
        return self.exports.get(self.reference, {"onnxruntime": "onnx", "openvino": "openvino"}[runtime], self.imgsz)

    def accuracy(self, detector) -> dict:
        """mAP50-95 of a candidate on the data's val images (the workbench's runner accuracy), or, without data,
        its agreement with the deployment's own detections on the images studied."""
        if self.data_yaml is not None:
            from ...measure.accuracy import AccuracyConfig, runner_accuracy

            config = AccuracyConfig(imgsz=detector.spec.imgsz, images=self.accuracy_images)
            return {"map50_95": round(runner_accuracy(detector.runner, self.data_yaml, config).map50_95, 4)}
        from ...measure.parity import mean_image_f1

        return {"agreement": round(mean_image_f1([detector(i) for i in self.images], self.baseline_dets), 3)}

    def call(self, fn, label: str):
        """Run a lever's measurement guarded by the budget; raise TimeoutError when the deployment stops answering."""
        outcome = guarded(fn, max(self.left(), 5.0) + 30.0)
        if outcome.timed_out:
            raise TimeoutError(f"{label} did not finish within the doctor's budget")
        if outcome.error is not None:
            raise outcome.error
        return outcome.value


def diagnose_speed(
    deployment,
    images: Sequence,
    *,
    reference_model: Path | str | None = None,
    workspace: Workspace | None = None,
    data_yaml: Path | str | None = None,
    scenario: str = "single",
    budget_s: float = 60.0,
    imgsz: int | None = None,
    levers: Sequence[str] | None = None,
    call_timeout_s: float = 30.0,
) -> Diagnosis:
    """Time `deployment` on `images`, measure each lever beside it and name what makes it slow.

    Args:
        deployment: a `DeploymentSpec`, or any callable `detect(image) -> Detections` (HxWx3 uint8 BGR in).
        images: BGR uint8 arrays, or image files (paths or encoded bytes); a few are enough.
        reference_model: the deployment's model as a .pt (or "demo", "student"), for the levers that export or
            re-run it (engine, model size, input size); a spec with a .pt artifact is its own reference.
        workspace: where exports are kept between runs (else a temporary folder of this process).
        data_yaml: a YOLO dataset whose val images give mAP after each lever; without it, accuracy is the agreement
            with the deployment's own detections.
        scenario: single (one image at a time), stream, server (arrivals overlap) or offline (a batch of files).
        budget_s: a soft limit on the doctor's own time; levers that no longer fit are reported as skipped.
        imgsz: the input size of a black box's reference pipeline (default: the reference model's training size).
        levers: the levers to measure (default all: see `levers.LEVERS`).
        call_timeout_s: the longest a single call of the deployment may take before it counts as hanging.
    """
    from .levers import LEVERS, run_levers

    start = time.perf_counter()
    if scenario not in SCENARIOS:
        return _refused(f"unknown scenario {scenario!r}", f"choose one of {', '.join(SCENARIOS)}", "bad_scenario")
    unknown = sorted(set(levers or ()) - set(LEVERS) - {"warmup"})
    if unknown:
        return _refused(
            f"unknown lever(s) {', '.join(unknown)}", f"choose from warmup, {', '.join(LEVERS)}", "bad_lever"
        )
    subject = _subject(deployment)
    decoded, encoded, image_findings = decode_all(images)
    if not decoded:
        return Diagnosis.of("speed", image_findings, subject.name, {"images": len(images)})
    first = probe(subject, decoded, call_timeout_s)
    if isinstance(first, Finding):
        return Diagnosis.of("speed", [*image_findings, first], subject.name, {"images": len(decoded)})
    first_ms, early_ms, dets = first
    timed = steady(subject, decoded, call_timeout_s)
    if isinstance(timed, Finding):
        return Diagnosis.of("speed", [*image_findings, timed], subject.name, {"images": len(decoded)})
    stats, bytes_per_call = timed
    reference = _reference(reference_model, subject)
    study = Study(
        subject,
        decoded,
        encoded,
        cycling(subject.detect, decoded),
        dets,
        stats,
        first_ms,
        early_ms,
        reference,
        _imgsz(imgsz, subject, reference),
        scenario,
        Path(data_yaml) if data_yaml else None,
        start + budget_s,
        ExportCache(Path(workspace.root) / "doctor-exports" if workspace is not None else None),
    )
    study.notes["bytes_read_per_call"] = bytes_per_call
    findings = [*image_findings, check_warmup(study)]
    findings += run_levers(study, [name for name in LEVERS if levers is None or name in levers])
    return _assemble(study, findings, time.perf_counter() - start)


def _refused(problem: str, fix: str, cause: str) -> Diagnosis:
    return Diagnosis.of("speed", [Finding("arguments", Verdict.CAUSE, problem, fix, cause, strength=1.0)])


def _subject(deployment) -> TimedDeployment:
    if isinstance(deployment, DeploymentSpec):
        name = f"{Path(deployment.artifact).name} at {deployment.imgsz}"
        return TimedDeployment(name, LazyDetector(deployment), deployment, None, declared=True)
    name = getattr(deployment, "__qualname__", None) or type(deployment).__name__
    spec = getattr(deployment, "spec", None)
    preprocess = getattr(deployment, "preprocess", None)
    return TimedDeployment(
        str(name),
        deployment,
        spec if isinstance(spec, DeploymentSpec) else None,
        preprocess if callable(preprocess) else None,
    )


def _reference(reference_model, subject: TimedDeployment) -> Path | None:
    if reference_model is not None:
        from ...models.sources import resolve

        return Path(resolve(reference_model).ref)
    if subject.spec is not None and str(subject.spec.artifact).endswith(".pt"):
        return Path(subject.spec.artifact)
    return None


def _imgsz(imgsz: int | None, subject: TimedDeployment, reference: Path | None) -> int:
    if subject.spec is not None:
        return subject.spec.imgsz
    if imgsz is not None:
        return imgsz
    if reference is not None:
        from ...models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz

        return checkpoint_imgsz(reference) or DEFAULT_IMGSZ
    return 640


def check_warmup(study: Study) -> Finding:
    """The first call(s) against steady state; a deployment that loads its model on every call is named."""
    p50, first = study.steady.p50_ms, study.first_ms
    artifact = _artifact_bytes(study)
    per_call = study.notes.get("bytes_read_per_call")
    evidence = {
        "first_ms": round(first, 2),
        "next_calls_ms": [round(v, 2) for v in study.early_ms],
        "steady_p50_ms": round(p50, 2),
        "steady_p99_ms": round(study.steady.p99_ms, 2),
        "bytes_read_per_call": None if per_call is None else int(per_call),
        "artifact_bytes": artifact,
    }
    loads = per_call is not None and per_call >= LOAD_BYTES and (artifact is None or per_call >= 0.3 * artifact)
    if loads:
        return Finding(
            "warmup",
            Verdict.CAUSE,
            f"the model is loaded on every call: each call reads {per_call / 1e6:.1f} MB and takes {p50:.1f} ms "
            f"(the first took {first:.1f} ms)",
            "load the model once at start-up (open_detector(spec) outside the request handler) and reuse it",
            "loads_every_call",
            evidence,
            strength=0.97,
        )
    ratio = first / p50 if p50 > 0 else 1.0
    evidence["first_over_steady"] = round(ratio, 2)
    if study.subject.declared:
        return Finding(
            "warmup",
            Verdict.OK,
            f"first call {first:.0f} ms (load + first inference), then {p50:.1f} ms steady",
            f"warm up at start-up with {_warm_calls(study)} calls before serving",
            evidence=evidence,
        )
    if ratio >= 3 and first - p50 >= 30:
        return Finding(
            "warmup",
            Verdict.CAUSE,
            f"no warm-up before serving: the first request took {first:.0f} ms, {ratio:.0f}x the steady {p50:.1f} ms",
            f"load the model and run {_warm_calls(study)} warm-up calls at start-up, before the first request",
            "no_warmup",
            evidence,
            after={"first_ms": round(p50, 2)},
            strength=strength(ratio),
        )
    return Finding(
        "warmup", Verdict.OK, f"warmed up: first call {first:.1f} ms, steady {p50:.1f} ms", "", None, evidence
    )


def _warm_calls(study: Study) -> int:
    slow = [v for v in study.early_ms if v > 1.5 * study.steady.p50_ms]
    return max(3, len(slow) + 2)


def _artifact_bytes(study: Study) -> int | None:
    spec = study.subject.spec
    path = Path(spec.artifact) if spec is not None else study.reference
    if path is None or not path.exists():
        return None
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def _assemble(study: Study, findings: list[Finding], seconds: float) -> Diagnosis:
    """Rank the findings, put the recommended configuration into the top one's fix, and the context around them."""
    diagnosis = Diagnosis.of("speed", findings, study.subject.name)
    recommended, words = recommendation(study, diagnosis.findings)
    ranked = list(diagnosis.findings)
    top = diagnosis.most_likely
    if top is not None and words:
        ranked[0] = replace(top, fix=f"{top.fix}; recommended configuration: {words}")
    context = {
        "scenario": study.scenario,
        "images": len(study.images),
        "imgsz": study.imgsz,
        "threads": study.threads,
        "usable_cores": usable_cores(),
        "cpu": cpu_info(),
        "first_ms": round(study.first_ms, 2),
        "steady": study.steady.summary(),
        "reference_model": str(study.reference) if study.reference else None,
        "data_yaml": str(study.data_yaml) if study.data_yaml else None,
        "recommended": recommended,
        "recommended_words": words,
        "doctor_seconds": round(seconds, 1),
    }
    return Diagnosis(diagnosis.kind, tuple(ranked), diagnosis.subject, context)


def recommendation(study: Study, findings: Sequence[Finding]) -> tuple[dict | None, str]:
    """The configuration every cause and suspect lever points to together: a DeploymentSpec's fields and words."""
    fields, words = {}, []
    for finding in findings:
        if finding.verdict is Verdict.OK:
            continue
        fields.update(finding.evidence.get("recommend", {}))
        words += finding.evidence.get("recommend_words", [])
    base = study.base_spec()
    spec_fields = {k: v for k, v in fields.items() if k in ("artifact", "imgsz", "threads", "precision")}
    if base is None or not spec_fields:
        return None, "; ".join(words)
    spec = replace(base, **spec_fields)
    text = (
        f"DeploymentSpec(artifact={Path(spec.artifact).name!r}, imgsz={spec.imgsz}, threads={spec.threads}, "
        f"precision={spec.precision!r})"
    )
    return {
        "artifact": str(spec.artifact),
        "imgsz": spec.imgsz,
        "threads": spec.threads,
        "precision": spec.precision,
    }, ("; ".join([text, *words]))


def run_speed_doctor(
    model: Path | str,
    images_dir: Path | str,
    *,
    imgsz: int | None = None,
    threads: int | None = None,
    runtime: str | None = None,
    precision: str | None = None,
    scenario: str = "single",
    data: Path | str | None = None,
    workspace: Workspace | None = None,
    budget_s: float = 60.0,
    max_images: int = 16,
    levers: Sequence[str] | None = None,
) -> Diagnosis:
    """What `workbench doctor speed --model M --images DIR` runs: a DeploymentSpec of `model` (a .pt, "demo",
    "student", an .onnx or an OpenVINO folder; `runtime` onnxruntime or openvino exports a .pt to it first) at
    `imgsz` (default: its training size), diagnosed on the first `max_images` images of `images_dir`.

    Raises:
        ConfigError: the folder holds no images, or the runtime is unknown.
    """
    from ...errors import ConfigError
    from ...models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz
    from ...models.sources import resolve

    folder = Path(images_dir)
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if folder.is_dir() else []
    if not files:
        raise ConfigError(f"no images in {folder}", "pass --images a folder of JPEG or PNG files")
    artifact = Path(resolve(model).ref)
    reference = artifact if artifact.suffix == ".pt" else None
    if imgsz is None:
        imgsz = (checkpoint_imgsz(reference) if reference else None) or DEFAULT_IMGSZ
    if runtime not in (None, "pytorch", "onnxruntime", "openvino"):
        raise ConfigError(f"unknown runtime {runtime!r}", "choose pytorch, onnxruntime or openvino")
    if runtime in ("onnxruntime", "openvino") and reference is not None:
        folder_out = Path(workspace.root) / "doctor-exports" if workspace is not None else None
        artifact = ExportCache(folder_out).get(reference, "onnx" if runtime == "onnxruntime" else "openvino", imgsz)
    spec = DeploymentSpec(artifact, imgsz=imgsz, threads=threads, precision=precision)
    return diagnose_speed(
        spec,
        files[:max_images],
        reference_model=reference,
        workspace=workspace,
        data_yaml=data,
        scenario=scenario,
        budget_s=budget_s,
        levers=levers,
    )
