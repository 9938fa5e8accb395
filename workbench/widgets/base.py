"""The panel framework: controls -> a config object -> an injected core function, run off the kernel's thread.

A panel shows what happens (status line, progress bar, cancel button) and what went wrong as a readable
message naming the problem and the fix, never a traceback dump. Tests drive panels in plain pytest: set
control values, click `run_button`, `wait()`, and assert on what the injected function received.
"""

from __future__ import annotations

import html
import threading
from typing import Any

import ipywidgets as widgets

from ..core.errors import Cancelled, WorkbenchError
from ..core.progress import Progress

STATUS_STYLE = {"idle": "#555", "running": "#1f5fbf", "done": "#1b7a3a", "error": "#b3261e", "cancelled": "#8a6d00"}


def error_message(exc: BaseException) -> tuple[str, str]:
    """(problem, fix) for any exception: the workbench's own say both; others are named by type."""
    if isinstance(exc, WorkbenchError):
        return exc.problem, exc.fix
    if isinstance(exc, FileNotFoundError):
        return f"file not found: {exc.filename or exc}", "check the path"
    return f"{type(exc).__name__}: {exc}", "this is unexpected; the message above names the failing operation"


class Panel:
    """Base of every panel: subclasses build controls, `config()` reads them, `execute(config)` does the work.

    `execute` runs in a background thread (unless `background=False`, as some tests do) and receives a
    progress callback; raising `Cancelled` from it is how a cancel request reaches the core function.
    """

    title = "Panel"
    run_label = "Run"

    def __init__(self, *, background: bool = True):
        self.background = background
        self.state = "idle"
        self.result: Any = None
        self.last_error: BaseException | None = None
        self._cancel = threading.Event()
        self._thread: threading.Thread | None = None
        self.run_button = widgets.Button(description=self.run_label, button_style="primary", icon="play")
        self.cancel_button = widgets.Button(description="Cancel", icon="stop", disabled=True)
        self.progress = widgets.FloatProgress(
            value=0.0, min=0.0, max=1.0, description="", bar_style="info", layout=widgets.Layout(width="40%")
        )
        self.status = widgets.HTML()
        self.message = widgets.HTML()
        self.output = widgets.VBox()
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self._set_status("idle", "ready")

    # -- what subclasses provide -------------------------------------------------------------------------
    def controls(self) -> list:
        """The input widgets, top to bottom."""
        return []

    def config(self):
        """Read the controls into the config object the core function takes; raise ConfigError if invalid."""
        raise NotImplementedError

    def arguments(self) -> dict:
        """Other inputs of the core function read from the controls (variant ids), passed to `execute`."""
        return {}

    def execute(self, config, progress, **arguments) -> Any:
        """Call the injected core function; runs in the background thread."""
        raise NotImplementedError

    def describe(self, result) -> str:
        """One line of status text for a finished run."""
        return "done"

    def outcome(self, result) -> str:
        """The state a finished run ends in: "done", or "cancelled" for a run that stopped early and returned what
        it kept (a sweep's finished trials)."""
        return "done"

    def show(self, result) -> None:
        """Put result widgets into `self.output` (optional)."""

    # -- the framework -----------------------------------------------------------------------------------
    @property
    def widget(self) -> widgets.VBox:
        if not hasattr(self, "_widget"):
            header = widgets.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>")
            buttons = widgets.HBox([self.run_button, self.cancel_button, self.progress])
            self._widget = widgets.VBox([header, *self.controls(), buttons, self.status, self.message, self.output])
        return self._widget

    def _ipython_display_(self):  # a panel on the last line of a cell shows itself
        from IPython.display import display

        display(self.widget)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def run(self) -> None:
        """Validate the controls, then execute in the background; a config error is shown, nothing runs."""
        if self.running:
            return
        try:
            config, arguments = self.config(), self.arguments()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a readable message
            self._fail(exc)
            return
        self._cancel.clear()
        self.message.value = ""
        self.progress.value = 0.0
        self.run_button.disabled, self.cancel_button.disabled = True, False
        self._set_status("running", "running…")
        if self.background:
            self._thread = threading.Thread(target=self._work, args=(config, arguments), daemon=True, name=self.title)
            self._thread.start()
        else:
            self._work(config, arguments)

    def wait(self, timeout: float | None = None) -> None:
        """Block until the current run ends (tests and notebooks that want the result before going on)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def cancel(self) -> None:
        """Ask the running step to stop at its next progress event; it keeps nothing it started."""
        if self.running or not self.background:
            self._cancel.set()
            self._set_status("running", "cancelling at the next progress step…")

    def _on_progress(self, event: Progress) -> None:
        if self._cancel.is_set():
            raise Cancelled(f"{self.title} cancelled at {event.stage}", "run it again when ready")
        if event.fraction is not None:
            self.progress.value = event.fraction
        self._set_status("running", f"{event.stage}: {event.message}" if event.message else event.stage)

    def _work(self, config, arguments: dict) -> None:
        try:
            result = self.execute(config, self._on_progress, **arguments)
        except Cancelled as exc:
            self._finish("cancelled", exc.problem + "; the workspace is as it was before the run")
        except Exception as exc:  # noqa: BLE001 - shown to the user as problem + fix
            self._fail(exc)
        else:
            self.result = result
            state = self.outcome(result)
            if state == "done":
                self.progress.value = 1.0
            try:
                self._finish(state, self.describe(result))
                self.show(result)
            except Exception as exc:  # noqa: BLE001 - the step succeeded; showing it did not
                self._fail(exc)

    def _finish(self, state: str, text: str) -> None:
        self.run_button.disabled, self.cancel_button.disabled = False, True
        self.progress.bar_style = {"done": "success", "cancelled": "warning"}.get(state, "info")
        self._set_status(state, text)

    def _fail(self, exc: BaseException) -> None:
        self.last_error = exc
        problem, fix = error_message(exc)
        self._finish("error", "failed")
        self.progress.bar_style = "danger"
        fix_html = f"<br><b>Fix:</b> {html.escape(fix)}" if fix else ""
        self.message.value = (
            f"<div style='border-left:4px solid {STATUS_STYLE['error']};padding:4px 8px'>"
            f"<b>Problem:</b> {html.escape(problem)}{fix_html}</div>"
        )

    def _set_status(self, state: str, text: str) -> None:
        self.state = state
        self.status.value = f"<span style='color:{STATUS_STYLE[state]}'>{html.escape(text)}</span>"
