"""Panels for the optimization steps: pruning, quantization, distillation, and the pipeline builder."""

from __future__ import annotations

import ipywidgets as widgets

from ..core.errors import ConfigError
from ..core.measure.plan import MeasurePlan
from ..core.optimize import distill as distill_core
from ..core.optimize import prune as prune_core
from ..core.optimize import qat as qat_core
from ..core.optimize import quantize as quantize_core
from ..core.optimize import recipes as pipeline_core
from ..core.optimize import sparsify as sparsify_core
from ..core.optimize.distill import DistillConfig
from ..core.optimize.prune import PruneConfig
from ..core.optimize.qat import QATConfig
from ..core.optimize.quantize import QuantizeConfig
from ..core.optimize.recipes import STEP_CONFIGS, Recipe, Step
from ..core.optimize.sparsify import NO_SPEEDUP, SparsifyConfig
from ..core.report.tables import pipeline_table, table_html
from ..core.services import measuring
from ..core.services.session import Session
from .base import Panel
from .controls import WIDE, VariantPicker, checkbox, dropdown, float_box, int_box, model_size_box, note, variant_label
from .panels import measurement_table_html


class StepPanel(Panel):
    """A panel whose step makes new variants, then (optionally) measures them as a recipe would."""

    def __init__(self, session: Session, *, measure, background: bool):
        super().__init__(background=background)
        self.session, self._measure = session, measure
        self.measure_after = checkbox("Measure the result", True, "latency and mAP50-95, both at this imgsz")
        self.latency_imgsz = model_size_box(session, "Measure at imgsz", "a static export is measured at its own size")

    def measure_controls(self) -> list:
        return [widgets.HBox([self.measure_after, self.latency_imgsz])]

    def finish(self, variant_ids: list[int], progress) -> list[int]:
        """Measure the new variants (when asked), tell the other panels, return the ids."""
        if self.measure_after.value:
            plan = MeasurePlan(imgsz=(self.latency_imgsz.value,), seconds=2.0)
            for variant_id in variant_ids:
                self._measure(self.session.workspace, variant_id, plan, self.session.data_yaml, progress=progress)
        self.session.changed()
        return variant_ids

    def describe(self, variant_ids) -> str:
        return "recorded " + ", ".join(variant_label(self.session.workspace, i) for i in variant_ids)

    def show(self, variant_ids) -> None:
        rows = [m for v in variant_ids for m in self.session.workspace.ledger.measurements(variant_id=v)]
        self.output.children = (widgets.HTML(measurement_table_html(self.session.workspace, rows)),) if rows else ()


class PrunePanel(StepPanel):
    """Structured (channel) pruning with Torch-Pruning, or unstructured magnitude pruning with NNCF."""

    title = "Prune"
    run_label = "Prune"

    def __init__(
        self,
        session: Session,
        *,
        prune=prune_core.prune,
        sparsify=sparsify_core.sparsify,
        measure=measuring.measure,
        background: bool = True,
    ):
        super().__init__(session, measure=measure, background=background)
        self._prune, self._sparsify = prune, sparsify
        self.parent = VariantPicker(session, "PyTorch variant", formats=("pytorch",))
        self.mode = widgets.ToggleButtons(options=["structured", "unstructured"], description="Kind", style=WIDE)
        self.ratio = widgets.FloatSlider(value=0.3, min=0.05, max=0.9, step=0.05, description="Ratio", style=WIDE)
        self.round_to = dropdown("Round channels to", [1, 8, 16, 32], 16)
        self.importance = dropdown("Importance", ["l2", "l1", "bn"], "l2")
        self.steps = int_box("Steps", 1, 1, 20)
        self.finetune_epochs = int_box("Fine-tune epochs / step", 0, 0, 100)

    def controls(self) -> list:
        return [
            note(
                "Structured pruning removes whole channels, so every runtime does less work; unstructured "
                "pruning zeroes single weights and keeps the shapes. " + NO_SPEEDUP
            ),
            self.parent.widget,
            self.mode,
            self.ratio,
            self.round_to,
            self.importance,
            self.steps,
            self.finetune_epochs,
            *self.measure_controls(),
        ]

    def config(self):
        if self.mode.value == "unstructured":
            return SparsifyConfig(ratio=self.ratio.value)
        return PruneConfig(
            ratio=self.ratio.value,
            round_to=self.round_to.value,
            importance=self.importance.value,
            steps=self.steps.value,
            finetune_epochs=self.finetune_epochs.value,
        )

    def arguments(self) -> dict:
        return {"parent_id": self.parent.value}

    def execute(self, config, progress, parent_id):
        workspace = self.session.workspace
        if isinstance(config, SparsifyConfig):
            variant_id = self._sparsify(workspace, parent_id, config, progress=progress)
        else:
            variant_id = self._prune(workspace, parent_id, config, data_yaml=self.session.data_yaml, progress=progress)
        return self.finish([variant_id], progress)


QUANTIZE_MODES = ["post-training", "accuracy-controlled", "quantization-aware"]


class QuantizePanel(StepPanel):
    """NNCF INT8: post-training, accuracy-controlled (a maximum mAP drop), or quantization-aware training."""

    title = "Quantize"
    run_label = "Quantize"

    def __init__(
        self,
        session: Session,
        *,
        quantize=quantize_core.quantize,
        qat=qat_core.qat,
        measure=measuring.measure,
        background: bool = True,
    ):
        super().__init__(session, measure=measure, background=background)
        self._quantize, self._qat = quantize, qat
        self.parent = VariantPicker(session, "Parent variant")
        self.mode = widgets.ToggleButtons(options=QUANTIZE_MODES, description="Method", style=WIDE)
        self.format = dropdown("Runtime", ["openvino", "onnx"], "openvino")
        self.imgsz = model_size_box(session, "imgsz", "input size of the INT8 model (default: training size)")
        self.preset = dropdown("Preset", ["mixed", "performance"], "mixed")
        self.calibration = int_box("Calibration images", 300, 8, 10000)
        self.fast_bias = checkbox("Fast bias correction", True)
        self.head_float = checkbox("Keep head post-processing float", True)
        self.max_drop = float_box("Max mAP50-95 drop", 0.005, 0.0, 1.0, 0.001, "accuracy-controlled only")
        self.validation = int_box("Validation images", 100, 4, 5000, tooltip="accuracy-controlled only")
        self.epochs = int_box("QAT epochs", 2, 1, 100, tooltip="quantization-aware only")

    def controls(self) -> list:
        return [
            note(
                "INT8 stores weights and computes activations in 8 bits: OpenVINO on a CPU with VNNI runs it "
                "much faster; ONNX Runtime often does not (measure both). Calibration images set the ranges; "
                "they come from the train split and are recorded by hash."
            ),
            self.parent.widget,
            self.mode,
            self.format,
            self.imgsz,
            self.preset,
            self.calibration,
            self.fast_bias,
            self.head_float,
            self.max_drop,
            self.validation,
            self.epochs,
            *self.measure_controls(),
        ]

    def config(self):
        if self.mode.value == "quantization-aware":
            return QATConfig(
                epochs=self.epochs.value,
                calibration_images=self.calibration.value,
                preset=self.preset.value,
                export_imgsz=self.imgsz.value,
                formats=(self.format.value,),
            )
        max_drop = self.max_drop.value if self.mode.value == "accuracy-controlled" else None
        return QuantizeConfig(
            format=self.format.value,
            imgsz=self.imgsz.value,
            preset=self.preset.value,
            calibration_images=self.calibration.value,
            fast_bias_correction=self.fast_bias.value,
            keep_head_float=self.head_float.value,
            max_drop=max_drop,
            validation_images=self.validation.value,
        )

    def arguments(self) -> dict:
        return {"parent_id": self.parent.value}

    def execute(self, config, progress, parent_id):
        workspace, data = self.session.workspace, self.session.require()[1]
        if isinstance(config, QATConfig):
            made = self._qat(workspace, parent_id, data, config, progress=progress)
            ids = [v for k, v in made.items() if k != "qat"]
        else:
            ids = [self._quantize(workspace, parent_id, data, config, progress=progress)]
        return self.finish(ids, progress)


class DistillPanel(StepPanel):
    """Train a student with a teacher's features (Ultralytics' distillation), and the plain fine-tune baseline."""

    title = "Distill"
    run_label = "Train"

    def __init__(
        self,
        session: Session,
        *,
        distill=distill_core.distill,
        finetune=distill_core.finetune,
        measure=measuring.measure,
        background: bool = True,
    ):
        super().__init__(session, measure=measure, background=background)
        self._distill, self._finetune = distill, finetune
        self.student = VariantPicker(session, "Student", formats=("pytorch",), prefer_current=False)  # newest
        self.teacher = VariantPicker(session, "Teacher", formats=("pytorch",))
        self.epochs = int_box("Epochs", 10, 1, 1000)
        self.imgsz = model_size_box(session, "Train imgsz", "default: the size the student was trained at")
        self.lr0 = float_box("Learning rate", 0.004, 1e-6, 1.0, 0.001)
        self.weight = float_box("Distillation weight", 6.0, 0.01, 100.0, 0.5)
        self.baseline = checkbox("Also fine-tune without teacher (baseline)", True)

    def controls(self) -> list:
        return [
            note(
                "A pruned or smaller student learns from the labels and from the teacher's neck features. "
                "Whether that beats plain fine-tuning for the same epochs is an empirical question: tick the "
                "baseline to train both and compare them on the chart."
            ),
            self.student.widget,
            self.teacher.widget,
            self.epochs,
            self.imgsz,
            self.lr0,
            self.weight,
            self.baseline,
            *self.measure_controls(),
        ]

    def config(self) -> DistillConfig:
        return DistillConfig(
            epochs=self.epochs.value,
            imgsz=self.imgsz.value,
            lr0=self.lr0.value,
            weight=self.weight.value,
            baseline=self.baseline.value,
        )

    def arguments(self) -> dict:
        if self.student.value == self.teacher.value:
            raise ConfigError(
                "student and teacher are the same variant",
                "pick the pruned (or smaller) model as student and its parent as teacher",
            )
        return {"student_id": self.student.value, "teacher_id": self.teacher.value}

    def execute(self, config, progress, student_id, teacher_id):
        workspace, data = self.session.workspace, self.session.require()[1]
        ids = [self._distill(workspace, student_id, teacher_id, data, config, progress=progress)]
        if config.baseline:
            ids.append(self._finetune(workspace, student_id, data, config, progress=progress))
        return self.finish(ids, progress)


class PipelinePanel(Panel):
    """Build a recipe (shipped, edited, or step by step) and run it on the session's model."""

    title = "Pipeline"
    run_label = "Run recipe"

    def __init__(self, session: Session, *, run_recipe=measuring.run_recipe, background: bool = True):
        super().__init__(background=background)
        self.session, self._run_recipe = session, run_recipe
        shipped = list(pipeline_core.shipped_recipes())
        self.recipe = dropdown("Start from", shipped, "demo-short" if "demo-short" in shipped else None)
        self.text = widgets.Textarea(
            description="Recipe YAML", style=WIDE, layout=widgets.Layout(width="760px", height="260px")
        )
        self.step_kind = dropdown("Add step", list(STEP_CONFIGS), "prune")
        self.add_button = widgets.Button(description="Add step", icon="plus")
        self.recipe.observe(lambda _: self.load_shipped(), names="value")
        self.add_button.on_click(lambda _: self.add_step(self.step_kind.value))
        self.load_shipped()

    def controls(self) -> list:
        return [
            note(
                "A recipe is a list of steps; each step's variant is recorded and measured before the next "
                "starts, and every step's options are checked before any long work begins."
            ),
            self.recipe,
            widgets.HBox([self.step_kind, self.add_button]),
            self.text,
        ]

    def load_shipped(self) -> None:
        import yaml

        self.text.value = yaml.safe_dump(Recipe.load(self.recipe.value).to_dict(), sort_keys=False)

    def add_step(self, kind: str) -> None:
        """Append `kind` with its default options to the recipe text."""
        import yaml

        data = yaml.safe_load(self.text.value) or {}
        options = Recipe((Step(kind, STEP_CONFIGS[kind]()),)).to_dict()["steps"][0][kind]
        if kind == "distill":
            options["teacher"] = "parent"
        data.setdefault("steps", []).append({kind: options})
        self.text.value = yaml.safe_dump(data, sort_keys=False)

    def config(self) -> Recipe:
        import yaml

        try:
            data = yaml.safe_load(self.text.value)
        except yaml.YAMLError as exc:
            raise ConfigError(f"the recipe is not valid YAML: {exc}", "fix the indentation or quoting") from exc
        return Recipe.from_dict(data, source="the recipe")

    def arguments(self) -> dict:
        model_id, data = self.session.require()
        return {"model_id": model_id, "data_yaml": data}

    def execute(self, recipe, progress, model_id, data_yaml):
        try:
            return self._run_recipe(self.session.workspace, recipe, model_id, data_yaml, progress=progress)
        finally:
            self.session.changed()  # steps that completed before a failure are in the ledger

    def describe(self, result) -> str:
        return f"{len(result.steps)} steps; final variant #{result.final_id}"

    def show(self, result) -> None:
        rows = pipeline_table(self.session.workspace, result)
        columns = list(dict.fromkeys(k for row in rows for k in row))
        self.output.children = (widgets.HTML(table_html(rows, columns)),)
