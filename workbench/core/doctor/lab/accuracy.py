"""The accuracy lab: deliberately broken deployments of the demo model, each with the cause the doctor must name.

`build_accuracy_lab(root)` generates a few shapes images (seed 0, 320 px), makes the production and training
images non-square (a 192-row strip scaled 1.5x to 480 x 288, so that letterbox, stretch, padding and box mapping all
matter) and exports the demo model to ONNX at 320: the reference is that export with the default (Ultralytics)
pre- and postprocessing, and its .pt is the reference's weights for re-exports. `FAULTS` maps each fault's name to
(builder, expected cause): a builder takes the `Lab` and returns a `LabCase` to diagnose. The INT8 fault needs a
quantizer, which the caller hands to `build_accuracy_lab` (the doctor does not import the optimizers).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from ...data.calibration import ImageSet
from ...errors import ConfigError
from ...models.detector import DeploymentSpec, Detections, Postprocessing, Preprocessing, nms, prepare, to_original
from ..accuracy.diagnose import diagnose_accuracy

IMGSZ = 320
IMAGENET = {"mean": (0.485, 0.456, 0.406), "std": (0.229, 0.224, 0.225)}

Quantizer = Callable[[Path, Path, ImageSet, int], object]
"""quantize(source, out, calibration, imgsz): the float ONNX model at `source` to INT8 at `out`, calibrated on every
image of `calibration` at input size `imgsz`."""


@dataclass(frozen=True)
class Lab:
    """The shared pieces every fault is built from."""

    root: Path
    data_yaml: Path  # labelled control set (square images, the generator's val split)
    production: tuple[Path, ...]  # non-square production images (unlabelled)
    training: tuple[Path, ...]  # the training distribution, made non-square the same way
    onnx: Path  # the demo model exported at IMGSZ (static)
    weights: Path  # the demo model's .pt
    quantize: Quantizer | None = None  # for the INT8 fault: the caller's post-training quantizer

    def spec(self, artifact=None, **changes) -> DeploymentSpec:
        """The correct deployment, with `changes` (imgsz, preprocessing, postprocessing) applied."""
        return replace(DeploymentSpec(artifact or self.onnx, imgsz=IMGSZ), **changes)

    @property
    def reference(self) -> DeploymentSpec:
        return self.spec()


@dataclass
class LabCase:
    """One broken deployment, ready to diagnose."""

    deployment: object  # a DeploymentSpec or a callable
    lab: Lab
    images: tuple[Path, ...] = ()
    options: dict = field(default_factory=dict)  # preprocess=, artifact=, ...

    def diagnose(self, **extra):
        lab = self.lab
        options = {
            "labelled": lab.data_yaml,
            "training_images": lab.training,
            "reference_weights": lab.weights,
            **self.options,
            **extra,
        }
        return diagnose_accuracy(self.deployment, lab.reference, self.images or lab.production, **options)


def build_accuracy_lab(root: Path | str, *, images: int = 8, quantize: Quantizer | None = None) -> Lab:
    """Generate the lab's images and export the demo model (reused when already there).

    Args:
        root: the lab's folder.
        images: generated images per split.
        quantize: the post-training INT8 quantizer the `int8_blank_calibration` fault is built with (see
            `Quantizer`); without one, that fault raises ConfigError and the others are unaffected.
    """
    from ...data.generate import ShapesConfig, generate_shapes
    from ...models.cards import demo_weights
    from ...models.export import ExportConfig, export_artifact

    root = Path(root)
    dataset = generate_shapes(root / "data", ShapesConfig(seed=0, train=images, val=images, imgsz=IMGSZ))
    production = _widened(sorted((dataset.root / "images" / "val").glob("*.jpg")), root / "production")
    training = _widened(sorted((dataset.root / "images" / "train").glob("*.jpg")), root / "training")
    onnx = root / f"demo-{IMGSZ}.onnx"
    if not onnx.exists():
        export_artifact(demo_weights(), ExportConfig(format="onnx", imgsz=IMGSZ), onnx)
    return Lab(root, dataset.data_yaml, tuple(production), tuple(training), onnx, demo_weights(), quantize)


def _widened(paths, folder: Path, shift: str | None = None) -> list[Path]:
    """Rows 64..256 of each image scaled 1.5x (480 x 288), with an optional generator shift, as JPEG (quality 90)."""
    import cv2

    from ...data.generate import apply_shift

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for path in paths:
        out = folder / path.name
        if not out.exists():
            image = cv2.imread(str(path))[64:256]
            image = cv2.resize(image, (480, 288), interpolation=cv2.INTER_LINEAR).astype(np.float32)
            image = np.clip(apply_shift(image, shift, 480), 0, 255).astype(np.uint8)
            cv2.imwrite(str(out), image, [cv2.IMWRITE_JPEG_QUALITY, 90])
        written.append(out)
    return written


def _pre(**changes) -> Preprocessing:
    return replace(Preprocessing(), **changes)


def _spec_case(**changes):
    return lambda lab: LabCase(lab.spec(**changes), lab)


def _pre_case(**changes):
    return lambda lab: LabCase(lab.spec(preprocessing=_pre(**changes)), lab)


def _int8_blank(lab: Lab) -> LabCase:
    """The ONNX model quantized by the lab's quantizer with eight blank grey images as its calibration set."""
    import cv2

    out = lab.root / f"demo-{IMGSZ}-int8-blank.onnx"
    if not out.exists():
        if lab.quantize is None:
            raise ConfigError(
                "the int8_blank_calibration fault needs a quantizer",
                "build the lab with build_accuracy_lab(root, quantize=...): see lab.accuracy.Quantizer",
            )
        blank = lab.root / "blank"
        blank.mkdir(exist_ok=True)
        for index in range(8):
            cv2.imwrite(str(blank / f"blank{index}.png"), np.full((IMGSZ, IMGSZ, 3), 114, np.uint8))
        calibration = ImageSet("blank", tuple(sorted(blank.glob("*.png"))))
        lab.quantize(lab.onnx, out, calibration, IMGSZ)
    return LabCase(lab.spec(artifact=out), lab)


def _dark_images(lab: Lab) -> LabCase:
    """A correct deployment on production images darkened as the generator's 'dark' shift darkens them."""
    import cv2

    dark = []
    for path in lab.production:
        out = lab.root / "production-dark" / path.name
        if not out.exists():
            out.parent.mkdir(parents=True, exist_ok=True)
            from ...data.generate import apply_shift

            image = apply_shift(cv2.imread(str(path)).astype(np.float32), "dark", 480)
            cv2.imwrite(str(out), np.clip(image, 0, 255).astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, 90])
        dark.append(out)
    return LabCase(lab.spec(), lab, tuple(dark))


def _runner(lab: Lab):
    from ...models.runners import RuntimeOptions, open_runner

    return open_runner(lab.onnx, RuntimeOptions(threads=1))


def _class_shift(lab: Lab) -> LabCase:
    """A callable that adds one to every class id (1-based names list)."""
    from ...models.detector import open_detector

    detector = open_detector(lab.spec())

    def detect_shifted(image):
        found = detector(image)
        return Detections(found.boxes, found.scores, found.classes + 1)

    return LabCase(detect_shifted, lab, options={"artifact": lab.onnx})


def _boxes_unmapped(lab: Lab) -> LabCase:
    """A callable that returns boxes in the letterboxed input's pixels."""
    runner = _runner(lab)

    def detect_unmapped(image):
        prepared = prepare(image, IMGSZ)
        return Detections.from_rows(nms(runner(prepared.batch)[0]))

    return LabCase(detect_unmapped, lab, options={"artifact": lab.onnx})


def _callable_unscaled(lab: Lab) -> LabCase:
    """A callable with its own preprocess that forgets to divide by 255."""
    runner, pre = _runner(lab), _pre(scale=1.0)

    def preprocess(image):
        return prepare(image, IMGSZ, pre).batch

    def detect_unscaled(image):
        prepared = prepare(image, IMGSZ, pre)
        rows = nms(runner(prepared.batch)[0])
        rows[:, :4] = to_original(rows[:, :4], prepared)
        return Detections.from_rows(rows)

    return LabCase(detect_unscaled, lab, options={"preprocess": preprocess, "artifact": lab.onnx})


def _callable_bgr(lab: Lab) -> LabCase:
    """A callable (no preprocess given) that feeds BGR as RGB."""
    from ...models.detector import open_detector

    detector = open_detector(lab.spec(preprocessing=_pre(color="bgr")))

    def detect_bgr(image):
        return detector(image)

    return LabCase(detect_bgr, lab)


FAULTS = {
    "bgr_as_rgb": (_pre_case(color="bgr"), "channels_swapped"),
    "no_scaling": (_pre_case(scale=1.0), "no_scaling"),
    "imagenet_normalization": (_pre_case(**IMAGENET), "normalization"),
    "stretch_not_letterbox": (_pre_case(resize="stretch"), "stretch_resize"),
    "wrong_pad_value": (_pre_case(pad_value=0), "pad_value"),
    "nhwc_layout": (_pre_case(layout="nhwc"), "layout_nhwc"),
    "wrong_imgsz": (_spec_case(imgsz=640), "wrong_imgsz"),
    "conf_far_too_high": (_spec_case(postprocessing=Postprocessing(conf=0.9)), "conf_threshold_high"),
    "class_ids_shifted": (_class_shift, "class_ids_shifted"),
    "boxes_not_mapped": (_boxes_unmapped, "boxes_not_mapped"),
    "callable_unscaled": (_callable_unscaled, "no_scaling"),
    "callable_bgr": (_callable_bgr, "channels_swapped"),
    "int8_blank_calibration": (_int8_blank, "int8_quantization"),
    "dark_production_images": (_dark_images, "data_drift_dark"),
}
"""name -> (builder(lab) -> LabCase, the cause id the doctor must name)."""


def correct_case(lab: Lab) -> LabCase:
    """The correct deployment: the demo model's .pt, default pipeline, against its ONNX export: nothing to find."""
    return LabCase(lab.spec(artifact=lab.weights), lab)
