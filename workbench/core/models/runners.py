"""One runner per backend (PyTorch eager, TorchScript, ONNX Runtime, OpenVINO, LiteRT) with explicit options.

Every runner reports the precision it actually used, not the one asked for: OpenVINO picks bf16 on CPUs that
have it unless told f32, and an INT8 artifact computes in int8 only where it was quantized.
"""

from __future__ import annotations

import importlib.util
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

import numpy as np

from ..environment import torch_threads, usable_cores
from ..errors import ConfigError, ModelLoadError, WorkbenchError
from ..store.records import Format


class Runtime(StrEnum):
    """What runs an artifact, spelled one way everywhere (the `runtime` of every measurement)."""

    PYTORCH = "pytorch"
    TORCHSCRIPT = "torchscript"
    ONNXRUNTIME = "onnxruntime"
    OPENVINO = "openvino"
    LITERT = "litert"  # the LiteRT (TensorFlow Lite) interpreter, XNNPACK on the CPU


RUNTIME_OF_FORMAT = {
    Format.PYTORCH: Runtime.PYTORCH,
    Format.TORCHSCRIPT: Runtime.TORCHSCRIPT,
    Format.ONNX: Runtime.ONNXRUNTIME,
    Format.OPENVINO: Runtime.OPENVINO,
    Format.TFLITE: Runtime.LITERT,
}
RUNTIMES = tuple(r.value for r in Runtime)
_PACKAGES = {
    "pytorch": "torch",
    "torchscript": "torch",
    "onnxruntime": "onnxruntime",
    "openvino": "openvino",
    "litert": "ai_edge_litert",
}
_INSTALL = {  # the pip command that brings each runtime's package
    "litert": "pip install ai-edge-litert  (or, to export .tflite too: pip install -e '.[litert]')",
}
_OV_PRECISIONS = ("f32", "bf16", "f16")
_ORT_LEVELS = ("disable", "basic", "extended", "all")


class RuntimeNotInstalled(WorkbenchError):
    """The runtime a row asks for is not installed here."""


class ArtifactLoadError(ModelLoadError):
    """The artifact does not load, or does not accept the input it was given."""


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run an artifact. None means the runtime's default, which the runner then reports."""

    threads: int | None = None  # None: every usable core
    precision: str | None = None  # OpenVINO inference precision hint: f32, bf16, f16
    hint: str = "latency"  # OpenVINO performance hint: latency, throughput, none
    streams: int | None = None  # OpenVINO streams (None: what the hint picks)
    graph_optimization: str = "all"  # ONNX Runtime graph optimization level

    def __post_init__(self):
        if self.threads is not None and self.threads < 1:
            raise ConfigError(f"threads must be >= 1, got {self.threads}", "use e.g. 2")
        if self.precision is not None and self.precision not in _OV_PRECISIONS:
            raise ConfigError(f"unknown precision hint {self.precision!r}", f"choose one of {_OV_PRECISIONS}")
        if self.hint not in ("latency", "throughput", "none"):
            raise ConfigError(f"unknown performance hint {self.hint!r}", "choose latency, throughput or none")
        if self.graph_optimization not in _ORT_LEVELS:
            raise ConfigError(f"unknown graph optimization {self.graph_optimization!r}", f"choose one of {_ORT_LEVELS}")

    @property
    def thread_count(self) -> int:
        return self.threads or usable_cores()


@dataclass
class Runner:
    """A loaded artifact: call it with an NCHW float32 batch in [0, 1]; it returns the raw output arrays."""

    runtime: str
    path: Path
    precision: str  # what the computation actually uses: fp32, fp16, bf16, int8 (+ the float part)
    input_shape: tuple  # (batch, 3, h, w); -1 where the artifact accepts any size
    load_ms: float
    context: dict = field(default_factory=dict)  # options as applied, for the ledger
    _call: object = None
    _async: object = None  # OpenVINO AsyncInferQueue factory, when available
    internal_ms: list[float] | None = None  # OpenVINO's own per-request time (what benchmark_app reports)
    _held: list = field(default_factory=list, repr=False)

    @property
    def queues(self) -> bool:
        """Whether `async_queue` can put requests in flight on this runner (OpenVINO runners)."""
        return self._async is not None

    def async_queue(self, jobs: int):
        """An OpenVINO `AsyncInferQueue` of `jobs` requests on the compiled model.

        Raises:
            ConfigError: the runner has none (`queues` is False).
        """
        if self._async is None:
            raise ConfigError(f"{self.runtime} runs one request at a time here", "use an OpenVINO artifact")
        return self._async(jobs)

    def keep_alive(self, *objects) -> None:
        """Hold `objects` as long as the runner lives: memory the loaded model reads without a copy of its own."""
        self._held.extend(objects)

    def __call__(self, batch: np.ndarray) -> list[np.ndarray]:
        try:
            return self._call(batch)
        except Exception as exc:  # each runtime raises its own types for shape and type mismatches
            raise ArtifactLoadError(
                f"{self.runtime} could not run {self.path.name} on input {tuple(batch.shape)} "
                f"(it expects {self.input_shape}): {type(exc).__name__}: {str(exc)[:300]}",
                "export the model for this image size and batch, or with dynamic=True",
            ) from exc


def runtime_for(path: Path) -> Runtime:
    """The runtime an artifact belongs to, from its name."""
    try:
        return RUNTIME_OF_FORMAT[Format.of_path(path)]
    except ValueError:
        raise ConfigError(
            f"no runtime runs {Path(path).name}", "pass a .pt, .torchscript, .onnx, .tflite or OpenVINO model folder"
        ) from None


def installed(runtime: str) -> bool:
    """True when the runtime's Python package can be imported here."""
    return importlib.util.find_spec(_PACKAGES[runtime]) is not None


def open_runner(path: Path | str, options: RuntimeOptions = RuntimeOptions()) -> Runner:
    """Load an artifact with its runtime and the given options.

    Raises:
        RuntimeNotInstalled: the runtime's package is missing.
        ArtifactLoadError: the artifact does not load.
    """
    path = Path(path)
    runtime = runtime_for(path)
    if not installed(runtime):
        raise RuntimeNotInstalled(
            f"{runtime} is not installed, so {path.name} cannot run",
            _INSTALL.get(runtime, f"pip install {_PACKAGES[runtime]}  (or: pip install -e '.[runtimes]')"),
        )
    if not path.exists():
        raise ArtifactLoadError(f"artifact {path} does not exist", "export it first, or check the path")
    fix = "re-export the artifact; it may be truncated or from an incompatible version"
    return timed_load(lambda: _OPENERS[runtime](path, options), f"{runtime} could not load {path.name}", fix)


def timed_load(load: Callable[[], Runner], failure: str, fix: str) -> Runner:
    """`load()`'s runner with its load time in `load_ms`; a runtime's own exception becomes an ArtifactLoadError
    that says `failure`, the exception, and `fix` (the workbench's own errors pass through)."""
    start = time.perf_counter()
    try:
        runner = load()
    except WorkbenchError:
        raise
    except Exception as exc:
        raise ArtifactLoadError(f"{failure}: {type(exc).__name__}: {str(exc)[:300]}", fix) from exc
    runner.load_ms = (time.perf_counter() - start) * 1000
    return runner


def _torch_call(net, threads: int):
    """Call a torch module on a numpy batch with `threads` CPU threads for that call only."""
    import torch

    def call(batch):
        with torch_threads(threads), torch.inference_mode():
            out = net(torch.from_numpy(batch))
        return [t.numpy() for t in (out if isinstance(out, (list, tuple)) else [out])]

    return call


def _open_pytorch(path: Path, options: RuntimeOptions) -> Runner:
    from .checkpoints import load_checkpoint

    net = load_checkpoint(path).model.float().eval()
    for module in net.modules():  # Ultralytics' export mode: raw (1, 4 + nc, anchors) output, as exports have
        if hasattr(module, "export") and type(module).__name__ in ("Detect", "v10Detect"):
            module.export, module.format = True, "onnx"
    call = _torch_call(net, options.thread_count)
    return Runner("pytorch", path, "fp32", (-1, 3, -1, -1), 0.0, {"threads": options.thread_count}, call)


def _open_torchscript(path: Path, options: RuntimeOptions) -> Runner:
    import json

    import torch

    extra = {"config.txt": ""}  # Ultralytics stores its export metadata here
    net = torch.jit.load(str(path), map_location="cpu", _extra_files=extra).eval()
    meta = json.loads(extra["config.txt"] or "{}")
    imgsz = meta.get("imgsz") or [-1, -1]
    shape = (-1, 3, -1, -1) if meta.get("args", {}).get("dynamic") else (meta.get("batch", 1), 3, *imgsz)
    call = _torch_call(net, options.thread_count)
    return Runner("torchscript", path, "fp32", shape, 0.0, {"threads": options.thread_count}, call)


def _onnx_precision(model: Path | bytes) -> str:
    """fp32, fp16 or int8, read from the graph (a file, or a serialized model in memory)."""
    import onnx

    if isinstance(model, bytes):
        graph = onnx.load_model_from_string(model).graph
    else:
        graph = onnx.load(str(model), load_external_data=False).graph
    ops = {node.op_type for node in graph.node}
    if ops & {"QuantizeLinear", "QLinearConv", "ConvInteger", "MatMulInteger"}:
        return "int8"
    if any(init.data_type == onnx.TensorProto.FLOAT16 for init in graph.initializer):
        return "fp16"
    return "fp32"


def onnxruntime_session(model: Path | bytes, options: RuntimeOptions = RuntimeOptions()):
    """An ONNX Runtime `InferenceSession` on the CPU over a file or a serialized model (what a decrypted model is
    handed to), with `options` applied: intra-op threads, one inter-op thread, the graph optimization level."""
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    session_options.intra_op_num_threads = options.thread_count
    session_options.inter_op_num_threads = 1
    session_options.graph_optimization_level = {
        "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
        "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
        "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
    }[options.graph_optimization]
    source = model if isinstance(model, bytes) else str(model)
    return ort.InferenceSession(source, session_options, providers=["CPUExecutionProvider"])


def onnxruntime_runner(model: Path | bytes, options: RuntimeOptions, label: Path, **context) -> Runner:
    """An ONNX Runtime session (`onnxruntime_session`) over a file or a serialized model as a `Runner`; `context`
    is added to its context (e.g. where it was loaded from)."""
    import onnxruntime as ort

    session = onnxruntime_session(model, options)
    feed = session.get_inputs()[0]
    shape = tuple(d if isinstance(d, int) else -1 for d in feed.shape)
    dtype = np.float16 if "float16" in feed.type else np.float32

    def call(batch):
        return session.run(None, {feed.name: batch.astype(dtype, copy=False)})

    context = {
        "threads": options.thread_count,
        "inter_op_threads": 1,
        "provider": "CPUExecutionProvider",
        "graph_optimization": options.graph_optimization,
        "onnxruntime": ort.__version__,
        **context,
    }
    return Runner("onnxruntime", label, _onnx_precision(model), shape, 0.0, context, call)


def _open_onnxruntime(path: Path, options: RuntimeOptions) -> Runner:
    return onnxruntime_runner(path, options, path)


def _open_openvino(path: Path, options: RuntimeOptions) -> Runner:
    from ..offline import decline_openvino_telemetry

    decline_openvino_telemetry()
    import openvino as ov

    xml = path if path.suffix == ".xml" else next(path.glob("*.xml"))
    core = ov.Core()
    return openvino_compiled_runner(core, core.read_model(str(xml)), options, path)


def openvino_compiled_runner(core, model, options: RuntimeOptions, label: Path, **context) -> Runner:
    """A read OpenVINO model compiled for the CPU with `options` (threads, hint, streams, precision) as a `Runner`;
    `context` is added to its context (e.g. where it was loaded from)."""
    import openvino as ov

    config = {"INFERENCE_NUM_THREADS": options.thread_count}
    if options.hint != "none":
        config["PERFORMANCE_HINT"] = options.hint.upper()
    if options.streams is not None:
        config["NUM_STREAMS"] = options.streams
    if options.precision is not None:
        config["INFERENCE_PRECISION_HINT"] = options.precision
    compiled = core.compile_model(model, "CPU", config)
    counts = runtime_precisions(compiled)
    used = openvino_precision(counts)
    shape = tuple(d.get_length() if d.is_static else -1 for d in model.input().get_partial_shape())
    request = compiled.create_infer_request()
    internal: list[float] = []

    def call(batch):
        result = request.infer({0: batch}, share_inputs=True)  # zero-copy input, as benchmark_app has
        internal.append(request.latency)  # measured inside OpenVINO: no Python call, no input/output handling
        return [result[out] for out in compiled.outputs]

    def async_queue(jobs: int):
        return ov.AsyncInferQueue(compiled, jobs)

    context = {
        "threads": options.thread_count,
        "hint": options.hint,
        "precision_hint": options.precision,
        "inference_precision_property": compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name(),
        "node_precisions": counts,
        "streams": int(compiled.get_property("NUM_STREAMS")),
        "optimal_requests": int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS")),
        "openvino": ov.get_version(),
        **context,
    }
    return Runner("openvino", label, used, shape, 0.0, context, call, async_queue, internal)


_COMPUTE_OPS = {"Convolution", "GroupConvolution", "MatMul", "FullyConnected", "Deconvolution"}


def runtime_precisions(compiled) -> dict[str, int]:
    """How many nodes of the compiled (executed) graph run in each element type: the ground truth. The key
    `compute_i8` counts the convolutions and matrix products among them that run in i8/u8 (a dynamic-shape graph
    also has u8 nodes that only compute shapes)."""
    from collections import Counter

    found = Counter()
    for op in compiled.get_runtime_model().get_ops():
        info = op.get_rt_info()
        if "runtimePrecision" in info:
            precision = str(info["runtimePrecision"].astype(str))
            found[precision] += 1
            layer = str(info["layerType"].astype(str)) if "layerType" in info else op.get_type_name()
            if precision in ("i8", "u8") and layer in _COMPUTE_OPS:
                found["compute_i8"] += 1
    return dict(found)


def openvino_precision(counts: dict[str, int]) -> str:
    """fp32, bf16 or fp16 for the float part, prefixed by int8+ where convolutions or matrix products run in i8/u8."""
    floating = next((name for key, name in (("bf16", "bf16"), ("f16", "fp16")) if counts.get(key)), "fp32")
    return f"int8+{floating}" if counts.get("compute_i8") else floating


def _open_litert(path: Path, options: RuntimeOptions) -> Runner:
    """The LiteRT interpreter (XNNPACK on the CPU) on a .tflite file, in the convention of every runner.

    It takes the NCHW float batch (litert-torch exports are NCHW; an NHWC model gets it transposed, an int8 input
    quantized) and returns Ultralytics' raw (batch, 4 + nc, anchors) output with boxes in pixels: Ultralytics' LiteRT
    export divides the box channels by the input size (so INT8 keeps the scores' resolution); they are multiplied
    back here, as its own backend does.
    """
    from importlib.metadata import version

    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=options.thread_count)
    interpreter.allocate_tensors()
    feed, outputs = interpreter.get_input_details()[0], interpreter.get_output_details()
    nhwc = int(feed["shape"][-1]) == 3 and int(feed["shape"][1]) != 3
    b, *spatial = (int(d) for d in feed["shape"])
    h, w = spatial[:2] if nhwc else spatial[1:]
    normalised = _litert_boxes_normalised(path)

    def call(batch):
        x = np.ascontiguousarray(batch.transpose(0, 2, 3, 1) if nhwc else batch)
        interpreter.set_tensor(feed["index"], _litert_quantize(x, feed))
        interpreter.invoke()
        found = [_litert_dequantize(interpreter.get_tensor(out["index"]), out) for out in outputs]
        return [_pixel_boxes(y, w, h) if normalised else y for y in found]

    context = {
        "threads": options.thread_count,
        "delegate": "XNNPACK",
        "layout": "NHWC" if nhwc else "NCHW",
        "io": np.dtype(feed["dtype"]).name,
        "litert": version("ai-edge-litert"),
    }
    return Runner("litert", path, _litert_precision(interpreter), (b, 3, h, w), 0.0, context, call)


def _litert_boxes_normalised(path: Path) -> bool:
    """Whether the box channels are divided by imgsz: Ultralytics' raw detect exports (its metadata.json, appended
    to the .tflite as a zip entry, says end2end false); a file without that metadata is taken as normalised too."""
    import json
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            meta = json.loads(archive.read("metadata.json"))
    except (zipfile.BadZipFile, KeyError, ValueError):
        return True
    return not meta.get("end2end") and meta.get("head") != "RTDETRDecoder"


def _litert_quantize(x: np.ndarray, details: dict) -> np.ndarray:
    """A float batch as the input tensor's type: quantized with its scale and zero point when that is an integer."""
    dtype = np.dtype(details["dtype"])
    if dtype.kind not in "iu":
        return x.astype(dtype, copy=False)
    scale, zero_point = details["quantization"]
    limits = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), limits.min, limits.max).astype(dtype)


def _litert_dequantize(y: np.ndarray, details: dict) -> np.ndarray:
    """An output tensor as float32: dequantized with its scale and zero point when it is an integer."""
    if np.dtype(details["dtype"]).kind not in "iu":
        return y.astype(np.float32, copy=True)
    scale, zero_point = details["quantization"]
    return (y.astype(np.float32) - zero_point) * scale


def _pixel_boxes(y: np.ndarray, w: int, h: int) -> np.ndarray:
    """Ultralytics' (batch, 4 + nc, anchors) with its xywh channels multiplied back from [0, 1] to pixels."""
    if y.ndim == 3 and y.shape[1] > 4:
        y[:, [0, 2]] *= w
        y[:, [1, 3]] *= h
    return y


def _litert_precision(interpreter) -> str:
    """int8 where the convolutions compute on int8 activations (w8a16 on int16 ones), w8a32 where only their weights
    are int8, else fp32: read from the tensors of the loaded graph, not from the file name."""
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in interpreter.get_tensor_details()}
    convs = [op for op in interpreter._get_ops_details() if op["op_name"] in ("CONV_2D", "DEPTHWISE_CONV_2D")]
    pairs = [(dtypes.get(op["inputs"][0]), dtypes.get(op["inputs"][1])) for op in convs if len(op["inputs"]) > 1]
    if any(activation in ("int8", "uint8") for activation, _ in pairs):
        return "int8"
    if any(activation == "int16" for activation, _ in pairs):
        return "w8a16"
    if any(weight in ("int8", "uint8") for _, weight in pairs):
        return "w8a32"
    return "fp32"


_OPENERS = {
    "pytorch": _open_pytorch,
    "torchscript": _open_torchscript,
    "onnxruntime": _open_onnxruntime,
    "openvino": _open_openvino,
    "litert": _open_litert,
}


def example_input(runner: Runner, imgsz: int = 640, batch: int = 1, seed: int = 0) -> np.ndarray:
    """A random batch in [0, 1] of the artifact's static shape, or of `batch` x 3 x imgsz x imgsz."""
    b, c, h, w = (s if s > 0 else d for s, d in zip(runner.input_shape, (batch, 3, imgsz, imgsz), strict=True))
    return np.random.default_rng(seed).random((b, c, h, w), dtype=np.float32)


def check_loads(path: Path) -> None:
    """Load the artifact with its runtime and run one inference; raise ArtifactLoadError if either fails."""
    runner = open_runner(path, RuntimeOptions(threads=1))
    outputs = runner(example_input(runner, imgsz=64))
    if not outputs or not all(np.isfinite(o).all() for o in outputs):
        raise ArtifactLoadError(f"{path.name} ran but returned no finite output", "re-export the artifact")
