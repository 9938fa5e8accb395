"""The workbench's fast reference deployment of an OpenVINO artifact: preprocessing compiled into the graph.

`fast_detector(spec)` puts the preprocessing into the OpenVINO graph (PrePostProcessor: u8 NHWC BGR in, then
colour order, float, scale, mean/std and layout inside the compiled model), so Python only letterboxes in uint8
(cv2.resize and a constant border, no float conversion in numpy) and hands the array over without a copy
(`share_inputs=True`). NMS keeps only the anchors above `conf` before it transposes anything, then runs OpenCV's
NMSBoxes, so its rows equal `numpy_path.nms`'s. `detect_stream` runs many images through an `AsyncInferQueue`
(of batched requests where the detector was compiled for a batch), letterboxing the next images while earlier ones
infer, results in input order. Any other artifact falls back to `open_detector` (numpy steps around its runner).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ...errors import ConfigError, check_imgsz
from .numpy_path import CheckedDetector, open_detector
from .spec import DeploymentSpec, Detections, Postprocessing, Prepared, check_image

HINTS = ("latency", "throughput", "none")


def letterbox_u8(image: np.ndarray, imgsz: int, resize: str = "letterbox", pad_value: int = 114) -> Prepared:
    """The uint8 (1, imgsz, imgsz, 3) BGR input for one image, resized as `numpy_path.prepare` resizes (Ultralytics'
    rounding), with what maps the boxes back. An image already of the input size is passed through uncopied."""
    import cv2

    h, w = image.shape[:2]
    if resize == "stretch":
        boxed = image if (w, h) == (imgsz, imgsz) else cv2.resize(image, (imgsz, imgsz), interpolation=cv2.INTER_LINEAR)
        return Prepared(boxed[None], (h, w), (imgsz / w, imgsz / h), (0.0, 0.0))
    ratio = min(imgsz / h, imgsz / w)
    new_w, new_h = round(w * ratio), round(h * ratio)
    if (new_w, new_h) != (w, h):
        image = cv2.resize(image, (new_w, new_h), interpolation=cv2.INTER_LINEAR)
    left, top = round((imgsz - new_w) / 2 - 0.1), round((imgsz - new_h) / 2 - 0.1)
    right, bottom = imgsz - new_w - left, imgsz - new_h - top
    if left or top or right or bottom:
        value = (pad_value, pad_value, pad_value)
        image = cv2.copyMakeBorder(image, top, bottom, left, right, cv2.BORDER_CONSTANT, value=value)
    return Prepared(image[None], (h, w), (ratio, ratio), (float(left), float(top)))


def fast_nms(raw: np.ndarray, post: Postprocessing = Postprocessing()) -> np.ndarray:
    """`numpy_path.nms` with the work done on the anchors above `conf` only: the same (n, 6) rows of x0, y0, x1, y1,
    score, class in input pixels from the raw (1, 4 + nc, anchors) output, best first."""
    import cv2

    predictions = np.asarray(raw)[0]  # (4 + nc, anchors): no transpose of the whole output
    best = predictions[4:].max(0)
    keep = np.flatnonzero(best > post.conf)
    if not keep.size:
        return np.zeros((0, 6), np.float32)
    kept = predictions[:, keep]
    scores, classes = best[keep], kept[4:].argmax(0)  # the first best class, as argmax over all anchors gives
    centre, size = kept[:2].T, kept[2:4].T
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    offset = xyxy + (classes[:, None] * 7680.0)  # class-aware, in float64 exactly as `numpy_path.nms`
    xywh = np.concatenate([offset[:, :2], offset[:, 2:] - offset[:, :2]], axis=1)
    chosen = np.asarray(cv2.dnn.NMSBoxes(xywh, scores, post.conf, post.iou), dtype=int).reshape(-1)
    chosen = chosen[: post.max_det]
    chosen = chosen[np.argsort(-scores[chosen], kind="stable")]
    return np.concatenate([xyxy[chosen], scores[chosen, None], classes[chosen, None].astype(np.float32)], axis=1)


def _detections(raw: np.ndarray, prepared: Prepared, post: Postprocessing) -> Detections:
    """NMS, then the boxes mapped to the original image's pixels and clipped to it (as `numpy_path.to_original`)."""
    rows = fast_nms(raw, post)
    h, w = prepared.original_shape
    pad = np.array([prepared.pad[0], prepared.pad[1]] * 2, np.float32)
    gain = np.array([prepared.gain[0], prepared.gain[1]] * 2, np.float32)
    boxes = np.clip((rows[:, :4] - pad) / gain, 0, np.array([w, h, w, h], np.float32))
    return Detections(boxes, rows[:, 4].copy(), rows[:, 5].astype(int))


@dataclass
class FastDetector:
    """An OpenVINO deployment with its preprocessing compiled in: call it with a BGR uint8 image.

    Compiled for `batch` images per request: batch 1 for latency; a larger batch serves `detect_stream` (a single
    call then fills one slot of it). One infer request serves the calls and one queue per size serves
    `detect_stream`: use one detector per thread.
    """

    spec: DeploymentSpec
    compiled: object  # openvino.CompiledModel taking (1, imgsz, imgsz, 3) u8 BGR
    precision: str  # what the compiled graph computes in (read from the executed graph)
    context: dict = field(default_factory=dict)
    load_ms: float = 0.0
    batch: int = 1
    _request: object = None
    _queues: dict = field(default_factory=dict)
    _slots: np.ndarray | None = None  # the batch buffer of single calls on a batched model

    def __post_init__(self):
        self._request = self.compiled.create_infer_request()

    def prepare(self, image: np.ndarray) -> Prepared:
        """The uint8 input for one image (checked), with what maps its boxes back."""
        pre = self.spec.preprocessing
        return letterbox_u8(check_image(image), self.spec.imgsz, pre.resize, pre.pad_value)

    def __call__(self, image: np.ndarray) -> Detections:
        prepared = self.prepare(image)
        x = prepared.batch
        if self.batch > 1:
            if self._slots is None:
                self._slots = np.zeros((self.batch, *x.shape[1:]), np.uint8)
            self._slots[0] = x[0]
            x = self._slots
        self._request.infer({0: x}, share_inputs=True, share_outputs=True)
        return _detections(self._request.get_output_tensor(0).data[:1], prepared, self.spec.postprocessing)

    def input_batch(self, prepared: list[Prepared], buffer: np.ndarray | None = None) -> np.ndarray:
        """One request's input: the prepared images in the slots of `buffer` (or a new one); slots left over are
        ignored. A single image at batch 1 is passed as it is, not copied."""
        if self.batch == 1:
            return prepared[0].batch
        x = np.empty((self.batch, *prepared[0].batch.shape[1:]), np.uint8) if buffer is None else buffer
        for slot, one in enumerate(prepared):
            x[slot] = one.batch[0]
        return x

    def queue(self, jobs: int):
        """An `AsyncInferQueue` of `jobs` requests on the compiled model, made once per size."""
        import openvino as ov

        if jobs not in self._queues:
            self._queues[jobs] = ov.AsyncInferQueue(self.compiled, jobs)
        return self._queues[jobs]

    @property
    def optimal_requests(self) -> int:
        return int(self.compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))


def fast_detector(spec: DeploymentSpec, *, hint: str = "latency", streams: int | None = None, batch: int = 1):
    """The fastest deployment of `spec` the workbench knows: for an OpenVINO artifact a `FastDetector` (compiled
    with the performance `hint` and `streams`, `batch` images per request: more than 1 only for `detect_stream`),
    for any other artifact `open_detector(spec)`, image checked.

    Raises:
        ConfigError: an unknown hint, or an artifact whose static input size is not `spec.imgsz`.
        ArtifactLoadError, RuntimeNotInstalled: as `open_runner` does.
    """
    from ..runners import ArtifactLoadError, Runtime, runtime_for

    if hint not in HINTS:
        raise ConfigError(f"unknown performance hint {hint!r}", f"choose one of {', '.join(HINTS)}")
    if streams is not None and streams < 1:
        raise ConfigError(f"streams must be >= 1, got {streams}", "use e.g. 2, or None for what the hint picks")
    if isinstance(batch, bool) or not isinstance(batch, int) or batch < 1:
        raise ConfigError(f"batch must be a whole number >= 1, got {batch!r}", "use 1, or e.g. 8 for a stream")
    path = Path(spec.artifact)
    if runtime_for(path) is not Runtime.OPENVINO:
        fallback = open_detector(spec)
        return CheckedDetector(fallback.spec, fallback.runner)
    if not path.exists():
        raise ArtifactLoadError(f"artifact {path} does not exist", "export it first, or check the path")
    start = time.perf_counter()
    try:
        compiled, context = _compile(spec, hint, streams, batch)
    except ConfigError:
        raise
    except Exception as exc:  # OpenVINO raises RuntimeError for anything it cannot read or build
        raise ArtifactLoadError(
            f"openvino could not load {path.name} with its preprocessing: {type(exc).__name__}: {str(exc)[:300]}",
            "re-export the artifact; it may be truncated or from an incompatible version",
        ) from exc
    load_ms = (time.perf_counter() - start) * 1000
    return FastDetector(spec, compiled, context["precision"], context, load_ms, batch)


def _compile(spec: DeploymentSpec, hint: str, streams: int | None, batch: int) -> tuple[object, dict]:
    """Read the IR, put the spec's preprocessing in front of it (u8 NHWC BGR in, `batch` images) and compile it
    for the CPU."""
    from ...offline import decline_openvino_telemetry
    from ..runners import RuntimeOptions, openvino_precision, runtime_precisions

    decline_openvino_telemetry()
    import openvino as ov

    path = Path(spec.artifact)
    xml = path if path.suffix == ".xml" else next(path.glob("*.xml"))
    core = ov.Core()
    model = _with_preprocessing(core.read_model(str(xml)), spec, batch)
    threads = RuntimeOptions(threads=spec.threads).thread_count
    config = {"INFERENCE_NUM_THREADS": threads}
    if hint != "none":
        config["PERFORMANCE_HINT"] = hint.upper()
    if streams is not None:
        config["NUM_STREAMS"] = streams
    if spec.precision is not None:
        config["INFERENCE_PRECISION_HINT"] = RuntimeOptions(precision=spec.precision).precision
    compiled = core.compile_model(model, "CPU", config)
    counts = runtime_precisions(compiled)
    context = {
        "threads": threads,
        "hint": hint,
        "batch": batch,
        "precision_hint": spec.precision,
        "precision": openvino_precision(counts),
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "optimal_requests": int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
        "preprocessing": "in the graph (u8 NHWC BGR input)",
        "openvino": ov.get_version(),
    }
    return compiled, context


def _with_preprocessing(model, spec: DeploymentSpec, batch: int = 1):
    """The model behind a PrePostProcessor: u8 NHWC BGR (batch, imgsz, imgsz, 3) in, then the spec's colour order,
    float, scale, mean and std and layout inside the graph. A batch-1 or dynamic model is reshaped to `batch`."""
    import openvino as ov
    from openvino.preprocess import ColorFormat, PrePostProcessor

    imgsz, pre = check_imgsz(spec.imgsz), spec.preprocessing
    shape = model.input().get_partial_shape()
    if shape.rank.is_static and shape.rank.get_length() != 4:
        raise ConfigError(f"{spec.artifact} takes a rank-{shape.rank.get_length()} input", "export an image model")
    sides = (1, 2) if pre.layout == "nhwc" else (2, 3)
    if shape.is_static:
        have = tuple(shape[i].get_length() for i in sides)
        if have != (imgsz, imgsz) or shape[0].get_length() != 1:
            raise ConfigError(
                f"{Path(spec.artifact).name} takes {shape.to_shape()} but the spec says imgsz {imgsz}, batch 1",
                f"set DeploymentSpec(imgsz={have[0]}) or export the model at {imgsz} with batch 1",
            )
    if batch > 1 or not shape.is_static:
        model.reshape([batch, imgsz, imgsz, 3] if pre.layout == "nhwc" else [batch, 3, imgsz, imgsz])
    ppp = PrePostProcessor(model)
    tensor = ppp.input().tensor()
    tensor.set_element_type(ov.Type.u8).set_layout(ov.Layout("NHWC")).set_color_format(ColorFormat.BGR)
    ppp.input().model().set_layout(ov.Layout(pre.layout.upper()))
    steps = ppp.input().preprocess().convert_element_type(ov.Type.f32)
    if pre.color == "rgb":
        steps.convert_color(ColorFormat.RGB)
    steps.scale(float(1 / pre.scale))
    if pre.mean != (0.0, 0.0, 0.0):
        steps.mean([float(m) for m in pre.mean])
    if pre.std != (1.0, 1.0, 1.0):
        steps.scale([float(s) for s in pre.std])
    return ppp.build()


def detect_stream(detector, images, *, jobs: int | None = None) -> list[Detections]:
    """Detections for every image, in input order. A `FastDetector` runs them through an `AsyncInferQueue` of
    `jobs` requests (None: what its compiled model calls optimal, at least 2) of its `batch` images each: the
    next images are letterboxed while the earlier ones infer, and each request's NMS runs as it completes. Any
    other detector runs one by one.

    Raises:
        ConfigError: jobs < 1, or an image that is not HxWx3 uint8 (before any inference starts for it).
    """
    if jobs is not None and jobs < 1:
        raise ConfigError(f"jobs must be >= 1, got {jobs}", "use e.g. 2, or None for the runtime's choice")
    images = list(images)
    if not isinstance(detector, FastDetector):
        return [detector(image) for image in images]
    queue = detector.queue(jobs or max(2, detector.optimal_requests))
    results: list[Detections | None] = [None] * len(images)
    failures: list[BaseException] = []
    post = detector.spec.postprocessing

    free: list[np.ndarray] = []  # batch buffers whose request is done, to fill again (no fresh pages each time)

    def done(request, userdata):
        first, prepared, x = userdata  # the input stays referenced until its request is done (shared memory)
        try:
            out = request.get_output_tensor(0).data
            for slot, one in enumerate(prepared):
                results[first + slot] = _detections(out[slot : slot + 1], one, post)
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            failures.append(exc)
        if detector.batch > 1:
            free.append(x)

    queue.set_callback(done)
    try:
        for first in range(0, len(images), detector.batch):
            prepared = [detector.prepare(image) for image in images[first : first + detector.batch]]
            x = detector.input_batch(prepared, free.pop() if free else None)
            queue.start_async({0: x}, (first, prepared, x), share_inputs=True)
    finally:
        queue.wait_all()
    if failures:
        raise failures[0]
    return results  # type: ignore[return-value]
