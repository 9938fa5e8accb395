"""The app's Monitor tab: after Troubleshoot; idle until Connect; pointed at a real server (the demo model exported to
OpenVINO at 128 px, behind a key store over TLS on 127.0.0.1) it shows the requests served; a wrong key, a key
without the role, a missing CA and a closed port are each one line of problem and fix, never a traceback."""

from __future__ import annotations

import html
import socket
import threading
import time

import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("argon2")

from argon2 import PasswordHasher  # noqa: E402
from serving_helpers import export_demo  # noqa: E402

from workbench.core.errors import ConfigError  # noqa: E402
from workbench.core.serve.monitoring import scrape  # noqa: E402
from workbench.core.services.session import Session  # noqa: E402
from workbench.core.store.workspace import Workspace  # noqa: E402
from workbench.widgets import DoctorPanel, Workbench  # noqa: E402
from workbench.widgets.monitor import MonitorPanel, MonitorTab  # noqa: E402

IMGSZ = 128


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo model exported to OpenVINO at 128 px: (workspace, variant id)."""
    workspace, variants = export_demo(tmp_path_factory.mktemp("app-monitor"), imgsz=IMGSZ)
    return workspace, variants["openvino"]


@pytest.fixture(scope="module")
def server(exported, tmp_path_factory):
    """The exported variant served over TLS with keys, audit and metrics: (RunningServer, {role: key})."""
    from workbench.core.serve.monitoring.metrics import Metrics
    from workbench.core.serve.security.keys import KeyStore
    from workbench.core.serve.security.principal import Role
    from workbench.core.serve.service.local_server import serve_model
    from workbench.core.serve.service.model import ServedModel

    workspace, variant = exported
    model = ServedModel.from_variant(workspace, variant, threads=1, workers=1)
    root = tmp_path_factory.mktemp("served")
    store = KeyStore(root / "keys.json", hasher=PasswordHasher(time_cost=1, memory_cost=8, parallelism=1))
    keys = {role: store.add(f"{role.value}-key", role).key for role in (Role.OPERATOR, Role.INFERRER)}
    metrics = Metrics(model.name)
    with serve_model(model, keys=store, audit=root / "audit.jsonl", tls=root / "tls", metrics=metrics) as running:
        yield running, keys
    metrics.close()


@pytest.fixture
def app(tmp_path):
    return Workbench(session=Session(Workspace(tmp_path / "ws")), background=False)


def _line(tab: MonitorTab) -> str:
    return html.unescape(tab.status.value)


def test_the_monitor_tab_comes_after_troubleshoot_and_runs_nothing_until_connect(app):
    titles = list(app.tabs.titles)
    assert titles[-2:] == ["Troubleshoot", "Monitor"] and isinstance(app.panel("Troubleshoot"), DoctorPanel)
    tab = app.panel("Monitor")
    assert tab is app.monitor and tab.widget.children and tab.panel is None and tab.state == "idle"
    assert not [t for t in threading.enumerate() if t.name == MonitorPanel.title]
    assert tab.disconnect_button.disabled and not tab.connect_button.disabled and tab.ca_file.value == ""


def test_the_tab_fills_in_the_workspaces_local_ca_when_there_is_one(tmp_path):
    ca = tmp_path / "serve" / "tls" / "ca.pem"
    ca.parent.mkdir(parents=True)
    ca.write_text("pem")
    assert MonitorTab(tmp_path).ca_file.value == str(ca)


def test_bad_form_values_are_one_line_and_nothing_polls(tmp_path):
    tab = MonitorTab(tmp_path)
    for url, key, ca, named in [
        ("ftp://host", "k", "", "not an http(s) URL"),
        ("", "k", "", "not an http(s) URL"),
        ("https://127.0.0.1:1", "", "", "no API key given"),
        ("https://127.0.0.1:1", "k", str(tmp_path / "none.pem"), "does not exist"),
        ("http://127.0.0.1:1", "k", __file__, "plain-HTTP URL"),
        ("https://127.0.0.1:1", "k", __file__, "is not a PEM certificate"),
    ]:
        tab.url.value, tab.key.value, tab.ca_file.value = url, key, ca
        tab.connect_button.click()
        assert tab.state == "error" and named in _line(tab) and "fix:" in _line(tab), _line(tab)
        assert tab.panel is None and not tab.live.children and "Traceback" not in _line(tab)


def test_a_base_url_is_read_at_its_metrics():
    assert scrape.metrics_url("https://127.0.0.1:8443") == "https://127.0.0.1:8443/metrics"
    assert scrape.metrics_url("https://127.0.0.1:8443/") == "https://127.0.0.1:8443/metrics"
    assert scrape.metrics_url(" http://h:1/metrics ") == "http://h:1/metrics"
    with pytest.raises(ConfigError, match="http"):
        scrape.metrics_url("127.0.0.1:8000")


def _detect(running, key: str, count: int) -> None:
    import cv2
    import httpx
    import numpy as np

    from workbench.core.serve.security.tls import client_context

    ok, png = cv2.imencode(".png", np.full((96, 96, 3), 120, np.uint8))
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "image/png"}
    with httpx.Client(base_url=running.url, verify=client_context(running.ca_file)) as http:
        for _ in range(count):
            assert http.post("/v1/detect", content=png.tobytes(), headers=headers).status_code == 200


def test_connected_to_a_real_server_the_tab_shows_its_requests(app, server):
    from workbench.core.serve.security.principal import Role

    running, keys = server
    tab = app.monitor
    tab.url.value, tab.key.value, tab.ca_file.value = running.url, keys[Role.OPERATOR], str(running.ca_file)
    tab.interval_s = 0.05  # refreshed quickly
    tab.connect_button.click()
    assert tab.state == "done" and "connected to" in _line(tab), _line(tab)
    assert tab.panel is not None and tab.panel.running and tab.live.children == (tab.panel.widget,)
    assert tab.connect_button.disabled and not tab.disconnect_button.disabled
    _detect(running, keys[Role.INFERRER], 3)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and (tab.panel.last or {}).get("by_status", {}).get("200", 0) < 4:
        time.sleep(0.05)
    snap = tab.panel.last
    assert snap["by_status"]["200"] >= 4 and snap["requests"] >= 4, snap  # 3 detections and the first scrape
    assert snap["variant"].startswith("variant-") and "requests/s" in tab.panel.stats.value
    tab.disconnect_button.click()
    assert tab.panel is None and not tab.live.children and "disconnected" in _line(tab)
    assert not [t for t in threading.enumerate() if t.name == MonitorPanel.title and t.is_alive()]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_wrong_key_a_role_without_metrics_no_ca_and_a_closed_port_are_one_line_each(app, server):
    from workbench.core.serve.security.principal import Role

    running, keys = server
    tab, ca = app.monitor, str(running.ca_file)
    port = running.url.rsplit(":", 1)[1]
    cases = [
        (running.url, "wb_not-a-key", ca, "the server refused the key (401)"),
        (running.url, keys[Role.INFERRER], ca, "the key may not read metrics (403)"),
        (running.url, keys[Role.OPERATOR], "", "the server's certificate is not trusted"),
        (f"http://127.0.0.1:{port}", keys[Role.OPERATOR], "", "closed the connection"),
        (f"https://127.0.0.1:{_closed_port()}", keys[Role.OPERATOR], ca, "connection refused"),
    ]
    for url, key, ca_file, named in cases:
        tab.url.value, tab.key.value, tab.ca_file.value = url, key, ca_file
        tab.connect_button.click()
        line = _line(tab)
        assert tab.state == "error" and named in line and "cannot connect: " in line and "fix:" in line, line
        assert "Traceback" not in line and "\n" not in line and tab.panel is None
    tab.url.value, tab.key.value, tab.ca_file.value = running.url, keys[Role.OPERATOR], ca
    assert tab.connect() and tab.state == "done"  # the right values connect after all those
    tab.disconnect()


def test_a_server_that_goes_away_is_a_status_line_of_the_live_panel():
    calls = {"n": 0}

    def snapshot():
        calls["n"] += 1
        if calls["n"] > 1:
            raise scrape.ServerUnreachable("nothing answers at x (connection refused)", "start the server")
        return {"variant": "v", "time": 1.0, "requests": 1, "by_status": {"200": 1}, "drift": None}

    tab = MonitorTab(connect=lambda url, key, ca: MonitorPanel(snapshot, interval_s=60, buttons=False))
    assert tab.connect() and tab.panel.widget.children[1] is tab.panel.status  # no Start/Stop of its own
    assert tab.panel.refresh() is None and "connection refused" in tab.panel.status.value
    tab.disconnect()
