"""The deployment target catalog: the shipped targets, the user's own files, and this machine probed live.

A target is a place a model can run: a cloud instance, an edge device, on-premises hardware. Each carries the dense
peak compute of the part that runs the model per precision, its memory, power and price, every figure with the
source it comes from. Files are YAML (`targets.yaml` next to this module is the shipped one); the loader checks
every field and converts units to the canonical ones, and a mistake is a ConfigError naming the file, the target
and the field.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from .. import environment
from ..errors import ConfigError
from .cpu_peak import cpu_facts, cpu_peak_gops

PRECISIONS = ("fp32", "fp16", "bf16", "int8")
ENVIRONMENTS = ("cloud", "edge", "on_prem")
DEVICES = ("cpu", "gpu", "npu", "tpu")
RUNTIMES = ("openvino", "onnxruntime", "tensorrt", "litert", "pytorch", "torchscript")
FORMAT_OF_RUNTIME = {
    "openvino": "openvino",
    "onnxruntime": "onnx",
    "tensorrt": "engine",
    "litert": "tflite",
    "pytorch": "pytorch",
    "torchscript": "torchscript",
}

SHIPPED = Path(__file__).with_name("targets.yaml")
ENV_VARIABLE = "WORKBENCH_TARGETS"  # extra catalog files, os.pathsep-separated
THIS_MACHINE = "this-machine"
SCHEMA_VERSION = 1

# Units a file may write, with the factor to the canonical unit (the first of each table's values).
_FP_PEAK_UNITS = {"GFLOP/s": 1.0, "TFLOP/s": 1000.0}
_INT_PEAK_UNITS = {"GOP/s": 1.0, "TOPS": 1000.0}
_MEMORY_UNITS = {"GB": 1.0, "GiB": 1.073741824, "MB": 0.001}
_POWER_UNITS = {"W": 1.0}
_PRICE_UNITS = {"cloud": {"USD/hour": 1.0}, "edge": {"USD": 1.0}, "on_prem": {"USD": 1.0}}

_REQUIRED = ("id", "name", "environment", "provider", "device", "peak", "memory", "price", "price_date", "runtimes")
_OPTIONAL = ("power", "concurrency", "notes")
_ID = re.compile(r"[a-z0-9]+(-[a-z0-9]+)*")
_MONTH = re.compile(r"\d{4}-(0[1-9]|1[0-2])")


@dataclass(frozen=True)
class Figure:
    """One number with its canonical unit and where it comes from."""

    value: float  # in `unit`
    unit: str  # "GFLOP/s" (fp peaks), "GOP/s" (int8 peak), "GB", "W", "USD/hour" or "USD"
    source: str  # a document title + URL, "derived: <formula> (<inputs' sources>)" or "probed: <how>"


@dataclass(frozen=True)
class Target:
    """A place to deploy: what runs the model there, how fast it can go, what it holds, draws and costs."""

    id: str  # kebab-case, unique in a catalog
    name: str
    environment: str  # one of ENVIRONMENTS
    provider: str  # aws, azure, gcp, nvidia, raspberry-pi, intel, qualcomm, google, local, ...
    device: str  # one of DEVICES: what runs the model
    peak: dict[str, Figure]  # precision -> dense peak of the part that runs the model (GFLOP/s; int8 GOP/s)
    memory: Figure  # GB usable by the model
    power: Figure | None  # W under load; None for cloud instances
    price: Figure  # USD/hour for cloud instances, USD per unit for edge and on-prem hardware
    price_date: str  # YYYY-MM the price was read
    runtimes: tuple[str, ...]  # from RUNTIMES, preferred first
    concurrency: int = 1  # batch-1 streams served in parallel at about single-stream speed
    probed: bool = False  # True only for this machine
    notes: str = ""

    @property
    def precisions(self) -> tuple[str, ...]:
        """The precisions it has a peak for, in PRECISIONS order."""
        return tuple(p for p in PRECISIONS if p in self.peak)

    @property
    def formats(self) -> tuple[str, ...]:
        """The model formats its runtimes load, in the runtimes' order."""
        return tuple(FORMAT_OF_RUNTIME[r] for r in self.runtimes)

    def peak_gops(self, precision: str) -> float | None:
        """The peak at `precision` (GFLOP/s or int8 GOP/s), None where it has none."""
        figure = self.peak.get(precision)
        return figure.value if figure else None


# ---------------------------------------------------------------------------------------------------- loading


def load_catalog(extra: Sequence[Path | str] = (), *, probe: bool = True) -> list[Target]:
    """The shipped targets, then each file of `extra` and of the WORKBENCH_TARGETS environment variable
    (os.pathsep-separated): a target whose id is already there replaces it. With `probe`, `this_machine()` is
    added (id "this-machine").

    Raises:
        ConfigError: a file is missing, unreadable or malformed; the message names the file, target and field.
    """
    files = [SHIPPED, *(Path(f) for f in extra)]
    files += [Path(f) for f in os.environ.get(ENV_VARIABLE, "").split(os.pathsep) if f.strip()]
    targets: dict[str, Target] = {}
    for file in files:
        for target in load_file(file):
            targets[target.id] = target  # a replaced id keeps its place
    if probe:
        targets[THIS_MACHINE] = this_machine()
    return list(targets.values())


def load_file(path: Path | str) -> list[Target]:
    """The targets of one catalog file, checked and in canonical units."""
    path = Path(path)
    data = _read_yaml(path)
    where = str(path)
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: the file is {'empty' if data is None else 'not a mapping'}", _FILE_FIX)
    unknown = sorted(set(map(str, data)) - {"version", "targets"})
    if unknown:
        raise ConfigError(f"{where}: unknown top-level key(s) {', '.join(unknown)}", _FILE_FIX)
    if data.get("version") != SCHEMA_VERSION:
        raise ConfigError(f"{where}: version must be {SCHEMA_VERSION}, got {data.get('version')!r}", _FILE_FIX)
    entries = data.get("targets")
    if not isinstance(entries, list):
        raise ConfigError(f"{where}: `targets` must be a list of targets, got {type(entries).__name__}", _FILE_FIX)
    targets, seen = [], set()
    for index, entry in enumerate(entries):
        target = _parse_target(entry, where, index)
        if target.id in seen:
            raise ConfigError(
                f"{where}: target {target.id!r} (entry {index}), field id: duplicate id in this file",
                "give each target its own id; to replace a shipped target, use its id once in your own file",
            )
        seen.add(target.id)
        targets.append(target)
    return targets


_FILE_FIX = "write `version: 1` and `targets:` followed by a list of targets (see workbench/core/advise/targets.yaml)"


def _read_yaml(path: Path):
    """The plain data of a YAML file (never Python objects)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: target catalog file not found", "check the path (extra= or WORKBENCH_TARGETS)"
        ) from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", "save the file as UTF-8") from None
    except OSError as e:
        raise ConfigError(
            f"{path}: cannot read the target catalog ({e.strerror or e})", "check the path and rights"
        ) from e
    try:
        return yaml.safe_load(text)  # safe: plain data only; a !!python tag is an error
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        at = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        raise ConfigError(
            f"{path}: not valid YAML{at}{_near(text, e)}: {problem}",
            "fix the YAML; only plain data is read (no !!python tags)",
        ) from None


_KEY = re.compile(r"^\s*(?:-\s+)?([A-Za-z_][\w.]*)\s*:")
_ID_LINE = re.compile(r"^\s*(?:-\s+)?id\s*:\s*['\"]?([^'\"#\s]+)")


def _near(text: str, error: yaml.YAMLError) -> str:
    """Where a YAML error sits, best effort: the nearest target id and key at or above its line."""
    lines = text.splitlines()
    marks = [m for m in (getattr(error, "problem_mark", None), getattr(error, "context_mark", None)) if m]
    field = target = None
    for mark in marks:
        line = min(mark.line, len(lines) - 1)
        if field is None and 0 <= mark.line < len(lines) and (key := _KEY.match(lines[line])):
            field = key.group(1)
        for above in range(line, -1, -1):
            if target is None and (found := _ID_LINE.match(lines[above])):
                target = found.group(1)
    parts = ([f"target {target!r}"] if target else []) + ([f"field {field}"] if field else [])
    return f" (near {', '.join(parts)})" if parts else ""


# ---------------------------------------------------------------------------------------------------- one target


class _Entry:
    """One target's mapping while it is checked: knows how to word an error about one of its fields."""

    def __init__(self, data: dict, where: str, index: int):
        self.data, self.where, self.index = data, where, index
        raw_id = data.get("id")
        self.label = f"target {raw_id!r} (entry {index})" if isinstance(raw_id, str) else f"target at entry {index}"

    def error(self, field: str, problem: str, fix: str) -> ConfigError:
        return ConfigError(f"{self.where}: {self.label}, field {field}: {problem}", fix)

    def text(self, field: str, pattern: re.Pattern | None = None, fix: str = "write non-empty text") -> str:
        value = self.data.get(field)
        if not isinstance(value, str) or not value.strip() or (pattern and not pattern.fullmatch(value)):
            raise self.error(field, f"got {value!r}", fix)
        return value.strip()

    def choice(self, field: str, choices: Iterable[str]) -> str:
        value, choices = self.data.get(field), tuple(choices)
        if value not in choices:
            raise self.error(field, f"unknown value {value!r}", f"write one of {', '.join(choices)}")
        return value

    def figure(self, field: str, units: dict[str, float], value=None) -> Figure:
        """A {value, unit, source} mapping in one of `units`, converted to the first of them."""
        value = self.data.get(field) if value is None else value
        allowed = ", ".join(units)
        fix = f"write {{value: <a positive number>, unit: <{allowed}>, source: <where the figure comes from>}}"
        if not isinstance(value, dict):
            raise self.error(field, f"expected a mapping, got {value!r}", fix)
        keys = set(map(str, value))
        if keys - {"value", "unit", "source"}:
            raise self.error(field, f"unknown key(s) {', '.join(sorted(keys - {'value', 'unit', 'source'}))}", fix)
        number, unit, source = value.get("value"), value.get("unit"), value.get("source")
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number) or number <= 0:
            raise self.error(field, f"value must be a positive number, got {number!r}", fix)
        if unit not in units:
            raise self.error(field, f"unit {unit!r} is not allowed here", f"use one of {allowed}")
        if not isinstance(source, str) or not source.strip():
            raise self.error(field, "the figure has no source", "add source: the document (title and URL) or formula")
        return Figure(round(float(number) * units[unit], 9), next(iter(units)), " ".join(source.split()))


def _parse_target(data, where: str, index: int) -> Target:
    """One entry of a catalog file, checked field by field."""
    if not isinstance(data, dict):
        raise ConfigError(
            f"{where}: target at entry {index}: expected a mapping of fields, got {data!r:.80}",
            f"write each target as a mapping with {', '.join(_REQUIRED)}",
        )
    entry = _Entry(data, where, index)
    unknown = sorted(set(map(str, data)) - set(_REQUIRED) - set(_OPTIONAL))
    if unknown:
        raise entry.error(unknown[0], "unknown key", f"use only {', '.join(_REQUIRED + _OPTIONAL)}")
    for field in _REQUIRED:
        if field not in data:
            raise entry.error(field, "missing", f"add {field} (see workbench/core/advise/targets.yaml)")
    target_id = entry.text("id", _ID, "write a kebab-case id, e.g. my-edge-box")
    if target_id == THIS_MACHINE:
        raise entry.error("id", f"{THIS_MACHINE!r} is reserved for the live probe", "choose another id")
    env = entry.choice("environment", ENVIRONMENTS)
    return Target(
        id=target_id,
        name=entry.text("name"),
        environment=env,
        provider=entry.text("provider"),
        device=entry.choice("device", DEVICES),
        peak=_parse_peak(entry),
        memory=entry.figure("memory", _MEMORY_UNITS),
        power=_parse_power(entry, env),
        price=entry.figure("price", _PRICE_UNITS[env]),
        price_date=entry.text("price_date", _MONTH, 'write the month the price was read as a quoted "YYYY-MM"'),
        runtimes=_parse_runtimes(entry),
        concurrency=_parse_concurrency(entry),
        notes=_parse_notes(entry),
    )


def _parse_peak(entry: _Entry) -> dict[str, Figure]:
    peak = entry.data["peak"]
    if not isinstance(peak, dict) or not peak:
        raise entry.error("peak", f"expected a mapping precision -> figure, got {peak!r:.80}", _PEAK_FIX)
    figures = {}
    for precision in peak:
        if precision not in PRECISIONS:
            raise entry.error(f"peak.{precision}", "unknown precision", f"use {', '.join(PRECISIONS)}")
        units = _INT_PEAK_UNITS if precision == "int8" else _FP_PEAK_UNITS
        figures[precision] = entry.figure(f"peak.{precision}", units, peak[precision])
    return {p: figures[p] for p in PRECISIONS if p in figures}


_PEAK_FIX = "write e.g. peak: {fp32: {value: 8.1, unit: TFLOP/s, source: ...}, int8: {value: 130, unit: TOPS, ...}}"


def _parse_power(entry: _Entry, env: str) -> Figure | None:
    if entry.data.get("power") is None:
        return None
    if env == "cloud":
        raise entry.error("power", "a cloud instance carries no power figure", "remove power (or write power: null)")
    return entry.figure("power", _POWER_UNITS)


def _parse_runtimes(entry: _Entry) -> tuple[str, ...]:
    runtimes = entry.data["runtimes"]
    fix = f"write a list of runtimes, preferred first, from {', '.join(RUNTIMES)}"
    if not isinstance(runtimes, list) or not runtimes:
        raise entry.error("runtimes", f"expected a non-empty list, got {runtimes!r:.80}", fix)
    for runtime in runtimes:
        if runtime not in RUNTIMES:
            raise entry.error("runtimes", f"unknown runtime {runtime!r}", fix)
    if len(set(runtimes)) < len(runtimes):
        raise entry.error("runtimes", "a runtime is listed twice", fix)
    return tuple(runtimes)


def _parse_concurrency(entry: _Entry) -> int:
    value = entry.data.get("concurrency", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise entry.error("concurrency", f"expected a whole number of at least 1, got {value!r}", "write e.g. 1 or 4")
    return value


def _parse_notes(entry: _Entry) -> str:
    notes = entry.data.get("notes", "")
    if not isinstance(notes, str):
        raise entry.error("notes", f"expected text, got {notes!r:.80}", "write notes as a quoted string")
    return " ".join(notes.split())


# ---------------------------------------------------------------------------------------------------- this machine

_RUNTIME_MODULES = {  # runtime -> module whose presence means it runs here
    "openvino": "openvino",
    "onnxruntime": "onnxruntime",
    "litert": "ai_edge_litert",
    "pytorch": "torch",
    "torchscript": "torch",
}


@lru_cache(maxsize=1)
def this_machine() -> Target:
    """This machine, probed live (cached per process): peaks derived from its clock, cores and ISA flags as the
    catalog's CPU entries are (`cpu_peak`), so an efficiency learned here carries to them; where the kernel reports
    no clock, the fp32 peak is a measured GEMM rate instead. Its memory and the runtimes installed here."""
    cpu, cores = environment.cpu_info(), environment.usable_cores()
    facts = {**cpu_facts(), "flags": frozenset(cpu.get("isa", ()))}
    peak = {}
    for precision in PRECISIONS:
        derived = cpu_peak_gops(precision, cores, facts)
        if derived is not None:
            unit = "GOP/s" if precision == "int8" else "GFLOP/s"
            peak[precision] = Figure(round(derived[0], 1), unit, derived[1])
    if "fp32" not in peak:  # no clock reported: measure instead
        fp32 = environment.gemm_gflops(cores)
        source = f"probed: fp32 torch GEMM (1024 x 1024) on {cores} threads, environment.gemm_gflops"
        peak = {"fp32": Figure(fp32, "GFLOP/s", source), "int8": Figure(2 * fp32, "GOP/s", "derived: 2 x fp32")}
    memory = round(environment.memory_gb() * _MEMORY_UNITS["GiB"], 1)  # memory_gb() counts GiB
    flags = sorted(facts["flags"])
    return Target(
        id=THIS_MACHINE,
        name=f"This machine ({cpu.get('model') or 'CPU'}, {cores} usable cores)",
        environment="on_prem",
        provider="local",
        device="cpu",
        peak=peak,
        memory=Figure(memory, "GB", "probed: total RAM via psutil (environment.memory_gb, GiB converted to GB)"),
        power=None,
        price=Figure(0.0, "USD", "already owned"),
        price_date=_this_month(),
        runtimes=tuple(r for r, module in _RUNTIME_MODULES.items() if importlib.util.find_spec(module)),
        concurrency=1,
        probed=True,
        notes="Figures derived live on this machine; ISA flags: " + (" ".join(flags) or "none of interest"),
    )


def _this_month() -> str:
    import datetime

    return datetime.date.today().strftime("%Y-%m")


def find_target(targets: Iterable[Target], target_id: str) -> Target:
    """The target with `target_id`.

    Raises:
        ConfigError: no such id; the message lists the known ids.
    """
    targets = list(targets)
    for target in targets:
        if target.id == target_id:
            return target
    known = ", ".join(t.id for t in targets) or "(none)"
    raise ConfigError(f"unknown target {target_id!r}; known targets: {known}", "use one of the ids listed")
