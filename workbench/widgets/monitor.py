"""The live monitor panel: requests/s, p50/p99 latency, counts by status and drift per feature of a running server,
refreshed from a background thread while the server runs.

It reads an injected `snapshot()` callable: `metrics.snapshot` of a server in the same kernel (`from_metrics`), or
a scraper of a server's /metrics with an operator key (`from_url`); tests pass a fake. `MonitorTab` is the app's
"Monitor" tab: a small form (URL, key, CA file) that points a `MonitorPanel` at a running server.
"""

from __future__ import annotations

import html
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

import ipywidgets as widgets

from .base import STATUS_STYLE, error_message

if TYPE_CHECKING:
    from workbench.core.store.workspace import Workspace

OK_STYLE, DRIFT_STYLE = STATUS_STYLE["done"], STATUS_STYLE["error"]


class MonitorPanel:
    """A live view of one server; `start()` refreshes it every `interval_s`, `stop()` ends the thread.

    Args:
        snapshot: returns the dict of `Metrics.snapshot()` (or of a `Scraper`).
        interval_s: seconds between refreshes.
        max_points: points of the latency chart kept (older ones scroll off).
        max_s: the refresh thread stops by itself after this long (a forgotten panel does not poll forever).
        buttons: show Start and Stop (False: whoever holds the panel starts and stops it, as `MonitorTab` does).
    """

    title = "Live monitor"

    def __init__(
        self,
        snapshot: Callable[[], dict],
        *,
        interval_s: float = 2.0,
        max_points: int = 300,
        max_s: float = 3600.0,
        buttons: bool = True,
    ):
        self.snapshot, self.interval_s, self.max_s, self.buttons = snapshot, interval_s, max_s, buttons
        self.history: deque[tuple[float, float | None, float | None]] = deque(maxlen=max_points)
        self.refreshes = 0
        self.last: dict | None = None
        self.last_error: BaseException | None = None
        self._t0: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.stats, self.by_status, self.drift, self.status = (widgets.HTML() for _ in range(4))
        self.start_button = widgets.Button(description="Start", icon="play", button_style="primary")
        self.stop_button = widgets.Button(description="Stop", icon="stop", disabled=True)
        self.start_button.on_click(lambda _: self.start())
        self.stop_button.on_click(lambda _: self.stop())
        self.figure = None  # built with the widget: a figure is only needed where it is shown
        self._set_status("idle", "stopped")

    @classmethod
    def from_metrics(cls, metrics, **options) -> MonitorPanel:
        """A panel over a `Metrics` of a server running in this kernel."""
        return cls(metrics.snapshot, **options)

    @classmethod
    def from_url(cls, url: str, key: str, ca_file=None, **options) -> MonitorPanel:
        """A panel scraping a server's /metrics `url` (or its base URL) with an operator's API `key` (trusting
        `ca_file` over https); a failed read is shown as its cause and fix (`monitoring.metrics_fetcher`)."""
        from ..core.serve.monitoring.scrape import Scraper, metrics_fetcher

        return cls(Scraper(metrics_fetcher(url, key, ca_file)), **options)

    @property
    def widget(self) -> widgets.VBox:
        if not hasattr(self, "_widget"):
            import plotly.graph_objects as go

            self.figure = go.FigureWidget(
                data=[go.Scatter(name="p50", mode="lines"), go.Scatter(name="p99", mode="lines")],
                layout={"height": 260, "margin": {"l": 50, "r": 10, "t": 30, "b": 40}, "title": "total latency"},
            )
            self.figure.update_xaxes(title="seconds")
            self.figure.update_yaxes(title="ms", rangemode="tozero")
            self._draw()
            header = widgets.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>")
            buttons = [widgets.HBox([self.start_button, self.stop_button])] if self.buttons else []
            self._widget = widgets.VBox(
                [header, *buttons, self.status, self.stats, self.by_status, self.figure, self.drift]
            )
        return self._widget

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        """Refresh every `interval_s` in a background thread until `stop()` (or `max_s`)."""
        if self.running:
            return
        self._stop.clear()
        self.start_button.disabled, self.stop_button.disabled = True, False
        self._set_status("running", "live")
        self._thread = threading.Thread(target=self._loop, daemon=True, name=self.title)
        self._thread.start()

    def stop(self, timeout: float | None = 5.0) -> None:
        """End the refresh thread and wait for it."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self.start_button.disabled, self.stop_button.disabled = False, True
        if self.state == "running":
            self._set_status("idle", "stopped")

    def _loop(self) -> None:
        deadline = time.monotonic() + self.max_s
        while not self._stop.is_set() and time.monotonic() < deadline:
            self.refresh()
            self._stop.wait(self.interval_s)
        self.start_button.disabled, self.stop_button.disabled = False, True
        if self.state == "running":
            self._set_status("idle", "stopped")

    def refresh(self) -> dict | None:
        """Read one snapshot and show it; a failing read is shown as problem and fix, and the panel keeps polling."""
        try:
            snap = self.snapshot()
        except Exception as exc:  # noqa: BLE001 - a server that went away is a status line, not a crash
            self.last_error = exc
            problem, fix = error_message(exc)
            self._set_status("error", f"cannot read the server: {problem}" + (f" ({fix})" if fix else ""))
            return None
        self.last, self.refreshes, self.last_error = snap, self.refreshes + 1, None
        if self._t0 is None:
            self._t0 = snap["time"]
        self.history.append((snap["time"] - self._t0, snap.get("p50_ms"), snap.get("p99_ms")))
        self.stats.value = stats_html(snap)
        self.by_status.value = status_html(snap.get("by_status") or {})
        self.drift.value = drift_html(snap.get("drift"))
        if self.state == "error":
            self._set_status("running" if self.running else "idle", "live" if self.running else "stopped")
        self._draw()
        return snap

    def _draw(self) -> None:
        if self.figure is None:
            return
        xs = [x for x, _, _ in self.history]
        with self.figure.batch_update():
            self.figure.data[0].x, self.figure.data[0].y = xs, [p50 for _, p50, _ in self.history]
            self.figure.data[1].x, self.figure.data[1].y = xs, [p99 for _, _, p99 in self.history]

    def _set_status(self, state: str, text: str) -> None:
        self.state = state
        self.status.value = f"<span style='color:{STATUS_STYLE[state]}'>{html.escape(text)}</span>"


class MonitorTab:
    """The app's "Monitor" tab: the URL, an operator's key and the CA file of a running server (`workbench serve`),
    Connect and Disconnect; once connected, a live `MonitorPanel` of it. Nothing runs until Connect; a refused
    connection, a rejected key or an untrusted certificate is one line of problem and fix.

    Args:
        workspace: the app's workspace root: its local CA (`serve/tls/ca.pem`), where `workbench serve --tls` puts
            it, fills the CA field when it exists.
        connect: `(url, key, ca_file) -> MonitorPanel` (tests pass a fake); default `MonitorPanel.from_url`.
        interval_s: seconds between refreshes once connected.
    """

    title = "Monitor"

    def __init__(self, workspace: Workspace | None = None, *, connect: Callable | None = None, interval_s: float = 2.0):
        from pathlib import Path

        ca = Path(workspace) / "serve" / "tls" / "ca.pem" if workspace is not None else None
        self.interval_s = interval_s
        self.connect_fn = connect or (
            lambda url, key, ca_file: MonitorPanel.from_url(
                url, key, ca_file, interval_s=self.interval_s, buttons=False
            )
        )
        self.url = widgets.Text(placeholder="https://127.0.0.1:8000", description="Server URL")
        self.key = widgets.Password(placeholder="an operator's API key", description="API key")
        self.ca_file = widgets.Text(
            value=str(ca) if ca is not None and ca.is_file() else "", placeholder="(https only)", description="CA file"
        )
        self.connect_button = widgets.Button(description="Connect", icon="plug", button_style="primary")
        self.disconnect_button = widgets.Button(description="Disconnect", icon="stop", disabled=True)
        self.connect_button.on_click(lambda _: self.connect())
        self.disconnect_button.on_click(lambda _: self.disconnect())
        self.status = widgets.HTML()
        self.live = widgets.VBox()
        self.panel: MonitorPanel | None = None
        self._say("idle", "not connected: type the server's URL and an operator's key, then Connect")

    @property
    def widget(self) -> widgets.VBox:
        if not hasattr(self, "_widget"):
            header = widgets.HTML(f"<h3 style='margin:4px 0'>{html.escape(self.title)}</h3>")
            buttons = widgets.HBox([self.connect_button, self.disconnect_button])
            self._widget = widgets.VBox([header, self.url, self.key, self.ca_file, buttons, self.status, self.live])
        return self._widget

    def connect(self) -> bool:
        """Read the form, check the server answers with this key, then refresh live; False (and the reason shown)
        when it does not."""
        self.disconnect()
        try:
            panel = self.connect_fn(self.url.value, self.key.value, self.ca_file.value.strip() or None)
        except Exception as exc:  # noqa: BLE001 - a bad URL or CA file is a status line, not a traceback
            return self._failed(exc)
        if panel.refresh() is None:  # the first read: a wrong key or an unreachable server says so now
            return self._failed(panel.last_error)
        self.panel = panel
        self.live.children = [panel.widget]
        panel.start()
        self.connect_button.disabled, self.disconnect_button.disabled = True, False
        self._say("done", f"connected to {self.url.value.strip()}")
        return True

    def disconnect(self) -> None:
        """Stop refreshing and drop the panel."""
        if self.panel is not None:
            self.panel.stop()
            self.panel = None
            self._say("idle", "disconnected")
        self.live.children = []
        self.connect_button.disabled, self.disconnect_button.disabled = False, True

    def _failed(self, exc: BaseException | None) -> bool:
        problem, fix = error_message(exc) if exc is not None else ("no answer", "")
        self._say("error", f"cannot connect: {problem}" + (f" (fix: {fix})" if fix else ""))
        return False

    def _say(self, state: str, text: str) -> None:
        self.state = state
        self.status.value = f"<span style='color:{STATUS_STYLE[state]}'>{html.escape(text)}</span>"

    def _ipython_display_(self):
        from IPython.display import display

        display(self.widget)


def _num(value, digits: int = 1) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def stats_html(snap: dict) -> str:
    """The headline numbers of one snapshot."""
    cells = [
        ("variant", html.escape(str(snap.get("variant", "")))),
        ("requests/s", _num(snap.get("requests_per_s"))),
        ("p50 ms", _num(snap.get("p50_ms"))),
        ("p99 ms", _num(snap.get("p99_ms"))),
        ("in flight", str(snap.get("in_flight", 0))),
        ("requests", str(snap.get("requests", 0))),
    ]
    body = "".join(f"<td style='padding:0 12px'><small>{k}</small><br><b>{v}</b></td>" for k, v in cells)
    return f"<table><tr>{body}</tr></table>"


def status_html(by_status: dict) -> str:
    """Counts by response status."""
    if not by_status:
        return "<small>no requests yet</small>"
    parts = [f"{html.escape(str(code))}: {count}" for code, count in sorted(by_status.items())]
    return "<small>by status: " + ", ".join(parts) + "</small>"


def drift_html(drift: dict | None) -> str:
    """Per feature of the latest drift check: its statistic, threshold and verdict."""
    if not drift or not drift.get("features"):
        return "<small>drift: no window checked yet</small>"
    rows = []
    for name, f in drift["features"].items():
        colour = DRIFT_STYLE if f.get("drifted") else OK_STYLE
        verdict = f"drifted ({f['looks_like']})" if f.get("drifted") and f.get("looks_like") else "drifted"
        rows.append(
            f"<tr><td>{html.escape(name)}</td><td>{_num(f.get('value'), 2)}</td><td>{_num(f.get('threshold'), 2)}</td>"
            f"<td style='color:{colour}'>{html.escape(verdict if f.get('drifted') else 'ok')}</td></tr>"
        )
    title = f"drift: looks like '{html.escape(drift['looks_like'])}'" if drift.get("looks_like") else "drift"
    head = "<tr><th>feature</th><th>statistic</th><th>threshold</th><th></th></tr>"
    return f"<b>{title}</b><table>{head}{''.join(rows)}</table>"
