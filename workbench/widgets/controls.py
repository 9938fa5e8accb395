"""Controls the panels share: labelled boxes and dropdowns, size boxes that follow the model, a variant picker."""

from __future__ import annotations

import html
from contextlib import contextmanager
from typing import TYPE_CHECKING

import ipywidgets as widgets

from ..core.services.session import Session, variant_choices

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

WIDE = {"description_width": "150px"}


def int_box(description: str, value: int, low: int, high: int, step: int = 1, tooltip: str = ""):
    return widgets.BoundedIntText(
        value=value, min=low, max=high, step=step, description=description, style=WIDE, tooltip=tooltip
    )


def float_box(description: str, value: float, low: float, high: float, step: float, tooltip: str = ""):
    return widgets.BoundedFloatText(
        value=value, min=low, max=high, step=step, description=description, style=WIDE, tooltip=tooltip
    )


def dropdown(description: str, options, value=None, tooltip: str = ""):
    return widgets.Dropdown(
        options=options,
        value=value if value is not None else _first(options),
        description=description,
        style=WIDE,
        tooltip=tooltip,
    )


def checkbox(description: str, value: bool, tooltip: str = ""):
    return widgets.Checkbox(value=value, description=description, style=WIDE, indent=False, tooltip=tooltip)


def note(text: str) -> widgets.HTML:
    """A short explanation under a panel's title."""
    return widgets.HTML(f"<div style='color:#444;max-width:760px'>{html.escape(text)}</div>")


def variant_label(workspace: Workspace, variant_id: int) -> str:
    """'#id name' from the ledger."""
    return f"#{variant_id} {workspace.variant(variant_id).name}"


def model_size_box(session: Session, description: str, tooltip: str = ""):
    """An imgsz box that starts at the current model's training size and follows it when another model is opened."""
    box = int_box(description, session.imgsz, 32, 4096, 32, tooltip)
    opened = {"model": session.model_id}

    def follow(changed: Session) -> None:
        if changed.model_id != opened["model"]:
            opened["model"] = changed.model_id
            box.value = changed.imgsz

    session.on_change(follow)
    return box


class Hushable:
    """An area whose observers skip their work while `_quiet` is set: `with self._hushed():` around replacing a
    control's options makes one redraw per refresh, not one per trait change."""

    _quiet = False

    @contextmanager
    def _hushed(self):
        self._quiet = True
        try:
            yield
        finally:
            self._quiet = False


def replace_figure(target, source) -> None:
    """Swap a plotly FigureWidget's traces and layout for those of figure `source` (None: empty)."""
    with target.batch_update():
        target.data = ()
        if source is not None:
            target.add_traces(list(source.data))
            target.layout = source.layout


def _first(options):
    option = next(iter(options))
    return option[1] if isinstance(option, tuple) else option


class VariantPicker:
    """A dropdown (or multi-select) of the ledger's variants that refreshes whenever the session changes."""

    def __init__(
        self,
        session: Session,
        description: str = "Variant",
        *,
        formats: tuple[str, ...] | None = None,
        multiple: bool = False,
        prefer_current: bool = True,
    ):
        self.session, self.formats, self.prefer_current = session, formats, prefer_current
        if multiple:
            self.widget = widgets.SelectMultiple(
                description=description, style=WIDE, rows=6, layout=widgets.Layout(width="640px")
            )
        else:
            self.widget = widgets.Dropdown(description=description, style=WIDE, layout=widgets.Layout(width="640px"))
        self.refresh()
        session.on_change(lambda _: self.refresh())

    def refresh(self) -> None:
        current = self.widget.value
        options = variant_choices(self.session.workspace, formats=self.formats)
        ids = [i for _, i in options]
        self.widget.options = options
        if isinstance(self.widget, widgets.SelectMultiple):
            self.widget.value = tuple(i for i in (current or ()) if i in ids)
        elif current in ids:
            self.widget.value = current
        elif self.prefer_current and self.session.model_id in ids:
            self.widget.value = self.session.model_id
        elif ids:
            self.widget.value = ids[0]

    @property
    def value(self):
        return self.widget.value
