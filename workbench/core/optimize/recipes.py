"""Recipes: a list of optimization steps (Python objects or YAML) run one after another over a workspace.

Each step takes the previous step's model, records its variant(s) in the ledger with lineage, and measures them
before the next step starts. Every step's options are checked before any long work begins; a failing step
leaves the earlier variants in place and names itself and the cause.

    steps:
      - prune: {ratio: 0.3, round_to: 16}
      - distill: {epochs: 3, teacher: parent}
      - quantize: {format: openvino, imgsz: 640}
    measure: {imgsz: [640], accuracy: true}
    aim: {latency_p99_ms: 20, min_map50_95: 0.5, imgsz: 640}

`aim` (optional) is what the recipe is for: after the run every variant is checked against it and the most
accurate one that meets it is named (`PipelineResult.standings`, `PipelineResult.best`).

`measure` is a `MeasurePlan` (the one plan type every caller uses); left out, each variant is measured at the size
its model was trained at (a static export at its own size), latency and mAP50-95 in the same row.
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import Cancelled, ConfigError, WorkbenchError
from ..measure.plan import MeasurePlan
from ..models.export import ExportConfig
from ..options import build, shown
from ..progress import ProgressFn, emit
from .aim import Aim, best_meeting, standings
from .distill import DistillConfig
from .prune import PruneConfig
from .qat import QATConfig
from .quantize import QuantizeConfig
from .sparsify import SparsifyConfig

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

    from ..measure.measure import RowEstimator

STEP_CONFIGS = {
    "prune": PruneConfig,
    "sparsify": SparsifyConfig,
    "finetune": DistillConfig,
    "distill": DistillConfig,
    "quantize": QuantizeConfig,
    "qat": QATConfig,
    "export": ExportConfig,
}
TEACHER_KEY = "teacher"  # distill only: "parent" (the recipe's input model), or a model spec (path, 'demo', name)


class PipelineError(WorkbenchError):
    """A step of a recipe failed; `completed` lists the steps that ran before it (their variants are kept)."""

    def __init__(self, problem: str, fix: str = "", completed: list | None = None):
        super().__init__(problem, fix)
        self.completed = completed or []


@dataclass(frozen=True)
class Step:
    kind: str
    config: object
    teacher: str | None = None


@dataclass(frozen=True)
class Recipe:
    steps: tuple
    measure: MeasurePlan | None = MeasurePlan()  # None: the steps' variants are recorded, not measured
    name: str = "recipe"
    aim: Aim | None = None

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "recipe") -> Recipe:
        if not isinstance(data, dict) or not isinstance(data.get("steps"), list) or not data["steps"]:
            raise ConfigError(f"{source} has no 'steps' list", "write steps: [- prune: {ratio: 0.3}, ...]")
        steps = [parse_step(entry, i + 1, source) for i, entry in enumerate(data["steps"])]
        unknown = set(data) - {"steps", "measure", "name", "aim"}
        if unknown:
            raise ConfigError(
                f"{source} has unknown keys {shown(sorted(map(str, unknown)))}", "use name, steps, measure and aim"
            )
        if not isinstance(data.get("measure") or {}, dict):
            raise ConfigError(f"{source}: 'measure' must be a mapping", "write measure: {imgsz: [640]}")
        measure = MeasurePlan.from_dict(data.get("measure"), source=f"{source}: measure")
        name = data.get("name", Path(source).stem)
        if not isinstance(name, str) or not name.strip():
            raise ConfigError(f"{source}: name must be text, got {shown(name)}", "write e.g. name: my-recipe")
        aim = None if data.get("aim") is None else build(Aim, data["aim"], f"{source}: aim")
        return cls(tuple(steps), measure, name, aim)

    @classmethod
    def load(cls, name_or_path: Path | str) -> Recipe:
        """A recipe YAML path, or the name of a shipped recipe (see `shipped_recipes()`)."""
        path = Path(name_or_path)
        if not path.suffix and not path.exists():
            shipped = shipped_recipes()
            if str(name_or_path) not in shipped:
                raise ConfigError(
                    f"no recipe file or shipped recipe named {name_or_path!r}",
                    f"pass a YAML path or one of: {', '.join(shipped)}",
                )
            path = shipped[str(name_or_path)]
        return cls.from_yaml(path)

    @classmethod
    def from_yaml(cls, path: Path | str) -> Recipe:
        return cls.from_dict(read_yaml(path, "recipe"), source=str(path))

    def to_dict(self) -> dict:
        steps = []
        for step in self.steps:
            options = asdict(step.config)
            if step.teacher is not None:
                options[TEACHER_KEY] = step.teacher
            steps.append({step.kind: options})
        data = {"name": self.name, "steps": steps}
        if self.measure is not None:
            data["measure"] = self.measure.to_dict()
        if self.aim is not None:
            data["aim"] = asdict(self.aim)
        return json.loads(json.dumps(data))  # plain types (enums become strings, tuples lists): YAML-safe


def read_yaml(path: Path | str, what: str = "recipe"):
    """The plain data of a YAML file (`yaml.safe_load`: no Python objects are built), every way it can fail turned
    into a ConfigError that names the file (and line) and the fix; `what` names the file in messages."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{what} {path} does not exist", f"pass the path of a {what} YAML file")
    try:
        data = yaml.safe_load(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{what} {path} is not UTF-8 text ({exc})", f"save the {what} as UTF-8 YAML") from exc
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p) or type(exc).__name__
        fix = "fix the YAML there"
        if "python/" in problem:
            fix = f"remove the '!!python/...' tag: a {what} holds plain values and Python objects are never built"
        raise ConfigError(f"{what} {where} is not valid YAML: {shown(problem)}", fix) from None
    except (yaml.YAMLError, RecursionError) as exc:
        raise ConfigError(f"{what} {path} is not valid YAML: {shown(str(exc))}", "fix the YAML syntax") from None
    except ValueError as exc:  # a value YAML cannot build: a date such as 2020-02-30, an integer of 5000 digits
        raise ConfigError(
            f"{what} {path} holds a value YAML cannot read: {shown(str(exc))}", "quote the value or fix it"
        ) from None
    except OSError as exc:
        raise ConfigError(f"{what} {path} cannot be read ({exc.strerror or exc})", "check the file") from exc
    return data


def shipped_recipes() -> dict[str, Path]:
    """The recipes that come with the package, by name."""
    from importlib import resources

    folder = Path(str(resources.files("workbench") / "recipes"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def parse_step(entry, index: int, source: str = "recipe") -> Step:
    """One `{kind: {options}}` mapping into a validated Step."""
    if isinstance(entry, str):
        entry = {entry: {}}
    if not isinstance(entry, dict) or len(entry) != 1:
        raise ConfigError(
            f"{source}: step {index} must be a single 'kind: {{options}}' mapping, got {shown(entry)}",
            f"write e.g. '- prune: {{ratio: 0.3}}'; kinds: {', '.join(STEP_CONFIGS)}",
        )
    kind, options = next(iter(entry.items()))
    if kind not in STEP_CONFIGS:
        raise ConfigError(
            f"{source}: step {index} has unknown kind {shown(kind)}", f"use one of {', '.join(map(str, STEP_CONFIGS))}"
        )
    where = f"{source}: step {index} ({kind})"
    if options is not None and not isinstance(options, dict):
        raise ConfigError(
            f"{where}: the options must be a mapping of name: value, got {shown(options)}",
            f"write e.g. '- {kind}: {{{next(iter(STEP_CONFIGS[kind].__dataclass_fields__))}: ...}}'",
        )
    options = dict(options or {})
    teacher = options.pop(TEACHER_KEY, None) if kind == "distill" else None
    if kind == "distill" and (not isinstance(teacher, str) or not teacher.strip()):
        raise ConfigError(
            f"{where} names no teacher" if teacher is None else f"{where}: teacher must be text, got {shown(teacher)}",
            "add teacher: parent (the model the recipe starts from) or a model path",
        )
    config = build(STEP_CONFIGS[kind], options, where)
    return Step(kind, config, teacher)


@dataclass
class StepResult:
    index: int
    kind: str
    variants: list[int]
    seconds: float
    measurements: list[int] = field(default_factory=list)


@dataclass
class PipelineResult:
    recipe: Recipe
    input_id: int
    steps: list[StepResult] = field(default_factory=list)
    input_measurements: list[int] = field(default_factory=list)

    standings: list[dict] = field(default_factory=list)  # every variant against the recipe's aim, if it has one

    @property
    def best(self) -> dict | None:
        """The most accurate variant that meets the recipe's aim (None without an aim or when none meets it)."""
        return best_meeting(self.standings)

    @property
    def final_id(self) -> int:
        return self.steps[-1].variants[-1] if self.steps else self.input_id


_NEEDS_PYTORCH = {"prune", "sparsify", "finetune", "distill", "qat", "export"}


def check_recipe(recipe: Recipe, net, data_yaml: Path | str | None, *, split_sizes: dict | None = None) -> None:
    """Check every step against the model and data, writing nothing; run it before a workspace is touched.

    Args:
        net: the recipe's input model (an Ultralytics DetectionModel).
        data_yaml: the dataset, or None for one not generated yet, whose image counts `split_sizes` gives
            ({"train": 800, "val": 200}).
    Raises:
        ConfigError naming the step: a step that needs a PyTorch model after one that exported, an architecture
        the pruner cannot handle, a teacher that is not a safe .pt of the same family, too few calibration images.
    """
    from ..data.checks import check_dataset

    if data_yaml is not None:
        check_dataset(data_yaml, splits=("train", "val"), model_names=net.names)
    produced = "pytorch"
    for index, step in enumerate(recipe.steps, 1):
        where = f"step {index} ({step.kind})"
        if step.kind in _NEEDS_PYTORCH and produced != "pytorch":
            raise ConfigError(
                f"{where} needs a PyTorch model, but an earlier step already produced {produced}",
                "put prune / distill / finetune / qat before quantize and export",
            )
        try:
            _check_step(step, net, data_yaml, split_sizes or {})
        except WorkbenchError as exc:
            raise ConfigError(f"{where}: {exc.problem}", exc.fix) from exc
        if step.kind in ("quantize", "export", "qat"):
            produced = getattr(step.config, "format", None) or step.config.formats[0]


def preflight(workspace: Workspace, recipe: Recipe, model_id: int, data_yaml: Path | str) -> dict[int, int]:
    """`check_recipe` on a recorded model, then record each distill step's teacher; returns teacher ids by step."""
    from ..models.checkpoints import load_checkpoint

    path = workspace.artifact_path(model_id)
    if path.suffix != ".pt":
        raise ConfigError(f"a recipe starts from a PyTorch model, not {path.name}", "start from the .pt variant")
    check_recipe(recipe, load_checkpoint(path).model, data_yaml)
    return {
        index: _teacher_variant(workspace, step.teacher, model_id)
        for index, step in enumerate(recipe.steps, 1)
        if step.kind == "distill"
    }


def _check_step(step: Step, net, data_yaml, split_sizes: dict) -> None:
    from ..data.calibration import MIN_CALIBRATION_IMAGES, ImageSet
    from ..models.checkpoints import load_checkpoint
    from .distill import check_teacher
    from .prune import check_prunable

    if step.kind in ("prune", "sparsify"):
        check_prunable(net)
    if step.kind == "distill" and step.teacher != "parent":
        check_teacher(net, load_checkpoint(_teacher_path(step.teacher)).model)
    if step.kind in ("quantize", "qat"):
        split = step.config.calibration_split
        if data_yaml is not None:
            ImageSet.from_data(data_yaml, split, step.config.calibration_images, minimum=MIN_CALIBRATION_IMAGES)
        elif split_sizes.get(split, 0) < MIN_CALIBRATION_IMAGES:
            raise ConfigError(
                f"the generated dataset's '{split}' split has {split_sizes.get(split, 0)} images, fewer than the "
                f"{MIN_CALIBRATION_IMAGES} calibration needs",
                f"generate more {split} images (e.g. --{split}-images 200) or calibrate on another split",
            )


def _teacher_path(teacher: str) -> Path:
    from ..models.sources import resolve

    source = resolve(teacher)
    if not Path(source.ref).is_file() or Path(source.ref).suffix != ".pt":
        raise ConfigError(
            f"teacher {teacher!r} is not a local .pt checkpoint",
            "use teacher: parent, 'demo', or the path of a trained .pt",
        )
    return Path(source.ref)


def _teacher_variant(workspace: Workspace, teacher: str, model_id: int) -> int:
    if teacher == "parent":
        return model_id
    path = _teacher_path(teacher)
    return workspace.add_artifact(path, path.name, step="import", format="pytorch")


def run_recipe(
    workspace: Workspace,
    recipe: Recipe,
    model_id: int,
    data_yaml: Path | str,
    *,
    measure_input: bool = True,
    estimate: RowEstimator | None = None,
    progress: ProgressFn | None = None,
) -> PipelineResult:
    """Run the steps in order; each step's variants are recorded and measured before the next starts.

    Args:
        measure_input: measure the starting model too (skip when the caller already has).
        estimate: what each latency row is estimated by before it is recorded (see `measure`); None: no estimate.
    """
    from ..measure.measure import measure

    teachers = preflight(workspace, recipe, model_id, data_yaml)
    result = PipelineResult(recipe, model_id)
    if measure_input and recipe.measure is not None:
        result.input_measurements = measure(
            workspace, model_id, recipe.measure, data_yaml, estimate=estimate, progress=progress
        )
    current, total = model_id, len(recipe.steps)
    for index, step in enumerate(recipe.steps, 1):
        emit(progress, "pipeline", index - 1, total, f"step {index}/{total}: {step.kind}")
        start = time.perf_counter()
        try:
            variants = _run_step(workspace, step, current, data_yaml, teachers.get(index), progress)
            plan, measured = recipe.measure, []
            if plan is not None:
                for variant in variants:
                    measured += measure(workspace, variant, plan, data_yaml, estimate=estimate, progress=progress)
        except Cancelled:
            raise
        except Exception as exc:  # any library error: name the step, keep what earlier steps made
            problem = getattr(exc, "problem", f"{type(exc).__name__}: {exc}")
            raise PipelineError(
                f"step {index} ({step.kind}) failed: {problem}",
                getattr(exc, "fix", "")
                or "fix this step's options and run the recipe again; "
                "earlier steps' variants are kept in the workspace",
                result.steps,
            ) from exc
        result.steps.append(StepResult(index, step.kind, variants, round(time.perf_counter() - start, 1), measured))
        current = variants[-1] if step.kind != "qat" else variants[1]
    if recipe.aim is not None:
        produced = [model_id] + [v for step in result.steps for v in step.variants]
        result.standings = standings(workspace, produced, recipe.aim)
    emit(progress, "pipeline", total, total, "done")
    return result


def _run_step(workspace: Workspace, step: Step, current: int, data_yaml, teacher_id: int | None, progress) -> list[int]:
    from ..models import export
    from . import distill, prune, qat, quantize, sparsify

    config = step.config
    if step.kind == "prune":
        return [prune.prune(workspace, current, config, data_yaml=data_yaml, progress=progress)]
    if step.kind == "sparsify":
        return [sparsify.sparsify(workspace, current, config, progress=progress)]
    if step.kind == "finetune":
        return [distill.finetune(workspace, current, data_yaml, config, progress=progress)]
    if step.kind == "distill":
        made = [distill.distill(workspace, current, teacher_id, data_yaml, config, progress=progress)]
        if config.baseline:  # the same training without teacher, measured beside it; the pipeline goes on distilled
            made.insert(0, distill.finetune(workspace, current, data_yaml, config, progress=progress))
        return made
    if step.kind == "quantize":
        return [quantize.quantize(workspace, current, data_yaml, config, progress=progress)]
    if step.kind == "qat":
        ids = qat.qat(workspace, current, data_yaml, config, progress=progress)
        return [ids["qat"], *(ids[f] for f in config.formats), *(ids[k] for k in ids if k.startswith("ptq_"))]
    return [export.export(workspace, current, config, progress=progress)]
