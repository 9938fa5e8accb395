"""`workbench demo`: the workbench end to end, on the embedded default or on a user's own model and data.

Export to every format, measure every runtime (latency, accuracy, parity), show the shipped student beside its
parent (what the full recipe achieves), run the short recipe as a two-epoch taste, write a self-contained report.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path

from ..data.generate import ShapesConfig, check_fits_shapes, generate_shapes
from ..errors import Cancelled, ConfigError, WorkbenchError
from ..measure.accuracy import AccuracyResult
from ..measure.plan import MeasurePlan
from ..models.cards import demo_card, student_card
from ..models.export import DEMO_FORMATS, ExportConfig, export
from ..models.sources import DEMO, SourceModel, open_source, record_source
from ..optimize.recipes import Recipe, check_recipe
from ..progress import ProgressFn, emit
from ..report.figures import history_figure, per_class_figure
from ..report.html import Section, figure_html, write_report
from ..report.images import prediction_grid_html
from ..report.sections import Aside, study_sections
from ..report.tables import table_html
from ..store.workspace import Workspace
from .measuring import measure, run_recipe

DEMO_PLAN = MeasurePlan(
    precisions=("f32", None), parity=True, stage_images=8, seconds=2.0, warmup_s=0.5, min_runs=20
)  # OpenVINO f32 and its own default (bf16 on CPUs that have it, silently), the stage breakdown, parity


@dataclass(frozen=True)
class DemoConfig:
    workspace: Path | None = None  # None: the default workspace
    model: str = DEMO
    data: Path | str | None = None  # a data YAML; None: the generated shapes dataset (`shapes`)
    shapes: ShapesConfig = ShapesConfig()
    preview_images: int = 6
    measure: bool = True  # export to ONNX, OpenVINO and TorchScript and measure every runtime
    plan: MeasurePlan = field(default_factory=lambda: DEMO_PLAN)
    student: bool = True  # with the demo model: the shipped student beside it, quantized to INT8 and measured
    recipe: str | None = "demo-short"  # optimization recipe run on the model after the exports (None: skip)
    trust: bool = False  # load a .pt whose pickle names more than model classes (it may run code)


@dataclass(frozen=True)
class DemoResult:
    workspace: Workspace
    data_yaml: Path
    variant_id: int
    accuracy: AccuracyResult
    report: Path


def run_demo(config: DemoConfig = DemoConfig(), *, progress: ProgressFn | None = None) -> DemoResult:
    """Record, export and measure the model, add the student and the short recipe, write the report and CSVs.

    Model, data and recipe are checked before anything is written, so bad input changes nothing on disk.
    """
    recipe = Recipe.load(config.recipe) if config.recipe else None  # a bad recipe fails before any work
    given = Path(config.data).expanduser().resolve() if config.data else None
    source = open_source(config.model, data_yaml=given, trust=config.trust)
    if given is None:
        check_fits_shapes(source.names, config.model)
    if recipe is not None:
        sizes = {"train": config.shapes.train, "val": config.shapes.val}
        check_recipe(recipe, source.model.model, given, split_sizes=sizes)
    workspace = Workspace(config.workspace)
    emit(progress, "dataset", 0, 1, config.shapes.name if given is None else str(given))
    data_yaml = given or generate_shapes(workspace.datasets, config.shapes, progress=progress).data_yaml
    base_id = record_source(workspace, source)
    base_plan = config.plan if config.measure else replace(config.plan, latency=False, parity=False, stage_images=0)
    measured = measure(workspace, base_id, base_plan, data_yaml, progress=progress)
    taste: tuple[int, ...] = ()
    if config.measure:
        for child in _exports(workspace, base_id, source, progress):
            measure(workspace, child, config.plan, data_yaml, progress=progress)
        if config.student and config.model == DEMO:
            _measure_student(workspace, base_id, data_yaml, config, progress)
        if recipe is not None:
            result = run_recipe(workspace, recipe, base_id, data_yaml, measure_input=False, progress=progress)
            taste = tuple(v for step in result.steps for v in step.variants)
    accuracy = _accuracy(workspace, measured)
    emit(progress, "report", 0, 1)
    report = _write_report(workspace, source, data_yaml, accuracy, config, recipe, taste)
    workspace.export_csv()
    emit(progress, "report", 1, 1, str(report))
    return DemoResult(workspace, data_yaml, base_id, accuracy, report)


def _exports(workspace: Workspace, base_id: int, source: SourceModel, progress) -> list[int]:
    """ONNX, OpenVINO and TorchScript exports at the model's training size; a format that fails is recorded."""
    children = []
    for fmt in DEMO_FORMATS:
        try:
            children.append(export(workspace, base_id, ExportConfig(format=fmt, imgsz=source.imgsz), progress=progress))
        except Cancelled:
            raise
        except WorkbenchError as exc:  # a format whose toolchain is missing: say so in the report, go on
            workspace.ledger.add_measurement(
                base_id,
                "latency",
                {"error": exc.problem, "fix": exc.fix},
                {"runtime": fmt.value, "imgsz": source.imgsz, "batch": 1, "status": "failed"},
            )
    return children


def _measure_student(workspace: Workspace, base_id: int, data_yaml: Path, config: DemoConfig, progress) -> None:
    """The shipped student (the full demo-best recipe's result) and its NNCF INT8, measured like the parent."""
    from ..optimize.quantize import QuantizeConfig, quantize
    from .shipped_models import record_student

    student = record_student(workspace, base_id, progress).student
    int8 = quantize(workspace, student, data_yaml, QuantizeConfig(format="openvino"), progress=progress)
    for variant_id in (student, int8):
        measure(workspace, variant_id, config.plan, data_yaml, progress=progress)


def _accuracy(workspace: Workspace, measurement_ids: list[int]) -> AccuracyResult:
    found = [m for m in workspace.ledger.measurements(ids=measurement_ids) if m.kind == "accuracy"]
    if not found or not found[0].ok:
        problem = found[0].metrics.get("error") if found else "no accuracy was measured"
        raise ConfigError(f"the model's accuracy could not be measured: {problem}", "check the model and its data")
    metrics = found[0].metrics
    return AccuracyResult(**{k: metrics[k] for k in AccuracyResult.__dataclass_fields__ if k in metrics})


def _taste_aside(recipe: Recipe | None, taste: tuple[int, ...]) -> tuple[Aside, ...]:
    if not taste:
        return ()
    epochs = sorted({getattr(s.config, "epochs", None) for s in recipe.steps} - {None})
    length = f"{', '.join(map(str, epochs))}-epoch" if epochs else "short"
    return (
        Aside(
            f"A {length} taste: the {recipe.name} recipe",
            taste,
            f"Each technique of {recipe.name}, run for minutes instead of hours: {length} training cannot recover "
            "what pruning removes, so read these rows for how each step works and what it costs in time, not for "
            "what the technique can reach. The shipped student in the main chart is the same pruning trained back "
            "for its full recipe.",
        ),
    )


def _write_report(workspace: Workspace, source: SourceModel, data_yaml, accuracy, config, recipe, taste) -> Path:
    summary = [
        {
            "model": config.model,
            "dataset": str(data_yaml),
            "images": accuracy.images,
            "instances": accuracy.instances,
            "imgsz": source.imgsz,
            "mAP50": accuracy.map50,
            "mAP50-95": accuracy.map50_95,
            "precision": accuracy.precision,
            "recall": accuracy.recall,
        }
    ]
    val = _val_images(data_yaml)[: config.preview_images]
    sections = [
        Section(
            "Accuracy on the validation split",
            table_html(summary),
            "mAP50-95 averages precision over IoU thresholds 0.50 to 0.95: it rewards tight boxes, not only found "
            "objects. Measured in PyTorch at the model's training size.",
        ),
        Section(
            "Per class",
            figure_html(per_class_figure(accuracy.per_class)),
            "A class far below the others is where to look first: too few examples, or confusable shapes.",
        ),
        Section(
            "Predictions on validation images",
            prediction_grid_html(source.model, val, imgsz=source.imgsz),
            "Green: labels. Magenta: the model's boxes with confidence >= 0.25.",
        ),
    ]
    if config.measure:
        sections += study_sections(workspace, asides=_taste_aside(recipe, taste))
    sections += _model_history(config)
    variants = workspace.variants()
    columns = ["id", "name", "step", "parent_id", "format", "sha256", "size_bytes", "created_at"]
    sections.append(
        Section(
            "Ledger",
            table_html(variants[columns].to_dict("records")) + f"<p>Ledger: <code>{workspace.ledger.path}</code></p>",
        )
    )
    title = "Deploy Workbench: demo"
    return write_report(workspace.reports / "demo.html", title, sections, subtitle=f"workspace {workspace.root}")


def _model_history(config: DemoConfig) -> list[Section]:
    if config.model != DEMO:
        return []
    sections = []
    for card, title in (
        (demo_card(), "How the demo model was trained"),
        (student_card(), "How the pruned student was trained"),
    ):
        if card.get("history"):
            sections.append(
                Section(
                    title,
                    figure_html(history_figure(card["history"], title=title)) + f"<pre>{_recipe_text(card)}</pre>",
                )
            )
    return sections


def _val_images(data_yaml: Path) -> list[Path]:
    from ..data.checks import list_images

    return list_images(data_yaml, "val")


def _recipe_text(card: dict) -> str:
    import html
    import json

    keys = ("architecture", "dataset", "recipe", "epochs", "train_seconds", "trained_on")
    return html.escape(json.dumps({k: card[k] for k in keys if k in card}, indent=2))
