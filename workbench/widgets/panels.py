"""Panels for the ground steps: choose a model and dataset, export it, measure variants."""

from __future__ import annotations

from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..core.data.generate import ShapesConfig
from ..core.measure.plan import MeasurePlan
from ..core.models import export as export_core
from ..core.models.export import ExportConfig, ExportFormat
from ..core.report.tables import table_html
from ..core.services import session as session_core
from ..core.services.session import ModelChoice, Session
from .base import Panel
from .controls import (
    WIDE,
    VariantPicker,
    checkbox,
    dropdown,
    float_box,
    int_box,
    model_size_box,
    note,
    variant_label,
)

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

OPENVINO_PRECISIONS = [
    ("f32 (exact, what the export computes)", "f32"),
    ("runtime default (bf16 where the CPU has it)", None),
    ("bf16", "bf16"),
    ("f16", "f16"),
]


class ModelPanel(Panel):
    """Choose the model (the shipped demo, pruned student or searched variant, or a .pt path) and the dataset."""

    title = "Model & data"
    run_label = "Open"

    def __init__(self, session: Session, *, open_model=session_core.open_model, background: bool = True):
        super().__init__(background=background)
        self.session, self._open = session, open_model
        self.model = widgets.Combobox(
            value="demo",
            options=["demo", "student", "searched"],
            description="Model",
            style=WIDE,
            placeholder="demo, student, searched, or a path to a .pt file",
            ensure_option=False,
            layout=widgets.Layout(width="640px"),
        )
        self.data = widgets.Text(
            value="demo",
            description="Data YAML",
            style=WIDE,
            placeholder="demo, or a path to a YOLO data YAML",
            layout=widgets.Layout(width="640px"),
        )
        self.train_images = int_box("Train images (demo)", 800, 8, 20000, tooltip="generated training images")
        self.val_images = int_box("Val images (demo)", 200, 4, 5000, tooltip="generated validation images")
        self.trust = checkbox(
            "I trust this .pt file (it may run code)",
            False,
            tooltip="a .pt is a pickle: one that names more than model classes is refused unless you trust it",
        )

    def controls(self) -> list:
        return [
            note(
                "'demo' is the YOLO11n trained on the generated shapes dataset that ships with the workbench; "
                "'student' is its pruned and retrained student (recipe demo-best); 'searched' the student pruned "
                "again, the best trial of the constrained search of chapter 11. The demo dataset is "
                "generated from a seed, on this machine, with no network."
            ),
            self.model,
            self.data,
            self.train_images,
            self.val_images,
            self.trust,
        ]

    def config(self) -> ModelChoice:
        shapes = ShapesConfig(train=self.train_images.value, val=self.val_images.value)
        model, data = self.model.value.strip(), self.data.value.strip() or "demo"
        return ModelChoice(model=model, data=data, shapes=shapes, trust=self.trust.value)

    def execute(self, config, progress):
        return self._open(self.session, config, progress=progress)

    def describe(self, variant_id) -> str:
        return f"model recorded as variant #{variant_id}; dataset {self.session.data_yaml}"


class ExportPanel(Panel):
    """Export a PyTorch variant to ONNX, OpenVINO or TorchScript through Ultralytics' exporter."""

    title = "Export"
    run_label = "Export"

    def __init__(self, session: Session, *, export=export_core.export, background: bool = True):
        super().__init__(background=background)
        self.session, self._export = session, export
        self.variant = VariantPicker(session, "PyTorch variant", formats=("pytorch",))
        self.format = dropdown("Format", [f.value for f in ExportFormat], "openvino")
        self.imgsz = model_size_box(session, "imgsz", "input size the artifact is made for (default: training size)")
        self.precision = dropdown("Stored precision", ["fp32", "fp16", "int8"], "fp32")
        self.dynamic = checkbox("Dynamic input shape", False)

    def controls(self) -> list:
        return [
            note(
                "An export converts the PyTorch graph to a runtime's format. fp32 should give the same "
                "boxes as PyTorch (the Measure tab's parity check says whether it does); int8 here is "
                "Ultralytics' one-line INT8 (the Quantize tab offers NNCF with more control)."
            ),
            self.variant.widget,
            self.format,
            self.imgsz,
            self.precision,
            self.dynamic,
        ]

    def config(self) -> ExportConfig:
        data = str(self.session.data_yaml) if self.precision.value == "int8" and self.session.data_yaml else None
        return ExportConfig(
            format=self.format.value,
            imgsz=self.imgsz.value,
            precision=self.precision.value,
            dynamic=self.dynamic.value,
            data=data,
        )

    def arguments(self) -> dict:
        return {"parent_id": self.variant.value}

    def execute(self, config, progress, parent_id):
        variant_id = self._export(self.session.workspace, parent_id, config, progress=progress)
        self.session.changed()
        return variant_id

    def describe(self, variant_id) -> str:
        return f"recorded {variant_label(self.session.workspace, variant_id)}"


class MeasurePanel(Panel):
    """Latency, accuracy and parity of chosen variants, each recorded in the ledger with its context."""

    title = "Measure"
    run_label = "Measure"

    def __init__(self, session: Session, *, measure=session_core.measure_variants, background: bool = True):
        super().__init__(background=background)
        self.session, self._measure = session, measure
        self.variants = VariantPicker(session, "Variants", multiple=True)
        self.latency = checkbox("Latency", True)
        self.accuracy = checkbox("Accuracy (mAP)", True)
        self.parity = checkbox("Parity with parent", False)
        self.imgsz = model_size_box(session, "imgsz", "PyTorch and dynamic models; a static export uses its own size")
        self.seconds = float_box("Timed seconds", 2.0, 0.1, 120.0, 0.5, "steady-state timing per measurement")
        self.threads = int_box("Threads (0 = all)", 0, 0, 256)
        self.precision = dropdown("OpenVINO precision", OPENVINO_PRECISIONS, "f32")

    def controls(self) -> list:
        return [
            note(
                "Latency is batch 1, p50 after warm-up, with the runtime, precision and threads recorded. "
                "Accuracy is mAP50-95 on the val split at the model's training size. Parity compares a "
                "variant's boxes with its parent's on the same images."
            ),
            self.variants.widget,
            widgets.HBox([self.latency, self.accuracy, self.parity]),
            self.imgsz,
            self.seconds,
            self.threads,
            self.precision,
        ]

    def config(self) -> MeasurePlan:
        precision = self.precision.value
        return MeasurePlan(
            latency=self.latency.value,
            accuracy=self.accuracy.value,
            parity=self.parity.value,
            imgsz=(self.imgsz.value,),
            precisions=(precision,),
            seconds=self.seconds.value,
            threads=self.threads.value or None,
            stage_images=8 if self.latency.value else 0,
        )

    def arguments(self) -> dict:
        return {"variant_ids": list(self.variants.value)}

    def execute(self, config, progress, variant_ids):
        return self._measure(self.session, variant_ids, config, progress=progress)

    def describe(self, ids) -> str:
        return f"{len(ids)} measurements recorded"

    def show(self, ids) -> None:
        rows = self.session.workspace.ledger.measurements(ids=list(ids))
        self.output.children = (widgets.HTML(measurement_table_html(self.session.workspace, rows)),)


def measurement_table_html(workspace: Workspace, measurements: list) -> str:
    """A compact HTML table of measurements: variant, kind, runtime, precision, imgsz and the headline value."""
    body = []
    for m in measurements:
        metrics, ctx = m.metrics, m.context
        if not m.ok:
            value = f"failed: {metrics.get('error', '')}"
        elif m.kind == "latency":
            settled = "stable" if metrics.get("stable") else f"NOT stable, windows {metrics.get('spread', 0):.0%} apart"
            value = f"p50 {metrics['p50_ms']:.2f} ms (p90 {metrics['p90_ms']:.2f}, {metrics['runs']} runs, {settled})"
        elif m.kind == "accuracy":
            value = f"mAP50-95 {metrics['map50_95']:.4f}, mAP50 {metrics['map50']:.4f} ({metrics['images']} images)"
        else:
            value = ", ".join(
                f"{k} {v:.3f}" if isinstance(v, float) else f"{k} {v}"
                for k, v in metrics.items()
                if not isinstance(v, list | dict)
            )
        body.append(
            {
                "variant": variant_label(workspace, m.variant_id),
                "kind": m.kind,
                "runtime": ctx.get("runtime"),
                "precision": ctx.get("precision"),
                "imgsz": ctx.get("imgsz"),
                "result": value,
            }
        )
    return table_html(body)
