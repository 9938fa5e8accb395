"""The bench's served stack: one model served four ways on loopback (plain HTTP with an open door, TLS alone, API key
and audit alone, all three), keep-alive clients of each, and what the stack runs on (TLS negotiated, HTTP parser,
library versions).

Every server has its own app (and its own inference threads) over the same `ServedModel`; the real audit logs are
checked once the servers have stopped, before their temporary folder goes. The per-key rate limit is raised for the
measurement (`BENCH_LIMITS`); the limiter still runs on every request.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Mapping
from contextlib import ExitStack, contextmanager
from pathlib import Path

PATHS = ("in_process", "plain_http", "tls", "auth_audit", "tls_auth_audit")  # the latency paths, in words below
PATH_WORDS = {
    "in_process": "ServedModel.detect_encoded(jpeg) called directly",
    "plain_http": "HTTP, a guard that lets everyone in, an audit that keeps nothing",
    "tls": "HTTPS (local CA verified), open guard, no audit",
    "auth_audit": "HTTP, API key checked by the KeyStore's Guard, fsynced hash-chained audit line",
    "tls_auth_audit": "HTTPS + API key + audit: the service as deployed",
}
BENCH_LIMITS = {"rate_per_s": 1e9, "burst": 1_000_000_000}  # raised for the measurement; other limits as shipped


def open_guard(headers: Mapping[str, str], action, client: str):
    """The baseline's door: every caller is let in as an inferrer, no key read."""
    from ..serve.security.principal import Principal, Role

    return Principal("anonymous", "bench baseline (no key asked)", Role.INFERRER)


class DiscardAudit:
    """The baseline's audit: keeps nothing."""

    def append(self, record: Mapping) -> None:
        return None


class ServedStack:
    """The model, the four servers that serve it (one per latency path but in-process) and their clients."""

    def __init__(self, model, urls: dict[str, str], ca_file: Path, key: str, audits: dict, guard, timeout_s: float):
        self.model, self.urls, self.ca_file, self.key, self.audits = model, urls, ca_file, key, audits
        self.guard, self.timeout_s = guard, timeout_s
        self.audit: dict = {}
        self._clients: list = []

    def client(self, name: str):
        """A keep-alive client of the server behind path `name`, sending the API key on every request (the open
        guard ignores it: every path gets the same bytes)."""
        import httpx

        from ..serve.security.tls import client_context

        transport = httpx.HTTPTransport(verify=client_context(self.ca_file), retries=0)
        headers = {"Authorization": f"Bearer {self.key}", "Content-Type": "image/jpeg"}
        client = httpx.Client(base_url=self.urls[name], transport=transport, headers=headers, timeout=self.timeout_s)
        self._clients.append(client)
        return client

    def post(self, name: str) -> Callable[[bytes], None]:
        """One POST /v1/detect per call, on a client of its own; anything but 200 raises."""
        client = self.client(name)

        def call(data: bytes) -> None:
            response = client.post("/v1/detect", content=data)
            if response.status_code != 200:
                raise RuntimeError(f"{name}: POST /v1/detect answered {response.status_code}: {response.text[:200]}")

        return call

    def calls(self) -> dict[str, Callable[[bytes], object]]:
        return {"in_process": self.model.detect_encoded, **{name: self.post(name) for name in PATHS[1:]}}

    def close_clients(self) -> None:
        for client in self._clients:
            client.close()
        self._clients.clear()

    def audit_check(self) -> dict:
        """How many lines each real audit log holds, and whether its chain verifies (once its server stopped)."""
        from ..serve.security.audit import verify_audit

        found = {}
        for name, log in self.audits.items():
            log.close()
            report = verify_audit(log.path)
            found[name] = {"lines": report.records, "verified": report.ok, "problem": report.problem}
        return found


@contextmanager
def served_stack(artifact: Path, imgsz: int, threads: int, *, workers: int | None, clients: int, timeout_s: float):
    """The model served four ways on loopback, each server with its own app (and its own inference threads); the
    real audit logs checked once the servers have stopped, before their folder goes."""
    from ..serve.service.limits import Limits
    from ..serve.service.model import ServedModel

    model = ServedModel.open(artifact, name="bench", imgsz=imgsz, threads=threads, workers=workers)
    limits = Limits(**BENCH_LIMITS, max_queue=max(Limits().max_queue, 2 * clients))
    with tempfile.TemporaryDirectory(prefix="workbench-bench-serving-") as folder:
        with ExitStack() as servers:
            found = _start(servers, model, Path(folder), limits, timeout_s)
            try:
                yield found
            finally:
                found.close_clients()
        found.audit = found.audit_check()


def _start(servers: ExitStack, model, folder: Path, limits, timeout_s: float) -> ServedStack:
    """A local certificate, a key store with one inferrer key, two real audit logs, and the four servers (entered
    into `servers`, which stops them)."""
    from ..serve.security.audit import AuditLog
    from ..serve.security.guard import Guard
    from ..serve.security.keys import KeyStore
    from ..serve.security.principal import Role
    from ..serve.security.tls import local_certificate
    from ..serve.service.app import create_app
    from ..serve.service.server import serving

    certs = local_certificate(folder / "tls")
    store = KeyStore(folder / "serve" / "keys.json")
    key = store.add("bench-client", Role.INFERRER, expires_days=1).key
    guard = Guard(store)
    audits = {name: AuditLog(folder / "serve" / f"audit-{name}.jsonl") for name in ("auth_audit", "tls_auth_audit")}
    servers.callback(lambda: [log.close() for log in audits.values()])  # after the servers stopped (LIFO)
    apps = {
        "plain_http": (open_guard, DiscardAudit(), False),
        "tls": (open_guard, DiscardAudit(), True),
        "auth_audit": (guard, audits["auth_audit"], False),
        "tls_auth_audit": (guard, audits["tls_auth_audit"], True),
    }
    urls = {}
    for name, (door, audit, secure) in apps.items():
        app = create_app(model, guard=door, audit=audit, limits=limits)
        files = {"certfile": certs.certfile, "keyfile": certs.keyfile} if secure else {}
        urls[name] = servers.enter_context(serving(app, **files))
    audits["probe"] = AuditLog(folder / "serve" / "audit-probe.jsonl")  # `serving._parts` appends here, no server does
    return ServedStack(model, urls, certs.ca_certfile, key, audits, guard, timeout_s)


def tls_negotiated(url: str, ca_file: Path) -> dict:
    """The TLS version and cipher suite a client trusting `ca_file` negotiates with the server at `url`."""
    import socket
    from urllib.parse import urlsplit

    from ..serve.security.tls import client_context

    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=10) as raw:
        with client_context(ca_file).wrap_socket(raw, server_hostname=parts.hostname) as sock:
            return {"version": sock.version(), "cipher": sock.cipher()[0]}


def uvicorn_http() -> str:
    import importlib.util

    parser = "httptools" if importlib.util.find_spec("httptools") else "h11 (pure Python)"
    return f"uvicorn's choice: {parser} parser, asyncio event loop (uvloop is not used: see serve/server.py)"


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "uvicorn",
        "starlette",
        "cryptography",
        "argon2-cffi",
        "httpx",
        "h11",
        "httptools",
        "uvloop",
        "openvino",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found
