"""The admin and operator endpoints (`serve.admin`) over HTTP on loopback, with real pieces: the demo model exported
twice (OpenVINO and ONNX at 128 px), the key store, a guard whose clock the tests move (a TOTP code is accepted once
per 30 s step, so each admin request gets a fresh one), the hash-chained audit log and Prometheus metrics. Every
caller against every new endpoint, cell by cell; keys added and revoked over HTTP and used at once; the audit's
tail, verified while the server appends, an edited line found; the variant switched while requests are in flight;
loader errors, a concurrent switch, no loader; malformed bodies. Plain HTTP: TLS is `test_serve_secure.py`'s."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
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

from workbench.core.errors import ConfigError  # noqa: E402
from workbench.core.serve.security.audit import AuditLog, verify_audit  # noqa: E402
from workbench.core.serve.security.guard import Guard  # noqa: E402
from workbench.core.serve.security.keys import TOTP_STEP_S, KeyStore  # noqa: E402
from workbench.core.serve.security.principal import Principal, Role  # noqa: E402
from workbench.core.serve.service.admin import LoadedVariant, VariantNotFound, read_audit  # noqa: E402

IMGSZ = 128
BROKEN = ("variant 'broken' is an INT8 export whose calibration is missing", "export it again with --calibration")
# The matrix, written out (not read from ROLE_ACTIONS): widening a role fails it. "admin-no-totp": an admin's key
# without an X-TOTP code; "admin": with a fresh one.
CALLERS = ["no-key", "reader", "inferrer", "operator", "admin-no-totp", "admin"]
OPERATORS = {"operator", "admin-no-totp", "admin"}
# endpoint id -> (method, path, the action the audit names, who gets 2xx; the others with a key 403, without 401)
ENDPOINTS = {
    "list-keys": ("GET", "/v1/admin/keys", "manage_keys", {"admin"}),
    "add-key": ("POST", "/v1/admin/keys", "manage_keys", {"admin"}),
    "revoke-key": ("DELETE", "/v1/admin/keys/{victim}", "manage_keys", {"admin"}),
    "audit": ("GET", "/v1/admin/audit?tail=5", "read_audit", {"admin"}),
    "served-model": ("GET", "/v1/admin/model", "metrics", OPERATORS),
    "switch-model": ("PUT", "/v1/admin/model", "load_variant", OPERATORS),
}
TOTP_ENDPOINTS = {"list-keys", "add-key", "revoke-key", "audit"}


def jpeg(side: int = 96) -> bytes:
    import cv2

    image = np.full((side, side, 3), 60, np.uint8)
    cv2.circle(image, (side // 2, side // 2), side // 4, (40, 200, 220), -1)
    return cv2.imencode(".jpg", image)[1].tobytes()


class Clock:
    """The guard's clock, moved by the tests: ahead of any step the real clock gave out."""

    def __init__(self):
        self.now = (time.time() // TOTP_STEP_S + 10) * TOTP_STEP_S
        self._lock = threading.Lock()

    def __call__(self) -> float:
        return self.now

    def step(self) -> float:
        with self._lock:
            self.now += TOTP_STEP_S
            return self.now


class Loader:
    """The server's loader: opens a workspace variant for real; refuses 'broken' with a fix and unknown ids with
    VariantNotFound; `hold` keeps a load waiting (a slow compile) until it is set."""

    def __init__(self, workspace, ids):
        self.workspace, self.ids = workspace, set(ids)
        self.hold: threading.Event | None = None
        self.entered = threading.Event()
        self.workers = 1
        self.calls: list[tuple[str, str]] = []

    def __call__(self, variant: str, name: str) -> LoadedVariant:
        from workbench.core.serve.service.model import ServedModel

        self.calls.append((variant, name))
        self.entered.set()
        if self.hold is not None:
            assert self.hold.wait(20), "the test never let the load go on"
        if variant == "broken":
            raise ConfigError(*BROKEN)
        if not variant.isdigit() or int(variant) not in self.ids:
            raise VariantNotFound(f"no variant {variant!r} in the workspace", "pass the id of a recorded variant")
        model = ServedModel.from_variant(self.workspace, int(variant), name=name, threads=1, workers=self.workers)
        return LoadedVariant(model, int(variant))


@dataclass
class Stack:
    url: str
    store: KeyStore
    keys: dict
    clock: Clock
    audit_path: Path
    metrics: object
    loader: Loader
    variants: dict  # "openvino" / "onnx" -> variant id
    app: object
    lock: threading.Lock = field(default_factory=threading.Lock)

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30)

    def headers(self, caller: str) -> dict:
        """The caller's key; an admin's with a TOTP code fresh at the guard's clock ("admin-no-totp": none)."""
        if caller == "no-key":
            return {}
        new = self.keys["admin" if caller.startswith("admin") else caller]
        if caller != "admin":
            return bearer(new.key)
        return bearer(new.key, pyotp.TOTP(new.totp_secret).at(self.clock.step()))

    def last_audit(self) -> dict:
        """The last audit line: a response is only sent once its line is written."""
        return json.loads(self.audit_path.read_text().splitlines()[-1])

    @property
    def version(self) -> str:
        return self.app.state.service.model.version


def bearer(key: str, totp: str | None = None) -> dict:
    return {"Authorization": f"Bearer {key}", **({"X-TOTP": totp} if totp else {})}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """The demo model exported to OpenVINO and to ONNX at 128 px: (workspace, {"openvino": id, "onnx": id})."""
    return export_demo(tmp_path_factory.mktemp("admin"), ("openvino", "onnx"), imgsz=IMGSZ)


@pytest.fixture(scope="module")
def served(exported):
    from workbench.core.serve.service.model import ServedModel

    workspace, variants = exported
    return ServedModel.from_variant(workspace, variants["openvino"], threads=1, workers=1)


@pytest.fixture(scope="module")
def stack(exported, served, tmp_path_factory):
    from workbench.core.serve.monitoring.metrics import Metrics
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.limits import MIB, Limits
    from workbench.core.serve.service.server import serving

    workspace, variants = exported
    root = tmp_path_factory.mktemp("admin-stack")
    store = KeyStore(root / "serve" / "keys.json", hasher=cheap_hasher())
    keys = {role.value: store.add(f"{role.value}-key", role) for role in Role}
    clock = Clock()
    guard = Guard(store, clock=clock, max_failures=50)  # lockouts are test_serve_secure.py's
    metrics = Metrics(served.version, variant_id=variants["openvino"])
    loader = Loader(workspace, variants.values())
    limits = Limits(max_body_bytes=2 * MIB, rate_per_s=1000.0, burst=1000)
    with AuditLog(root / "serve" / "audit.jsonl", fsync=False) as audit:
        app = create_app(served, guard=guard, audit=audit, limits=limits, metrics=metrics, loader=loader)
        with serving(app) as url:
            yield Stack(url, store, keys, clock, audit.path, metrics, loader, variants, app)
    metrics.close()


@pytest.fixture(scope="module")
def http(stack):
    with stack.client() as client:
        yield client


def switch(stack: Stack, http: httpx.Client, variant, caller: str = "operator") -> httpx.Response:
    return http.put("/v1/admin/model", json={"variant": str(variant)}, headers=stack.headers(caller))


def infer_body(spec) -> dict:
    return {"inputs": [{**spec.as_dict(), "data": [0.5] * int(np.prod(spec.shape))}]}


# -- the role matrix, one cell per test ------------------------------------------------------------------------------


def cell_request(stack: Stack, endpoint: str, caller: str) -> tuple[str, str, dict]:
    method, template, _, _ = ENDPOINTS[endpoint]
    kwargs: dict = {}
    if endpoint == "revoke-key":
        victim = stack.store.add(f"victim-of-{caller}", Role.READER)  # each cell its own key to revoke
        template = template.format(victim=victim.key_id)
    if endpoint == "add-key":
        kwargs["json"] = {"name": f"made-by-{caller}", "role": "reader"}
    if endpoint == "switch-model":
        kwargs["json"] = {"variant": str(stack.variants["onnx"])}
    return method, template, kwargs


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("caller", CALLERS)
def test_role_matrix_cell(stack, http, caller, endpoint):
    method, path, kwargs = cell_request(stack, endpoint, caller)
    _, _, action, may = ENDPOINTS[endpoint]
    with stack.lock:
        response = http.request(method, path, headers=stack.headers(caller), **kwargs)
        line = stack.last_audit()
    if caller in may:
        assert response.status_code == (201 if endpoint == "add-key" else 200), response.text
    elif caller == "no-key":
        assert (response.status_code, response.json()) == (
            401,
            {"error": "missing API key (Authorization: Bearer <key>)"},
        )
    elif caller == "admin-no-totp":
        assert endpoint in TOTP_ENDPOINTS
        assert (response.status_code, response.json()) == (
            403,
            {"error": "this action needs a TOTP code (X-TOTP header)"},
        )
    else:
        assert (response.status_code, response.json()) == (403, {"error": f"role {caller} may not {action}"})
    assert (line["action"], line["method"], line["status"]) == (action, method, response.status_code)
    key = stack.keys.get("admin" if caller.startswith("admin") else caller)
    assert line["who"] == (key.key_id if key else None)


def test_a_replayed_totp_code_is_refused(stack, http):
    admin = stack.keys["admin"]
    fresh = pyotp.TOTP(admin.totp_secret).at(stack.clock.step())
    assert http.get("/v1/admin/keys", headers=bearer(admin.key, fresh)).status_code == 200
    replayed = http.get("/v1/admin/audit", headers=bearer(admin.key, fresh))
    assert (replayed.status_code, replayed.json()) == (403, {"error": "TOTP code already used: wait for the next one"})
    assert http.get("/v1/admin/audit", headers=stack.headers("admin")).status_code == 200  # the next step's code


# -- keys --------------------------------------------------------------------------------------------------------------


def test_a_key_added_over_http_works_at_once_and_its_secret_is_shown_once(stack, http):
    made = http.post("/v1/admin/keys", json={"name": "ci-bot", "role": "inferrer", "expires_days": 7},
                     headers=stack.headers("admin"))  # fmt: skip
    assert made.status_code == 201 and made.headers["cache-control"] == "no-store"
    new = made.json()
    assert (new["name"], new["role"], new["totp_secret"]) == ("ci-bot", "inferrer", None)
    assert new["key"].startswith(f"wbk_{new['id']}_")
    line = stack.last_audit()
    assert (line["target_key"], line["target_role"], line["status"]) == (new["id"], "inferrer", 201)
    assert new["key"].split("_", 2)[2] not in stack.audit_path.read_text()  # the secret is never logged
    detected = http.post("/v1/detect", content=jpeg(), headers={"Content-Type": "image/jpeg", **bearer(new["key"])})
    assert detected.status_code == 200 and stack.last_audit()["who"] == new["id"]
    listed = http.get("/v1/admin/keys", headers=stack.headers("admin")).json()["keys"]
    mine = [k for k in listed if k["id"] == new["id"]]
    assert mine and mine[0]["status"] == "active" and mine[0]["expires"] == new["expires"]
    assert all(set(k) == {"id", "name", "role", "created", "expires", "revoked", "status"} for k in listed)
    assert new["key"] not in json.dumps(listed)


def test_an_admin_key_added_over_http_comes_with_its_totp_secret_and_works(stack, http):
    new = http.post("/v1/admin/keys", json={"name": "second-admin", "role": "admin"}, headers=stack.headers("admin"))
    assert new.status_code == 201, new.text
    body = new.json()
    assert body["totp_uri"].startswith("otpauth://totp/") and body["totp_secret"]
    code = pyotp.TOTP(body["totp_secret"]).at(stack.clock.step())
    listed = http.get("/v1/admin/keys", headers=bearer(body["key"], code))
    assert listed.status_code == 200 and stack.last_audit()["who"] == body["id"]


def test_a_key_revoked_over_http_is_401_at_its_next_request(stack, http):
    made = http.post("/v1/admin/keys", json={"name": "soon-gone", "role": "reader"}, headers=stack.headers("admin"))
    key = made.json()
    assert http.get("/v2", headers=bearer(key["key"])).status_code == 200
    revoked = http.delete(f"/v1/admin/keys/{key['id']}", headers=stack.headers("admin"))
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked" and revoked.json()["revoked"]
    assert (stack.last_audit()["target_key"], stack.last_audit()["target_role"]) == (key["id"], "reader")
    refused = http.get("/v2", headers=bearer(key["key"]))
    assert (refused.status_code, refused.json()) == (401, {"error": "API key revoked"})
    for unknown in ("0123456789ab", "not-an-id", "x" * 300):
        missing = http.delete(f"/v1/admin/keys/{unknown}", headers=stack.headers("admin"))
        assert missing.status_code == 404 and "GET /v1/admin/keys lists the ids" in missing.json()["error"]


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"name": "x", "role": "root"}, "unknown role 'root'; fix: use one of: reader, inferrer, operator, admin"),
        ({"name": " ", "role": "reader"}, "a key needs a name of 1 to 100 printable characters"),
        ({"name": "x", "role": "reader", "expires_days": 0}, "expires_days must be a whole number from 1 to 3650"),
        ({"name": "x", "role": "reader", "expires_days": "7"}, "'expires_days' must be a whole number, got a string"),
        ({"name": "x", "role": "reader", "expires_days": True}, "'expires_days' must be a whole number, got true or"),
        ({"name": 7, "role": "reader"}, "the field 'name' must be a string, got a whole number"),
        ({"role": "reader"}, "the field 'name' (a string) is missing"),
        ({"name": "x", "role": "reader", "admin": True}, "unknown field 'admin'; this endpoint takes name, role, exp"),
    ],
)
def test_a_bad_new_key_is_400_naming_the_field(stack, http, body, says):
    response = http.post("/v1/admin/keys", json=body, headers=stack.headers("admin"))
    assert response.status_code == 400 and says in response.json()["error"], response.text


# -- the audit log -----------------------------------------------------------------------------------------------------


def test_the_audit_tail_verifies_and_holds_the_last_lines(stack, http):
    with stack.lock:
        response = http.get("/v1/admin/audit", params={"tail": 3}, headers=stack.headers("admin"))
        lines = stack.audit_path.read_text().splitlines()
    body = response.json()
    assert response.status_code == 200 and (body["verified"], body["problem"]) == (True, None)
    assert body["records"] == len(lines) - 1  # all but this request's own line, written after the answer was made
    assert body["tail"] == [json.loads(line) for line in lines[-4:-1]]
    assert len(http.get("/v1/admin/audit", headers=stack.headers("admin")).json()["tail"]) == min(50, len(lines))
    for bad in ("0", "1001", "-1", "ten", "2.5", "", "9" * 5000):
        refused = http.get("/v1/admin/audit", params={"tail": bad}, headers=stack.headers("admin"))
        assert refused.status_code == 400 and "tail must be a whole number from 1 to 1000" in refused.json()["error"]
    extra = http.get("/v1/admin/audit", params={"tail": 3, "all": 1}, headers=stack.headers("admin"))
    assert extra.status_code == 400 and "unknown query parameter 'all'" in extra.json()["error"]


def test_an_edited_audit_line_makes_the_tail_unverified_and_names_it(stack, served, tmp_path):
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import serving

    with AuditLog(tmp_path / "audit.jsonl", fsync=False) as audit:
        app = create_app(served, guard=stack.app.state.service.guard, audit=audit)
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
            for _ in range(4):
                assert client.get("/v2", headers=stack.headers("reader")).status_code == 200
            text = audit.path.read_text().splitlines(keepends=True)
            text[1] = text[1].replace('"status":200', '"status":201', 1)  # the same length: appends go on after it
            audit.path.write_text("".join(text))
            body = client.get("/v1/admin/audit", headers=stack.headers("admin")).json()
    assert (body["verified"], body["line"], body["records"]) == (False, 2, 1)
    assert body["problem"] == "line 2 was edited: its hash does not match its content"
    assert body["tail"][1]["status"] == 201  # the tail still shows the lines, the edited one as it reads now
    offline = verify_audit(audit.path)
    assert (offline.ok, offline.records, offline.line, offline.problem) == (False, 1, 2, body["problem"])


def _tampered(path: Path, how: str) -> None:
    text = path.read_text().splitlines(keepends=True)
    head = path.with_name(path.name + ".head")
    if how == "edited":
        text[2] = text[2].replace('"n":2', '"n":9')
    elif how == "deleted":
        del text[1]
    elif how == "cut-off":
        del text[-1]
    elif how == "appended":
        head.write_text(json.dumps({"seq": 4, "hash": json.loads(text[3])["hash"]}))
    elif how == "no-head":
        head.unlink()
    elif how == "damaged-head":
        head.write_text("{")
    elif how == "torn":
        text[-1] = text[-1][:-5]
    path.write_text("".join(text))


@pytest.mark.parametrize(
    "how", ["intact", "edited", "deleted", "cut-off", "appended", "no-head", "damaged-head", "torn"]
)
def test_reading_the_audit_finds_what_verify_audit_finds(tmp_path, how):
    with AuditLog(tmp_path / "audit.jsonl", fsync=False) as log:
        for n in range(6):
            log.append({"who": "k", "action": "infer", "n": n})
    _tampered(log.path, how)
    offline, read = verify_audit(log.path), read_audit(log.path, 3)
    assert (read["verified"], read["records"], read["problem"], read["line"]) == (
        offline.ok,
        offline.records,
        offline.problem,
        offline.line,
    )
    assert (how == "intact") == read["verified"] and len(read["tail"]) == 3


def test_the_audit_reads_whole_while_the_server_appends(tmp_path):
    with AuditLog(tmp_path / "audit.jsonl", fsync=False) as log:

        def append(worker: int) -> None:
            for n in range(400):
                log.append({"who": f"writer-{worker}", "action": "infer", "n": n, "client": "x" * 200})

        with ThreadPoolExecutor(2) as pool:
            writing = [pool.submit(append, w) for w in range(2)]
            reads = []
            while not all(f.done() for f in writing) and len(reads) < 200:
                reads.append(read_audit(log.path, 5))
            for future in writing:
                future.result()
    assert reads and all(r["verified"] and r["problem"] is None for r in reads), [r["problem"] for r in reads]
    assert [r["records"] for r in reads] == sorted(r["records"] for r in reads)
    assert all(r["tail"][-1]["seq"] == r["records"] for r in reads if r["records"])


# -- the model served and the switch -----------------------------------------------------------------------------------


def test_the_variant_is_switched_while_requests_are_in_flight(stack, http, served):
    if stack.version != served.version:  # the matrix switched it: back to the OpenVINO export first
        assert switch(stack, http, stack.variants["openvino"]).status_code == 200
    old, new, name = served.version, str(stack.variants["onnx"]), served.name
    switched = threading.Event()
    image = {"Content-Type": "image/jpeg", **stack.headers("inferrer")}

    def client_loop() -> list[tuple[int, bool]]:
        seen: list[tuple[int, bool]] = []
        with stack.client() as client:
            while len(seen) < 400 and sum(after for _, after in seen) < 3:
                after = switched.is_set()
                seen.append((client.post("/v1/detect", content=jpeg(), headers=image).status_code, after))
        return seen

    with ThreadPoolExecutor(3) as pool:
        clients = [pool.submit(client_loop) for _ in range(3)]
        time.sleep(0.2)  # the clients are sending
        response = switch(stack, http, new)
        switched.set()
        done = [seen for future in clients for seen in future.result()]
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["name"], body["version"], body["previous"], body["variant_id"]) == (name, new, old, int(new))
    assert "onnxruntime" in body["serving"]
    assert body["notes"] == ["the inputs differ from the previous model's, now images FP32 [1, 3, 128, 128]: see "
                             f"GET /v2/models/{name}"]  # fmt: skip
    assert {status for status, _ in done} == {200} and sum(not after for _, after in done) >= 3  # none failed
    metadata = http.get(f"/v2/models/{name}", headers=stack.headers("reader")).json()
    assert metadata["versions"] == [new] and metadata["inputs"][0]["name"] == "images"
    spec = stack.app.state.service.model.inputs[0]
    inferred = http.post(f"/v2/models/{name}/infer", json=infer_body(spec), headers=stack.headers("inferrer"))
    assert inferred.json()["model_version"] == new
    lines = [json.loads(text) for text in stack.audit_path.read_text().splitlines() if '"new_version"' in text]
    assert (lines[-1]["previous_version"], lines[-1]["new_version"], lines[-1]["variant"]) == (old, new, new)
    assert stack.metrics.variant == new and stack.metrics.variant_id == int(new)
    exposition = http.get("/metrics", headers=stack.headers("operator")).text
    assert f'wb_variant_info{{variant="{new}"}} 1.0' in exposition
    for version in (old, new):  # requests were counted under each variant's label
        assert f'wb_requests_total{{action="infer",status="200",variant="{version}"}}' in exposition
    served_now = http.get("/v1/admin/model", headers=stack.headers("operator")).json()
    assert (served_now["version"], served_now["variant_id"], served_now["switching"]) == (new, int(new), False)


def test_an_in_flight_request_finishes_on_the_old_model(stack, http):
    from workbench.core.models.detector import Detections
    from workbench.core.serve.security.audit import AuditLog as Log
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.model import ServedModel
    from workbench.core.serve.service.server import serving

    held, entered = threading.Event(), threading.Event()
    held.set()  # open for the warm-up call

    def old_detector(image):
        entered.set()
        assert held.wait(20)
        return Detections.from_rows(np.array([[1, 2, 3, 4, 0.9, 7]]))

    old = ServedModel.from_open(old_detector, name="served", version="old", names={7: "old-model"}, imgsz=IMGSZ)
    held.clear()
    entered.clear()
    with Log(stack.audit_path.with_name("gated.jsonl"), fsync=False) as audit:
        app = create_app(old, guard=stack.app.state.service.guard, audit=audit, loader=stack.loader)
        image = {"Content-Type": "image/jpeg", **bearer(stack.keys["inferrer"].key)}
        with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client, ThreadPoolExecutor(1) as pool:
            in_flight = pool.submit(client.post, "/v1/detect", content=jpeg(), headers=image)
            assert entered.wait(10)
            body = {"variant": str(stack.variants["onnx"])}
            switched = client.put("/v1/admin/model", json=body, headers=stack.headers("operator"))
            assert switched.status_code == 200 and switched.json()["previous"] == "old"  # did not wait for it
            held.set()
            answered = in_flight.result(10)
            after = client.post("/v1/detect", content=jpeg(), headers=image)
            metadata = client.get("/v2/models/served", headers=image)
    assert answered.status_code == 200 and answered.json()["names"] == ["old-model"]
    assert after.status_code == 200 and "old-model" not in after.json()["names"]
    assert metadata.json()["versions"] == [str(stack.variants["onnx"])]


def test_another_parallelism_is_named_in_the_answer(stack, http):
    stack.loader.workers = 2
    try:
        response = switch(stack, http, stack.variants["openvino"])
    finally:
        stack.loader.workers = 1
    body = response.json()
    assert response.status_code == 200 and "2 worker(s)" in body["serving"]
    assert body["threads"] == 1 and "keeps the 1 inference thread(s)" in body["notes"][0]


def test_a_loader_error_is_400_with_its_fix_and_an_unknown_variant_404(stack, http):
    before = stack.version
    broken = switch(stack, http, "broken")
    assert (broken.status_code, broken.json()) == (400, {"error": f"{BROKEN[0]}; fix: {BROKEN[1]}"})
    unknown = switch(stack, http, "999")
    assert unknown.status_code == 404 and unknown.json()["error"].startswith("no variant '999' in the workspace")
    assert stack.version == before and stack.loader.calls[-1] == ("999", stack.app.state.service.model.name)
    assert stack.last_audit()["variant"] == "999" and "new_version" not in stack.last_audit()


def test_a_second_switch_while_one_loads_is_409(stack, http):
    stack.loader.hold, stack.loader.entered = threading.Event(), threading.Event()
    try:
        with ThreadPoolExecutor(1) as pool, stack.client() as other:
            first = pool.submit(switch, stack, other, stack.variants["onnx"])
            assert stack.loader.entered.wait(10)
            second = switch(stack, http, stack.variants["openvino"])
            assert second.status_code == 409 and "another variant is being loaded" in second.json()["error"]
            assert http.get("/v1/admin/model", headers=stack.headers("operator")).json()["switching"] is True
            stack.loader.hold.set()
            assert first.result(20).status_code == 200
    finally:
        stack.loader.hold = None
    assert http.get("/v1/admin/model", headers=stack.headers("operator")).json()["switching"] is False


def test_without_a_loader_key_store_or_audit_path_the_admin_endpoints_are_404(served):
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import serving

    class Nothing:
        def append(self, record):
            return None

    root = Principal("root", "root", Role.ADMIN)
    app = create_app(served, guard=lambda headers, action, client: root, audit=Nothing())
    with serving(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        switched = client.put("/v1/admin/model", json={"variant": "3"})
        audit = client.get("/v1/admin/audit")
        keys = client.get("/v1/admin/keys")
        now = client.get("/v1/admin/model").json()
    assert switched.status_code == 404 and switched.json()["error"].startswith("this server cannot load variants: ")
    assert "fix: restart it on the variant" in switched.json()["error"]
    assert audit.status_code == 404 and audit.json()["error"].startswith("this server keeps no audit log")
    assert keys.status_code == 404 and keys.json()["error"].startswith("this server keeps no API keys")
    assert (now["can_switch"], now["version"], now["variant_id"]) == (False, served.version, None)


@pytest.mark.parametrize(
    ("content", "status", "says"),
    [
        (b"{", 400, "the body is not JSON ("),
        (b"", 400, "the body is not JSON ("),
        (b"\xff\xfe", 400, "the body is not JSON ("),
        (b"[" * 20_000, 400, "the body is not JSON ("),
        (b'["3"]', 400, 'the body is an array; send an object like {"variant": "a string"}'),
        (b'{"variant": 3}', 400, "the field 'variant' must be a string, got a whole number"),
        (b'{"variant": null}', 400, "the field 'variant' must be a string, got null"),
        (b'{"variant": "3", "force": true}', 400, "unknown field 'force'; this endpoint takes variant"),
        (b"{}", 400, "the field 'variant' (a string) is missing"),
        (b'{"variant": "  "}', 400, "variant must be a variant's id or name"),
        (b'{"variant": "' + b"9" * 300 + b'"}', 400, "variant must be a variant's id or name"),
        (b'{"variant": "' + b"9" * 70_000 + b'"}', 413, "this server takes at most 65536"),
    ],
    ids=lambda v: str(v)[:24],
)
def test_a_malformed_switch_body_is_refused_with_what_to_send(stack, http, content, status, says):
    before = len(stack.loader.calls)
    response = http.put("/v1/admin/model", content=content, headers=stack.headers("operator"))
    assert response.status_code == status and says in response.json()["error"], response.text
    assert len(stack.loader.calls) == before  # nothing was loaded


def test_other_methods_on_the_admin_paths_are_405(stack, http):
    for method, path in (("POST", "/v1/admin/model"), ("PUT", "/v1/admin/keys"), ("GET", "/v1/admin/keys/abc")):
        response = http.request(method, path, headers=stack.headers("admin"))
        assert response.status_code == 405, (method, path, response.text)


def test_serve_model_passes_its_loader_on_and_wants_keys_with_it(stack, served):
    from workbench.core.serve.service.local_server import serve_model

    same = LoadedVariant(served, 41)
    with serve_model(served, keys=stack.store, loader=lambda variant, name: same) as server:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            switched = client.put("/v1/admin/model", json={"variant": "41"}, headers=stack.headers("operator"))
    assert switched.status_code == 200 and switched.json()["variant_id"] == 41
    with pytest.raises(ConfigError, match="anyone could switch the model"):
        with serve_model(served, loader=lambda variant, name: same):
            pass
