"""The model a server serves (`ServedModel`): a workspace variant or an artifact opened once through the
workbench's reference pipeline, answering images (detections as JSON) and raw tensors (the Open Inference
Protocol), with its metadata.

An OpenVINO artifact is served by the fast path (`fast_path.fast_detector`, compiled with the throughput hint) and
its raw model compiled alongside: one infer request of each per worker, so `parallelism` workers run at once. Any
other artifact is served by `open_detector`'s runner, one call at a time. A model already open elsewhere (a runner
decrypted in memory, a detector) is served with `ServedModel.from_runner` or `ServedModel.from_open`.
"""

from __future__ import annotations

import ast
import queue
import threading
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ...errors import ConfigError
from ...models.detector import CheckedDetector, DeploymentSpec, Detections, FastDetector, Postprocessing, fast_detector
from ...models.runners import Runner, Runtime, RuntimeOptions, open_runner, runtime_for
from .protocol import ProtocolError, TensorSpec, datatype_of, model_metadata

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

DEFAULT_INPUT = "images"  # Ultralytics' names, for artifacts that carry none
DEFAULT_OUTPUT = "output0"
Infer = Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]]


@dataclass
class _Worker:
    """What one worker thread uses, alone: a detector and a raw-tensor call (None: images only)."""

    detect: Callable[[np.ndarray], Detections]
    infer: Infer | None


class _Pool:
    """Workers lent one at a time to the threads that run requests."""

    def __init__(self, workers: list[_Worker]):
        self.size = len(workers)
        self._free: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        for worker in workers:
            self._free.put(worker)

    @contextmanager
    def borrow(self) -> Iterator[_Worker]:
        worker = self._free.get()
        try:
            yield worker
        finally:
            self._free.put(worker)


class ServedModel:
    """A detector opened once for serving: `detect_encoded(bytes)` for an image, `infer({name: array})` for tensors.

    Build it with `open` (an artifact), `from_variant` (a workspace variant), `from_runner` or `from_open` (a
    model already open). Thread-safe: up to `parallelism` calls run at once, more wait for a worker.
    """

    def __init__(
        self,
        workers: list[_Worker],
        *,
        name: str,
        version: str,
        platform: str,
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        names: dict[int, str],
        imgsz: int,
        precision: str = "",
    ):
        if not workers:
            raise ConfigError("a served model needs at least one worker", "pass workers=1 or more")
        self.name, self.version, self.platform = check_model_name(name), str(version), platform
        self.inputs, self.outputs, self.names = list(inputs), list(outputs), dict(names)
        self.imgsz, self.precision = imgsz, precision
        self._pool = _Pool(workers)

    @property
    def parallelism(self) -> int:
        """How many requests run at once (the server's worker threads)."""
        return self._pool.size

    def metadata(self) -> dict:
        """The Open Inference Protocol's model metadata."""
        return model_metadata(self.name, [self.version], self.platform, self.inputs, self.outputs)

    def describe(self) -> str:
        return (
            f"{self.name} (version {self.version}): {self.platform} {self.precision}, imgsz {self.imgsz}, "
            f"{self.parallelism} worker(s)"
        ).replace("  ", " ")

    def detect(self, image: np.ndarray) -> dict:
        """Detections of one HxWx3 uint8 BGR image, as JSON-able lists (boxes x0, y0, x1, y1 in its pixels)."""
        with self._pool.borrow() as worker:
            found = worker.detect(image)
        return detections_json(found, self.names, image.shape)

    def detect_encoded(self, data: bytes) -> dict:
        """`detect` of an encoded JPEG or PNG (check its header's size first: `limits.check_image`).

        Raises:
            ProtocolError: the bytes do not decode.
        """
        return self.detect(decode_image(data))

    def infer(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """The raw outputs for input arrays already checked against `inputs` (`protocol.parse_infer_request`).

        Raises:
            ProtocolError: 501 when the model was opened without its raw runner (images only).
        """
        with self._pool.borrow() as worker:
            if worker.infer is None:
                raise ProtocolError(f"model {self.name!r} serves images only (POST /v1/detect)", 501)
            return worker.infer(arrays)

    # -- building one ---------------------------------------------------------------------------------------------

    @classmethod
    def open(
        cls,
        artifact: Path | str,
        *,
        name: str = "model",
        version: str = "1",
        imgsz: int | None = None,
        threads: int | None = None,
        precision: str | None = None,
        workers: int | None = None,
        postprocessing: Postprocessing = Postprocessing(),
    ) -> ServedModel:
        """Open an artifact for serving.

        Args:
            artifact: a .pt, .onnx, .torchscript, .tflite file or an OpenVINO model folder.
            imgsz: the square input size (None: the artifact's static size, else the size it was trained at).
            threads, precision: as in `DeploymentSpec` (precision: OpenVINO only).
            workers: OpenVINO's concurrent requests (None: what its throughput hint calls optimal); 1 elsewhere.
        Raises:
            ConfigError, ArtifactLoadError, RuntimeNotInstalled: as `open_runner` and `fast_detector` do.
        """
        path = Path(artifact)
        if workers is not None and workers < 1:
            raise ConfigError(f"workers must be >= 1, got {workers}", "use e.g. 2, or None for the runtime's choice")
        if runtime_for(path) is Runtime.OPENVINO:
            return _open_openvino(path, name, version, imgsz, threads, precision, workers, postprocessing)
        runner = open_runner(path, RuntimeOptions(threads=threads))
        side = imgsz or _static_side(runner.input_shape) or _trained_imgsz(path)
        spec = DeploymentSpec(path, imgsz=side, threads=threads, postprocessing=postprocessing)
        return cls.from_open(CheckedDetector(spec, runner), runner=runner, name=name, version=version)

    @classmethod
    def from_variant(cls, workspace: Workspace, variant_id: int, *, name: str | None = None, **options) -> ServedModel:
        """Open a workspace variant's artifact for serving: named `variant-<id>` unless `name` is given, versioned
        by the variant id; at the size it was exported at (an export) unless `imgsz` is given. Other options as for
        `open`.

        Raises:
            WorkspaceError: no such variant, or it has no artifact.
        """
        variant = workspace.variant(variant_id)
        path = workspace.artifact_path(variant_id)
        exported = variant.step == "export" and isinstance(variant.params, dict)  # its params name the export size
        options.setdefault("imgsz", variant.params.get("imgsz") if exported else None)
        return cls.open(path, name=name or f"variant-{variant.id}", version=str(variant.id), **options)

    @classmethod
    def from_runner(
        cls, runner: Runner, *, imgsz: int, postprocessing: Postprocessing = Postprocessing(), **metadata
    ) -> ServedModel:
        """Serve a runner opened elsewhere (e.g. decrypted in memory): images through `open_detector`'s steps around
        it, tensors through it, one call at a time. `metadata`: name, version, names (class names)."""
        spec = DeploymentSpec(runner.path, imgsz=imgsz, postprocessing=postprocessing)
        return cls.from_open(CheckedDetector(spec, runner), runner=runner, **metadata)

    @classmethod
    def from_open(
        cls,
        detector: Callable[[np.ndarray], Detections],
        *,
        runner=None,
        name: str = "model",
        version: str = "1",
        names: dict[int, str] | None = None,
        workers: int | None = None,
        imgsz: int | None = None,
    ) -> ServedModel:
        """Serve a detector already open.

        Args:
            detector: a `FastDetector` (served by `workers` siblings sharing its compiled model), a `Detector`, or any
                callable `detect(image) -> Detections` (served one call at a time).
            runner: what answers raw tensors: an OpenVINO `CompiledModel` (one infer request per worker), a
                workbench `Runner` (one call at a time), or None for the detector's own runner (images only if it
                has none).
            names: class names by id (None: read from the artifact where it says them).
            imgsz: the detector's input size (None: its spec's).
        """
        runner = runner if runner is not None else getattr(detector, "runner", None)
        spec = getattr(detector, "spec", None)
        side = imgsz or (spec.imgsz if spec is not None else 640)
        detectors = _detectors(detector, workers)
        infers, inputs, outputs = _tensor_calls(runner, len(detectors), side)
        where = getattr(runner, "path", None) or (spec.artifact if spec is not None else None)
        platform = _platform(detector, runner)
        precision = getattr(detector, "precision", None) or getattr(runner, "precision", "") or ""
        workers_ = [_Worker(d, i) for d, i in zip(detectors, infers, strict=True)]
        _warm_up(workers_[0], side)
        return cls(
            workers_,
            name=name,
            version=version,
            platform=platform,
            inputs=inputs,
            outputs=outputs,
            names=names if names is not None else class_names(where),
            imgsz=side,
            precision=str(precision),
        )


def _open_openvino(path, name, version, imgsz, threads, precision, workers, post) -> ServedModel:
    """The fast path (preprocessing in the graph) for images and the raw model for tensors, both compiled with the
    throughput hint, and one infer request of each per worker."""
    raw = compile_raw(path, threads=threads, precision=precision)
    side = imgsz or _static_side(tuple(_dims(raw.inputs[0]))) or _trained_imgsz(path)
    spec = DeploymentSpec(path, imgsz=side, threads=threads, precision=precision, postprocessing=post)
    fast = fast_detector(spec, hint="throughput")
    count = workers or max(1, min(fast.optimal_requests, int(raw.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))))
    return ServedModel.from_open(fast, runner=raw, name=name, version=version, workers=count, imgsz=side)


def compile_raw(path: Path, *, threads: int | None = None, precision: str | None = None, hint: str = "throughput"):
    """The OpenVINO IR as exported (its own input and output tensors), compiled for the CPU."""
    from ...offline import decline_openvino_telemetry

    decline_openvino_telemetry()
    import openvino as ov

    options = RuntimeOptions(threads=threads, precision=precision, hint=hint)
    xml = path if path.suffix == ".xml" else next(Path(path).glob("*.xml"))
    core = ov.Core()
    config = {"INFERENCE_NUM_THREADS": options.thread_count, "PERFORMANCE_HINT": hint.upper()}
    if precision is not None:
        config["INFERENCE_PRECISION_HINT"] = precision
    return core.compile_model(core.read_model(str(xml)), "CPU", config)


def _detectors(detector, workers: int | None) -> list:
    """One detector per worker: siblings of a FastDetector (one infer request each), else the detector alone."""
    if isinstance(detector, FastDetector):
        count = workers or max(1, detector.optimal_requests)
        d = detector
        siblings = [
            FastDetector(d.spec, d.compiled, d.precision, d.context, d.load_ms, d.batch) for _ in range(count - 1)
        ]
        return [d, *siblings]
    if not callable(detector):
        raise ConfigError(f"a detector is a callable image -> Detections, got {type(detector).__name__}", "")
    return [detector]


def _tensor_calls(runner, count: int, imgsz: int) -> tuple[list[Infer | None], list[TensorSpec], list[TensorSpec]]:
    """A raw-tensor call per worker and the tensors' specs: per infer request for a CompiledModel, one locked call
    shared by the workers for a Runner (or any callable batch -> list of arrays), nothing for None."""
    if runner is None:
        return [None] * count, [], []
    if hasattr(runner, "create_infer_request"):
        inputs = [_port_spec(p, f"input{i}") for i, p in enumerate(runner.inputs)]
        outputs = [_port_spec(p, f"output{i}") for i, p in enumerate(runner.outputs)]
        return [_request_call(runner.create_infer_request(), inputs, outputs) for _ in range(count)], inputs, outputs
    inputs, outputs = _runner_specs(runner, imgsz)
    lock = threading.Lock()

    def call(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with lock:
            results = runner(arrays[inputs[0].name])
        return {spec.name: np.asarray(a) for spec, a in zip(outputs, results, strict=True)}

    return [call] * count, inputs, outputs


def _request_call(request, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> Infer:
    def call(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        request.infer({i: arrays[spec.name] for i, spec in enumerate(inputs)})
        return {spec.name: request.get_output_tensor(i).data.copy() for i, spec in enumerate(outputs)}

    return call


def _dims(port) -> list[int]:
    return [d.get_length() if d.is_static else -1 for d in port.get_partial_shape()]


def _port_spec(port, fallback: str) -> TensorSpec:
    name = port.any_name if port.get_names() else fallback
    return TensorSpec(name, datatype_of(port.get_element_type().to_dtype()), tuple(_dims(port)))


def _runner_specs(runner, imgsz: int) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """A Runner's input (float32, its shape) and outputs, whose shapes and dtypes one call on zeros shows."""
    shape = tuple(getattr(runner, "input_shape", (-1, 3, -1, -1)))
    example = tuple(s if s > 0 else d for s, d in zip(shape, (1, 3, imgsz, imgsz), strict=False))
    results = runner(np.zeros(example, np.float32))
    input_name, output_names = artifact_names(getattr(runner, "path", None), len(results))
    dynamic = any(s < 0 for s in shape)
    outputs = [
        TensorSpec(n, datatype_of(np.asarray(a).dtype), tuple(-1 if dynamic else d for d in np.shape(a)))
        for n, a in zip(output_names, results, strict=True)
    ]
    return [TensorSpec(input_name, "FP32", shape)], outputs


def artifact_names(path, outputs: int) -> tuple[str, list[str]]:
    """The input name and output names an ONNX file declares; Ultralytics' names (images, output0...) otherwise."""
    fallback = (DEFAULT_INPUT, [DEFAULT_OUTPUT] + [f"output{i}" for i in range(1, outputs)])
    if path is None or Path(path).suffix != ".onnx" or not Path(path).is_file():
        return fallback
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    initialisers = {i.name for i in graph.initializer}
    feeds = [i.name for i in graph.input if i.name not in initialisers]
    names = [o.name for o in graph.output]
    if len(feeds) != 1 or len(names) != outputs:
        return fallback
    return feeds[0], names


def class_names(path) -> dict[int, str]:
    """The class names an artifact records (Ultralytics writes them into every export); {} where it says none."""
    if path is None or not Path(path).exists():
        return {}
    path = Path(path)
    try:
        return {int(k): str(v) for k, v in _recorded_names(path).items()}
    except (OSError, ValueError, KeyError, TypeError, SyntaxError, AttributeError, zipfile.BadZipFile):
        return {}  # names are a courtesy: a detection still has its class id


def _recorded_names(path: Path) -> dict:
    import json

    import yaml

    if path.is_dir():
        return yaml.safe_load((path / "metadata.yaml").read_text())["names"]
    if path.suffix == ".onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return ast.literal_eval(props["names"])
    if path.suffix == ".torchscript":
        with zipfile.ZipFile(path) as archive:
            config = next(n for n in archive.namelist() if n.endswith("extra/config.txt"))
            return json.loads(archive.read(config))["names"]
    if path.suffix == ".pt":
        from ...models.checkpoints import load_checkpoint

        return dict(load_checkpoint(path).model.names)
    return {}


def _platform(detector, runner) -> str:
    if isinstance(detector, FastDetector) or hasattr(runner, "create_infer_request"):
        return Runtime.OPENVINO.value
    return str(getattr(runner, "runtime", None) or getattr(getattr(detector, "runner", None), "runtime", "custom"))


def _static_side(shape: tuple) -> int | None:
    side = shape[2] if len(shape) == 4 else None
    return int(side) if isinstance(side, int) and side > 0 else None


def _trained_imgsz(path: Path) -> int:
    from ...models.checkpoints import DEFAULT_IMGSZ, checkpoint_imgsz

    return (checkpoint_imgsz(path) if path.suffix == ".pt" else None) or DEFAULT_IMGSZ


def _warm_up(worker: _Worker, imgsz: int) -> None:
    """One detection before the first request: a runtime's first inference is slow."""
    worker.detect(np.full((imgsz, imgsz, 3), 114, np.uint8))


def check_model_name(name: str) -> str:
    ok = isinstance(name, str) and 0 < len(name) <= 100 and all(c.isalnum() or c in "-_." for c in name)
    if not ok:
        raise ConfigError(f"a model name is 1-100 letters, digits, '-', '_' or '.', got {name!r}", "e.g. 'variant-3'")
    return name


def decode_image(data: bytes) -> np.ndarray:
    """An encoded JPEG or PNG as an HxWx3 uint8 BGR array.

    Raises:
        ProtocolError: the bytes do not decode.
    """
    import cv2

    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise ProtocolError("the image could not be decoded (a damaged or cut-off JPEG or PNG)")
    return image


def detections_json(found: Detections, names: dict[int, str], shape: tuple) -> dict:
    """Detections as JSON-able lists: boxes x0, y0, x1, y1 in image pixels, scores, class ids and names."""
    classes = [int(c) for c in found.classes]
    return {
        "width": int(shape[1]),
        "height": int(shape[0]),
        "count": len(classes),
        "boxes": np.asarray(found.boxes, np.float32).reshape(-1, 4).tolist(),
        "scores": np.asarray(found.scores, np.float32).tolist(),
        "classes": classes,
        "names": [names.get(c, str(c)) for c in classes],
    }
