"""TLS for `workbench serve`: the generated local CA and certificate, the user's own pair, and a real uvicorn server
that speaks TLS 1.2 and 1.3, refuses TLS 1.1 by its own floor and answers no plain HTTP."""

from __future__ import annotations

import contextlib
import http.client
import socket
import ssl
import stat
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest

pytest.importorskip("cryptography")
pytest.importorskip("uvicorn")
pytest.importorskip("starlette")

from cryptography import x509  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402
from tls_clients import PermissiveSSL, handshake, permissive, tls11_client  # noqa: E402

from workbench.core.errors import ConfigError  # noqa: E402
from workbench.core.serve.security import tls  # noqa: E402


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    return tls.local_certificate(tmp_path_factory.mktemp("tls") / "certs")


def _app():
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route

    async def hello(request):
        return PlainTextResponse("ok")

    return Starlette(routes=[Route("/", hello)])


@contextlib.contextmanager
def _serving(config, timeout: float = 15.0):
    """Run a uvicorn server for `config` on an ephemeral 127.0.0.1 port in a thread; yields the port."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        assert server.started, "the server did not start"
        yield sock.getsockname()[1]
    finally:
        server.should_exit = True
        thread.join(timeout)
        sock.close()
        assert not thread.is_alive(), "the server did not stop"


def _config(certs, **kwargs):
    return tls.uvicorn_config(
        _app(), host="127.0.0.1", port=0, certfile=certs.certfile, keyfile=certs.keyfile, log_level="warning",
        lifespan="off", **kwargs,
    )  # fmt: skip


def _get(port: int, context: ssl.SSLContext) -> tuple[int, str, str]:
    """GET / over TLS: (status, body, the TLS version negotiated)."""
    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context, timeout=10)
    try:
        connection.request("GET", "/")
        response = connection.getresponse()
        return response.status, response.read().decode(), connection.sock.version()
    finally:
        connection.close()


def test_the_local_chain_verifies_and_names_every_host(certs):
    ca = x509.load_pem_x509_certificate(certs.ca_certfile.read_bytes())
    leaf = x509.load_pem_x509_certificate(certs.certfile.read_bytes())
    leaf.verify_directly_issued_by(ca)
    constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert constraints.ca and constraints.path_length == 0 and tls.CA_NAME in ca.subject.rfc4514_string()
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert sorted(map(str, names.get_values_for_type(x509.IPAddress))) == ["127.0.0.1", "::1"]
    assert ExtendedKeyUsageOID.SERVER_AUTH in leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc <= timedelta(days=tls.LEAF_DAYS, minutes=5)
    for key in (certs.keyfile, certs.ca_certfile.with_name("ca-key.pem")):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600, key
    assert stat.S_IMODE(certs.certfile.parent.stat().st_mode) == 0o700
    assert not [p for p in certs.certfile.parent.iterdir() if p.name.startswith(".staging")]


def test_the_certificate_is_reused_while_valid_and_made_again_when_it_is_not(tmp_path):
    folder = tmp_path / "certs"
    first = tls.local_certificate(folder)
    leaf, ca = first.certfile.read_bytes(), first.ca_certfile.read_bytes()
    assert tls.local_certificate(folder).certfile.read_bytes() == leaf  # reused
    later = datetime.now(UTC) + timedelta(days=tls.LEAF_DAYS + 1)
    renewed = tls.local_certificate(folder, now=later)
    assert renewed.certfile.read_bytes() != leaf and renewed.ca_certfile.read_bytes() == ca  # leaf expired, CA not
    wider = tls.local_certificate(folder, ("localhost", "127.0.0.1", "::1", "workbench.internal"), now=later)
    names = x509.load_pem_x509_certificate(wider.certfile.read_bytes()).extensions
    assert "workbench.internal" in names.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.DNSName
    )
    new_ca = tls.local_certificate(folder, now=datetime.now(UTC) + timedelta(days=tls.CA_DAYS + 1))
    assert new_ca.ca_certfile.read_bytes() != ca
    leaf_cert = x509.load_pem_x509_certificate(new_ca.certfile.read_bytes())
    leaf_cert.verify_directly_issued_by(x509.load_pem_x509_certificate(new_ca.ca_certfile.read_bytes()))
    (folder / "server-key.pem").write_bytes((folder / "ca-key.pem").read_bytes())  # a key that is not the leaf's
    repaired = tls.local_certificate(folder)
    tls.check_certificate(repaired.certfile, repaired.keyfile)


def test_tls12_and_tls13_clients_connect_and_verify_against_the_local_ca(certs, tmp_path):
    client12, client13 = tls.client_context(certs.ca_certfile), tls.client_context(certs.ca_certfile)
    client12.maximum_version = ssl.TLSVersion.TLSv1_2
    client13.minimum_version = ssl.TLSVersion.TLSv1_3
    stranger = tls.client_context(tls.local_certificate(tmp_path / "other").ca_certfile)
    with _serving(_config(certs)) as port:
        assert _get(port, client12) == (200, "ok", "TLSv1.2")
        assert _get(port, client13) == (200, "ok", "TLSv1.3")
        assert _get(port, tls.client_context(certs.ca_certfile))[2] == "TLSv1.3"  # 1.3 is preferred
        with pytest.raises(ssl.SSLCertVerificationError):  # another CA's client does not trust this server
            _get(port, stranger)


def test_the_floor_holds_even_where_the_defaults_are_permissive(certs, monkeypatch):
    monkeypatch.setattr(tls, "ssl", PermissiveSSL())
    context = tls.server_context(certs.certfile, certs.keyfile)
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert {c["protocol"] for c in context.get_ciphers()} <= {"TLSv1.2", "TLSv1.3"}
    config = _config(certs)
    config.load()
    assert config.ssl.minimum_version == ssl.TLSVersion.TLSv1_2


def test_a_tls11_client_is_refused_by_the_servers_floor(certs, monkeypatch):
    import uvicorn

    if not ssl.HAS_TLSv1_1:
        pytest.skip(f"{ssl.OPENSSL_VERSION} cannot speak TLS 1.1; the floor is asserted by the test above")
    client = tls11_client()
    weak = permissive(ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER))
    weak.load_cert_chain(str(certs.certfile), str(certs.keyfile))
    weak_config = uvicorn.Config(
        _app(), ssl_certfile=str(certs.certfile), ssl_context_factory=lambda *_: weak, log_level="warning",
        lifespan="off",
    )  # fmt: skip
    with _serving(weak_config) as port:  # a server without the floor: this client does get in
        try:
            assert handshake(port, client) == "TLSv1.1"
        except ssl.SSLError as exc:
            pytest.skip(f"{ssl.OPENSSL_VERSION} refuses TLS 1.1 even at SECLEVEL 0 ({exc}); floor asserted above")
    monkeypatch.setattr(tls, "ssl", PermissiveSSL())  # the server's own settings must be what refuses
    with _serving(_config(certs)) as port:
        with pytest.raises(ssl.SSLError):
            handshake(port, client)
        assert _get(port, tls.client_context(certs.ca_certfile))[0] == 200  # the server still serves TLS 1.2+


def test_plain_http_to_the_tls_port_gets_no_http_response(certs):
    with _serving(_config(certs)) as port:
        with socket.create_connection(("127.0.0.1", port), timeout=10) as plain:
            plain.sendall(b"GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            received = b""
            with contextlib.suppress(TimeoutError, ConnectionResetError):
                while chunk := plain.recv(4096):
                    received += chunk
    assert b"HTTP/" not in received and b"ok" not in received


def test_uvicorn_config_refuses_settings_that_would_replace_its_tls(certs):
    for setting in ({"ssl_ciphers": "DEFAULT@SECLEVEL=0"}, {"ssl_version": ssl.PROTOCOL_TLS}):
        with pytest.raises(ConfigError, match="sets TLS itself"):
            _config(certs, **setting)


def test_the_users_own_pair_is_checked(certs, tmp_path):
    other = tls.local_certificate(tmp_path / "other")
    assert tls.check_certificate(certs.certfile, certs.keyfile).ca_certfile is None
    assert tls.certificate_for(tmp_path / "unused", certs.certfile, certs.keyfile).certfile == certs.certfile
    with pytest.raises(ConfigError, match="does not belong to the certificate") as mismatch:
        tls.check_certificate(certs.certfile, other.keyfile)
    assert mismatch.value.fix
    with pytest.raises(ConfigError, match="does not exist"):
        tls.check_certificate(tmp_path / "missing.pem", certs.keyfile)
    with pytest.raises(ConfigError, match="not now"):
        tls.check_certificate(certs.certfile, certs.keyfile, now=datetime.now(UTC) + timedelta(days=400))
    with pytest.raises(ConfigError, match="is not a PEM"):
        tls.check_certificate(certs.keyfile, certs.keyfile)
    with pytest.raises(ConfigError, match="needs its key"):
        tls.certificate_for(tmp_path / "unused", certfile=certs.certfile)
    assert not (tmp_path / "unused").exists()  # the user's pair never makes a local CA
