"""The serving layer's protections end to end, all real pieces over HTTPS on loopback: the demo model (OpenVINO at
128 px) behind the key store, the guard, the hash-chained audit log, Prometheus metrics and the TLS context of
`tls.local_certificate`. Every role against every endpoint, cell by cell (the ones that need a TOTP code, managing
keys and reading the audit, are `test_serve_admin.py`'s over HTTP: this module's guard runs on the real clock, and
a code is accepted once per 30 s); the admin actions at the guard as well, with their TOTP second factor; wrong,
expired and revoked keys, the lockout; one audit line per request, verified, and an edited line found; no plain
HTTP and no TLS 1.1 on the TLS port.

Failures that count towards a lockout are sent from their own loopback source addresses (127.0.x.y all reach the
server), so that they never lock out 127.0.0.1, which the rest of the module uses."""

from __future__ import annotations

import contextlib
import json
import shutil
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("uvicorn")
pytest.importorskip("starlette")
pytest.importorskip("argon2")
pytest.importorskip("pyotp")

import httpx  # noqa: E402
import pyotp  # noqa: E402
from serving_helpers import cheap_hasher, export_demo  # noqa: E402
from tls_clients import PermissiveSSL, handshake, permissive, tls11_client  # noqa: E402

from workbench.cli import main  # noqa: E402
from workbench.core.serve.security import tls  # noqa: E402
from workbench.core.serve.security.audit import AuditLog, verify_audit  # noqa: E402
from workbench.core.serve.security.guard import Guard  # noqa: E402
from workbench.core.serve.security.keys import TOTP_STEP_S, KeyStore  # noqa: E402
from workbench.core.serve.security.principal import Action, Denied, Role  # noqa: E402
from workbench.core.serve.service.admin import LoadedVariant  # noqa: E402

IMGSZ = 128
DAY = 86400.0
MAX_FAILURES = 3  # the server's guard: this many counted failures lock a client address or a key out
# The matrix, written out here (not read from ROLE_ACTIONS), so that widening a role fails this test.
ANYONE = {None, Role.READER, Role.INFERRER, Role.OPERATOR, Role.ADMIN}  # None: no key at all
KEYED = {Role.READER, Role.INFERRER, Role.OPERATOR, Role.ADMIN}
INFERRERS = {Role.INFERRER, Role.OPERATOR, Role.ADMIN}
# endpoint id -> (method, path, the action the audit names, who gets 200; everyone else with a key 403, without 401)
ENDPOINTS = {
    "live": ("GET", "/v2/health/live", "health", ANYONE),
    "ready": ("GET", "/v2/health/ready", "health", ANYONE),
    "server-metadata": ("GET", "/v2", "metadata", KEYED),
    "model-metadata": ("GET", "/v2/models/{name}", "metadata", KEYED),
    "version-metadata": ("GET", "/v2/models/{name}/versions/{version}", "metadata", KEYED),
    "model-ready": ("GET", "/v2/models/{name}/ready", "health", KEYED),
    "version-ready": ("GET", "/v2/models/{name}/versions/{version}/ready", "health", KEYED),
    "infer": ("POST", "/v2/models/{name}/infer", "infer", INFERRERS),
    "version-infer": ("POST", "/v2/models/{name}/versions/{version}/infer", "infer", INFERRERS),
    "detect": ("POST", "/v1/detect", "infer", INFERRERS),
    "metrics": ("GET", "/metrics", "metrics", {Role.OPERATOR, Role.ADMIN}),
    "served-model": ("GET", "/v1/admin/model", "metrics", {Role.OPERATOR, Role.ADMIN}),
    "switch-model": ("PUT", "/v1/admin/model", "load_variant", {Role.OPERATOR, Role.ADMIN}),
    "unknown": ("GET", "/v2/no/such/endpoint", "metadata", set()),  # 404 for every key, 401 without
}
# The operator's and admin's actions, checked at the guard too (over HTTP: the matrix above for LOAD_VARIANT,
# test_serve_admin.py for the TOTP ones). action -> (who may, whether a TOTP code is needed)
GUARD_ONLY = {
    Action.LOAD_VARIANT: ({Role.OPERATOR, Role.ADMIN}, False),
    Action.MANAGE_KEYS: ({Role.ADMIN}, True),
    Action.READ_AUDIT: ({Role.ADMIN}, True),
}
CALLERS = [None, *Role]


def jpeg(side: int = 96, seed: int = 0) -> bytes:
    import cv2

    rng = np.random.default_rng(seed)
    image = np.full((side, side, 3), 60, np.uint8)
    cv2.circle(image, (side // 2, side // 2), side // 4, tuple(int(c) for c in rng.integers(100, 255, 3)), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


def infer_body(spec) -> bytes:
    return json.dumps({"inputs": [{**spec.as_dict(), "data": [0] * int(np.prod(spec.shape))}]}).encode()


@dataclass
class Stack:
    """The running server and what the tests need of it. `ledger`: (status, outcome) of every request sent to it
    through `send`, in order: the audit log must hold exactly these lines."""

    url: str
    certs: tls.CertificatePaths
    store: KeyStore
    keys: dict
    audit_path: Path
    guard: Guard
    model: object
    ledger: list = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self, source: str | None = None, **kwargs) -> httpx.Client:
        """An HTTPS client trusting the local CA only; `source`: the loopback address it connects from."""
        transport = httpx.HTTPTransport(verify=tls.client_context(self.certs.ca_certfile), local_address=source)
        return httpx.Client(base_url=self.url, transport=transport, timeout=30, **kwargs)

    def audit_lines(self) -> list[dict]:
        return [json.loads(line) for line in self.audit_path.read_text().splitlines()]


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo model exported to OpenVINO at 128 px: (workspace, variant id)."""
    workspace, variants = export_demo(tmp_path_factory.mktemp("secure"), imgsz=IMGSZ)
    return workspace, variants["openvino"]


@pytest.fixture(scope="module")
def served(exported):
    from workbench.core.serve.service.model import ServedModel

    workspace, variant = exported
    return ServedModel.from_variant(workspace, variant, threads=1, workers=1)


@pytest.fixture(scope="module")
def stack(served, tmp_path_factory):
    from workbench.core.serve.monitoring.metrics import Metrics
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.limits import MIB, Limits
    from workbench.core.serve.service.server import serving

    root = tmp_path_factory.mktemp("stack")
    certs = tls.local_certificate(root / "certs")
    store = KeyStore(root / "serve" / "keys.json", hasher=cheap_hasher())
    keys = {role: store.add(f"{role.value}-key", role) for role in Role}
    guard = Guard(store, max_failures=MAX_FAILURES, window_s=300, lockout_s=300)
    metrics = Metrics(served.name)
    limits = Limits(max_body_bytes=2 * MIB, rate_per_s=1000.0, burst=1000)
    same = LoadedVariant(served)  # a switch "loads" the model served: the matrix checks who may, not what loads
    with AuditLog(root / "serve" / "audit.jsonl") as audit:
        app = create_app(served, guard=guard, audit=audit, limits=limits, metrics=metrics, loader=lambda *_: same)
        with serving(app, certfile=certs.certfile, keyfile=certs.keyfile) as url:
            assert url.startswith("https://127.0.0.1:")
            yield Stack(url, certs, store, keys, audit.path, guard, served)
    metrics.close()


@pytest.fixture(scope="module")
def http(stack):
    with stack.client() as client:
        yield client


def send(
    stack: Stack, client: httpx.Client, method: str, path: str, expected: tuple[int, str], *, source="127.0.0.1", **kw
):
    """One request; its expected (status, outcome) goes on the ledger, its audit line is checked to be that
    (`source`: the address `client` connects from)."""
    with stack.lock:
        before = len(stack.audit_lines())
        response = client.request(method, path, **kw)
        stack.ledger.append(expected)
        new = stack.audit_lines()[before:]
    assert (response.status_code, len(new)) == (expected[0], 1), response.text
    assert (new[0]["status"], new[0]["outcome"], new[0]["method"]) == (*expected, method)
    assert (new[0]["path"], new[0]["client"]) == (path, source)
    return response, new[0]


def bearer(key: str, totp: str | None = None) -> dict:
    return {"Authorization": f"Bearer {key}", **({"X-TOTP": totp} if totp else {})}


def forged(key: str) -> str:
    """The key with its id kept and another secret (well-formed: the store must check the secret)."""
    prefix, key_id, secret = key.split("_", 2)
    return f"{prefix}_{key_id}_{'A' if secret[0] != 'A' else 'B'}{secret[1:]}"


def request_kwargs(stack: Stack, endpoint: str) -> dict:
    spec = stack.model.inputs[0]
    if endpoint in ("infer", "version-infer"):
        return {"content": infer_body(spec), "headers": {"Content-Type": "application/json"}}
    if endpoint == "detect":
        return {"content": jpeg(), "headers": {"Content-Type": "image/jpeg"}}
    if endpoint == "switch-model":
        return {"json": {"variant": "the same"}}
    return {}


def expected_status(endpoint: str, caller: Role | None) -> int:
    *_, may = ENDPOINTS[endpoint]
    if caller in may:
        return 200
    if caller is None:
        return 401
    return 404 if endpoint == "unknown" else 403


# -- the role matrix over HTTP, one cell per test --------------------------------------------------------------------


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("caller", CALLERS, ids=lambda c: c.value if c else "no-key")
def test_role_matrix_cell_over_https(stack, http, caller, endpoint):
    method, template, action, _ = ENDPOINTS[endpoint]
    path = template.format(name=stack.model.name, version=stack.model.version)
    kwargs = request_kwargs(stack, endpoint)
    headers = {**kwargs.pop("headers", {}), **(bearer(stack.keys[caller].key) if caller else {})}
    status = expected_status(endpoint, caller)
    outcome = "ok" if status == 200 else "denied" if status in (401, 403) else "error"
    response, line = send(stack, http, method, path, (status, outcome), headers=headers, **kwargs)
    assert line["action"] == action
    assert line["who"] == (stack.keys[caller].key_id if caller else None)  # a refused role is named too
    if status == 200 and endpoint == "detect":
        assert set(response.json()) >= {"boxes", "scores", "classes"}
    if status == 200 and endpoint.endswith("infer"):
        assert response.json()["outputs"][0]["name"] == stack.model.outputs[0].name
    if status == 200 and endpoint == "metrics":
        assert b"wb_requests_total" in response.content
    if status == 200 and endpoint.endswith("-model"):
        assert response.json()["version"] == stack.model.version
    if status == 403:
        assert response.json() == {"error": f"role {caller.value} may not {action}"}
    if endpoint in ("live", "ready") and status == 200:
        assert response.json() in ({"live": True}, {"ready": True})  # the probes say nothing else


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
def test_a_wrong_key_is_401_everywhere_even_on_the_probes(stack, endpoint, request):
    method, template, _, _ = ENDPOINTS[endpoint]
    path = template.format(name=stack.model.name, version=stack.model.version)
    source = f"127.0.1.{list(ENDPOINTS).index(endpoint) + 1}"  # its own address: wrong keys count towards lockouts
    with stack.client(source) as client:
        wrong = f"wbk_{'0' * 12}_{'A' * 43}"  # an unknown id: counts against the address only, locks no key
        response, line = send(stack, client, method, path, (401, "denied"), headers=bearer(wrong), source=source)
    assert response.json() == {"error": "invalid API key"} and line["who"] is None and line["client"] == source


# -- the admin actions without an endpoint, at the server's own guard -----------------------------------------------


class Clock:
    """A clock for a guard whose TOTP steps the test moves (a code is accepted once per 30 s step)."""

    def __init__(self):
        self.now = (time.time() // TOTP_STEP_S + 10) * TOTP_STEP_S  # ahead of any step the real clock gave out

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def clock():
    """One clock for the module's guard-level cells: each cell moves it a step on, so each code is fresh."""
    return Clock()


def code(new_key, moment: float, steps: int = 0) -> str:
    return pyotp.TOTP(new_key.totp_secret).at(moment + steps * TOTP_STEP_S)


@pytest.mark.parametrize("action", list(GUARD_ONLY))
@pytest.mark.parametrize("role", list(Role))
def test_role_matrix_cell_of_the_actions_without_an_endpoint(stack, clock, role, action):
    may, second_factor = GUARD_ONLY[action]
    guard = Guard(stack.store, clock=clock)  # the server's store; a clock that hands out fresh TOTP steps
    new = stack.keys[role]
    clock.now += TOTP_STEP_S
    fresh = code(new, clock.now) if new.totp_secret else "123456"
    if role not in may:
        for totp in (None, fresh):
            with pytest.raises(Denied) as refused:
                guard(bearer(new.key, totp), action, "guard-test")
            assert (refused.value.status, refused.value.reason) == (403, f"role {role.value} may not {action.value}")
        return
    if second_factor:
        with pytest.raises(Denied) as refused:
            guard(bearer(new.key), action, "guard-test")
        assert (refused.value.status, "TOTP" in refused.value.reason) == (403, True)
    principal = guard(bearer(new.key, fresh), action, "guard-test")
    assert (principal.key_id, principal.role) == (new.key_id, role)


def test_wrong_and_replayed_totp_codes_are_refused_and_lock_the_admin_key(stack):
    admin = stack.store.add("admin-totp", Role.ADMIN)
    clock = Clock()
    guard = Guard(stack.store, clock=clock, max_failures=3)

    def refused(totp: str, action=Action.MANAGE_KEYS) -> tuple[int, str]:
        with pytest.raises(Denied) as denied:
            guard(bearer(admin.key, totp), action, "totp-test")
        return denied.value.status, denied.value.reason

    good = code(admin, clock.now)
    assert guard(bearer(admin.key, good), Action.MANAGE_KEYS, "totp-test").role is Role.ADMIN
    assert refused(good, Action.READ_AUDIT) == (403, "TOTP code already used: wait for the next one")
    assert refused(code(admin, clock.now, steps=-3)) == (403, "wrong TOTP code")  # out of the +-1 step window
    assert refused("12345x") == (403, "wrong TOTP code")
    assert refused(code(admin, clock.now, steps=1))[0] == 429  # after three counted failures even a right code
    clock.now += 301  # the lockout ends; the old codes stay refused, a fresh one is accepted
    assert refused(good) == (403, "wrong TOTP code")
    assert guard(bearer(admin.key, code(admin, clock.now)), Action.READ_AUDIT, "totp-test").key_id == admin.key_id


# -- keys refused over HTTP ------------------------------------------------------------------------------------------


def test_missing_malformed_and_unknown_keys_are_401(stack):
    source = "127.0.2.1"  # three counted failures (a missing key does not count): locked out after the last
    with stack.client(source) as client:
        response, _ = send(stack, client, "GET", "/v2", (401, "denied"), source=source)
        assert response.json()["error"].startswith("missing API key")
        for headers in (bearer("not-a-key"), bearer(f"wbk_{'0' * 12}_{'A' * 43}"), {"Authorization": "Basic x"}):
            response, _ = send(stack, client, "GET", "/v2", (401, "denied"), headers=headers, source=source)
            assert response.json() == {"error": "invalid API key"}


def test_an_expired_key_is_401(stack, http):
    expired = stack.store.add("expired", Role.ADMIN, expires_days=1, now=time.time() - 2 * DAY)
    response, line = send(stack, http, "GET", "/v2", (401, "denied"), headers=bearer(expired.key))
    assert response.json() == {"error": "API key expired"} and line["who"] is None
    assert [k.status for k in stack.store.list() if k.key_id == expired.key_id] == ["expired"]


def test_a_key_revoked_while_the_server_runs_is_401_at_its_next_request(stack, http):
    key = stack.store.add("soon-revoked", Role.INFERRER)
    assert send(stack, http, "GET", "/v2", (200, "ok"), headers=bearer(key.key))[1]["who"] == key.key_id
    KeyStore(stack.store.path, hasher=cheap_hasher()).revoke(key.key_id)  # as `workbench keys revoke` does
    response, _ = send(stack, http, "GET", "/v2", (401, "denied"), headers=bearer(key.key))
    assert response.json() == {"error": "API key revoked"}
    image = {"Content-Type": "image/jpeg", **bearer(key.key)}
    send(stack, http, "POST", "/v1/detect", (401, "denied"), headers=image, content=jpeg())


def test_repeated_wrong_secrets_lock_out_the_key_and_the_client_address(stack, http):
    victim = stack.store.add("lockout-victim", Role.INFERRER)
    source = "127.0.3.1"
    with stack.client(source) as attacker:
        for _ in range(MAX_FAILURES):
            send(stack, attacker, "GET", "/v2", (401, "denied"), headers=bearer(forged(victim.key)), source=source)
        right = bearer(victim.key)  # even the right key is refused now
        locked, _ = send(stack, attacker, "GET", "/v2", (429, "denied"), headers=right, source=source)
        assert locked.json()["error"].startswith("locked out, try again in")
        other = bearer(stack.keys[Role.READER].key)  # the address is locked out too, whatever key it sends
        send(stack, attacker, "GET", "/v2", (429, "denied"), headers=other, source=source)
    send(stack, http, "GET", "/v2", (429, "denied"), headers=bearer(victim.key))  # the key, from anywhere
    send(stack, http, "GET", "/v2", (200, "ok"), headers=bearer(stack.keys[Role.READER].key))  # others still in
    send(stack, http, "GET", "/v2/health/live", (200, "ok"))


# -- TLS --------------------------------------------------------------------------------------------------------------


def test_plain_http_to_the_tls_port_gets_no_http_answer(stack):
    port = int(stack.url.rsplit(":", 1)[1])
    before = len(stack.audit_lines())
    received = b""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        plain.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        with contextlib.suppress(TimeoutError, ConnectionResetError):
            while chunk := plain.recv(4096):
                received += chunk
    assert b"HTTP/" not in received and b"live" not in received
    assert len(stack.audit_lines()) == before  # no request reached the app


def _weak_server_handshakes(certs, client: ssl.SSLContext) -> str | None:
    """The TLS version `client` gets from a server without any floor (None: this OpenSSL refuses it anyway)."""
    weak = permissive(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    weak.load_cert_chain(str(certs.certfile), str(certs.keyfile))
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)

        def serve_one():
            with contextlib.suppress(OSError), listener.accept()[0] as conn:
                conn.settimeout(5)
                with weak.wrap_socket(conn, server_side=True):
                    pass

        thread = threading.Thread(target=serve_one, daemon=True)
        thread.start()
        try:
            return handshake(listener.getsockname()[1], client)
        except ssl.SSLError:
            return None
        finally:
            thread.join(5)


def test_a_tls11_client_is_refused_by_the_servers_own_floor(stack, served, monkeypatch, tmp_path):
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import serving

    if not ssl.HAS_TLSv1_1:
        pytest.skip(f"{ssl.OPENSSL_VERSION} cannot speak TLS 1.1")
    client = tls11_client()
    if _weak_server_handshakes(stack.certs, client) != "TLSv1.1":
        pytest.skip(f"{ssl.OPENSSL_VERSION} refuses TLS 1.1 even at SECLEVEL 0: nothing to refuse here")
    monkeypatch.setattr(tls, "ssl", PermissiveSSL())  # the server's own settings must be what refuses
    with AuditLog(tmp_path / "audit.jsonl") as audit:
        app = create_app(served, guard=stack.guard, audit=audit)
        with serving(app, certfile=stack.certs.certfile, keyfile=stack.certs.keyfile) as url:
            port = int(url.rsplit(":", 1)[1])
            with pytest.raises(ssl.SSLError):
                handshake(port, client)
            assert handshake(port, tls.client_context(stack.certs.ca_certfile)) in ("TLSv1.2", "TLSv1.3")
            with httpx.Client(verify=tls.client_context(stack.certs.ca_certfile)) as good:
                assert good.get(f"{url}/v2/health/live").status_code == 200
    assert verify_audit(audit.path).records == 1  # the refused handshake reached no endpoint


# -- the audit log afterwards -----------------------------------------------------------------------------------------


def test_the_audit_holds_one_verified_line_per_request_and_an_edit_is_found(stack, http, tmp_path, capsys):
    """Last in the module: every request the tests above sent is one line, in order, with its status and outcome."""
    send(stack, http, "GET", "/v2/health/ready", (200, "ok"))  # at least one line, however run
    report = verify_audit(stack.audit_path)
    lines = stack.audit_lines()
    assert report.ok and report.records == len(lines) == len(stack.ledger)
    assert [(line["status"], line["outcome"]) for line in lines] == stack.ledger
    assert all(set(line) >= {"who", "action", "path", "status", "outcome", "latency_ms"} for line in lines)
    assert max(len(json.dumps(line)) for line in lines) < 600  # no image or tensor data in it
    copy = tmp_path / "audit.jsonl"
    shutil.copy(stack.audit_path, copy)
    shutil.copy(stack.audit_path.with_name("audit.jsonl.head"), tmp_path / "audit.jsonl.head")
    assert main(["audit", "verify", str(copy)]) == 0
    text = copy.read_text().splitlines(keepends=True)
    middle = len(text) // 2
    edited = text[middle].replace(f'"status":{lines[middle]["status"]}', '"status":299', 1)
    assert edited != text[middle]
    copy.write_text("".join([*text[:middle], edited, *text[middle + 1 :]]))
    tampered = verify_audit(copy)
    assert (tampered.ok, tampered.line, tampered.records) == (False, middle + 1, middle)
    capsys.readouterr()
    assert main(["audit", "verify", str(copy)]) == 1
    assert f"TAMPERED at line {middle + 1}" in capsys.readouterr().out
    assert verify_audit(stack.audit_path).ok  # the live log is untouched
