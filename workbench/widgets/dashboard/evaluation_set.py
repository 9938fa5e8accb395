"""The Compare tab's evaluation-set picker: which images the shown mAPs were measured on, and a button that measures
the variants not measured on them there.

Thin: it lists the sets with the injected `sets` function and measures with the injected `measure_on` (both from
the core); the dashboard reads `value` and redraws.
"""

from __future__ import annotations

import html
import threading
from collections.abc import Callable, Iterable

import ipywidgets as widgets

from ...core.errors import WorkbenchError
from ...core.measure.on_set import measure_on
from ...core.services.session import Session
from ...core.store.evaluation_sets import NOT_MEASURED, workspace_sets
from ..base import error_message
from ..controls import WIDE, Hushable


class EvaluationSetArea(Hushable):
    """A dropdown of the ledger's evaluation sets (the default first) and a 'measure the missing' button.

    Args:
        on_pick: called with no argument when the user picks another set.
        background: measure in a thread (the app); False runs in the caller's (tests, scripts).
    """

    def __init__(
        self,
        session: Session,
        *,
        on_pick: Callable[[], None],
        sets=workspace_sets,
        measure=measure_on,
        background: bool = True,
    ):
        self.session, self._sets, self._measure, self.background = session, sets, measure, background
        self.pick = widgets.Dropdown(
            description="mAP on", options=[], style=WIDE, layout=widgets.Layout(width="520px"),
            tooltip="the images every mAP shown was measured on; other sets are never mixed in",
        )  # fmt: skip
        self.measure_button = widgets.Button(
            description="Measure the missing on this set", icon="plus", layout=widgets.Layout(width="260px"),
            tooltip="measure the accuracy of every variant shown as 'not measured on this set' on these images",
        )  # fmt: skip
        self.status = widgets.HTML()
        self.missing: list[int] = []
        self.outcome = ""  # what the last measuring did, or why it failed
        self._thread: threading.Thread | None = None
        self._quiet = False
        self.pick.observe(lambda _: self._quiet or on_pick(), names="value")
        self.measure_button.on_click(lambda _: self.measure_missing())
        self.widget = widgets.VBox([widgets.HBox([self.pick, self.measure_button]), self.status])

    @property
    def value(self) -> str | None:
        """The chosen set's key (None: nothing measured yet, or the default)."""
        return self.pick.value

    def refresh(self) -> None:
        """Re-read the sets; the chosen one stays chosen while it exists, else the default (most variants)."""
        options = [(s.label, s.key) for s in self._sets(self.session.workspace)]
        keys = [key for _, key in options]
        keep = self.pick.value if self.pick.value in keys else (keys[0] if keys else None)
        with self._hushed():
            self.pick.options, self.pick.value = options, keep

    def show_missing(self, variant_ids: Iterable[int], names: Iterable[str]) -> None:
        """Say which variants shown are not measured on the chosen set; the button measures those."""
        self.missing = list(dict.fromkeys(int(v) for v in variant_ids))
        self.measure_button.disabled = not self.missing or self.pick.value is None or self.running
        if self.running:
            return
        shown = ", ".join(html.escape(str(n)) for n in dict.fromkeys(names))
        missing = f"<i>{NOT_MEASURED}: {shown}</i>" if self.missing else ""
        self.status.value = " · ".join(t for t in (self.outcome, missing) if t)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def measure_missing(self) -> None:
        """Measure every variant in `missing` on the chosen set (in a thread when `background`)."""
        if not self.missing or self.pick.value is None or self.running:
            return
        ids, key = list(self.missing), self.pick.value
        self.measure_button.disabled = True
        if self.background:
            self._thread = threading.Thread(target=self._work, args=(ids, key), daemon=True)
            self._thread.start()
        else:
            self._work(ids, key)

    def wait(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _work(self, ids: list[int], key: str) -> None:
        try:
            for n, variant_id in enumerate(ids):
                self.status.value = f"measuring variant {variant_id} on this set ({n + 1} of {len(ids)}) ..."
                self._measure(self.session.workspace, variant_id, key)
            self.outcome = f"measured {len(ids)} variant(s) on this set"
        except (WorkbenchError, OSError) as exc:
            problem, fix = error_message(exc)
            self.outcome = f"<span style='color:#b3261e'>{html.escape(problem)}</span> ({html.escape(fix)})"
        finally:
            self._thread = None
            self.session.changed()  # the dashboard re-reads the ledger: what was measured now shows
