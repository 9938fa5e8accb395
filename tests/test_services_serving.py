"""`serve_model`: the served demo model (OpenVINO at 128 px, decrypted from a protected bundle as chapter 09 does)
behind TLS, the guard and the audit log on loopback, each protection left out on request, and everything stopped
when the block ends."""

from __future__ import annotations

import socket
import time

import pytest

import workbench as wb

IMGSZ = 128


def _cheap_hasher():
    from argon2 import PasswordHasher

    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)  # tests only: the store's own is 20-30 ms


@pytest.fixture(scope="module")
def protected(tmp_path_factory):
    """The demo model's OpenVINO export, protected and opened from memory: (ServedModel, a JPEG, the folder)."""
    import cv2
    import numpy as np

    root = tmp_path_factory.mktemp("serving")
    workspace = wb.Workspace(root / "ws")
    source = workspace.add_artifact(wb.demo_weights(), "demo.pt", step="source", format="pytorch")
    ir = wb.export(workspace, source, wb.ExportConfig(format="openvino", imgsz=IMGSZ))
    key = wb.generate_key()
    signing = wb.generate_signing_key(root / "signing")
    bundle = wb.protect(workspace.artifact_path(ir), root / "bundle", key, signing.private_key)
    runner = wb.open_protected(bundle, key, signing.public_key)
    model = wb.ServedModel.from_runner(runner, imgsz=IMGSZ, name="demo", names={0: "a", 1: "b", 2: "c", 3: "d"})
    image = np.full((IMGSZ, IMGSZ, 3), 114, np.uint8)
    cv2.circle(image, (64, 64), 30, (0, 0, 255), -1)
    return model, cv2.imencode(".jpg", image)[1].tobytes(), root


def test_the_protected_server_checks_keys_over_tls_and_audits_every_request(protected, tmp_path):
    import httpx

    model, jpeg, _ = protected
    store = wb.KeyStore(tmp_path / "keys.json", hasher=_cheap_hasher())
    app_key = store.add("app", wb.Role.INFERRER, expires_days=1)
    admin = store.add("admin", wb.Role.ADMIN, expires_days=1)
    audit = tmp_path / "audit.jsonl"
    with wb.serve_model(model, keys=store, audit=audit, tls=tmp_path / "tls") as server:
        assert server.url.startswith("https://127.0.0.1:") and server.protections == ("tls", "api keys", "audit")
        with httpx.Client(base_url=server.url, verify=wb.client_context(server.ca_file), timeout=20) as client:
            ok = client.post(
                "/v1/detect",
                headers={"Authorization": f"Bearer {app_key.key}", "Content-Type": "image/jpeg"},
                content=jpeg,
            )
            assert ok.status_code == 200 and {"boxes", "scores", "classes", "names"} <= set(ok.json())
            wrong = client.get("/v2", headers={"Authorization": f"Bearer {app_key.key[:-4]}AAAA"})
            assert wrong.status_code == 401
            assert client.get("/metrics", headers={"Authorization": f"Bearer {app_key.key}"}).status_code == 403
        with pytest.raises(httpx.HTTPError):  # a client that does not trust the local CA refuses the server
            httpx.get(server.url + "/v2/health/live", timeout=5)
        headers = {"Authorization": f"Bearer {admin.key}"}
        with pytest.raises(wb.Denied) as missing:  # the guard the server asks: an admin action needs a TOTP code
            server.guard(headers, wb.Action.MANAGE_KEYS, "127.0.0.1")
        assert missing.value.status == 403
        import pyotp

        code = pyotp.TOTP(admin.totp_secret).now()
        assert server.guard({**headers, "X-TOTP": code}, wb.Action.MANAGE_KEYS, "127.0.0.1").name == "admin"
        with pytest.raises(wb.Denied, match="already used"):
            server.guard({**headers, "X-TOTP": code}, wb.Action.MANAGE_KEYS, "127.0.0.1")
        url = server.url
    report = wb.verify_audit(audit)
    assert report.ok and report.records == 3  # one line per request; guard calls alone write none
    with pytest.raises(httpx.HTTPError):  # stopped with the block
        httpx.get(url + "/v2/health/live", verify=False, timeout=2)


def test_each_protection_can_be_left_out_for_a_baseline(protected, tmp_path):
    import httpx

    model, jpeg, _ = protected
    with wb.serve_model(model) as bare:
        assert bare.url.startswith("http://127.0.0.1:") and bare.protections == ("none",)
        assert bare.ca_file is None and bare.audit is None
        answer = httpx.post(f"{bare.url}/v1/detect", headers={"Content-Type": "image/jpeg"}, content=jpeg, timeout=20)
        assert answer.status_code == 200  # no key asked: the measurement baseline, on loopback only
    store = wb.KeyStore(tmp_path / "keys.json", hasher=_cheap_hasher())
    with wb.serve_model(model, keys=store) as keyed:
        assert keyed.protections == ("api keys",) and httpx.get(f"{keyed.url}/v2", timeout=20).status_code == 401
    with pytest.raises(wb.ConfigError, match="KeyStore"):
        with wb.serve_model(model, keys="keys.json"):
            pass


def test_responses_are_not_held_back_by_nagle_and_delayed_acks(protected):
    """The listening socket is made with IPPROTO_TCP, so asyncio sets TCP_NODELAY on each connection: a response
    written in two parts is not held until the client's delayed ACK (about 40 ms on Linux, every request)."""
    model, _, _ = protected
    with wb.serve_model(model) as bare:
        host, port = bare.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=10) as conn:
            spent = []
            for _ in range(5):
                start = time.perf_counter()
                conn.sendall(b"GET /v2/health/live HTTP/1.1\r\nHost: x\r\n\r\n")
                data = b""
                while b'{"live":true}' not in data:
                    data += conn.recv(65536)
                spent.append(time.perf_counter() - start)
    assert sorted(spent)[2] < 0.035  # a structural check, not a benchmark: 40 ms is the delayed ACK itself
