"""What travels between a sweep's client and its Dask workers: packed artifacts and datasets, and the worker tasks.

No file system is shared. The client packs the input model's artifact and the dataset folder as tar bytes and
scatters them once; a worker task unpacks them into a scratch workspace of its own, runs there, and returns plain
data (variant records with their artifacts as tar bytes, measurements with the worker's fingerprint). Only the
client writes its ledger (`dask_engine.import_trial`).
"""

from __future__ import annotations

import io
import re
import socket
import tarfile
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ..environment import fingerprint
from ..errors import Cancelled, ConfigError, WorkbenchError

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

SPLITS = ("train", "val", "test")
LATENCY_RESOURCE = "latency"  # every worker that times has one: one latency task at a time per worker
_HASHED = re.compile(r"-[0-9a-f]{10}(?=(\.[A-Za-z0-9]+|_openvino_model)?$)")  # what Workspace.add_artifact appends


def target_resource(target: str) -> str:
    """The Dask resource a worker started for catalog target `target` holds."""
    return f"target:{target}"


# ------------------------------------------------------------------------------------------------- packing


def pack(path: Path) -> bytes:
    """A file or folder as tar bytes (its own name at the top)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        tar.add(path, arcname=path.name)
    return buffer.getvalue()


def unpack(data: bytes, folder: Path) -> Path:
    """Extract tar bytes from `pack` into `folder` (links and paths outside it refused); returns the top entry."""
    folder.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=io.BytesIO(data), mode="r") as tar:
        tops = {Path(m.name).parts[0] for m in tar.getmembers()}
        if len(tops) != 1:
            raise WorkbenchError(f"a packed artifact holds {len(tops)} top entries, not 1", "pack it with pack()")
        tar.extractall(folder, filter="data")
    return folder / tops.pop()


def original_name(name: str) -> str:
    """An artifact's name without the content hash a workspace added (the importing workspace adds its own)."""
    return _HASHED.sub("", name, count=1)


def pack_variant(workspace: Workspace, variant_id: int) -> dict:
    """One variant's record and artifact, as plain data."""
    variant = workspace.variant(variant_id)
    return {
        "id": variant.id,
        "parent": variant.parent_id,
        "name": original_name(variant.name),
        "step": variant.step,
        "params": variant.params,
        "format": None if variant.format is None else str(variant.format.value),
        "tar": pack(workspace.artifact_path(variant_id)),
    }


def add_packed(workspace: Workspace, packed: dict, parent_id: int | None, folder: Path) -> int:
    """Record a packed variant in `workspace` under `parent_id`; returns its id there."""
    path = unpack(packed["tar"], folder)
    return workspace.add_artifact(
        path, packed["name"], step=packed["step"], params=packed["params"], parent_id=parent_id, format=packed["format"]
    )


def pack_dataset(data_yaml: Path | str) -> dict:
    """A dataset as its YAML (split paths made relative to its folder) and that folder as tar bytes.

    Raises:
        ConfigError: the YAML is missing, or names a split outside its dataset folder (that cannot travel).
    """
    import yaml

    data_yaml = Path(data_yaml).expanduser().resolve()
    if not data_yaml.is_file():
        raise ConfigError(f"data YAML {data_yaml} does not exist", "pass the data YAML of the sweep's dataset")
    data = yaml.safe_load(data_yaml.read_text()) or {}
    root = Path(data.get("path") or data_yaml.parent)
    root = (root if root.is_absolute() else data_yaml.parent / root).resolve()
    for split in SPLITS:
        if split in data:
            data[split] = _relative_split(data[split], root, data_yaml, split)
    data["path"] = "."
    return {"yaml": yaml.safe_dump(data, sort_keys=False), "name": data_yaml.name, "tar": pack(root)}


def _relative_split(value, root: Path, data_yaml: Path, split: str):
    if isinstance(value, list):
        return [_relative_split(v, root, data_yaml, split) for v in value]
    path = Path(str(value))
    if not path.is_absolute():
        return str(value)
    try:
        return str(path.resolve().relative_to(root))
    except ValueError:
        raise ConfigError(
            f"{data_yaml} names its {split} split {path}, outside its dataset folder {root}; sweep workers receive "
            "that folder only",
            "move the split under the dataset folder (or make the YAML's `path` a folder holding every split)",
        ) from None


def unpack_dataset(dataset: dict, folder: Path) -> Path:
    """Unpack a `pack_dataset` payload under `folder`; returns the data YAML pointing at the unpacked folder."""
    import yaml

    root = unpack(dataset["tar"], folder / "data")
    data = yaml.safe_load(dataset["yaml"])
    data["path"] = str(root)
    data_yaml = folder / dataset["name"]
    data_yaml.write_text(yaml.safe_dump(data, sort_keys=False))
    return data_yaml


# ------------------------------------------------------------------------------------------------- worker side


def machine_key() -> str:
    """This machine: host name and machine id (two workers on one host share it; containers may differ)."""
    try:
        machine = Path("/etc/machine-id").read_text().strip()
    except OSError:
        machine = ""
    return f"{socket.gethostname()}:{machine[:12]}"


def count_attempt(key: str) -> int:
    """Count one more attempt of the task `key` in a scheduler-held Variable (the client sets it to 0 before it
    submits); returns this attempt's number."""
    from distributed import Lock, Variable

    with Lock(f"{key}:lock"):
        variable = Variable(key)
        count = int(variable.get(timeout=30)) + 1
        variable.set(count)
    return count


def _worker_address() -> str:
    from distributed import get_worker

    try:
        return get_worker().address
    except ValueError:  # called outside a worker (a direct call in a test)
        return "local"


def _measurements(workspace: Workspace, ids: list[int]) -> list[dict]:
    found = workspace.ledger.measurements(ids=ids)
    return [{"variant": m.variant_id, "kind": m.kind, "metrics": m.metrics, "context": m.context} for m in found]


def run_trial_task(spec, parent: dict, dataset: dict, attempt_key: str) -> dict:
    """A trial on a worker: recipe and accuracy in a scratch workspace; returns its variants and measurements.

    A trial that fails for a reason of its own (a WorkbenchError) returns that error with what it made; any
    other exception propagates, so Dask retries the task.
    """
    from ..measure.measure import measure
    from ..store.workspace import Workspace
    from .trials import run_recipe, trial_plans

    attempts, start = count_attempt(attempt_key), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="workbench-trial-") as tmp:
        workspace = Workspace(Path(tmp) / "workspace")
        data_yaml = unpack_dataset(dataset, Path(tmp))
        root = add_packed(workspace, parent, None, Path(tmp) / "parent")
        measured, error, final = [], None, None
        try:
            final = run_recipe(workspace, spec, root, data_yaml).final_id
            measured = measure(workspace, final, trial_plans(spec)[0], data_yaml)
        except Cancelled:
            raise
        except WorkbenchError as exc:  # the trial's own failure: its result, not a reason to retry
            error = exc.problem
        # every variant the trial made, parents first (a step may record more than its output: quantize records
        # the float export it started from, the parent of its INT8 variant)
        made = sorted(v.id for v in workspace.ledger.variants() if v.id != root)
        return {
            "root": root,
            "final": final,
            "variants": [pack_variant(workspace, v) for v in made],
            "measurements": _measurements(workspace, measured),
            "error": error,
            "worker": _worker_address(),
            "fingerprint": fingerprint(),
            "attempts": attempts,
            "seconds": round(time.perf_counter() - start, 2),
        }


def time_trial_task(spec, trial: dict, parent: dict, dataset: dict) -> dict:
    """A trial's latency on a worker: its final variant timed with `measure`, one timing per machine at a time.

    The Dask resource already gives each worker one latency task at a time; the machine-wide Lock keeps two
    workers of one machine from timing at once (they would share its cores).
    """
    from distributed import Lock

    from ..measure.measure import measure
    from ..store.workspace import Workspace
    from .trials import trial_plans

    with tempfile.TemporaryDirectory(prefix="workbench-latency-") as tmp:
        workspace = Workspace(Path(tmp) / "workspace")
        data_yaml = unpack_dataset(dataset, Path(tmp))
        ids = {trial["root"]: add_packed(workspace, parent, None, Path(tmp) / "parent")}
        for packed in trial["variants"]:
            ids[packed["id"]] = add_packed(workspace, packed, ids[packed["parent"]], Path(tmp) / str(packed["id"]))
        final = ids[trial["variants"][-1]["id"]]
        machine = machine_key()
        with Lock(f"workbench-latency:{machine}"):
            started = time.time()
            measured = measure(workspace, final, trial_plans(spec)[-1], data_yaml)
            ended = time.time()
        found, worker = _measurements(workspace, measured), _worker_address()
        for m in found:
            m["context"].update(worker=worker, machine=machine, timed_from=started, timed_to=ended)
            if spec.target is not None:
                m["context"]["target"] = spec.target
        return {"measurements": found, "worker": worker, "fingerprint": fingerprint()}
