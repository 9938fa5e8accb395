"""Post-training INT8 with NNCF for ONNX and OpenVINO models, plain or accuracy-controlled.

Calibration images come from a named split (train by default, never the split accuracy is measured on) and
are recorded by hash. The YOLO head's post-processing (box decoding, DFL, the class sigmoid) stays in float by
default, as Ultralytics' own OpenVINO INT8 export does; so do the sigmoids inside the SiLU activations
(`float_sigmoids`), which lets OpenVINO keep each convolution and its activation fused.
"""

from __future__ import annotations

import logging
import re
import shutil
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..data.calibration import MIN_CALIBRATION_IMAGES, ImageSet
from ..errors import ConfigError, WorkbenchError, check_imgsz
from ..progress import ProgressFn, emit

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

FORMATS = ("openvino", "onnx")
PRESETS = ("mixed", "performance")


class QuantizationError(WorkbenchError):
    """NNCF could not quantize this model."""


@dataclass(frozen=True)
class QuantizeConfig:
    """NNCF post-training quantization options.

    preset: "mixed" (symmetric weights, asymmetric activations) or "performance" (symmetric everywhere).
    max_drop: with a value, accuracy-controlled quantization reverts operations to float until mAP50-95 on
        `validation_images` images of `validation_split` drops by at most this much (absolute).
    """

    format: str = "openvino"
    imgsz: int | None = None  # None: the parent's own size (a static export's, or the training size)
    preset: str = "mixed"
    calibration_images: int = 300
    calibration_split: str = "train"
    fast_bias_correction: bool = True
    keep_head_float: bool = True
    float_sigmoids: bool = True
    max_drop: float | None = None
    validation_images: int = 100
    validation_split: str = "val"

    def __post_init__(self):
        if self.format not in FORMATS:
            raise ConfigError(
                f"NNCF post-training INT8 handles {', '.join(FORMATS)}, not {self.format!r}",
                "quantize an ONNX or OpenVINO variant (a .pt parent is exported first)",
            )
        if self.preset not in PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}", f"choose from {', '.join(PRESETS)}")
        if self.imgsz is not None:
            check_imgsz(self.imgsz)
        if self.calibration_images < MIN_CALIBRATION_IMAGES:
            raise ConfigError(
                f"{self.calibration_images} calibration images are too few for stable ranges",
                f"use at least {MIN_CALIBRATION_IMAGES} (NNCF's default is 300)",
            )
        if self.max_drop is not None:
            if not 0 < self.max_drop < 1:
                raise ConfigError(
                    f"max_drop is an absolute mAP50-95 drop in (0, 1), got {self.max_drop}", "use e.g. max_drop=0.01"
                )
            if self.format != "openvino":
                raise ConfigError(
                    "accuracy-controlled quantization is run on OpenVINO models here",
                    "use format='openvino' with max_drop, or drop max_drop for ONNX",
                )
        if self.calibration_split == self.validation_split and self.max_drop is not None:
            raise ConfigError(
                "calibration and validation use the same split", "calibrate on 'train' and validate on 'val'"
            )


def _batch(path: Path, imgsz: int) -> np.ndarray:
    from ..models.detector import decode, preprocess

    return preprocess(decode(path.read_bytes(), str(path)), imgsz).batch


def calibration_dataset(images: ImageSet, imgsz: int, input_name: str | None, progress: ProgressFn | None):
    """An `nncf.Dataset` over the images; reports progress per image (a callback may cancel)."""
    import nncf

    seen = 0

    def transform(path: Path):
        nonlocal seen
        seen += 1
        emit(progress, "calibrate", min(seen, len(images.paths)), len(images.paths))
        batch = _batch(path, imgsz)
        return {input_name: batch} if input_name else batch

    return nncf.Dataset(list(images.paths), transform)


def head_float_names(op_names: list[str], fmt: str) -> list[str]:
    """Names of the Detect head's own operations (box decoding, DFL, sigmoid), i.e. not its convolutions.

    OpenVINO names ops after the PyTorch module path ("__module.model.23/aten::add/Add", DFL under
    "__module.model.23.dfl"); ONNX after the module path ("/model.23/Add", "/model.23/dfl/conv/Conv").
    """
    pattern = r"__module\.model\.(\d+)[./]" if fmt == "openvino" else r"^/model\.(\d+)/"
    indices = [int(m.group(1)) for name in op_names if (m := re.search(pattern, name))]
    if not indices:
        raise QuantizationError(
            "no Ultralytics layer names found in the graph; the head cannot be kept in float",
            "quantize a model exported by Ultralytics, or set keep_head_float=False",
        )
    head = max(indices)
    if fmt == "openvino":
        return [n for n in op_names if n.startswith((f"__module.model.{head}/", f"__module.model.{head}.dfl"))]
    own = re.compile(rf"^/model\.{head}/([^/]+|dfl/.*)$")
    return [n for n in op_names if own.match(n)]


class _RevertedOps(logging.Handler):
    """Collects the operations NNCF's accuracy restorer reports as reverted to float."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.names: list[str] = []

    def emit(self, record):
        message = record.getMessage()
        if "were reverted back to the floating-point precision" in message:
            self.names = [line.strip() for line in message.splitlines()[1:] if line.strip()]


def _read(source: Path, fmt: str):
    """The float model, its graph's operation names and the names of its Sigmoid operations."""
    if fmt == "openvino":
        import openvino as ov

        model = ov.Core().read_model(next(source.glob("*.xml")) if source.is_dir() else source)
        ops = model.get_ordered_ops()
        return (
            model,
            [op.get_friendly_name() for op in ops],
            [op.get_friendly_name() for op in ops if op.get_type_name() == "Sigmoid"],
        )
    import onnx

    model = onnx.load(str(source))
    return model, [node.name for node in model.graph.node], [n.name for n in model.graph.node if n.op_type == "Sigmoid"]


def _save(model, source: Path, out: Path, fmt: str) -> None:
    if fmt == "onnx":
        import onnx

        onnx.save(model, str(out))
        return
    import openvino as ov

    out.mkdir()
    xml = next(source.glob("*.xml"))
    ov.save_model(model, str(out / xml.name), compress_to_fp16=False)
    for extra in source.glob("*.yaml"):  # Ultralytics' metadata.yaml: names, imgsz, stride
        shutil.copy2(extra, out / extra.name)


def quantize_artifact(
    source: Path,
    out: Path,
    config: QuantizeConfig,
    calibration: ImageSet,
    validation: list | None = None,
    *,
    progress: ProgressFn | None = None,
) -> dict:
    """Quantize the float model at `source` into `out`; returns what was done (ignored and reverted ops)."""
    import nncf

    model, names, sigmoids = _read(source, config.format)
    input_name = None if config.format == "openvino" else model.graph.input[0].name
    ignored = head_float_names(names, config.format) if config.keep_head_float else []
    if config.float_sigmoids:
        ignored = list(dict.fromkeys(ignored + sigmoids))
    kwargs = {
        "preset": getattr(nncf.QuantizationPreset, config.preset.upper()),
        "subset_size": len(calibration.paths),
        "fast_bias_correction": config.fast_bias_correction,
        "ignored_scope": nncf.IgnoredScope(names=ignored, validate=False),
    }
    dataset = calibration_dataset(calibration, config.imgsz, input_name, progress)
    reverted = _RevertedOps()
    try:
        if config.max_drop is None:
            quantized = nncf.quantize(model, dataset, **kwargs)
        else:
            logging.getLogger("nncf").addHandler(reverted)
            try:
                quantized = nncf.quantize_with_accuracy_control(
                    model,
                    dataset,
                    nncf.Dataset(validation, lambda item: _batch(item.path, config.imgsz)),
                    _validation_fn(config.imgsz),
                    max_drop=config.max_drop,
                    **kwargs,
                )
            finally:
                logging.getLogger("nncf").removeHandler(reverted)
    except (RuntimeError, ValueError, nncf.errors.ValidationError) as exc:
        raise QuantizationError(
            f"NNCF could not quantize {source.name}: {type(exc).__name__}: {exc}",
            "check that the model is a float export; try keep_head_float=False",
        ) from exc
    _save(quantized, source, out, config.format)
    return {"ignored_ops": len(ignored), "reverted_ops": reverted.names if config.max_drop is not None else None}


def _validation_fn(imgsz: int):
    """mAP50-95 of a compiled OpenVINO model over labelled images (what the accuracy restorer maximises)."""
    from ..data.labels import LabelledImage
    from ..measure.mean_ap import map50_95
    from ..models.detector import decode, postprocess, preprocess

    boxed_cache: dict = {}

    def validate(compiled, items) -> float:
        detections, truths = [], []
        for item in items:
            if item.path not in boxed_cache:
                boxed_cache[item.path] = preprocess(decode(item.path.read_bytes(), str(item.path)), imgsz)
            boxed = boxed_cache[item.path]
            raw = compiled(boxed.batch)[0]
            # scored as the measurement path scores accuracy: validator NMS, in the model's input pixels
            detections.append(postprocess([raw], boxed, conf=0.001, iou=0.7, multi_label=True, to_original=False))
            truths.append(LabelledImage(item.path, boxed.to_input(item.boxes), item.classes))
        return map50_95(detections, truths)["map50_95"]

    return validate


def quantize(
    workspace: Workspace,
    parent_id: int,
    data_yaml: Path | str,
    config: QuantizeConfig = QuantizeConfig(),
    *,
    progress: ProgressFn | None = None,
) -> int:
    """INT8-quantize a recorded variant with NNCF and record the result as its child.

    A .pt parent is first exported to a float `config.format` model at `config.imgsz` (recorded too).
    Returns:
        the quantized variant's id; its params hold the config, the calibration images' hashes, the number of
        operations kept in float and, with accuracy control, the operations reverted to float.
    """
    from ..measure.mean_ap import read_labelled
    from ..models.export import ExportConfig, export
    from ..models.runners import check_loads

    config = replace(config, imgsz=_quantize_imgsz(workspace, parent_id, config))
    calibration = ImageSet.from_data(
        data_yaml, config.calibration_split, config.calibration_images, minimum=MIN_CALIBRATION_IMAGES
    )
    validation = None
    if config.max_drop is not None:
        held_out = ImageSet.from_data(data_yaml, config.validation_split, config.validation_images)
        validation = read_labelled(list(held_out.paths))
    source = workspace.artifact_path(parent_id)
    if source.suffix == ".pt":
        parent_id = export(
            workspace, parent_id, ExportConfig(format=config.format, imgsz=config.imgsz), progress=progress
        )
        source = workspace.artifact_path(parent_id)
    _check_float_source(source, config)
    params = {**asdict(config), "calibration": calibration.record()}

    def write(out: Path) -> None:  # adds what was kept in float: the ledger row is written after the artifact
        params.update(quantize_artifact(source, out, config, calibration, validation, progress=progress))

    stem = source.name.removesuffix("_openvino_model").removesuffix(".onnx").rsplit("-", 1)[0].removesuffix("-fp32")
    suffix = "_openvino_model" if config.format == "openvino" else ".onnx"
    tag = "int8ac" if config.max_drop is not None else "int8"
    emit(progress, "quantize", 0, 1, f"{config.format} {tag}")
    variant = workspace.add_artifact(
        write,
        f"{stem}-nncf-{tag}{suffix}",
        step="quantize",
        params=params,
        parent_id=parent_id,
        format=config.format,
        check=check_loads,
    )
    emit(progress, "quantize", 1, 1, f"{config.format} {tag}")
    return variant


def _quantize_imgsz(workspace: Workspace, parent_id: int, config: QuantizeConfig) -> int:
    """The size to calibrate and export at: the config's, which a static float parent must match, else the parent's."""
    from ..measure.measure import native_imgsz, static_imgsz

    static = static_imgsz(workspace.variant(parent_id))
    if static and config.imgsz not in (None, static):
        raise ConfigError(
            f"variant {parent_id} is exported for {static} px, so it cannot be quantized at {config.imgsz}",
            f"leave imgsz unset (or {static}), or quantize its PyTorch parent at {config.imgsz}",
        )
    return config.imgsz or static or native_imgsz(workspace, parent_id)


def _check_float_source(source: Path, config: QuantizeConfig) -> None:
    from ..models.runners import RuntimeOptions, open_runner, runtime_for

    expected = {"openvino": "openvino", "onnx": "onnxruntime"}[config.format]
    if runtime_for(source) != expected:
        raise ConfigError(
            f"{source.name} is not a{'n' if config.format == 'onnx' else ''} {config.format} model",
            f"quantize a .pt variant or a float {config.format} export of it",
        )
    if "int8" in open_runner(source, RuntimeOptions(precision="f32")).precision:
        raise ConfigError(f"{source.name} is already quantized to INT8", "quantize its float parent instead")
