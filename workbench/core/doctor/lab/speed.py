"""The speed lab: deliberately slow deployments of the shipped demo model, each with the cause it plants.

`FAULTS` maps a name to (builder, expected cause); a builder takes a `SpeedLab` (a folder, a few small shapes
images with labels, the exports it needs) and returns a `LabCase`: the deployment and how to diagnose it (the
scenario, the reference model). `correct(lab)` is the deployment done right, which the doctor should pass. The
faults are the deployment guide's speed mistakes. Whether each is slow depends on the CPU: `SpeedLab.hurt(name)`
measures it against its fixed counterpart before it is used, and `fault_hurt_table(lab)` shows every fault with
the ratio measured here and its verdict ("hurts here", "not slow on this CPU"; see `speed_hurts.fault_hurts`):

- a model loaded on every call; no warm-up before serving (the first request pays load + first inference);
- more threads than cores (ONNX Runtime with 4x the usable cores spins its threads against each other);
- a precision this CPU runs slowly (an OpenVINO f16 hint: emulated without AVX-512 FP16; on a CPU with AMX bf16
  it runs on the vector units instead of the tiles), see `slow_precision_hint`;
- preprocessing written as a per-row Python loop; PyTorch eager where OpenVINO runs the same model;
- an input size far larger than the images need; one-at-a-time processing for an offline batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...environment import cpu_info, usable_cores
from ...models.cards import demo_weights
from ...models.detector import DeploymentSpec, Detections, nms, open_detector, prepare, to_original
from ..speed.timing import ExportCache

IMGSZ = 160  # the lab's images are 160 px: the right input size for them


@dataclass
class SpeedLab:
    """The lab's materials, made once: shapes images (with labels) and exports of the demo model."""

    folder: Path
    val_images: int = 8
    _exports: ExportCache | None = field(default=None, repr=False)
    _dataset: object = field(default=None, repr=False)
    measured_hurts: dict = field(default_factory=dict, repr=False)  # by fault, filled by `fault_hurts`

    @property
    def dataset(self):
        if self._dataset is None:
            from ...data.generate import ShapesConfig, generate_shapes

            config = ShapesConfig(seed=7, train=1, val=self.val_images, imgsz=IMGSZ)
            self._dataset = generate_shapes(self.folder / "data", config)
        return self._dataset

    @property
    def data_yaml(self) -> Path:
        return Path(self.dataset.data_yaml)

    def images(self) -> list[np.ndarray]:
        import cv2

        from ...data.checks import list_images

        return [cv2.imread(str(p)) for p in list_images(self.data_yaml, "val")]

    def artifact(self, fmt: str) -> Path:
        """The demo model as a dynamic-shape "onnx" or "openvino" export (made once)."""
        if self._exports is None:
            self._exports = ExportCache(self.folder / "exports")
        return self._exports.get(demo_weights(), fmt, IMGSZ)


@dataclass(frozen=True)
class LabCase:
    """A deployment and how the lab diagnoses it."""

    deployment: object  # a DeploymentSpec or a callable detect(image) -> Detections
    scenario: str = "single"
    reference_model: Path | None = None
    note: str = ""

    def diagnose_kwargs(self) -> dict:
        return {"scenario": self.scenario, "reference_model": self.reference_model or demo_weights(), "imgsz": IMGSZ}


def slow_precision_hint() -> str | None:
    """An OpenVINO precision hint that is slow on this CPU, or None where there is none.

    - bf16 on AMX tiles but no AMX-FP16 (Intel Sapphire Rapids): f16, which runs on the vector units;
    - bf16 native without AMX (AVX512_BF16, e.g. AMD Zen 4): f32, forcing off the bf16 OpenVINO picks by default
      (f16 is no use there: OpenVINO runs it as bf16; measured on a 2-core AMD EPYC at 320: f32 7.1 ms, bf16 4.3 ms);
    - AVX2 without AVX-512: None; OpenVINO executes f32 whatever the hint (f16 and bf16 compiled as float32 on a
      2-core AVX2 AMD EPYC, 2026-12-03), so no hint is slower than its default;
    - neither bf16 nor fp16 with AVX-512 (Intel without BF16): f16, emulated;
    - else f32."""
    isa = set(cpu_info()["isa"])
    if "amx_bf16" in isa and "amx_fp16" not in isa:
        return "f16"
    if "avx512_bf16" in isa:
        return "f32"
    if "avx512f" not in isa and not isa & {"avx512_fp16", "amx_fp16"}:
        return None
    if not isa & {"avx512_fp16", "amx_fp16"}:
        return "f16"
    return "f32"


class LabUnavailable(RuntimeError):
    """A fault this CPU cannot show (its cause does not slow anything down here)."""


class LoadsEveryCall:
    """A request handler that opens the model on every call (ONNX Runtime session created per request)."""

    def __init__(self, artifact: Path):
        self.artifact = artifact

    def __call__(self, image: np.ndarray) -> Detections:
        return open_detector(DeploymentSpec(self.artifact, imgsz=IMGSZ))(image)


class LazyNoWarmup:
    """Loads the model on the first request and serves it without any warm-up call."""

    def __init__(self, artifact: Path):
        self.artifact, self.detector = artifact, None

    def __call__(self, image: np.ndarray) -> Detections:
        if self.detector is None:
            self.detector = open_detector(DeploymentSpec(self.artifact, imgsz=IMGSZ))
        return self.detector(image)


class PythonLoopPreprocess:
    """OpenVINO inference behind a letterbox written as a per-row Python loop (nearest-neighbour, per-row scaling).

    It exposes `preprocess(image)`, so the doctor can time that stage beside the vectorised one.
    """

    def __init__(self, artifact: Path):
        self.spec = DeploymentSpec(artifact, imgsz=IMGSZ)
        self.runner = open_detector(self.spec).runner

    def preprocess(self, image: np.ndarray):
        size, (h, w) = IMGSZ, image.shape[:2]
        ratio = min(size / h, size / w)
        new_h, new_w = round(h * ratio), round(w * ratio)
        top, left = (size - new_h) // 2, (size - new_w) // 2
        out = np.full((3, size, size), 114 / 255, np.float32)
        columns = np.minimum((np.arange(new_w) / ratio).astype(int), w - 1)
        for y in range(new_h):  # the slow part: one Python iteration (and three channel copies) per row
            row = image[min(int(y / ratio), h - 1), columns]
            for channel in range(3):
                out[2 - channel, top + y, left : left + new_w] = [v / 255.0 for v in row[:, channel]]
        reference = prepare(image, size)
        return out[None], reference

    def __call__(self, image: np.ndarray) -> Detections:
        batch, prepared = self.preprocess(image)
        rows = nms(self.runner(batch)[0])
        rows[:, :4] = to_original(rows[:, :4], prepared)
        return Detections.from_rows(rows)


def warmed_detector(lab: SpeedLab):
    """The correct callable: OpenVINO, loaded once at start-up and warmed with three calls."""
    detector = open_detector(DeploymentSpec(lab.artifact("openvino"), imgsz=IMGSZ, threads=usable_cores()))
    for image in lab.images()[:3]:
        detector(image)
    return detector


def correct(lab: SpeedLab) -> LabCase:
    """The deployment done right: OpenVINO, the runtime's own precision, the usable cores, the images' size."""
    spec = DeploymentSpec(lab.artifact("openvino"), imgsz=IMGSZ, threads=usable_cores())
    return LabCase(spec, note="OpenVINO default precision, usable cores, imgsz 160, one image at a time")


def _loads_every_call(lab):
    return LabCase(LoadsEveryCall(lab.artifact("onnx")), note="ONNX Runtime session opened per request")


def _no_warmup(lab):
    return LabCase(LazyNoWarmup(lab.artifact("openvino")), note="first request loads the model")


def _oversubscribed(lab):
    spec = DeploymentSpec(lab.artifact("onnx"), imgsz=IMGSZ, threads=4 * usable_cores())
    return LabCase(spec, note=f"ONNX Runtime with {4 * usable_cores()} threads on {usable_cores()} cores")


def _slow_precision(lab):
    """At the model's training size (320), where the f16-on-AMX and emulated gaps are 2x or more; at 640 where f32 is
    forced off a native AVX512_BF16 without AMX (1.6x at 320 there, 2.0x at 640: 2-core AMD EPYC, 2026-12-03)."""
    hint = slow_precision_hint()
    if hint is None:
        raise LabUnavailable("no OpenVINO precision hint is slower than the default on this CPU (AVX2: all run f32)")
    size = 4 * IMGSZ if hint == "f32" and "amx_bf16" not in cpu_info()["isa"] else 2 * IMGSZ
    spec = DeploymentSpec(lab.artifact("openvino"), imgsz=size, threads=usable_cores(), precision=hint)
    return LabCase(spec, note=f"OpenVINO precision hint {hint} on {', '.join(cpu_info()['isa']) or 'this CPU'}")


def _python_preprocess(lab):
    return LabCase(PythonLoopPreprocess(lab.artifact("openvino")), note="per-row Python letterbox")


def _pytorch_eager(lab):
    spec = DeploymentSpec(demo_weights(), imgsz=IMGSZ, threads=usable_cores())
    return LabCase(spec, note="the .pt in PyTorch eager")


def _imgsz_too_large(lab):
    spec = DeploymentSpec(lab.artifact("openvino"), imgsz=4 * IMGSZ, threads=usable_cores())
    return LabCase(spec, note=f"imgsz {4 * IMGSZ} on {IMGSZ} px images")


def _synchronous_offline(lab):
    spec = DeploymentSpec(lab.artifact("openvino"), imgsz=IMGSZ, threads=usable_cores())
    return LabCase(spec, scenario="offline", note="one image at a time for an offline batch of files")


FAULTS = {
    "loaded_every_call": (_loads_every_call, "loads_every_call"),
    "no_warmup": (_no_warmup, "no_warmup"),
    "oversubscribed_threads": (_oversubscribed, "oversubscribed_threads"),
    "slow_precision": (_slow_precision, "slow_precision"),
    "python_preprocess": (_python_preprocess, "slow_preprocess"),
    "pytorch_eager": (_pytorch_eager, "slow_engine"),
    "imgsz_too_large": (_imgsz_too_large, "imgsz_too_large"),
    "synchronous_offline": (_synchronous_offline, "synchronous_processing"),
}
