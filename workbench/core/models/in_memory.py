"""Runners opened from bytes in memory (ONNX Runtime, OpenVINO), never from a plaintext file: what a decrypted model
is handed to. They are the `Runner` that `open_runner` returns, with the same options applied and reported."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath

import numpy as np

from ..errors import ConfigError
from .runners import (
    ArtifactLoadError,
    Runner,
    RuntimeNotInstalled,
    RuntimeOptions,
    installed,
    onnxruntime_runner,
    openvino_compiled_runner,
    runtime_for,
    timed_load,
)

IN_MEMORY_RUNTIMES = ("onnxruntime", "openvino")


def open_runner_from_memory(
    name: str, files: Mapping[str, bytes], options: RuntimeOptions = RuntimeOptions(), *, label: Path | None = None
) -> Runner:
    """Open an artifact held in memory with its runtime, as `open_runner` opens one on disk.

    Args:
        name: the artifact's name, which says its format: `model.onnx`, or an OpenVINO folder `x_openvino_model`.
        files: its bytes by name: `{name: bytes}` for a file; for a folder, each file by its name inside it
            (one `.xml` and its `.bin`; others such as metadata.yaml are ignored).
        options: threads, precision hint, ... as for `open_runner`.
        label: what the runner's `path` says in messages (default `name`); nothing is read from it.
    Raises:
        ConfigError: a format that cannot be opened from memory here.
        RuntimeNotInstalled: the runtime's package is missing.
        ArtifactLoadError: the bytes do not load.
    """
    runtime = runtime_for(Path(name))
    if runtime not in IN_MEMORY_RUNTIMES:
        raise ConfigError(
            f"{name} ({runtime}) cannot be opened from memory", "export it to ONNX or OpenVINO, then protect that"
        )
    if not installed(runtime):
        raise RuntimeNotInstalled(f"{runtime} is not installed, so {name} cannot run", "pip install -e '.[runtimes]'")
    label = Path(label or name)

    def load() -> Runner:
        if runtime == "onnxruntime":
            return onnx_runner(_only(files, name), options, label=label)
        return openvino_runner(*_ir_pair(files, name), options, label=label)

    fix = "protect a freshly exported artifact; these bytes may be truncated or from an incompatible version"
    return timed_load(load, f"{runtime} could not load {name} from memory", fix)


def onnx_runner(
    model: bytes, options: RuntimeOptions = RuntimeOptions(), *, label: Path = Path("model.onnx")
) -> Runner:
    """An ONNX Runtime runner over a serialized model (`InferenceSession(bytes)`), with `open_runner`'s options."""
    return onnxruntime_runner(model, options, label, loaded_from="memory")


def openvino_runner(
    xml: bytes,
    weights: bytes,
    options: RuntimeOptions = RuntimeOptions(),
    *,
    label: Path = Path("model_openvino_model"),
) -> Runner:
    """An OpenVINO runner over an IR's XML and weights in memory (`read_model(xml, Tensor)`), then compiled for the
    CPU with the options `open_runner` applies."""
    from ..offline import decline_openvino_telemetry

    decline_openvino_telemetry()
    import openvino as ov

    core = ov.Core()
    buffer = np.frombuffer(weights, dtype=np.uint8)  # no copy: the tensor views the decrypted bytes
    model = core.read_model(model=xml.decode("utf-8"), weights=ov.Tensor(buffer, shape=buffer.shape))
    runner = openvino_compiled_runner(core, model, options, label, loaded_from="memory")
    runner.keep_alive(buffer)  # the Tensor views the decrypted bytes: held as long as the runner lives
    return runner


def _only(files: Mapping[str, bytes], name: str) -> bytes:
    if name not in files:
        raise ArtifactLoadError(f"{name} is not among the files given ({sorted(files)})", "pass {name: bytes}")
    return files[name]


def _ir_pair(files: Mapping[str, bytes], name: str) -> tuple[bytes, bytes]:
    """The XML and its weights: the one .xml among `files` (names inside the folder, or prefixed by it) and the .bin
    of the same stem."""
    names = {str(PurePosixPath(k).relative_to(name)) if k.startswith(f"{name}/") else k: k for k in files}
    xmls = [n for n in names if n.endswith(".xml")] if not name.endswith(".xml") else [PurePosixPath(name).name]
    if len(xmls) != 1:
        raise ArtifactLoadError(f"{name} holds {len(xmls)} .xml files, not one", "protect one OpenVINO IR folder")
    xml = xmls[0]
    weights = str(PurePosixPath(xml).with_suffix(".bin"))
    if xml not in names or weights not in names:
        raise ArtifactLoadError(f"{name} lacks {xml} or {weights}", "protect the whole OpenVINO IR folder")
    return files[names[xml]], files[names[weights]]
