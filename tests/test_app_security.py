"""`make app` and `make lab` listen on 127.0.0.1 only and refuse every request without the token they print.

Each test starts the server as the Makefile does (scripts/serve_app.py, the same options; only the port differs),
with a temporary workspace, HOME and Jupyter folders, and talks to it on 127.0.0.1 only.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
SERVE = [sys.executable, str(ROOT / "scripts" / "serve_app.py")]
URL = re.compile(r"(https?)://127\.0\.0\.1:(\d+)(/\S*?)\?token=(\S+)")
APP_TEXT = "Every step in one app"  # the app notebook's introduction
NOTIFICATION = "/lab/api/settings/@jupyterlab/apputils-extension:notification"

pytestmark = pytest.mark.timeout(420)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """HOME, the Jupyter folders and the workspace, all temporary; the repo's notebooks are left as they were."""
    folder = tmp_path_factory.mktemp("serve")
    before = set((ROOT / "notebooks").rglob("*"))
    yield folder
    assert set((ROOT / "notebooks").rglob("*")) <= before, "the servers wrote into notebooks/"


def _env(home: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("WORKBENCH_", "JUPYTER_"))}
    env.update(
        HOME=str(home / "home"),
        JUPYTER_CONFIG_DIR=str(home / "jupyter-config"),
        JUPYTER_DATA_DIR=str(home / "jupyter-data"),
        JUPYTER_RUNTIME_DIR=str(home / "jupyter-runtime"),
        JUPYTER_PLATFORM_DIRS="1",
        IPYTHONDIR=str(home / "ipython"),
        WORKBENCH_WORKSPACE=str(home / "workbench-runs"),
        YOLO_OFFLINE="1",
        YOLO_AUTOINSTALL="False",
        **extra,
    )
    return env


class Server:
    """The launcher in a subprocess; `url` is the URL it printed: (scheme, port, path, token)."""

    def __init__(self, what: str, home: Path, env: dict):
        self.log = home / f"{what}-{len(list(home.glob('*.log')))}.log"
        self.handle = self.log.open("w")
        command = [*SERVE, what, f"--port={_free_port()}"]
        self.process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=self.handle, stderr=subprocess.STDOUT)
        self.url = self._wait_for_url()

    def _wait_for_url(self, seconds: float = 120):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            match = URL.search(self.log.read_text())
            if match:
                return match.group(1), int(match.group(2)), match.group(3), match.group(4)
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.text()[-3000:]}")
            time.sleep(0.3)
        raise TimeoutError(f"no URL printed in {seconds} s:\n{self.text()[-3000:]}")

    def text(self) -> str:
        return self.log.read_text()

    def get(self, path: str, token: str | None = None, cafile: Path | None = None, timeout: float = 300):
        """GET on 127.0.0.1 without following redirects: (status, headers, body)."""
        scheme, port = self.url[:2]
        if token is not None:
            path += ("&" if "?" in path else "?") + f"token={token}"
        if scheme == "https":
            context = ssl.create_default_context(cafile=str(cafile))
            connection = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
        else:
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
        try:
            connection.request("GET", path)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read().decode(errors="replace")
        finally:
            connection.close()

    def _processes(self):
        root = psutil.Process(self.process.pid)
        return [root, *root.children(recursive=True)]

    def listening(self) -> set[tuple[str, int]]:
        """Every TCP address the server and its kernels listen on."""
        addresses = set()
        for process in self._processes():
            try:
                connections = (getattr(process, "net_connections", None) or process.connections)(kind="inet")
                addresses |= {(c.laddr.ip, c.laddr.port) for c in connections if c.status == psutil.CONN_LISTEN}
            except psutil.NoSuchProcess:  # a short-lived helper that has already exited
                continue
        return addresses

    def command_lines(self) -> str:
        lines = []
        for process in self._processes():
            try:
                lines.append(" ".join(process.cmdline()))
            except psutil.NoSuchProcess:
                continue
        return "\n".join(lines)

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)
        self.handle.close()


def _assert_refused(server: Server, path: str, token: str | None = None, cafile: Path | None = None) -> None:
    status, headers, body = server.get(path, token, cafile)
    assert status in (302, 403), (path, status)
    if status == 302:
        assert "/login" in headers["Location"], headers["Location"]
    assert APP_TEXT not in body


def _assert_loopback_only(server: Server) -> None:
    addresses = server.listening()
    assert (("127.0.0.1", server.url[1])) in addresses, addresses
    assert {ip for ip, _ in addresses} == {"127.0.0.1"}, addresses


def _certificate(folder: Path) -> tuple[Path, Path]:
    if not shutil.which("openssl"):
        pytest.skip("openssl is not installed: cannot make a test certificate")
    cert, key = folder / "cert.pem", folder / "key.pem"
    if not cert.exists():
        subprocess.run(
            ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1"]
            + ["-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
            timeout=60,
        )
    return cert, key


def test_app_needs_the_token_it_prints_and_listens_on_loopback_only(home):
    server = Server("app", home, _env(home))
    try:
        scheme, port, path, token = server.url
        assert (scheme, path) == ("http", "/")
        assert re.fullmatch(r"[0-9a-f]{48}", token), "a fresh token, printed in full"
        assert token not in server.command_lines()  # `ps` shows command lines to every local user
        _assert_loopback_only(server)
        _assert_refused(server, "/")
        _assert_refused(server, "/", token="not-the-token")
        _assert_refused(server, "/app.ipynb")
        status, _, body = server.get("/", token)
        assert status == 200
        assert APP_TEXT in body and "Traceback" not in body
        _assert_loopback_only(server)  # and the app's kernel too
    finally:
        server.stop()


def test_app_takes_the_token_from_the_environment_and_serves_https(home):
    cert, key = _certificate(home)
    token = "token-from-the-environment"
    env = _env(home, WORKBENCH_TOKEN=token, WORKBENCH_CERTFILE=str(cert), WORKBENCH_KEYFILE=str(key))
    server = Server("app", home, env)
    try:
        assert server.url[0] == "https"
        assert server.url[3] == "..." and token not in server.text()  # the user's own token is not logged
        _assert_loopback_only(server)
        plain = http.client.HTTPConnection("127.0.0.1", server.url[1], timeout=30)
        with pytest.raises((http.client.HTTPException, ConnectionError)):  # no plain HTTP on the port
            plain.request("GET", "/")
            plain.getresponse()
        plain.close()
        _assert_refused(server, "/", cafile=cert)
        status, _, body = server.get("/", token, cert)
        assert status == 200 and APP_TEXT in body
    finally:
        server.stop()


def test_lab_needs_the_token_listens_on_loopback_only_and_never_asks_for_news(home):
    server = Server("lab", home, _env(home))
    try:
        scheme, port, path, token = server.url
        assert (scheme, path) == ("http", "/lab")
        assert re.fullmatch(r"[0-9a-f]{48}", token)
        assert token not in server.command_lines()
        _assert_loopback_only(server)
        _assert_refused(server, "/lab")
        _assert_refused(server, "/lab", token="not-the-token")
        for api in ("/api/contents", "/api/kernels", "/api/terminals", NOTIFICATION):
            assert server.get(api)[0] == 403, api
        assert server.get("/api/contents", token)[0] == 200

        # JupyterLab asks "Would you like to get notified about official Jupyter news?" while fetchNews is
        # "none" (ask): the lab starts with "false" as its default, and the server fetches neither news nor versions
        status, _, body = server.get(NOTIFICATION, token)
        assert status == 200
        settings = json.loads(body)
        assert settings["schema"]["properties"]["fetchNews"]["default"] == "false"
        assert settings["schema"]["properties"]["checkForUpdates"]["default"] is False
        assert "fetchNews" not in settings["settings"]  # no user setting overrides the default
        status, _, page = server.get("/lab", token)
        assert status == 200 and re.search(r'"news":\s*\{"disabled":\s*true\}', page)
        assert json.loads(server.get("/lab/api/news", token)[2]) == {"news": []}
        assert json.loads(server.get("/lab/api/update", token)[2]) == {"notification": None}
    finally:
        server.stop()
