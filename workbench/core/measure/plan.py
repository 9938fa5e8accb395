"""The measurement plan: what to measure on a variant and how, in one type that every caller builds.

The CLI, the panels, recipes, the demo and the bench all describe a measurement as a `MeasurePlan` and hand it to
`measure(workspace, variant_id, plan, data_yaml)`. A plan resolves, per variant, into rows: one per image size and
(for OpenVINO) precision hint; each row opens the artifact once and measures latency, accuracy and parity on it.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

from ..errors import ConfigError, check_imgsz
from ..options import build
from .latency import LatencyConfig

OPENVINO_PRECISIONS = ("f32", "bf16", "f16", None)  # None: OpenVINO's own choice (bf16 on CPUs that have it)


@dataclass(frozen=True)
class MeasurePlan:
    """What to measure and how.

    imgsz: input sizes for a model that takes any size; () means the size it was trained at. A static export is
        always measured at the size it was exported for.
    accuracy_imgsz: None measures accuracy at each row's own imgsz (latency and accuracy of a row then agree); a
        number measures it there instead, and the row says so (`map_imgsz`).
    precisions: OpenVINO precision hints, one row each ("f32" computes what the export stores; None lets OpenVINO
        choose, which is bf16 on CPUs with native bf16). Other runtimes compute in what the artifact stores.
    seconds: timed seconds per latency row, in `windows` windows that must agree within `tolerance`.
    """

    latency: bool = True
    accuracy: bool = True
    parity: bool = False
    imgsz: tuple[int, ...] = ()
    accuracy_imgsz: int | None = None
    precisions: tuple[str | None, ...] = ("f32",)
    threads: int | None = None
    hint: str = "latency"
    streams: int | None = None
    seconds: float = 3.0
    warmup_s: float = 1.0
    warmup_runs: int = 5
    min_runs: int = 20
    windows: int = 3
    tolerance: float = 0.1
    stage_images: int = 0
    throughput_jobs: int = 0
    split: str = "val"
    accuracy_images: int | None = None
    parity_images: int = 20

    def __post_init__(self):
        sizes = (self.imgsz,) if isinstance(self.imgsz, int) else tuple(self.imgsz or ())
        object.__setattr__(self, "imgsz", tuple(check_imgsz(s, "imgsz") for s in sizes))
        object.__setattr__(self, "precisions", tuple(self.precisions))
        if not (self.latency or self.accuracy or self.parity):
            raise ConfigError("the plan measures nothing", "set latency, accuracy or parity to true")
        if self.accuracy_imgsz is not None:
            check_imgsz(self.accuracy_imgsz, "accuracy_imgsz")
        unknown = [p for p in self.precisions if p not in OPENVINO_PRECISIONS]
        if unknown or not self.precisions:
            raise ConfigError(
                f"unknown OpenVINO precision hint(s) {unknown or '(none given)'}",
                "use f32, bf16, f16, or null for the runtime's default",
            )
        for name in ("threads", "streams"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ConfigError(f"{name} must be a whole number >= 1 (or null), got {value!r}", "use e.g. 2")
        if not (isinstance(self.seconds, (int, float)) and math.isfinite(self.seconds) and self.seconds > 0):
            raise ConfigError(f"seconds must be > 0, got {self.seconds!r}", "use e.g. 3")
        for name in ("stage_images", "throughput_jobs", "parity_images", "warmup_runs"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} cannot be negative, got {getattr(self, name)}", "use 0 to skip it")
        if self.accuracy_images is not None and self.accuracy_images < 1:
            raise ConfigError(f"accuracy_images must be >= 1, got {self.accuracy_images}", "or null for all")
        if self.parity and self.parity_images < 1:
            raise ConfigError("parity needs at least one image", "set parity_images to e.g. 20")
        self.timing()  # warm-up, runs, windows and tolerance are checked by the harness's own config
        from ..models.runners import RuntimeOptions

        RuntimeOptions(threads=self.threads, hint=self.hint, streams=self.streams)

    def timing(self) -> LatencyConfig:
        return LatencyConfig(
            warmup_runs=self.warmup_runs,
            warmup_s=self.warmup_s,
            min_runs=self.min_runs,
            min_time_s=self.seconds,
            windows=self.windows,
            tolerance=self.tolerance,
        )

    def options(self, precision: str | None):
        """The runner options of one row."""
        from ..models.runners import RuntimeOptions

        return RuntimeOptions(threads=self.threads, precision=precision, hint=self.hint, streams=self.streams)

    def to_dict(self) -> dict:
        data = asdict(self)
        data["imgsz"], data["precisions"] = list(self.imgsz), list(self.precisions)
        return data

    @classmethod
    def from_dict(cls, data: dict | None, *, source: str = "measure") -> MeasurePlan:
        """A plan from a mapping (a recipe's `measure:` entry); wrong keys, types and ranges are named."""
        return build(cls, data, source, scalar_lists=True)
