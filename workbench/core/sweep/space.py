"""A sweep's search space: the recipe every trial runs, the dimensions over its options, objective and constraints.

    name: prune-quantize
    steps:
      - prune: {round_to: 16}
      - finetune: {epochs: 1, batch: 8}
      - quantize: {format: openvino, calibration_images: 8}
    search:                                  # a list: its values; a range: {low, high} with step, or log: true
      prune.ratio: {low: 0.1, high: 0.5, step: 0.2}
      finetune.epochs: [1, 2]
      measure.imgsz: [64, 96]                # measure.* go to the MeasurePlans (imgsz, precision, threads)
    objective: {maximize: map50_95}          # or {minimize: p50_ms}
    constraints: {p99_ms: {max: 50, target: this-machine}, size_mb: {max: 20}}
    method: grid                             # grid | random | optuna
    trials: 6
    seed: 0
    early_stop: {epochs: 1, keep: 0.5}       # every trial trains `epochs` first, the best `keep` fraction fully
    measure: {seconds: 0.5}                  # MeasurePlan options for every trial

A dimension `kind.option` sets that option in every step of that kind. `measure.imgsz` is the measurement size
and also the size of quantize / export / qat steps that do not set their own (a static export is measured at the
size it was exported for). Everything is checked when the space is built, before any trial runs: each trial's
recipe goes through the recipe schema (the space's `toolkit`: the optimizer's, handed in by the composition layer)
and its plans through `MeasurePlan`, so the recipes' own checks apply.
"""

from __future__ import annotations

import copy
import itertools
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

from ..errors import ConfigError
from ..options import shown
from .toolkit import Toolkit
from .trials import METRICS, TrialSpec

METHODS = ("grid", "random", "optuna")
TOP_KEYS = (
    "name", "steps", "search", "objective", "constraints", "method", "trials", "seed", "early_stop", "measure",
)  # fmt: skip
MEASURE_DIMENSIONS = {"imgsz": "imgsz", "precision": "precisions", "threads": "threads"}
SIZED_STEPS = {"quantize": "imgsz", "export": "imgsz", "qat": "export_imgsz"}  # steps whose output has a size
TRAINING_STEPS = ("finetune", "distill", "qat")  # steps whose `epochs` early stopping shortens
THIS_MACHINE = "this-machine"


@dataclass(frozen=True)
class Dimension:
    """One searched option: a list of values, or a numeric range {low, high} with a step or on a log scale."""

    key: str  # "prune.ratio", "measure.imgsz"
    values: tuple | None = None
    low: float | None = None
    high: float | None = None
    step: float | None = None
    log: bool = False

    @classmethod
    def parse(cls, key: str, spec) -> Dimension:
        where = f"search: {key}"
        if isinstance(spec, (list, tuple)):
            if not spec:
                raise ConfigError(f"{where} has no values", "list at least one value, e.g. [0.2, 0.4]")
            return cls(key, values=tuple(spec))
        if not isinstance(spec, dict):
            return cls(key, values=(spec,))  # a single value: the dimension is fixed
        unknown = set(spec) - {"low", "high", "step", "log"}
        if unknown:
            raise ConfigError(f"{where} has unknown keys {sorted(map(str, unknown))}", "use low, high, step, log")
        return cls(key, low=spec.get("low"), high=spec.get("high"), step=spec.get("step"), log=spec.get("log", False))

    def __post_init__(self):
        if self.values is not None:
            return
        where = f"search: {self.key}"
        numbers = [v for v in (self.low, self.high) if isinstance(v, (int, float)) and not isinstance(v, bool)]
        if len(numbers) < 2 or not all(math.isfinite(v) for v in numbers) or self.low >= self.high:
            raise ConfigError(
                f"{where}: a range needs numbers low < high, got low {shown(self.low)}, high {shown(self.high)}",
                "write e.g. {low: 0.1, high: 0.5, step: 0.1}",
            )
        if self.step is not None and (not isinstance(self.step, (int, float)) or self.step <= 0):
            raise ConfigError(f"{where}: step must be a number > 0, got {shown(self.step)}", "write e.g. step: 0.1")
        if not isinstance(self.log, bool) or (self.log and (self.low <= 0 or self.step is not None)):
            raise ConfigError(f"{where}: log needs low > 0 and no step", "write {low: 1e-4, high: 1e-2, log: true}")

    @property
    def integer(self) -> bool:
        return all(isinstance(v, int) for v in (self.low, self.high, self.step or 1))

    def grid(self) -> list:
        """Every value of the dimension; a range needs a step."""
        if self.values is not None:
            return list(self.values)
        if self.step is None:
            raise ConfigError(
                f"search: {self.key} is a range without step, which a grid cannot enumerate",
                "give it a step, list its values, or use method: random or optuna",
            )
        count = int(math.floor((self.high - self.low) / self.step + 1e-9)) + 1
        return [self._number(self.low + i * self.step) for i in range(count)]

    def sample(self, rng):
        """One value drawn with `rng` (a random.Random)."""
        if self.values is not None or self.step is not None:
            return rng.choice(self.grid())
        if self.log:
            return self._number(math.exp(rng.uniform(math.log(self.low), math.log(self.high))))
        return rng.randint(self.low, self.high) if self.integer else rng.uniform(self.low, self.high)

    def suggest(self, trial):
        """One value from an Optuna trial (categorical for lists, int or float for ranges)."""
        if self.values is not None:
            return trial.suggest_categorical(self.key, list(self.values))
        if self.integer:
            return trial.suggest_int(self.key, self.low, self.high, step=self.step or 1, log=self.log)
        return trial.suggest_float(self.key, self.low, self.high, step=self.step, log=self.log)

    def extremes(self) -> list:
        """The values a check tries: every listed value, or a range's ends."""
        return list(self.values) if self.values is not None else [self.low, self.grid()[-1] if self.step else self.high]

    def _number(self, value: float):
        return int(round(value)) if self.integer else round(value, 10)


@dataclass(frozen=True)
class SearchSpace:
    """A sweep, checked on construction (see the module docstring for the YAML form)."""

    name: str
    steps: list
    search: dict  # key -> Dimension, or the YAML form of one (a list, a value, a {low, high, ...} mapping)
    objective: dict = field(default_factory=lambda: {"maximize": "map50_95"})
    constraints: dict = field(default_factory=dict)  # metric -> {max: x} / {min: x}, optionally target: id
    method: str = "grid"
    trials: int = 8
    seed: int = 0
    early_stop: dict | None = None  # {epochs: 1, keep: 0.5}
    measure: dict = field(default_factory=dict)  # MeasurePlan options for every trial
    toolkit: Toolkit | None = field(default=None, repr=False, compare=False)  # None: `default_toolkit`
    default_toolkit: ClassVar[Toolkit | None] = None  # workbench.SearchSpace's is the optimizer's

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "sweep", toolkit: Toolkit | None = None) -> SearchSpace:
        if not isinstance(data, dict):
            raise ConfigError(f"{source} is not a mapping", "write name:, steps:, search:, objective: ...")
        unknown = set(data) - set(TOP_KEYS)
        if unknown:
            raise ConfigError(f"{source} has unknown keys {sorted(map(str, unknown))}", f"use {', '.join(TOP_KEYS)}")
        for key in ("steps", "search"):
            if key not in data:
                raise ConfigError(f"{source} has no '{key}'", "see workbench/recipes/sweeps/small.yaml")
        return cls(**{"name": Path(source).stem, **data}, toolkit=toolkit)

    @classmethod
    def from_yaml(cls, path: Path | str, *, toolkit: Toolkit | None = None) -> SearchSpace:
        toolkit = _chosen_toolkit(toolkit, cls)
        data = toolkit.read_yaml(path, "sweep spec")  # the recipe loader's safe reading and its errors
        return cls.from_dict(data, source=str(path), toolkit=toolkit)

    def __post_init__(self):
        object.__setattr__(self, "toolkit", _chosen_toolkit(self.toolkit, type(self)))
        if not isinstance(self.name, str) or not self.name.strip():
            raise ConfigError(f"sweep name must be text, got {shown(self.name)}", "write e.g. name: prune-quantize")
        if not isinstance(self.steps, list) or not self.steps:
            raise ConfigError("steps must be a non-empty list", "write steps: [- prune: {round_to: 16}, ...]")
        object.__setattr__(self, "steps", [_normal_step(s, i) for i, s in enumerate(self.steps, 1)])
        if not isinstance(self.search, dict) or not self.search:
            raise ConfigError("search must map at least one option to its values", "write search: {prune.ratio: [0.3]}")
        dims = {k: v if isinstance(v, Dimension) else Dimension.parse(str(k), v) for k, v in self.search.items()}
        object.__setattr__(self, "search", dims)
        for key in dims:
            self._check_key(key)
        _check_choice("method", self.method, METHODS)
        for name, value, low in (("trials", self.trials, 1), ("seed", self.seed, 0)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be a whole number >= {low}, got {shown(value)}", f"write {name}: 8")
        _check_objective(self.objective)
        self._check_constraints()
        self._check_early_stop()
        self._check_measure()
        if self.method == "grid" and self.grid_size > self.trials:
            raise ConfigError(
                f"the grid has {self.grid_size} points, more than trials: {self.trials}",
                f"set trials: {self.grid_size}, drop values, or use method: random or optuna",
            )
        for params in self.check_points():
            self.spec(0, params)  # every recipe and plan through its own schema checks

    # ------------------------------------------------------------------ derived

    @property
    def direction(self) -> str:
        return "max" if "maximize" in self.objective else "min"

    @property
    def metric(self) -> str:
        return self.objective.get("maximize") or self.objective["minimize"]

    @property
    def target(self) -> str | None:
        """The catalog target latency constraints name (None: this machine)."""
        targets = {c.get("target") for c in self.constraints.values()} - {None, THIS_MACHINE}
        return next(iter(targets), None)

    @property
    def timed(self) -> bool:
        return self.measure.get("latency", True) is not False

    @property
    def grid_size(self) -> int:
        return math.prod(len(d.grid()) for d in self.search.values())

    def grid_points(self) -> list[dict]:
        """The product of the dimensions, in their order."""
        keys = list(self.search)
        return [
            dict(zip(keys, combo, strict=True)) for combo in itertools.product(*(self.search[k].grid() for k in keys))
        ]

    def check_points(self) -> list[dict]:
        """The points checked before work: the whole grid, or each dimension's extremes with the others first."""
        if self.method == "grid":
            return self.grid_points()
        first = {k: d.extremes()[0] for k, d in self.search.items()}
        return [{**first, k: v} for k, d in self.search.items() for v in d.extremes()]

    def feasible(self, values: dict) -> bool:
        """True when `values` has every constrained metric and meets every constraint."""
        return not self.violations(values)

    def violations(self, values: dict) -> dict[str, float]:
        """How far each constraint is missed (> 0), by metric; a missing value counts as missed."""
        missed = {}
        for metric, bound in self.constraints.items():
            value = values.get(metric)
            if value is None:
                missed[metric] = math.inf
            elif "max" in bound and value > bound["max"]:
                missed[metric] = value - bound["max"]
            elif "min" in bound and value < bound["min"]:
                missed[metric] = bound["min"] - value
        return missed

    # ------------------------------------------------------------------ trials

    def spec(self, number: int, params: dict, stage: str = "full") -> TrialSpec:
        """The trial of one point: its recipe (checked by the recipe schema) and its two measurement plans."""
        from ..measure.plan import MeasurePlan

        steps = copy.deepcopy(self.steps)
        measure = {k: v for k, v in self.measure.items() if k not in ("latency", "accuracy")}
        for key, value in params.items():
            kind, option = key.split(".", 1)
            if kind == "measure":
                measure[MEASURE_DIMENSIONS[option]] = [value] if option != "threads" else value
                continue
            for step in steps:
                if kind in step:
                    step[kind][option] = value
        _size_steps(steps, measure.get("imgsz"), params)
        if stage == "short":
            for step in steps:
                for kind in TRAINING_STEPS:
                    if kind in step:
                        step[kind]["epochs"] = min(self.early_stop["epochs"], step[kind].get("epochs", 10))
        recipe = {"name": f"{self.name}-{number}", "steps": steps}
        where = f"sweep {self.name}, point {_shown_params(params)}"
        self.toolkit.check_recipe(recipe, where)
        accuracy = {**measure, "latency": False, "accuracy": True}
        latency = {**measure, "latency": True, "accuracy": False} if self.timed else None
        for plan in (accuracy, latency):
            if plan is not None:
                MeasurePlan.from_dict(plan, source=f"{where}: measure")
        target = self.target
        return TrialSpec(number, dict(params), recipe, accuracy, latency, target, stage, self.name, self.toolkit)

    def check(self, net, data_yaml, *, split_sizes: dict | None = None) -> None:
        """Every checked point's recipe against the model and data (the toolkit's `check_fit`), writing nothing."""
        seen = set()
        for params in self.check_points():
            recipe = self.spec(0, params).recipe
            key = repr(recipe["steps"])
            if key not in seen:
                seen.add(key)
                self.toolkit.check_fit(recipe, net, data_yaml, source=f"sweep {self.name}", split_sizes=split_sizes)

    # ------------------------------------------------------------------ checks

    def _check_key(self, key: str) -> None:
        kind, _, option = key.partition(".")
        if not option:
            raise ConfigError(f"search: {key!r} names no option", "write kind.option, e.g. prune.ratio")
        if kind == "measure":
            if option == "runtime":
                raise ConfigError(
                    "search: measure.runtime: the runtime follows the artifact's format",
                    "search over export.format or quantize.format instead",
                )
            if option not in MEASURE_DIMENSIONS:
                raise ConfigError(f"search: {key}: unknown measure option", f"use {', '.join(MEASURE_DIMENSIONS)}")
            return
        kinds = [next(iter(s)) for s in self.steps]
        if kind not in kinds:
            raise ConfigError(
                f"search: {key}: no '{kind}' step in steps ({', '.join(kinds)})", f"add a {kind} step or fix the key"
            )
        fields = self.toolkit.step_options(kind)
        if option not in fields and not (kind == "distill" and option == "teacher"):
            raise ConfigError(f"search: {key}: {kind} has no option {option!r}", f"use one of {', '.join(fields)}")

    def _check_measure(self) -> None:
        if not isinstance(self.measure, dict):
            raise ConfigError("measure must be a mapping of MeasurePlan options", "write measure: {seconds: 0.5}")
        for option, dimension in (("imgsz", "measure.imgsz"), ("precisions", "measure.precision")):
            value = self.measure.get(option)
            if isinstance(value, (list, tuple)) and len(value) > 1:
                raise ConfigError(
                    f"measure: {option} lists {len(value)} values, but a trial is measured in one setting",
                    f"search over {dimension} instead: each value becomes its own trial",
                )

    def _check_constraints(self) -> None:
        if not isinstance(self.constraints, dict):
            raise ConfigError("constraints must be a mapping", "write constraints: {p99_ms: {max: 50}}")
        for metric, bound in self.constraints.items():
            where = f"constraints: {metric}"
            if metric not in METRICS:
                raise ConfigError(f"{where}: unknown metric", f"constrain one of {', '.join(METRICS)}")
            if not isinstance(bound, dict) or not set(bound) & {"max", "min"} or set(bound) - {"max", "min", "target"}:
                raise ConfigError(f"{where}: write a bound such as {{max: 50}}", "use max, min and optionally target")
            for side in ("max", "min"):
                if side in bound and (isinstance(bound[side], bool) or not isinstance(bound[side], (int, float))):
                    raise ConfigError(f"{where}: {side} must be a number, got {shown(bound[side])}", "write max: 50")
            if "target" in bound:
                _check_target(where, bound["target"], self.toolkit)
            if metric in ("p50_ms", "p99_ms") and not self.timed:
                raise ConfigError(f"{where}: latency is not measured (measure.latency is false)", "drop it")
        if len({c.get("target") for c in self.constraints.values()} - {None, THIS_MACHINE}) > 1:
            raise ConfigError("constraints name more than one target", "time every trial on one target")

    def _check_early_stop(self) -> None:
        if self.early_stop is None:
            return
        stop = self.early_stop
        if not isinstance(stop, dict) or set(stop) - {"epochs", "keep"} or "epochs" not in stop:
            raise ConfigError(
                "early_stop must be {epochs: N, keep: fraction}", "write early_stop: {epochs: 1, keep: 0.5}"
            )
        epochs, keep = stop["epochs"], stop.get("keep", 0.5)
        if isinstance(epochs, bool) or not isinstance(epochs, int) or epochs < 1:
            raise ConfigError(f"early_stop: epochs must be a whole number >= 1, got {shown(epochs)}", "write epochs: 1")
        if isinstance(keep, bool) or not isinstance(keep, (int, float)) or not 0 < keep <= 1:
            raise ConfigError(f"early_stop: keep must be in (0, 1], got {shown(keep)}", "write keep: 0.5")
        if not any(kind in step for step in self.steps for kind in TRAINING_STEPS):
            raise ConfigError("early_stop: no step trains (finetune, distill or qat)", "add one, or drop early_stop")
        object.__setattr__(self, "early_stop", {"epochs": epochs, "keep": float(keep)})


def _normal_step(entry, index: int) -> dict:
    """`{kind: {options}}` from a step entry (a bare kind name means its defaults)."""
    if isinstance(entry, str):
        return {entry: {}}
    if isinstance(entry, dict) and len(entry) == 1:
        kind, options = next(iter(entry.items()))
        if options is None or isinstance(options, dict):
            return {kind: dict(options or {})}
    raise ConfigError(
        f"steps: step {index} must be one 'kind: {{options}}' entry, got {shown(entry)}", "write - prune: {}"
    )


def _size_steps(steps: list, imgsz, params: dict) -> None:
    """Give quantize / export / qat steps the measurement size where neither they nor a dimension set theirs."""
    if not imgsz:
        return
    size = imgsz[0] if isinstance(imgsz, (list, tuple)) else imgsz
    for step in steps:
        kind = next(iter(step))
        option = SIZED_STEPS.get(kind)
        if option and step[kind].get(option) is None and f"{kind}.{option}" not in params:
            step[kind][option] = size


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ConfigError(
            f"{name} must be one of {', '.join(choices)}, got {shown(value)}", f"write {name}: {choices[0]}"
        )


def _check_objective(objective) -> None:
    if not isinstance(objective, dict) or len(objective) != 1 or next(iter(objective)) not in ("maximize", "minimize"):
        raise ConfigError(f"objective must be {{maximize: metric}} or {{minimize: metric}}, got {shown(objective)}",
                          "write objective: {maximize: map50_95}")  # fmt: skip
    metric = next(iter(objective.values()))
    if metric not in METRICS:
        raise ConfigError(f"objective: unknown metric {shown(metric)}", f"use one of {', '.join(METRICS)}")


def _check_target(where: str, target, toolkit: Toolkit) -> None:
    ids = [*toolkit.target_ids(), THIS_MACHINE]
    if target not in ids:
        raise ConfigError(f"{where}: target {shown(target)} is not in the catalog", f"use one of {', '.join(ids)}")


def _shown_params(params: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(defaults)"


def _chosen_toolkit(toolkit: Toolkit | None, space_class) -> Toolkit:
    """`toolkit`, else the space class's default; a space without one cannot check its recipes."""
    chosen = toolkit if toolkit is not None else space_class.default_toolkit
    if chosen is None:
        raise ConfigError(
            "this search space has no toolkit to read, check and run its recipes",
            "build it with workbench.SearchSpace, which brings the optimizer's, or pass toolkit=",
        )
    return chosen
