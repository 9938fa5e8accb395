"""`workbench demo`: the whole pipeline that exists so far, end to end, on the embedded default."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..data.generate import ShapesConfig, ShapesDataset, generate_shapes
from ..data.shapes import CLASSES
from ..errors import Cancelled, ModelLoadError, WorkbenchError
from ..measure.accuracy import AccuracyConfig, AccuracyResult, evaluate
from ..measure.latency import LatencyConfig
from ..measure.measure import accuracy_context, check_parity, evaluate_variant, measure_latency
from ..measure.parity import ParityConfig
from ..models.export import ExportConfig, ExportFormat, export
from ..models.runners import RuntimeOptions
from ..models.sources import demo_card, load_model, resolve
from ..optimize.recipes import Recipe, run_recipe
from ..progress import ProgressFn, emit
from ..report.html import (
    Section,
    figure_html,
    history_figure,
    per_class_figure,
    prediction_grid_html,
    table_html,
    write_report,
)
from ..report.sections import study_sections
from ..store.workspace import DEFAULT_ROOT, Workspace
from .shipped_models import DEMO_DATA


@dataclass(frozen=True)
class DemoConfig:
    workspace: Path = DEFAULT_ROOT
    model: str = "demo"
    data: ShapesConfig = field(default_factory=lambda: DEMO_DATA)
    imgsz: int | None = None  # None: the model's training imgsz
    preview_images: int = 6
    measure: bool = True  # export to ONNX, OpenVINO and TorchScript and measure every runtime
    latency: LatencyConfig = field(default_factory=lambda: LatencyConfig(warmup_runs=5, warmup_s=0.5, min_runs=20,
                                                                         min_time_s=2.0))
    stage_images: int = 8
    recipe: str | None = "demo-short"  # optimization recipe run on the model after the exports (None: skip)


@dataclass(frozen=True)
class DemoResult:
    workspace: Workspace
    dataset: ShapesDataset
    variant_id: int
    measurement_id: int
    accuracy: AccuracyResult
    report: Path


def run_demo(config: DemoConfig = DemoConfig(), *, progress: ProgressFn | None = None) -> DemoResult:
    """Generate (or reuse) the dataset, record and evaluate the model, write the report and CSVs.

    Inputs are checked before anything is written, so a bad model or workspace changes nothing on disk.
    """
    source = resolve(config.model)
    recipe = Recipe.load(config.recipe) if config.recipe else None  # a bad recipe fails before any work
    model = load_model(config.model)
    if list(model.names.values()) != list(CLASSES):
        raise ModelLoadError(
            f"{config.model} predicts {len(model.names)} classes ({', '.join(list(model.names.values())[:4])}, ...), "
            f"the demo dataset has {', '.join(CLASSES)}",
            "use 'demo', or a model trained on the shapes dataset (workbench demo-model --train)")
    imgsz = config.imgsz or int(model.ckpt.get("train_args", {}).get("imgsz", 320) if model.ckpt else 320)
    accuracy_config = AccuracyConfig(imgsz=imgsz)
    workspace = Workspace(config.workspace)

    emit(progress, "dataset", 0, 1, config.data.name)
    dataset = generate_shapes(workspace.datasets, config.data, progress=progress)
    variant_id = workspace.add_artifact(Path(model.ckpt_path or source.ref), Path(source.ref).name, step="source",
                                        params={"source": config.model, "kind": source.kind.value}, format="pt")
    accuracy = evaluate(model, dataset.data_yaml, accuracy_config, progress=progress)
    measurement_id = workspace.ledger.add_measurement(variant_id, "accuracy", accuracy.metrics(), accuracy_context(
        accuracy_config, dataset.data_yaml, runtime="pytorch", precision="fp32", dataset=dataset.config.name,
        status="ok"))
    if config.measure:
        _export_and_measure(workspace, variant_id, dataset, imgsz, config, progress)
    if config.measure and recipe is not None:
        run_recipe(workspace, recipe, variant_id, dataset.data_yaml, measure_input=False, progress=progress)
    emit(progress, "report", 0, 1)
    report = _write_demo_report(workspace, dataset, model, accuracy, imgsz, config)
    workspace.export_csv()
    emit(progress, "report", 1, 1, str(report))
    return DemoResult(workspace, dataset, variant_id, measurement_id, accuracy, report)


def _export_and_measure(workspace: Workspace, base_id: int, dataset: ShapesDataset, imgsz: int, config: DemoConfig,
                        progress: ProgressFn | None) -> None:
    """Export the model to each format at `imgsz`, then latency, accuracy and parity of every runtime row."""
    val = sorted((dataset.root / "images" / "val").glob("*.jpg"))
    accuracy = AccuracyConfig(imgsz=imgsz)
    rows = [(base_id, RuntimeOptions())]
    for fmt in ExportFormat:
        try:
            child = export(workspace, base_id, ExportConfig(format=fmt, imgsz=imgsz), progress=progress)
        except Cancelled:
            raise
        except WorkbenchError as exc:  # a format whose toolchain is missing: say so in the report, go on
            workspace.ledger.add_measurement(base_id, "latency", {"error": exc.problem, "fix": exc.fix},
                                             {"runtime": fmt.value, "imgsz": imgsz, "batch": 1, "status": "failed"})
            continue
        if fmt is ExportFormat.OPENVINO:
            # f32 explicitly, and the default (bf16 on CPUs that have it, silently)
            rows += [(child, RuntimeOptions(precision="f32")), (child, RuntimeOptions())]
        else:
            rows.append((child, RuntimeOptions()))
        if fmt is not ExportFormat.TORCHSCRIPT:
            check_parity(workspace, child, val, ParityConfig(imgsz=imgsz, images=20), progress=progress)
    for variant_id, options in rows:
        measure_latency(workspace, variant_id, options, imgsz=imgsz, config=config.latency,
                        images=val[: config.stage_images], progress=progress)
        if variant_id != base_id:
            evaluate_variant(workspace, variant_id, dataset.data_yaml, accuracy, options, progress=progress)


def _write_demo_report(workspace: Workspace, dataset: ShapesDataset, model, accuracy: AccuracyResult, imgsz: int,
                       config: DemoConfig) -> Path:
    card = demo_card() if config.model == "demo" else {}
    summary = [{"model": config.model, "dataset": dataset.config.name, "images": accuracy.images,
                "instances": accuracy.instances, "imgsz": imgsz, "mAP50": accuracy.map50,
                "mAP50-95": accuracy.map50_95, "precision": accuracy.precision, "recall": accuracy.recall}]
    sections = [
        Section("Accuracy on the validation split", table_html(summary),
                "mAP50-95 averages precision over IoU thresholds 0.50 to 0.95: it rewards tight boxes, "
                "not only found objects."),
        Section("Per class", figure_html(per_class_figure(accuracy.per_class)),
                "A class far below the others is where to look first: too few examples, or confusable shapes."),
        Section("Predictions on validation images",
                prediction_grid_html(model, sorted((dataset.root / "images" / "val").glob("*.jpg"))
                                     [:config.preview_images], imgsz=imgsz),
                "Green: labels. Magenta: the model's boxes with confidence >= 0.25."),
    ]
    if config.measure:
        sections += study_sections(workspace)
    if card.get("history"):
        sections.append(Section("How the demo model was trained", figure_html(history_figure(card["history"]))
                                + f"<pre>{_recipe_text(card)}</pre>"))
    variants = workspace.variants()
    sections.append(Section("Ledger", table_html(variants[["id", "name", "step", "format", "sha256",
                                                           "size_bytes", "created_at"]].to_dict("records"))
                            + f"<p>Ledger: <code>{workspace.ledger.path}</code></p>"))
    return write_report(workspace.reports / "demo.html", "Deploy Workbench: demo", sections,
                        subtitle=f"workspace {workspace.root}")


def _recipe_text(card: dict) -> str:
    import html
    import json

    recipe = {k: card[k] for k in ("architecture", "dataset", "recipe", "train_seconds", "trained_on") if k in card}
    return html.escape(json.dumps(recipe, indent=2))
