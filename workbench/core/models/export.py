"""Export a variant through Ultralytics' exporter, staged and checked, recorded as a child variant."""

from __future__ import annotations

import shutil
from dataclasses import asdict, dataclass, replace
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING

from ..data.checks import check_dataset
from ..environment import torch_threads
from ..errors import ConfigError, WorkbenchError, check_imgsz
from ..progress import ProgressFn, emit
from ..store.atomic import scratch
from ..store.records import Format

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace


class ExportFormat(StrEnum):
    """The formats Ultralytics' exporter writes here (spelled as `Format`)."""

    ONNX = Format.ONNX.value
    OPENVINO = Format.OPENVINO.value
    TORCHSCRIPT = Format.TORCHSCRIPT.value
    TFLITE = Format.TFLITE.value  # LiteRT: the `litert` extra (litert-torch converts, ai-edge-quantizer quantizes)


# What `workbench demo` exports: the formats of the `runtimes` extra (LiteRT is an extra of its own).
DEMO_FORMATS = (ExportFormat.ONNX, ExportFormat.OPENVINO, ExportFormat.TORCHSCRIPT)

# What Ultralytics writes next to the .pt for each format, and the suffix the artifact keeps in the workspace.
_OUTPUT = {
    ExportFormat.ONNX: ".onnx",
    ExportFormat.OPENVINO: "_openvino_model",
    ExportFormat.TORCHSCRIPT: ".torchscript",
    ExportFormat.TFLITE: ".tflite",  # Ultralytics writes <stem>.tflite, <stem>_int8.tflite or <stem>_w8a32.tflite
}
_PRECISIONS = {
    ExportFormat.ONNX: ("fp32", "fp16", "int8"),
    ExportFormat.OPENVINO: ("fp32", "fp16", "int8"),
    ExportFormat.TORCHSCRIPT: ("fp32",),
    # int8: static, int8 weights and activations (calibrated); w8a32: int8 weights, fp32 activations (no calibration)
    ExportFormat.TFLITE: ("fp32", "int8", "w8a32"),
}
_WHY_NOT = {
    (ExportFormat.TFLITE, "fp16"): "Ultralytics' LiteRT exporter refuses half=True: LiteRT runs an fp32 model in fp16 "
    "at run time on a GPU delegate instead",
}
_ULTRALYTICS_FORMAT = {ExportFormat.TFLITE: "litert"}  # Ultralytics 8.4 renamed tflite to litert (same exporter)
_QUANTIZE = {"fp32": None, "fp16": 16, "int8": 8, "w8a32": "w8a32"}
MIN_DETECT_OPSET = 9  # Ultralytics' ONNX export asserts opset >= 9 for a detection model (nearest Upsample)


class ExportError(WorkbenchError):
    """Ultralytics' exporter failed or produced an artifact that does not load."""


@dataclass(frozen=True)
class ExportConfig:
    """Export options; `precision` is what the artifact stores (fp16 IR weights, int8 through NNCF calibration;
    for LiteRT int8 through ai-edge-quantizer calibration, w8a32 int8 weights only)."""

    format: ExportFormat = ExportFormat.ONNX
    imgsz: int | None = None  # None: the size the parent model was trained at
    batch: int = 1
    dynamic: bool = False
    precision: str = "fp32"
    simplify: bool = True
    data: str | None = None  # calibration data YAML, needed for int8
    fraction: float = 1.0  # share of the calibration split used for int8
    split: str = "train"  # calibration split: not the val split that accuracy is measured on
    opset: int | None = None  # ONNX only; None: Ultralytics' choice for the installed torch (18 for torch 2.14)

    def __post_init__(self):
        object.__setattr__(self, "format", ExportFormat(self.format))
        allowed = _PRECISIONS[self.format]
        if self.precision not in allowed:
            why = _WHY_NOT.get((self.format, self.precision))
            raise ConfigError(
                f"{self.format} export does not store {self.precision}" + (f" ({why})" if why else ""),
                f"choose precision from {', '.join(allowed)}",
            )
        if self.dynamic and self.format is ExportFormat.TFLITE:
            raise ConfigError("LiteRT export has no dynamic input shape", "export with dynamic=False at one imgsz")
        if self.imgsz is not None:
            check_imgsz(self.imgsz)
        if self.batch < 1:
            raise ConfigError(f"batch must be >= 1, got {self.batch}", "use batch=1 for latency")
        if self.precision == "int8" and not self.data:
            raise ConfigError("int8 export needs calibration images", "pass data= a YOLO data YAML")
        if self.opset is not None:
            _check_opset(self.opset, self.format)

    def arguments(self) -> dict:
        """The keyword arguments of Ultralytics' `YOLO.export` for this config."""
        args = {
            "format": _ULTRALYTICS_FORMAT.get(self.format, self.format.value),
            "imgsz": self.imgsz,
            "batch": self.batch,
            "dynamic": self.dynamic,
            "device": "cpu",
            "quantize": _QUANTIZE[self.precision],
            "verbose": False,
        }
        if self.format is ExportFormat.ONNX:
            args["simplify"] = self.simplify
            if self.opset is not None:
                args["opset"] = self.opset
        if self.precision == "int8":
            args.update(data=self.data, fraction=self.fraction, split=self.split)
        return args

    def name_suffix(self) -> str:
        shape = "dyn" if self.dynamic else f"{self.imgsz}"
        opset = f"-opset{self.opset}" if self.opset is not None else ""
        return f"{shape}-b{self.batch}{opset}-{self.precision}"

    def params(self) -> dict:
        """What the ledger records (and matches a reused export on); an unset opset is left out, so that exports
        recorded before the option existed are still found."""
        params = asdict(self)
        if self.opset is None:
            del params["opset"]
        return params


def opset_range() -> tuple[int, int]:
    """The ONNX opsets Ultralytics' export can write here: from its minimum for a detection model up to the
    lower of the installed torch exporter's maximum (the TorchScript exporter, which Ultralytics uses) and the
    installed onnx package's."""
    import onnx

    try:
        from torch.onnx import _constants  # heavy: only when an opset is asked for

        low, high = _constants.ONNX_MIN_OPSET, _constants.ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET
    except (ImportError, AttributeError):  # a torch without these constants: its documented range
        low, high = 7, 20
    return max(low, MIN_DETECT_OPSET), min(high, onnx.defs.onnx_opset_version())


def _check_opset(opset, fmt: ExportFormat) -> None:
    if fmt is not ExportFormat.ONNX:
        raise ConfigError(
            f"opset applies to ONNX export only, not {fmt}", "leave opset unset, or export with format='onnx'"
        )
    if isinstance(opset, bool) or not isinstance(opset, int):
        raise ConfigError(f"opset must be an integer ONNX opset version, got {opset!r}", "use e.g. opset=17")
    low, high = opset_range()
    if not low <= opset <= high:
        raise ConfigError(
            f"opset {opset} is outside what the installed exporter writes ({low}..{high})",
            f"choose an opset from {low} to {high}, or leave it unset",
        )


def export_artifact(weights: Path, config: ExportConfig, out: Path, *, progress: ProgressFn | None = None) -> Path:
    """Export `weights` (.pt) with Ultralytics into a temporary folder and move the artifact to `out`.

    The caller stages `out`; nothing is written beside `weights`.
    """
    from .checkpoints import load_checkpoint

    emit(progress, f"export {config.format}", 0, 1, config.name_suffix())
    with scratch("export-") as tmp:
        local = Path(tmp) / Path(weights).name
        shutil.copy2(weights, local)
        model = load_checkpoint(local)
        arguments = config.arguments()
        if config.data:  # Ultralytics resolves a relative `path:` against the working folder: give it absolute paths
            arguments["data"] = str(check_dataset(config.data, splits=(config.split,)).write_resolved(Path(tmp)))
        try:
            with torch_threads():  # Ultralytics' exporter lowers torch's thread count for the process
                produced = Path(model.export(**arguments))
        except Exception as exc:  # Ultralytics raises AssertionError, RuntimeError, ... from its converters
            raise ExportError(
                f"{config.format} export of {weights} failed: {type(exc).__name__}: {exc}",
                "check the export options; the runtime may not support this precision or shape",
            ) from exc
        if not produced.exists():
            raise ExportError(f"Ultralytics reported {produced} but did not write it", "re-run the export")
        shutil.move(str(produced), out)
    emit(progress, f"export {config.format}", 1, 1, config.name_suffix())
    return out


def export(workspace: Workspace, parent_id: int, config: ExportConfig, *, progress: ProgressFn | None = None) -> int:
    """Export a recorded .pt variant and record the artifact as its child.

    The artifact is loaded once by its runtime before it is kept (`check_loads`). An export with the same
    options whose artifact is still in the workspace is reused.
    Returns:
        the child variant id.
    """
    from .checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz
    from .runners import check_loads

    parent = workspace.artifact_path(parent_id)
    if config.data:
        check_dataset(config.data, splits=(config.split,))  # calibration images: fail now, not after loading
    if parent.suffix != ".pt":
        raise ConfigError(f"variant {parent_id} is {parent.name}, not a PyTorch .pt model", "export a .pt variant")
    if config.imgsz is None:
        config = replace(config, imgsz=checkpoint_imgsz(parent) or DEFAULT_IMGSZ)
    earlier = workspace.ledger.find_variant(step="export", parent_id=parent_id, params=config.params())
    if earlier is not None and workspace.artifact_path(earlier.id).exists():
        return earlier.id
    name = f"{parent.stem.rsplit('-', 1)[0]}-{config.name_suffix()}{_OUTPUT[config.format]}"
    return workspace.add_artifact(
        lambda path: export_artifact(parent, config, path, progress=progress),
        name,
        step="export",
        params=config.params(),
        parent_id=parent_id,
        format=config.format.value,
        check=check_loads,
    )
