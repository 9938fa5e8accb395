"""The inference service (`serve.model`, `protocol`, `limits`, `app`, `server`, `workbench serve`): Triton's own
client against the served demo model (OpenVINO at 128 px) on loopback, every refusal with its status and message,
and the audit record of every request. Guard and audit are small fakes here (their own tests cover the real ones)."""

from __future__ import annotations

import struct
import threading
import time
import zlib

import numpy as np
import pytest
from serving_helpers import export_demo

from workbench.core.errors import ConfigError
from workbench.core.serve.security.principal import Denied, Principal, Role, allowed

IMGSZ = 128
GOOD = {"Authorization": "Bearer good"}
RECORD_FIELDS = {"who", "name", "action", "method", "path", "status", "outcome", "latency_ms", "client"}


class FakeGuard:
    """'good' is an inferrer, 'reader' a reader; anything else is refused 401."""

    KEYS = {
        "good": Principal("k-good", "tester", Role.INFERRER),
        "reader": Principal("k-read", "viewer", Role.READER),
        "operator": Principal("k-op", "ops", Role.OPERATOR),
    }

    def __call__(self, headers, action, client):
        assert client == "127.0.0.1"
        scheme, _, key = (headers.get("authorization") or "").partition(" ")
        principal = self.KEYS.get(key) if scheme == "Bearer" else None
        if principal is None:
            raise Denied(401, "invalid API key")
        if not allowed(principal.role, action):
            raise Denied(403, f"role {principal.role.value} may not {action.value}")
        return principal


class FakeAudit:
    def __init__(self, fail: bool = False):
        self.records, self.fail = [], fail
        self._lock = threading.Lock()

    def append(self, record):
        if self.fail:
            raise OSError("disk full")
        with self._lock:
            self.records.append(dict(record))


class FakeMetrics:
    def __init__(self, sampler=None):
        self.calls, self.payloads, self.drift, self.sampler = [], [], None, sampler

    def observe(self, action, status, stage_timings, in_flight, *, image=None, detections=None):
        self.calls.append((action.value, status, dict(stage_timings), in_flight))
        self.payloads.append((image, detections))

    def exposition(self):
        return b"wb_requests_total 1.0\n", "text/plain; version=0.0.4"


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A workspace with the demo model exported to OpenVINO at 128; (workspace, variant id, artifact)."""
    workspace, variants = export_demo(tmp_path_factory.mktemp("serve"), imgsz=IMGSZ)
    return workspace, variants["openvino"], workspace.artifact_path(variants["openvino"])


@pytest.fixture(scope="module")
def served(exported):
    from workbench.core.serve.service.model import ServedModel

    workspace, ir, _ = exported
    return ServedModel.from_variant(workspace, ir, threads=1)


@pytest.fixture(scope="module")
def pngs(tiny_dataset):
    """The tiny val images and a non-square crop, encoded as PNG (lossless: both sides decode the same pixels)."""
    import cv2

    from workbench.core.data.checks import list_images

    frames = [cv2.imread(str(p)) for p in list_images(tiny_dataset.data_yaml, "val")][:4]
    frames.append(np.ascontiguousarray(frames[0][:40]))
    return [cv2.imencode(".png", f)[1].tobytes() for f in frames]


@pytest.fixture(scope="module")
def audit():
    return FakeAudit()


@pytest.fixture(scope="module")
def url(served, audit):
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.limits import MIB, Limits
    from workbench.core.serve.service.server import serving

    app = create_app(served, guard=FakeGuard(), audit=audit, limits=Limits(max_body_bytes=4 * MIB))
    with serving(app) as base:
        yield base


@pytest.fixture
def http(url):
    import httpx

    with httpx.Client(base_url=url, timeout=20) as client:
        yield client


def _infer_body(spec, data, **changes) -> dict:
    tensor = {"name": spec.name, "shape": list(spec.shape), "datatype": spec.datatype, "data": data, **changes}
    return {"inputs": [tensor]}


def test_triton_client_sees_a_live_server_and_gets_the_runners_output(exported, served, url, pngs):
    import cv2
    import tritonclient.http as triton

    from workbench.core.models.detector import prepare
    from workbench.core.models.runners import open_runner

    client = triton.InferenceServerClient(url=url.removeprefix("http://"), connection_timeout=10, network_timeout=30)
    try:
        assert client.is_server_live(headers=GOOD) and client.is_server_ready(headers=GOOD)
        assert client.is_model_ready(served.name, headers=GOOD)
        assert client.is_server_live() and client.is_server_ready()  # the probes need no key (Kubernetes sends none)
        assert not client.is_model_ready(served.name)  # anything else does
        meta = client.get_model_metadata(served.name, headers=GOOD)
        assert meta["platform"] == "openvino" and meta["versions"] == [str(exported[1])]
        (inp,), (out,) = meta["inputs"], meta["outputs"]
        assert inp["datatype"] == "FP32" and inp["shape"] == [1, 3, IMGSZ, IMGSZ]
        x = prepare(cv2.imdecode(np.frombuffer(pngs[0], np.uint8), cv2.IMREAD_COLOR), IMGSZ).batch
        tensor = triton.InferInput(inp["name"], list(x.shape), "FP32")
        tensor.set_data_from_numpy(x, binary_data=False)
        wanted = triton.InferRequestedOutput(out["name"], binary_data=False)
        result = client.infer(served.name, [tensor], outputs=[wanted], headers=GOOD, request_id="r1")
        got = result.as_numpy(out["name"])
        assert result.get_response()["id"] == "r1" and list(got.shape) == out["shape"]
        expected = open_runner(exported[2])(x)[0]
        np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-2)
        with pytest.raises(triton.InferenceServerException, match="unknown model"):
            client.get_model_metadata("nope", headers=GOOD)
    finally:
        client.close()


def test_the_image_endpoint_answers_what_the_fast_path_and_open_detector_find(exported, served, http, pngs):
    import cv2

    from workbench.core.measure.parity import matched_over_max
    from workbench.core.models.detector import DeploymentSpec, Detections, fast_detector, open_detector

    spec = DeploymentSpec(exported[2], imgsz=IMGSZ, threads=1)
    fast, plain = fast_detector(spec), open_detector(spec)
    answers, expected = [], []
    for data in pngs:
        response = http.post("/v1/detect", content=data, headers={**GOOD, "Content-Type": "image/png"})
        assert response.status_code == 200, response.text
        body = response.json()
        image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
        assert (body["height"], body["width"]) == image.shape[:2]
        assert body["names"] == [served.names[c] for c in body["classes"]]
        boxes = np.asarray(body["boxes"], np.float32).reshape(-1, 4)
        answers.append(Detections(boxes, np.asarray(body["scores"], np.float32), np.asarray(body["classes"])))
        expected.append(fast(image))
        np.testing.assert_allclose(answers[-1].rows(), expected[-1].rows(), atol=1e-3)
    assert sum(map(len, answers)) > 0
    assert matched_over_max(answers, [plain(cv2.imdecode(np.frombuffer(d, np.uint8), 1)) for d in pngs]) == 1.0


@pytest.mark.parametrize(
    ("change", "status", "message"),
    [
        ("not json", 400, "not JSON"),
        ("array", 400, "JSON object"),
        ("name", 400, "unknown input 'nope'"),
        ("missing", 400, "'inputs' must be a non-empty list"),
        ("datatype", 400, "is FP64 but the model takes FP32"),
        ("shape", 400, "has shape [1, 3, 64, 64] but the model takes [1, 3, 128, 128]"),
        ("length", 400, "has 10 values but shape [1, 3, 128, 128] needs 49152"),
        ("strings", 400, "must hold numbers"),
        ("nan", 400, "not JSON"),
        ("output", 400, "unknown output 'nope'"),
        ("binary", 400, "binary tensor data extension is not supported"),
        ("model", 404, "unknown model 'other'"),
        ("method", 405, "GET is not allowed"),
    ],
)
def test_each_protocol_mistake_is_named(served, http, change, status, message):
    spec = served.inputs[0]
    path, body = f"/v2/models/{served.name}/infer", _infer_body(spec, [0.0] * 10)
    bodies = {
        "name": _infer_body(spec, [0.0], name="nope"),
        "missing": {"inputs": []},
        "datatype": _infer_body(spec, [0.0], datatype="FP64"),
        "shape": _infer_body(spec, [0.0], shape=[1, 3, 64, 64]),
        "strings": _infer_body(spec, ["a"] * 49152),
        "output": {**_infer_body(spec, [0.0] * 49152), "outputs": [{"name": "nope"}]},
        "binary": _infer_body(spec, None, parameters={"binary_data_size": 196608}),
    }
    if change == "method":
        response = http.get(path, headers=GOOD)
    else:
        import json

        raw = {"not json": b"{inputs: oops", "array": b"[1, 2]", "nan": b'{"inputs": [NaN]}'}.get(change)
        raw = raw if raw is not None else json.dumps(bodies.get(change, body)).encode()
        target = path.replace(served.name, "other") if change == "model" else path
        response = http.post(target, content=raw, headers={**GOOD, "Content-Type": "application/json"})
    assert response.status_code == status
    assert message in response.json()["error"]


def test_nested_data_and_requested_outputs_are_accepted(served, http):
    spec, out = served.inputs[0], served.outputs[0]
    nested = np.zeros(spec.shape, np.float32).tolist()
    body = {**_infer_body(spec, nested), "outputs": [{"name": out.name}]}
    response = http.post(f"/v2/models/{served.name}/versions/{served.version}/infer", json=body, headers=GOOD)
    assert response.status_code == 200, response.text
    (answer,) = response.json()["outputs"]
    assert answer["name"] == out.name and len(answer["data"]) == int(np.prod(answer["shape"]))


def _png_declaring(width: int, height: int) -> bytes:
    """A small PNG whose IHDR declares width x height (its pixel data is a few bytes: it never decodes)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def test_oversize_bodies_and_gigapixel_headers_are_413_before_any_decoding(http, audit):
    png = {**GOOD, "Content-Type": "image/png"}
    big = b"\x89PNG\r\n\x1a\n" + b"\0" * (5 * 1024 * 1024)
    response = http.post("/v1/detect", content=big, headers=png)
    assert response.status_code == 413 and "at most" in response.json()["error"]

    def chunks():  # no Content-Length: the limit holds while reading
        for _ in range(6):
            yield b"\0" * (1024 * 1024)

    response = http.post("/v1/detect", content=chunks(), headers=png)
    assert response.status_code == 413 and "over" in response.json()["error"]
    start = time.perf_counter()
    response = http.post("/v1/detect", content=_png_declaring(100_000, 100_000), headers=png)
    assert response.status_code == 413 and "100000 x 100000" in response.json()["error"]
    assert time.perf_counter() - start < 2.0 and audit.records[-1]["status"] == 413
    response = http.post("/v1/detect", content=_png_declaring(64, 64), headers=png)  # small but not decodable
    assert response.status_code == 400 and "could not be decoded" in response.json()["error"]
    response = http.post("/v1/detect", content=b"GIF89a", headers={**GOOD, "Content-Type": "image/gif"})
    assert response.status_code == 415
    response = http.post("/v1/detect", content=_png_declaring(8, 8), headers={**GOOD, "Content-Type": "image/jpeg"})
    assert response.status_code == 400 and "is a PNG" in response.json()["error"]


def test_the_guard_decides_and_every_request_is_audited_without_data(served, pngs):
    import httpx

    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import serving

    audit, metrics = FakeAudit(), FakeMetrics()
    app = create_app(served, guard=FakeGuard(), audit=audit, metrics=metrics)
    with serving(app) as base, httpx.Client(base_url=base) as http:
        png = {"Content-Type": "image/png"}
        statuses = [
            http.get("/v2").status_code,
            http.get("/v2", headers={"Authorization": "Bearer wrong"}).status_code,
            http.post("/v1/detect", content=pngs[0], headers={"Authorization": "Bearer reader", **png}).status_code,
            http.get(f"/v2/models/{served.name}", headers={"Authorization": "Bearer reader"}).status_code,
            http.post("/v1/detect", content=pngs[0], headers={**GOOD, **png}).status_code,
            http.get("/no/such/thing", headers=GOOD).status_code,
        ]
        denied = http.get("/v2").json()
    assert statuses == [401, 401, 403, 200, 200, 404] and denied == {"error": "invalid API key"}
    assert len(audit.records) == len(statuses) + 1
    for record, status in zip(audit.records, statuses, strict=False):
        assert set(record) == RECORD_FIELDS and record["status"] == status
        assert all(v is None or isinstance(v, str | int | float) for v in record.values())
        assert all(len(str(v)) < 100 for v in record.values())  # no image or tensor in it
    outcomes = [r["outcome"] for r in audit.records[: len(statuses)]]
    assert outcomes == ["denied", "denied", "denied", "ok", "ok", "error"]
    assert audit.records[0]["who"] is None and audit.records[4]["who"] == "k-good"
    assert audit.records[4]["action"] == "infer" and audit.records[4]["path"] == "/v1/detect"
    assert [status for _, status, _, _ in metrics.calls] == [*statuses, 401]
    action, _, stages, in_flight = metrics.calls[4]
    assert action == "infer" and {"guard_ms", "read_ms", "queue_ms", "infer_ms", "total_ms"} <= set(stages)
    assert in_flight == 0 and stages["total_ms"] >= stages["infer_ms"] > 0


def test_a_request_that_cannot_be_audited_is_not_served(served):
    import httpx

    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import serving

    with serving(create_app(served, guard=FakeGuard(), audit=FakeAudit(fail=True))) as base:
        response = httpx.get(f"{base}/v2", headers=GOOD)
    assert response.status_code == 500 and "audit log" in response.json()["error"]


def test_a_key_over_its_rate_gets_429_with_retry_after(served):
    import httpx

    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.limits import Limits
    from workbench.core.serve.service.server import serving

    audit = FakeAudit()
    app = create_app(served, guard=FakeGuard(), audit=audit, limits=Limits(rate_per_s=0.2, burst=2))
    with serving(app) as base, httpx.Client(base_url=base) as http:
        codes = [http.get("/v2", headers=GOOD).status_code for _ in range(3)]
        limited = http.get("/v2", headers=GOOD)
        live = http.get("/v2/health/live", headers=GOOD)  # health checks are not counted
    assert codes == [200, 200, 429] and limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1 and "rate limit" in limited.json()["error"]
    assert live.status_code == 200 and audit.records[2]["outcome"] == "shed"


class Gate:
    """A detector that waits for `open` (bounded), counting its calls."""

    def __init__(self):
        self.event, self.calls = threading.Event(), 0

    def __call__(self, image):
        from workbench.core.models.detector import Detections

        self.calls += 1
        if self.calls > 1:  # the first call is the warm-up
            self.event.wait(10)
        return Detections(np.zeros((1, 4), np.float32), np.ones(1, np.float32), np.zeros(1, int))


def _gated_app(limits):
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.model import ServedModel

    gate = Gate()
    model = ServedModel.from_open(gate, name="gated", names={0: "thing"}, imgsz=32)
    return gate, create_app(model, guard=FakeGuard(), audit=FakeAudit(), limits=limits)


def test_a_full_queue_sheds_at_once_with_503_and_recovers(pngs):
    import httpx

    from workbench.core.serve.service.limits import Limits
    from workbench.core.serve.service.server import serving

    gate, app = _gated_app(Limits(max_queue=1, timeout_s=15))
    service, png = app.state.service, {**GOOD, "Content-Type": "image/png"}
    with serving(app) as base, httpx.Client(base_url=base, timeout=20) as http:
        codes = []
        waiting = [
            threading.Thread(target=lambda: codes.append(http.post("/v1/detect", content=pngs[0], headers=png)))
            for _ in range(2)
        ]
        for thread in waiting:
            thread.start()
        deadline = time.monotonic() + 10
        while service.admission.in_flight < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        start = time.perf_counter()
        shed = http.post("/v1/detect", content=pngs[0], headers=png)
        assert shed.status_code == 503 and time.perf_counter() - start < 2.0
        assert shed.headers["Retry-After"] == "1" and "busy" in shed.json()["error"]
        gate.event.set()
        for thread in waiting:
            thread.join(15)
        after = http.post("/v1/detect", content=pngs[0], headers=png)
    assert [c.status_code for c in codes] == [200, 200] and after.status_code == 200
    assert after.json()["names"] == ["thing"] and service.admission.in_flight == 0


def test_an_answer_later_than_the_timeout_is_504(pngs):
    import httpx

    from workbench.core.serve.service.limits import Limits
    from workbench.core.serve.service.server import serving

    gate, app = _gated_app(Limits(timeout_s=0.3))
    try:
        with serving(app) as base:
            response = httpx.post(f"{base}/v1/detect", content=pngs[0], headers={**GOOD, "Content-Type": "image/png"})
    finally:
        gate.event.set()
    assert response.status_code == 504 and "0.3 s" in response.json()["error"]


def test_an_open_runner_is_served_one_call_at_a_time(exported, pngs):
    import cv2

    from workbench.core.models.detector import DeploymentSpec, open_detector
    from workbench.core.models.runners import RuntimeOptions, example_input, open_runner
    from workbench.core.serve.service.model import ServedModel

    runner = open_runner(exported[2], RuntimeOptions(threads=1))
    model = ServedModel.from_runner(runner, imgsz=IMGSZ, name="protected", names={0: "circle"})
    assert model.parallelism == 1 and model.platform == "openvino" and model.inputs[0].shape == (1, 3, IMGSZ, IMGSZ)
    x = example_input(runner, IMGSZ)
    (out,) = model.infer({model.inputs[0].name: x}).values()
    np.testing.assert_array_equal(out, runner(x)[0])
    image = cv2.imdecode(np.frombuffer(pngs[1], np.uint8), cv2.IMREAD_COLOR)
    expected = open_detector(DeploymentSpec(exported[2], imgsz=IMGSZ, threads=1))(image)
    assert model.detect_encoded(pngs[1])["classes"] == expected.classes.tolist()


def test_protocol_parsing_without_a_server():
    from workbench.core.serve.service.protocol import ProtocolError, TensorSpec, infer_response, parse_infer_request

    spec, out = TensorSpec("x", "INT32", (-1, 2)), TensorSpec("y", "FP32", (-1,))
    body = b'{"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": [1, 2, 3, 4]}]}'
    parsed = parse_infer_request(body, [spec], [out])
    assert parsed.inputs["x"].dtype == np.int32 and parsed.inputs["x"].tolist() == [[1, 2], [3, 4]]
    mistakes = (([1.5, 2, 3, 4], "fractions"), ([1, 2, 3, 2**40], "outside INT32"), ([[1, 2], [3]], "unevenly"))
    for data, message in mistakes:
        body = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": "INT32", "data": data}]}
        with pytest.raises(ProtocolError, match=message):
            parse_infer_request(__import__("json").dumps(body).encode(), [spec], [out])
    with pytest.raises(ProtocolError, match="binary"):
        parse_infer_request(b"{}", [spec], [out], headers={"Inference-Header-Content-Length": "10"})
    response = infer_response("m", "1", {"y": np.arange(3, dtype=np.float32)}, "id-1")
    assert response["outputs"][0] == {"name": "y", "datatype": "FP32", "shape": [3], "data": [0.0, 1.0, 2.0]}


def test_limits_are_checked_and_image_headers_read_without_decoding():
    import cv2

    from workbench.core.serve.service.limits import LimitExceeded, Limits, RateLimiter, image_size

    for bad in ({"max_body_bytes": 0}, {"rate_per_s": -1}, {"timeout_s": float("nan")}, {"max_queue": -1}):
        with pytest.raises(ConfigError, match=next(iter(bad))):
            Limits(**bad)
    jpeg = cv2.imencode(".jpg", np.zeros((37, 53, 3), np.uint8))[1].tobytes()
    assert image_size(jpeg) == ("jpeg", 53, 37) and image_size(_png_declaring(70_000, 3)) == ("png", 70_000, 3)
    with pytest.raises(LimitExceeded, match="neither"):
        image_size(b"BM not an image")
    now = [0.0]
    rate = RateLimiter(2.0, 2, clock=lambda: now[0])
    for key in ("a", "a", "b"):
        rate.take(key)
    with pytest.raises(LimitExceeded) as refused:
        rate.take("a")
    assert refused.value.status == 429 and refused.value.headers == {"Retry-After": "1"}
    now[0] = 0.5
    rate.take("a")  # one token back after 1 / rate seconds


def test_the_server_listens_on_loopback_unless_told_and_serves_tls(served, tmp_path):
    import httpx

    from workbench.core.serve.security.tls import client_context, local_certificate
    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import ServeConfig, serving

    assert ServeConfig().host == "127.0.0.1"
    with pytest.raises(ConfigError, match="clear text"):
        ServeConfig(host="0.0.0.0")
    with pytest.raises(ConfigError, match="port"):
        ServeConfig(port=70000)
    assert ServeConfig(host="0.0.0.0", plaintext_remote=True).host == "0.0.0.0"
    paths = local_certificate(tmp_path / "tls")
    app = create_app(served, guard=FakeGuard(), audit=FakeAudit())
    with serving(app, certfile=paths.certfile, keyfile=paths.keyfile) as base:
        assert base.startswith("https://")
        response = httpx.get(f"{base}/v2/health/live", headers=GOOD, verify=client_context(paths.ca_certfile))
    assert response.status_code == 200 and response.json() == {"live": True}


def test_the_command_refuses_a_missing_variant_and_an_empty_key_store(exported, tmp_path, capsys):
    from workbench.cli import main

    root = str(exported[0].root)
    assert main(["serve", "999", "--workspace", root]) == 2
    assert "no variant 999" in capsys.readouterr().err
    assert main(["serve", str(exported[1]), "--workspace", root, "--keys", str(tmp_path / "keys.json")]) == 2
    err = capsys.readouterr().err
    assert "no active API key" in err and "workbench keys add NAME --role inferrer" in err
    with pytest.raises(SystemExit):
        main(["serve", str(exported[1]), "--port", "0"])
    assert "1-65535" in capsys.readouterr().err


def test_metrics_are_for_operators_and_payloads_reach_them_only_when_watched(served, pngs):
    """GET /metrics: an operator reads the exposition, an inferrer may not; the decoded image and detections reach
    `observe` only when the metrics watch payloads (drift or a sampler), and never the audit."""
    import httpx

    from workbench.core.serve.service.app import create_app
    from workbench.core.serve.service.server import serving

    png = {"Content-Type": "image/png"}
    for sampler in (None, object()):
        audit, metrics = FakeAudit(), FakeMetrics(sampler)
        app = create_app(served, guard=FakeGuard(), audit=audit, metrics=metrics)
        with serving(app) as base, httpx.Client(base_url=base) as http:
            assert http.get("/metrics", headers={"Authorization": "Bearer operator"}).text.startswith("wb_requests")
            assert http.get("/metrics", headers=GOOD).status_code == 403
            found = http.post("/v1/detect", content=pngs[0], headers={**GOOD, **png}).json()
        image, detections = metrics.payloads[-1]
        if sampler is None:
            assert image is None and detections is None
        else:
            assert image.shape == (found["height"], found["width"], 3) and detections == found
        assert all(set(record) == RECORD_FIELDS for record in audit.records)
