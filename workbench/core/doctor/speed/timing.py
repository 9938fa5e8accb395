"""The speed doctor's measuring tools: calls guarded by a time limit, side-by-side timing in alternating blocks,
bytes read per call, and the exports a lever needs (made once per process).

Every comparison the speed doctor draws comes from `compare_calls`, the workbench's one paired timing
(`measure.paired.compare_calls`): each candidate runs a contiguous block of calls, the candidates' blocks alternate
round after round (the order reversed every other round), and the first calls of each block are discarded, so a
candidate is timed as it runs alone while a machine that slows down for a while slows every candidate alike, and
their ratio stays meaningful where absolute times do not.

The doctor's calls run in a worker thread (`guarded`). PyTorch's OpenMP (libgomp) gives every thread that runs
torch its own team of threads, and once the process holds more OpenMP threads than cores (the caller's team and
the worker's) every team stops spin-waiting between parallel regions: PyTorch eager measured 27 ms a call in the
worker against 11 ms in the caller's thread (demo model, 160 px, 2 cores). `guarded` therefore releases the
calling thread's OpenMP pool first (`omp_pause_resource_all`; the caller's next torch call rebuilds it).
"""

from __future__ import annotations

import ctypes
import glob
import os
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ...errors import WorkbenchError
from ...measure import paired
from ...measure.paired import Comparison, RatioBound

CAUSE_RATIO = 1.5  # a lever is named the cause when it saves at least this factor, measured side by side
SUSPECT_RATIO = 1.15  # below it a saving is within what a shared machine's noise can make
ROUNDS = paired.ROUNDS  # alternating rounds per comparison (the measure's default, named here for the levers)
WHERE = "in a worker thread with the caller's OpenMP pool released"  # how the doctor's timed calls run


@dataclass(frozen=True)
class Outcome:
    """What a guarded call gave: its value, the exception it raised, or that it ran past its time limit."""

    value: object = None
    error: BaseException | None = None
    timed_out: bool = False
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return self.error is None and not self.timed_out


def guarded(fn: Callable[[], object], timeout_s: float) -> Outcome:
    """Run `fn()` in a worker thread and wait at most `timeout_s`.

    A call that hangs cannot be stopped from Python: its (daemon) thread is left running and the outcome says
    `timed_out`; the caller stops using that deployment.
    """
    box: dict = {}
    release_openmp_pool()

    def target():
        try:
            box["value"] = fn()
        except BaseException as exc:  # the user's code may raise anything; it is reported, never re-raised here
            box["error"] = exc

    start = time.perf_counter()
    worker = threading.Thread(target=target, name="speed-doctor-call", daemon=True)
    worker.start()
    worker.join(timeout_s)
    seconds = time.perf_counter() - start
    if worker.is_alive():
        return Outcome(timed_out=True, seconds=seconds)
    return Outcome(box.get("value"), box.get("error"), False, seconds)


_GOMP: list = []  # torch's libgomp handle, looked up once (None where there is none)


def release_openmp_pool() -> bool:
    """Free the calling thread's OpenMP team in torch's libgomp (OpenMP 5 `omp_pause_resource_all`, soft), so that
    a worker thread that runs torch next is the only team: True where it was released. A no-op before torch is
    imported, inside a parallel region, or with another OpenMP runtime."""
    if "torch" not in sys.modules:
        return False
    if not _GOMP:
        found = glob.glob(os.path.join(os.path.dirname(sys.modules["torch"].__file__), "lib", "libgomp*.so*"))
        try:
            _GOMP.append(ctypes.CDLL(found[0]) if found else None)
        except OSError:
            _GOMP.append(None)
    if _GOMP[0] is None or not hasattr(_GOMP[0], "omp_pause_resource_all"):
        return False
    return _GOMP[0].omp_pause_resource_all(1) == 0  # 1: omp_pause_soft


def cycling(fn: Callable, items: Sequence) -> Callable[[], object]:
    """A no-argument call that runs `fn` on items 0, 1, ..., n-1, 0, ... in turn."""
    state = {"next": 0}

    def call():
        item = items[state["next"] % len(items)]
        state["next"] += 1
        return fn(item)

    return call


def compare_calls(candidates: dict[str, Callable[[], object]], **how) -> Comparison:
    """`measure.paired.compare_calls` (the same keywords), its method saying where the doctor's calls run: in a
    worker thread (`guarded`) with the caller's OpenMP pool released."""
    return paired.compare_calls(candidates, note=WHERE, **how)


def read_bytes() -> int | None:
    """Bytes this process has read through read() calls so far (Linux /proc/self/io `rchar`); None elsewhere.

    A deployment that loads its model on every call reads the model file on every call; one that is loaded once
    reads nothing while it infers.
    """
    try:
        with open("/proc/self/io") as f:
            for line in f:
                if line.startswith("rchar:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def strength(ratio: float) -> float:
    """How strongly a measured ratio points at a lever (0..1): the share of the time it would save."""
    return max(0.0, min(1.0, 1.0 - 1.0 / ratio)) if ratio > 0 else 0.0


def inconclusive_title(title: str, bound: RatioBound) -> str:
    """A lever's title when its saving did not hold across the rounds: what was seen, and how much it spread."""
    return (
        f"inconclusive, the machine was busy or unsteady: the rounds disagree ({bound.words()}, under the "
        f"{CAUSE_RATIO}x a cause needs); seen on average: {title}"
    )


class ExportCache:
    """Exports of a .pt that levers need (ONNX, OpenVINO, dynamic shapes), made once per process and folder."""

    _made: dict[tuple, Path] = {}
    _lock = threading.Lock()

    def __init__(self, folder: Path | None = None):
        self.folder = Path(folder) if folder else _process_folder()

    def get(self, weights: Path, fmt: str, imgsz: int) -> Path:
        """The dynamic-shape `fmt` ("onnx", "openvino") export of `weights`, traced at `imgsz`.

        Raises:
            ExportError: Ultralytics' exporter failed.
        """
        from ...models.export import ExportConfig, export_artifact

        weights = Path(weights).resolve()
        stat = weights.stat()
        key = (str(weights), stat.st_mtime_ns, stat.st_size, fmt, str(self.folder))
        with self._lock:
            if key in self._made and self._made[key].exists():
                return self._made[key]
            self.folder.mkdir(parents=True, exist_ok=True)
            suffix = ".onnx" if fmt == "onnx" else "_openvino_model"
            out = self.folder / f"{weights.stem}-{stat.st_mtime_ns % 10**8}-dyn{suffix}"
            if not out.exists():
                export_artifact(weights, ExportConfig(format=fmt, imgsz=imgsz, dynamic=True), out)
            self._made[key] = out
            return out


def _process_folder() -> Path:
    """A temporary folder for this process's exports, removed when the process exits."""
    folder = Path(tempfile.gettempdir()) / f"workbench-doctor-{os.getpid()}"
    if not folder.exists():
        import atexit
        import shutil

        folder.mkdir(parents=True, exist_ok=True)
        atexit.register(shutil.rmtree, folder, ignore_errors=True)
    return folder


def random_weights(architecture: str, folder: Path) -> Path:
    """A .pt of an Ultralytics architecture (e.g. "yolo11s.yaml") with random weights: for latency only."""
    from ...models.checkpoints import save_checkpoint
    from ...models.sources import load_model

    out = Path(folder) / f"{Path(architecture).stem}-random.pt"
    if not out.exists():
        Path(folder).mkdir(parents=True, exist_ok=True)
        save_checkpoint(load_model(architecture).model, out, note={"random_weights": True})
    return out


def describe_error(exc: BaseException) -> str:
    """An exception in one line, with the workbench's fix where it has one."""
    text = f"{type(exc).__name__}: {str(exc)[:300]}"
    if isinstance(exc, WorkbenchError) and getattr(exc, "fix", ""):
        text += f" (fix: {exc.fix})"
    return text
