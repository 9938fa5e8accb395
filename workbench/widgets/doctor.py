"""The troubleshooting panel: run the accuracy or the speed doctor on a workspace variant, show the ranked findings,
the one sentence, the evidence pictures, and where the diagnosis was recorded in the ledger."""

from __future__ import annotations

import html
from pathlib import Path
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..core.doctor import on_variant as diagnose_core
from ..core.errors import ConfigError
from ..core.progress import emit
from ..core.services.session import Session
from .base import Panel
from .controls import WIDE, dropdown, float_box, int_box, note, variant_label

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

DOCTORS = [("accuracy: why does it detect worse?", "accuracy"), ("speed: why is it slow?", "speed")]
COLORS = [("RGB (correct)", "rgb"), ("BGR (channels as OpenCV reads them)", "bgr")]
SCALES = [("x / 255 (correct)", 1 / 255), ("x (0-255, not scaled)", 1.0), ("x / 127.5", 1 / 127.5)]
RESIZES = [("letterbox (correct)", "letterbox"), ("stretch to a square", "stretch")]
DEFAULTS = {"color": "rgb", "scale": 1 / 255, "resize": "letterbox", "pad_value": 114, "conf": 0.25, "iou": 0.7}
VERDICT_STYLE = {  # background, text colour: a cause stands out, a suspect is amber, inconclusive grey, ok is quiet
    "cause": ("#b3261e", "#fff"),
    "suspect": ("#f2c94c", "#3d2e00"),
    "inconclusive": ("#d9dde3", "#33383f"),
    "ok": ("#e6f4ea", "#1b7a3a"),
}
MAX_PICTURES = 4


class ArtifactPicker:
    """A dropdown of the session's variants that have an artifact in the workspace, refreshed on every change."""

    def __init__(self, session: Session, description: str = "Variant"):
        self.session = session
        self.widget = widgets.Dropdown(description=description, style=WIDE, layout=widgets.Layout(width="640px"))
        self.refresh()
        session.on_change(lambda _: self.refresh())

    def refresh(self) -> None:
        workspace, current = self.session.workspace, self.widget.value
        options = [
            (f"#{v.id} {v.name} ({v.step}, {v.format})", v.id)
            for v in workspace.ledger.variants(newest_first=True)
            if v.path and (workspace.root / v.path).exists()
        ]
        ids = [i for _, i in options]
        self.widget.options = options
        if current in ids:
            self.widget.value = current
        elif ids:
            self.widget.value = ids[0]  # the newest: usually the export being deployed

    @property
    def value(self):
        return self.widget.value


class DoctorPanel(Panel):
    """Diagnose a deployed variant: the accuracy doctor with the deployment's pre/postprocessing, or the speed doctor.

    Args:
        diagnose: `diagnose_variant(workspace, variant_id, **options) -> (Diagnosis, measurement_id)` (injected:
            tests pass a fake).
    """

    title = "Troubleshoot"
    run_label = "Diagnose"

    def __init__(self, session: Session, *, diagnose=diagnose_core.diagnose_variant, background: bool = True):
        super().__init__(background=background)
        self.session, self._diagnose = session, diagnose
        self.cancel_button.layout.display = "none"  # a doctor runs to its end (the speed doctor within its budget)
        self.doctor = dropdown("Doctor", DOCTORS)
        self.variant = ArtifactPicker(session, "Deployed variant")
        self.images = _path_box("Production images", "a folder of images (default: the data's val images)")
        self.data = _path_box("Data YAML", "")
        self.color = dropdown("Colour order", COLORS, tooltip="the channel order the deployment feeds the model")
        self.scale = dropdown("Pixel scale", SCALES, tooltip="what the deployment multiplies uint8 pixels by")
        self.resize = dropdown("Resize", RESIZES)
        self.pad_value = int_box("Pad value", 114, 0, 255, tooltip="the grey the letterbox pads with")
        self.conf = float_box("Confidence", 0.25, 0.0, 1.0, 0.05, "the deployment's confidence threshold")
        self.iou = float_box("NMS IoU", 0.7, 0.0, 1.0, 0.05, "the deployment's NMS IoU threshold")
        self.budget = float_box("Budget (s)", 60.0, 1.0, 3600.0, 10.0, "seconds the speed levers may take")
        heading = note("The deployment's preprocessing and postprocessing (the defaults are the correct ones):")
        pipeline = [self.color, self.scale, self.resize, self.pad_value, self.conf, self.iou]
        self.accuracy_box, self.speed_box = widgets.VBox([heading, *pipeline]), widgets.VBox([self.budget])
        self.sentence, self.table, self.recorded = widgets.HTML(), widgets.HTML(), widgets.HTML()
        self.pictures = widgets.VBox()
        self.output.children = (self.sentence, self.table, self.pictures, self.recorded)
        self.doctor.observe(lambda _: self._show_options(), names="value")
        self._show_options()
        self._follow_data(session)
        session.on_change(self._follow_data)

    def controls(self) -> list:
        return [
            note(
                "The accuracy doctor runs the deployment and its reference (the variant's PyTorch parent) on the "
                "same images and checks data, preprocessing, postprocessing, environment, each stage, the export "
                "and a controlled test. The speed doctor times it as it is, then each lever side by side. The "
                "diagnosis is recorded in the ledger against the variant."
            ),
            self.doctor,
            self.variant.widget,
            self.images,
            self.data,
            self.accuracy_box,
            self.speed_box,
        ]

    def _show_options(self) -> None:
        accuracy = self.doctor.value == "accuracy"
        self.accuracy_box.layout.display = None if accuracy else "none"
        self.speed_box.layout.display = "none" if accuracy else None

    def _follow_data(self, session: Session) -> None:
        shown = f"default: the session's data ({session.data_yaml})" if session.data_yaml else "a YOLO data YAML"
        self.data.placeholder = shown + "; empty: the data the ledger recorded for the variant"

    def overrides(self) -> dict:
        """The deployment's preprocessing and postprocessing where they differ from the correct defaults."""
        chosen = {
            "color": self.color.value,
            "scale": self.scale.value,
            "resize": self.resize.value,
            "pad_value": self.pad_value.value,
            "conf": self.conf.value,
            "iou": self.iou.value,
        }
        return {k: v for k, v in chosen.items() if v != DEFAULTS[k]}

    def config(self) -> dict:
        """The doctor's options from the controls (the keyword arguments of `diagnose_variant`)."""
        data = self.data.value.strip() or self.session.data_yaml
        options = {
            "doctor": self.doctor.value,
            "images_dir": self.images.value.strip() or None,
            "data": str(data) if data else None,
        }
        if self.doctor.value == "accuracy":
            return {**options, "overrides": self.overrides()}
        return {**options, "budget_s": float(self.budget.value)}

    def arguments(self) -> dict:
        if self.variant.value is None:
            raise ConfigError(
                "no variant with an artifact in this workspace",
                "open a model in 'Model & data' and export it in 'Export', then pick it here",
            )
        return {"variant_id": self.variant.value}

    def execute(self, config, progress, variant_id):
        emit(progress, f"{config['doctor']} doctor", 0, 1, f"diagnosing variant #{variant_id}")
        result = self._diagnose(self.session.workspace, variant_id, **config)
        self.session.changed()  # a measurement was recorded: the Compare tab's ledger shows it
        return result

    def describe(self, result) -> str:
        diagnosis, measurement_id = result
        acting = sum(f.verdict.value in ("cause", "suspect") for f in diagnosis.findings)
        found = "nothing found" if diagnosis.ok else f"{acting} finding(s) to act on"
        unsure = len(diagnosis.inconclusive)
        found += f", {unsure} inconclusive (the machine was busy: run it again)" if unsure else ""
        recorded = f"; recorded as measurement #{measurement_id}" if measurement_id is not None else ""
        return f"{diagnosis.kind} diagnosis: {found}{recorded}"

    def show(self, result) -> None:
        diagnosis, measurement_id = result
        self.sentence.value = sentence_html(diagnosis)
        self.table.value = findings_html(diagnosis)
        self.pictures.children = picture_widgets(diagnosis)
        self.recorded.value = recorded_html(self.session.workspace, diagnosis, measurement_id, self.variant.value)


def recorded_html(workspace: Workspace, diagnosis, measurement_id, picked) -> str:
    """Where the diagnosis went: the measurement id and the variant it is of (the one the service diagnosed)."""
    if measurement_id is None:
        return "<p>Not recorded in the ledger.</p>"
    variant_id = int(diagnosis.context.get("variant_id") or picked)
    return (
        f"<p>Recorded as measurement #{measurement_id} (kind 'diagnosis') for variant "
        f"{html.escape(variant_label(workspace, variant_id))}.</p>"
    )


def _path_box(description: str, placeholder: str) -> widgets.Text:
    return widgets.Text(
        value="", description=description, style=WIDE, placeholder=placeholder, layout=widgets.Layout(width="640px")
    )


def sentence_html(diagnosis) -> str:
    """The diagnosis' one sentence, framed in the colour of its top verdict."""
    top = diagnosis.most_likely
    unsure = top is None and bool(diagnosis.inconclusive)
    background, _ = VERDICT_STYLE[top.verdict.value if top else "inconclusive" if unsure else "ok"]
    return (
        f"<div style='border-left:6px solid {background};padding:6px 10px;max-width:900px;font-size:14px'>"
        f"{html.escape(diagnosis.sentence())}</div>"
    )


def findings_html(diagnosis) -> str:
    """The ranked findings as an HTML table: verdict (as a coloured badge), check, title, fix, after the fix."""
    rows = []
    for rank, finding in enumerate(diagnosis.findings, 1):
        verdict = finding.verdict.value
        background, colour = VERDICT_STYLE[verdict]
        badge = (
            f"<span class='verdict verdict-{verdict}' style='background:{background};color:{colour};"
            f"padding:1px 6px;border-radius:3px;font-weight:bold'>{verdict}</span>"
        )
        fix = finding.fix if verdict != "ok" else ""
        after = ", ".join(f"{k} {_number(v)}" for k, v in (finding.after or {}).items())
        cells = [str(rank), badge, *(html.escape(text) for text in (finding.check, finding.title, fix, after))]
        rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
    head = "".join(f"<th>{name}</th>" for name in ("#", "verdict", "check", "finding", "fix", "after the fix"))
    table = f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>"
    return f"<div style='max-height:420px;overflow:auto'>{table}</div>"


def _number(value) -> str:
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def picture_widgets(diagnosis) -> tuple:
    """The top finding's evidence pictures (reference and deployment side by side), as Image widgets."""
    top = diagnosis.findings[0] if diagnosis.findings else None
    paths = [Path(p) for p in (top.pictures if top else ())] or [Path(p) for p in diagnosis.context.get("pictures", [])]
    paths = [p for p in paths if p.is_file()][:MAX_PICTURES]
    if not paths:
        return ()
    title = top.title if top and top.pictures else "the reference and the deployment on the same images"
    images = [
        widgets.Image(value=p.read_bytes(), format=p.suffix.lstrip(".").lower().replace("jpg", "jpeg"), width=480)
        for p in paths
    ]
    caption = widgets.HTML(
        f"<h4 style='margin:8px 0 4px'>Evidence: {html.escape(title)} (left: reference, right: deployment)</h4>"
    )
    return (caption, *images)
