"""The Open Inference Protocol v2 over REST with JSON bodies (KServe v2, Triton): the datatypes, tensor metadata,
an infer request parsed and checked against the model's inputs and outputs, and the response bodies.

Each mistake in a request is a `ProtocolError` (answered 400 with `{"error": ...}`) that names the problem: a body
that is not JSON or not an object, an unknown or missing input, a datatype or shape that is not the model's, data
whose length does not match the shape, data that is not numbers (NaN and Infinity are refused too), an unknown
output. Tensor data travels as JSON lists, flat (row-major) or nested. The binary tensor data extension
(`binary_data_size`, `Inference-Header-Content-Length`) is not supported: a request that uses it is refused with a
400 that says so, and outputs are always answered as JSON (ask a client for `binary_data=False`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

import numpy as np

DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
}
_NAMES = {dtype: name for name, dtype in DATATYPES.items()}
MAX_RANK = 8
BINARY_HEADER = "inference-header-content-length"
_BINARY = "the binary tensor data extension is not supported by this server; send the tensor data as JSON lists"


class ProtocolError(Exception):
    """A request the protocol refuses: `message` names the problem (answered 400 unless `status` says else)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.message = message
        self.status = status


@dataclass(frozen=True)
class TensorSpec:
    """One tensor of a model: its name, datatype (a protocol name: FP32, UINT8, ...) and shape (-1: any size)."""

    name: str
    datatype: str
    shape: tuple[int, ...]

    def as_dict(self) -> dict:
        return {"name": self.name, "datatype": self.datatype, "shape": list(self.shape)}


@dataclass(frozen=True)
class InferRequest:
    """A checked infer request: the input arrays by name, the outputs asked for (None: all), its id and parameters."""

    inputs: dict[str, np.ndarray]
    outputs: list[str] | None = None
    id: str | None = None
    parameters: dict = field(default_factory=dict)


def datatype_of(dtype) -> str:
    """The protocol's name of a numpy dtype (FP32 for float32, ...)."""
    try:
        return _NAMES[np.dtype(dtype)]
    except KeyError:
        raise ValueError(f"numpy dtype {np.dtype(dtype)} has no Open Inference Protocol datatype") from None


def parse_infer_request(body: bytes, inputs: list[TensorSpec], outputs: list[TensorSpec], headers=None) -> InferRequest:
    """Parse and check an infer request body against the model's tensors.

    Args:
        body: the request body (JSON).
        inputs, outputs: the model's tensors.
        headers: the request's headers, to refuse the binary extension's header.
    Returns:
        the request with its inputs as arrays of the model's dtype and the given shape.
    Raises:
        ProtocolError: the first problem found, named.
    """
    if headers is not None and BINARY_HEADER in {str(k).lower() for k in headers.keys()}:
        raise ProtocolError(_BINARY)
    request = _json_object(body)
    unknown = sorted(set(request) - {"id", "inputs", "outputs", "parameters"})
    if unknown:
        raise ProtocolError(
            f"unknown field(s) {unknown} in the infer request; it takes id, inputs, outputs and parameters"
        )
    parameters = _parameters(request.get("parameters"), "the request")
    if parameters.get("binary_data_output"):
        raise ProtocolError(_BINARY)
    request_id = request.get("id")
    if request_id is not None and not isinstance(request_id, str):
        raise ProtocolError(f"'id' must be a string, got {type(request_id).__name__}")
    arrays = _inputs(request.get("inputs"), inputs)
    wanted = _outputs(request.get("outputs"), outputs)
    return InferRequest(arrays, wanted, request_id, parameters)


def _json_object(body: bytes) -> dict:
    def refuse_constant(name):
        raise ValueError(f"{name} is not a number JSON allows")

    try:
        request = json.loads(body, parse_constant=refuse_constant)
    except UnicodeDecodeError:
        raise ProtocolError("the body is not UTF-8 JSON") from None
    except (json.JSONDecodeError, ValueError) as exc:
        raise ProtocolError(f"the body is not JSON: {exc}") from None
    if not isinstance(request, dict):
        raise ProtocolError(f"the body must be a JSON object with 'inputs', got a {type(request).__name__}")
    return request


def _parameters(value, where: str) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ProtocolError(f"'parameters' of {where} must be an object, got {type(value).__name__}")
    if "binary_data_size" in value or value.get("binary_data") is True:
        raise ProtocolError(_BINARY)
    return value


def _inputs(given, specs: list[TensorSpec]) -> dict[str, np.ndarray]:
    expected = ", ".join(repr(s.name) for s in specs)
    if not isinstance(given, list) or not given:
        raise ProtocolError(f"'inputs' must be a non-empty list of tensors; the model takes {expected}")
    by_name = {s.name: s for s in specs}
    arrays: dict[str, np.ndarray] = {}
    for position, item in enumerate(given):
        if not isinstance(item, dict):
            raise ProtocolError(f"inputs[{position}] must be an object with name, shape, datatype and data")
        name = item.get("name")
        if not isinstance(name, str):
            raise ProtocolError(f"inputs[{position}] has no 'name' string")
        if name not in by_name:
            raise ProtocolError(f"unknown input {name!r}: the model takes {expected}")
        if name in arrays:
            raise ProtocolError(f"input {name!r} is given twice")
        arrays[name] = parse_tensor(item, by_name[name])
    missing = [s.name for s in specs if s.name not in arrays]
    if missing:
        raise ProtocolError(f"missing input(s) {missing}: the model takes {expected}")
    return arrays


def parse_tensor(item: dict, spec: TensorSpec) -> np.ndarray:
    """One input tensor as an array of `spec`'s dtype, checked: datatype, shape and data length.

    Raises:
        ProtocolError: naming the input and what does not match.
    """
    name = spec.name
    _parameters(item.get("parameters"), f"input {name!r}")
    datatype, shape = item.get("datatype"), item.get("shape")
    if datatype not in DATATYPES:
        raise ProtocolError(f"input {name!r} has datatype {datatype!r}; the protocol's are {', '.join(DATATYPES)}")
    if datatype != spec.datatype:
        raise ProtocolError(f"input {name!r} is {datatype} but the model takes {spec.datatype}")
    if not isinstance(shape, list) or not all(isinstance(d, int) and not isinstance(d, bool) for d in shape):
        raise ProtocolError(f"input {name!r} needs a 'shape' list of whole numbers, got {shape!r}")
    if any(d < 0 for d in shape) or len(shape) > MAX_RANK:
        raise ProtocolError(f"input {name!r} has shape {shape}: sizes must be >= 0, rank at most {MAX_RANK}")
    fits = len(shape) == len(spec.shape) and all(w in (-1, d) for w, d in zip(spec.shape, shape, strict=True))
    if not fits:
        raise ProtocolError(f"input {name!r} has shape {shape} but the model takes {list(spec.shape)}")
    if "data" not in item:
        raise ProtocolError(f"input {name!r} has no 'data' (JSON lists only: {_BINARY.split(';')[0]})")
    values = _flat(item["data"], name)
    need = math.prod(shape)
    if values.size != need:
        raise ProtocolError(f"input {name!r} has {values.size} values but shape {shape} needs {need}")
    return _cast(values, DATATYPES[datatype], name).reshape(shape)


def _flat(data, name: str) -> np.ndarray:
    """The data as a flat array (row-major), nested lists allowed when they are regular."""
    if not isinstance(data, list):
        raise ProtocolError(f"'data' of input {name!r} must be a list, got {type(data).__name__}")
    try:
        values = np.asarray(data)
    except ValueError:  # ragged nesting
        raise ProtocolError(
            f"'data' of input {name!r} is nested unevenly: give it flat or as a regular array"
        ) from None
    if values.dtype.kind not in "biuf":
        raise ProtocolError(f"'data' of input {name!r} must hold numbers (or booleans for BOOL) only")
    return values.reshape(-1)


def _cast(values: np.ndarray, dtype: np.dtype, name: str) -> np.ndarray:
    """The values in `dtype`, refusing what would change them: booleans as numbers, fractions or overflow as ints."""
    if (values.dtype.kind == "b") != (dtype.kind == "b") and values.size:
        kind = "booleans" if values.dtype.kind == "b" else "numbers"
        raise ProtocolError(f"input {name!r} is {_NAMES[dtype]} but its data holds {kind}")
    if dtype.kind in "iu" and values.size:
        if values.dtype.kind == "f" and not np.array_equal(values, np.round(values)):
            raise ProtocolError(f"input {name!r} is {_NAMES[dtype]} but its data holds fractions")
        info = np.iinfo(dtype)
        if values.min() < info.min or values.max() > info.max:
            raise ProtocolError(f"input {name!r} holds values outside {_NAMES[dtype]}'s range {info.min}..{info.max}")
    if dtype.kind == "f" and values.size and values.dtype.kind == "f":
        if not np.isfinite(values.astype(dtype)).all():
            raise ProtocolError(f"input {name!r} holds values {_NAMES[dtype]} cannot hold (too large)")
    return values.astype(dtype, copy=False)


def _outputs(given, specs: list[TensorSpec]) -> list[str] | None:
    if given is None:
        return None
    names = [s.name for s in specs]
    if not isinstance(given, list):
        raise ProtocolError(f"'outputs' must be a list of {{'name': ...}}, got {type(given).__name__}")
    wanted = []
    for position, item in enumerate(given):
        if not isinstance(item, dict) or not isinstance(item.get("name"), str):
            raise ProtocolError(f"outputs[{position}] must be an object with a 'name' string")
        if item["name"] not in names:
            raise ProtocolError(f"unknown output {item['name']!r}: the model gives {', '.join(map(repr, names))}")
        _parameters(item.get("parameters"), f"output {item['name']!r}")
        wanted.append(item["name"])
    return wanted


def infer_response(
    model_name: str, model_version: str, outputs: dict[str, np.ndarray], request_id: str | None = None
) -> dict:
    """The response body: each output with its datatype, shape and data as a flat JSON list."""
    body = {
        "model_name": model_name,
        "model_version": model_version,
        "outputs": [
            {"name": name, "datatype": datatype_of(a.dtype), "shape": list(a.shape), "data": a.ravel().tolist()}
            for name, a in outputs.items()
        ],
    }
    if request_id is not None:
        body["id"] = request_id
    return body


def server_metadata(name: str, version: str) -> dict:
    """`GET /v2`: the server's name, version and the protocol extensions it has (none)."""
    return {"name": name, "version": version, "extensions": []}


def model_metadata(
    name: str, versions: list[str], platform: str, inputs: list[TensorSpec], outputs: list[TensorSpec]
) -> dict:
    """`GET /v2/models/{name}`: the model's name, versions, platform and tensors."""
    return {
        "name": name,
        "versions": list(versions),
        "platform": platform,
        "inputs": [s.as_dict() for s in inputs],
        "outputs": [s.as_dict() for s in outputs],
    }


def error_body(message: str) -> dict:
    return {"error": message}
