"""Machine probe, the environment fingerprint stored with every record, and torch thread counts scoped to a call."""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from importlib import metadata

# ISA features that decide which kernels a runtime can use (INT8 VNNI, BF16, AMX tiles, FP16).
ISA_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512vl",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "avx512_fp16",
    "amx_tile",
    "amx_bf16",
    "amx_int8",
    "asimd",
    "sve",
)
LIBRARIES = (
    "torch",
    "torchvision",
    "ultralytics",
    "onnx",
    "onnxruntime",
    "openvino",
    "nncf",
    "torch-pruning",
    "numpy",
    "opencv-python",
    "plotly",
    "pandas",
    "deploy-workbench",
)


def usable_cores() -> int:
    """Cores this process may run on: its CPU affinity where the system reports one (Linux), else the machine's
    logical cores (macOS and Windows have no `os.sched_getaffinity`)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def load_average() -> float | None:
    """The 1-minute load average (processes running or waiting for a core), or None where the system keeps none
    (Windows has no `os.getloadavg`)."""
    try:
        return os.getloadavg()[0]
    except (AttributeError, OSError):
        return None


def load_note(before: float | None, after: float | None, cores: int) -> str:
    """A sentence on the load around a timing: above `cores`, other work shared the cores while it ran."""
    if before is None or after is None:
        return "load average not available on this system"
    said = f"load average {before:.1f} before, {after:.1f} after"
    if max(before, after) > cores:
        return f"{said} (above the {cores} usable cores: other work shared them)"
    return f"{said} (within the {cores} usable cores)"


@contextmanager
def torch_threads(threads: int | None = None) -> Iterator[None]:
    """Run a block with `threads` torch CPU threads (None: keep the count) and restore the count afterwards.

    Torch's thread count is global to the process, and Ultralytics' `select_device` lowers it to cores - 1 for
    the rest of the process whenever it validates, predicts, trains or exports; this puts back what was there.
    """
    import torch

    previous = torch.get_num_threads()
    if threads is not None and threads != previous:
        torch.set_num_threads(threads)
    try:
        yield
    finally:
        if torch.get_num_threads() != previous:
            torch.set_num_threads(previous)


def cpu_info() -> dict:
    """CPU model, the relevant ISA flags, logical cores and the cores this process may use."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip()
                if key == "model name" and model in ("", platform.machine(), platform.processor()):
                    model = value.strip()
                elif key in ("flags", "Features") and not flags:
                    flags = set(value.split())
    except OSError:
        pass
    return {
        "model": model,
        "isa": [f for f in ISA_FLAGS if f in flags],
        "logical_cores": os.cpu_count(),
        "usable_cores": usable_cores(),
    }


def memory_gb() -> float:
    import psutil

    return round(psutil.virtual_memory().total / 2**30, 1)


def gpu_info() -> list[str]:
    """GPU names from nvidia-smi, without importing torch; empty when there is none."""
    if not shutil.which("nvidia-smi"):
        return []
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [line.strip() for line in out.splitlines() if line.strip()]


@lru_cache(maxsize=8)
def gemm_gflops(threads: int, size: int = 1024, seconds: float = 0.5) -> float:
    """Measured fp32 matrix-multiply rate with `threads` torch threads: a practical ceiling for dense models."""
    import time

    import torch

    with torch_threads(threads):
        a, b = torch.rand(size, size), torch.rand(size, size)
        torch.mm(a, b)
        runs, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            torch.mm(a, b)
            runs += 1
        elapsed = time.perf_counter() - start
    return round(2 * size**3 * runs / elapsed / 1e9, 1)


def library_versions() -> dict[str, str | None]:
    """Installed versions (None when absent), read from metadata without importing anything."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


@lru_cache(maxsize=1)
def fingerprint() -> dict:
    """What a measurement depends on: CPU and its ISA flags, cores, memory, OS, Python, library versions, GPU."""
    return {
        "cpu": cpu_info(),
        "memory_gb": memory_gb(),
        "gpu": gpu_info(),
        "os": f"{platform.system()} {platform.release()}",
        "machine": platform.machine(),
        "python": platform.python_version(),
        "libraries": library_versions(),
    }


def fingerprint_id(data: dict) -> str:
    """A short stable id of a fingerprint: equal machines and installs share it."""
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def describe(data: dict | None = None) -> str:
    """Human-readable lines for `workbench info`."""
    data = data or fingerprint()
    cpu = data["cpu"]
    lines = [
        f"CPU        {cpu['model']}",
        f"ISA        {' '.join(cpu['isa']) or '(none of interest)'}",
        f"cores      {cpu['usable_cores']} usable of {cpu['logical_cores']} logical",
        f"memory     {data['memory_gb']} GiB",
        f"GPU        {', '.join(data['gpu']) or 'none'}",
        f"OS         {data['os']} ({data['machine']}), Python {data['python']}",
    ]
    lines += [f"{name:<18} {version or '-'}" for name, version in data["libraries"].items()]
    lines.append(f"fingerprint {fingerprint_id(data)}")
    return "\n".join(lines)


describe_environment = describe  # the public name: `wb.describe_environment()`
