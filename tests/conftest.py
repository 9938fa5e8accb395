"""Shared fixtures: tiny generated datasets and a demo-trained model, all offline."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

import pytest

os.environ.setdefault("YOLO_OFFLINE", "1")  # before anything imports Ultralytics
os.environ.setdefault("YOLO_AUTOINSTALL", "False")

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).parent))  # socket_guard

import socket_guard  # noqa: E402

# The whole suite runs offline: this process and every Python process it starts (CLI runs, notebook kernels,
# JupyterLab and Voila servers) block and record any connection that would leave the machine; a test during
# which one was attempted fails.
# One log per xdist worker (`make test` runs two), so one worker's attempt never fails the other's test.
_WORKER = os.environ.get("PYTEST_XDIST_WORKER", "")
if _WORKER:
    os.environ[socket_guard.LOG_VARIABLE] = str(ROOT / f".pytest-socket-attempts-{_WORKER}.log")
_ATTEMPTS_LOG = Path(os.environ.setdefault(socket_guard.LOG_VARIABLE, str(ROOT / ".pytest-socket-attempts.log")))
_ATTEMPTS_LOG.unlink(missing_ok=True)
os.environ["PYTHONPATH"] = os.pathsep.join(
    filter(None, [str(Path(__file__).parent / "guarded"), os.environ.get("PYTHONPATH")])
)
socket_guard.install()


@pytest.fixture(autouse=True)
def no_network():
    """Fail the test if it, or a process it started, tried to reach past this machine."""
    before = _ATTEMPTS_LOG.stat().st_size if _ATTEMPTS_LOG.exists() else 0
    yield
    if _ATTEMPTS_LOG.exists() and _ATTEMPTS_LOG.stat().st_size > before:
        with open(_ATTEMPTS_LOG) as f:
            f.seek(before)
            attempts = f.read()
        pytest.fail(f"network connection attempted (blocked):\n{attempts[:3000]}")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """8 train / 8 val images at 64 px: enough for every code path, seconds to make."""
    from workbench.core.data.generate import ShapesConfig, generate_shapes

    return generate_shapes(tmp_path_factory.mktemp("data"), ShapesConfig(seed=3, train=8, val=8, imgsz=64))


@pytest.fixture(scope="session")
def demo_model():
    from workbench.core.models.sources import load_model

    return load_model("demo")


# Modules whose tests train, quantize, time side by side, or start servers and clusters (seconds each, 10-80 s a
# module on a 2-core machine): `make check` (-m "not slow") leaves them out; `make test` runs them.
SLOW_MODULES = {
    "test_app_security", "test_distill", "test_doctor_accuracy", "test_doctor_speed", "test_mlflow_export",
    "test_pipeline", "test_prune", "test_qat", "test_quantize", "test_searched_model", "test_serve_load",
    "test_sweep_dask", "test_sweep_panel",
}  # fmt: skip


# Modules that time one path against another and assert the verdict: under `make test`'s two workers each of
# their tests runs alone (the other worker waits between its tests), so the verdicts are judged on a quiet machine.
TIMED_MODULES = {"test_doctor_speed", "test_latency"}


def pytest_collection_modifyitems(items):
    for item in items:
        module = item.module.__name__.rpartition(".")[2]
        if module in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)
        if module in TIMED_MODULES:
            item.add_marker(pytest.mark.timed)


@pytest.fixture(autouse=True)
def timed_tests_run_alone(request, tmp_path_factory):
    """Under xdist, a `timed` test holds the run lock alone; every other test shares it (a readers-writer lock).

    A gate taken first gives the timed test priority: once it waits, no new test of the other worker starts."""
    if not _WORKER:
        yield
        return
    folder = tmp_path_factory.getbasetemp().parent  # shared by the workers of one run
    alone = request.node.get_closest_marker("timed") is not None
    with open(folder / "gate.lock", "a") as gate, open(folder / "run.lock", "a") as run:
        fcntl.flock(gate, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(run, fcntl.LOCK_EX if alone else fcntl.LOCK_SH)
        fcntl.flock(gate, fcntl.LOCK_UN)
        try:
            yield
        finally:
            fcntl.flock(run, fcntl.LOCK_UN)
