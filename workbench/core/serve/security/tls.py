"""TLS for `workbench serve`: a local CA and a localhost certificate made with `cryptography` where the user has
none, checks of the user's own certificate and key, and SSL contexts with a TLS 1.2 floor (1.3 preferred) for
uvicorn and for clients.

Python 3.10+ already gives `PROTOCOL_TLS_SERVER` contexts a TLS 1.2 floor; the contexts here set it explicitly, so
it holds whatever the interpreter's or OpenSSL's defaults become, and `uvicorn_config` refuses the uvicorn settings
(`ssl_version`, `ssl_ciphers`, ...) that would rebuild a context around it.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import ssl
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ...errors import ConfigError
from ...store.atomic import tag
from ...store.portable import set_mode

DEFAULT_HOSTS = ("localhost", "127.0.0.1", "::1")
CA_DAYS = 365
LEAF_DAYS = 30
RENEW_BEFORE = timedelta(days=2)  # a certificate this close to expiry is made again
CA_NAME = "Deploy Workbench local CA"
_CA_CERT, _CA_KEY, _CERT, _KEY = "ca.pem", "ca-key.pem", "server.pem", "server-key.pem"
# TLS 1.2 suites with forward secrecy and AEAD only (TLS 1.3 suites are OpenSSL's own, all of them strong).
_TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!eNULL:@SECLEVEL=2"
_UVICORN_TLS_SETTINGS = {  # uvicorn settings that would rebuild, weaken or bypass the context made here
    "ssl_version", "ssl_ciphers", "ssl_context_factory", "ssl_certfile", "ssl_keyfile", "ssl_keyfile_password",
    "ssl_cert_reqs", "ssl_ca_certs",
}  # fmt: skip


@dataclass(frozen=True)
class CertificatePaths:
    """Where a server's certificate and key lie; `ca_certfile` is the CA clients trust (None: the user's own)."""

    ca_certfile: Path | None
    certfile: Path
    keyfile: Path


def local_certificate(folder: Path | str, hosts=DEFAULT_HOSTS, *, now: datetime | None = None) -> CertificatePaths:
    """A local CA and a certificate for `hosts` signed by it, made once in `folder` and reused while valid.

    The CA (ECDSA P-256, CA:TRUE, pathlen 0) lives `CA_DAYS`; the server certificate (SANs for every host,
    serverAuth) lives `LEAF_DAYS` and is made again when it expires, no longer covers `hosts` or no longer chains
    to the CA. Private keys are written atomically, readable by their owner only (0600), in a 0700 folder.

    Args:
        folder: where the files live (ca.pem, ca-key.pem, server.pem, server-key.pem).
        hosts: DNS names and IP addresses the certificate must name.
        now: the time to judge validity by (tests move it forward); default the current time.
    Returns:
        the paths; clients trust `ca_certfile` (see `client_context`).
    """
    folder, now = Path(folder), now or datetime.now(UTC)
    hosts = tuple(dict.fromkeys(str(h) for h in hosts))
    if not hosts:
        raise ConfigError("a certificate needs at least one host", "pass e.g. hosts=('localhost',)")
    folder.mkdir(parents=True, exist_ok=True)
    folder.chmod(0o700)
    ca = _load_valid_ca(folder, now)
    if ca is None:
        ca = _make_ca(folder, now)
        (folder / _CERT).unlink(missing_ok=True)  # a leaf of the old CA no longer chains
    if not _leaf_valid(folder, ca[0], hosts, now):
        _make_leaf(folder, ca, hosts, now)
    return CertificatePaths(folder / _CA_CERT, folder / _CERT, folder / _KEY)


def check_certificate(certfile: Path | str, keyfile: Path | str, *, now: datetime | None = None) -> CertificatePaths:
    """Check the user's own certificate and key: both exist, the key is the certificate's, it is valid now.

    Raises:
        ConfigError: naming the file and what is wrong with it.
    """
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    certfile, keyfile, now = Path(certfile), Path(keyfile), now or datetime.now(UTC)
    for what, path in (("certificate", certfile), ("key", keyfile)):
        if not path.is_file():
            raise ConfigError(f"the TLS {what} file {path} does not exist", _OWN_FIX)
    cert = _read_certificate(certfile)
    try:
        key = load_pem_private_key(keyfile.read_bytes(), password=None)
    except TypeError:
        raise ConfigError(f"the TLS key {keyfile} is encrypted", "pass an unencrypted PEM key (kept 0600)") from None
    except ValueError as exc:
        raise ConfigError(f"{keyfile} is not a PEM private key ({exc})", _OWN_FIX) from None
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()):
        raise ConfigError(
            f"the key {keyfile.name} does not belong to the certificate {certfile.name}",
            "pass the key the certificate was issued for (compare `openssl x509 -pubkey` and `openssl pkey -pubout`)",
        )
    if not cert.not_valid_before_utc <= now < cert.not_valid_after_utc:
        raise ConfigError(
            f"the certificate {certfile.name} is valid from {cert.not_valid_before_utc:%Y-%m-%d} to "
            f"{cert.not_valid_after_utc:%Y-%m-%d}, not now",
            "renew it, or leave --certfile/--keyfile out for a local certificate",
        )
    try:
        server_context(certfile, keyfile)
    except ssl.SSLError as exc:
        raise ConfigError(f"OpenSSL refuses {certfile.name} with {keyfile.name}: {exc}", _OWN_FIX) from None
    return CertificatePaths(None, certfile, keyfile)


_OWN_FIX = "pass a PEM certificate and its PEM key, or leave both out to use a generated local certificate"


def certificate_for(folder: Path | str, certfile=None, keyfile=None, hosts=DEFAULT_HOSTS) -> CertificatePaths:
    """The user's own pair when given (checked), else the local certificate in `folder`: what `serve --tls` uses."""
    if (certfile is None) != (keyfile is None):
        raise ConfigError("a TLS certificate needs its key, and a key its certificate", "pass both, or neither")
    if certfile is not None:
        return check_certificate(certfile, keyfile)
    return local_certificate(folder, hosts)


def server_context(certfile: Path | str, keyfile: Path | str) -> ssl.SSLContext:
    """A server SSL context: TLS 1.2 at least, 1.3 offered, AEAD suites with forward secrecy, no compression,
    no renegotiation, no client certificate asked for."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.maximum_version = ssl.TLSVersion.MAXIMUM_SUPPORTED
    context.set_ciphers(_TLS12_CIPHERS)
    context.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    context.load_cert_chain(str(certfile), str(keyfile))
    return context


def client_context(ca_certfile: Path | str | None) -> ssl.SSLContext:
    """A client SSL context that trusts `ca_certfile` only (None: the system's CAs), checks the host name, TLS 1.2+."""
    if ca_certfile:  # the local CA only: a certificate from any other CA is not this server's
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.load_verify_locations(cafile=str(ca_certfile))
    else:
        context = ssl.create_default_context()
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.check_hostname, context.verify_mode = True, ssl.CERT_REQUIRED
    return context


def uvicorn_config(app, *, host: str, port: int, certfile: Path | str, keyfile: Path | str, **kwargs):
    """A `uvicorn.Config` serving `app` over TLS only, with the context of `server_context`.

    Args:
        app: the ASGI app.
        host, port: where to listen (port 0: any free one).
        certfile, keyfile: PEM files (from `certificate_for`).
        **kwargs: other uvicorn settings; the ones that would replace the TLS context are refused.
    Raises:
        ConfigError: a TLS setting in `kwargs`.
    """
    import uvicorn

    given = sorted(set(kwargs) & _UVICORN_TLS_SETTINGS)
    if given:
        raise ConfigError(f"uvicorn_config sets TLS itself; {', '.join(given)} would weaken or replace it", "drop them")

    class TLSConfig(uvicorn.Config):
        def load(self):
            super().load()
            if self.ssl is None or self.ssl.minimum_version < ssl.TLSVersion.TLSv1_2:  # never serve below the floor
                raise ConfigError("the server's TLS context lost its TLS 1.2 floor", "build it with uvicorn_config")

    def factory(_config, _default):
        return server_context(certfile, keyfile)

    tls = {"ssl_certfile": str(certfile), "ssl_keyfile": str(keyfile), "ssl_context_factory": factory}
    return TLSConfig(app, host=host, port=port, **tls, **kwargs)


def write_private_file(path: Path, data: bytes, mode: int = 0o600) -> Path:
    """Write `data` to `path` atomically (a staging file renamed over it), created with `mode` from the start."""
    path = Path(path)
    staging = path.with_name(f".staging-{tag()}-{path.name}")
    fd = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(fd, "wb") as f:
            set_mode(f.fileno(), staging, mode)  # the umask may only have narrowed it; make it exact
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path


def _read_certificate(path: Path):
    from cryptography import x509

    try:
        return x509.load_pem_x509_certificates(path.read_bytes())[0]  # the leaf comes first in a chain file
    except ValueError as exc:
        raise ConfigError(f"{path} is not a PEM certificate ({exc})", _OWN_FIX) from None


def _public_bytes(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)


def _fresh(cert, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now and now + RENEW_BEFORE < cert.not_valid_after_utc


def _load_valid_ca(folder: Path, now: datetime):
    """The CA's (certificate, key) when both files load, match and the certificate is fresh; else None."""
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        cert = _read_certificate(folder / _CA_CERT)
        key = load_pem_private_key((folder / _CA_KEY).read_bytes(), password=None)
    except (OSError, ValueError, TypeError, ConfigError):
        return None
    if _public_bytes(key.public_key()) != _public_bytes(cert.public_key()) or not _fresh(cert, now):
        return None
    return cert, key


def _leaf_valid(folder: Path, ca_cert, hosts: tuple[str, ...], now: datetime) -> bool:
    """Whether the server certificate is fresh, names every host, is signed by the CA and matches its key."""
    from cryptography import x509
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    try:
        cert = _read_certificate(folder / _CERT)
        key = load_pem_private_key((folder / _KEY).read_bytes(), password=None)
        cert.verify_directly_issued_by(ca_cert)
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, TypeError, ConfigError, InvalidSignature, x509.ExtensionNotFound):
        return False
    named = {*names.get_values_for_type(x509.DNSName), *map(str, names.get_values_for_type(x509.IPAddress))}
    wanted = {str(ipaddress.ip_address(h)) if _is_ip(h) else h for h in hosts}
    same_key = _public_bytes(key.public_key()) == _public_bytes(cert.public_key())
    return same_key and wanted <= named and _fresh(cert, now)


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _make_ca(folder: Path, now: datetime):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, f"{CA_NAME} ({socket.gethostname()[:40]})"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Deploy Workbench, local use only"),
        ]
    )
    usage = x509.KeyUsage(False, False, False, False, False, True, True, False, False)  # keyCertSign, cRLSign
    cert = (
        _builder(name, name, key.public_key(), now, CA_DAYS)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_pair(folder / _CA_CERT, cert, folder / _CA_KEY, key)
    return cert, key


def _make_leaf(folder: Path, ca, hosts: tuple[str, ...], now: datetime) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    ca_cert, ca_key = ca
    key = ec.generate_private_key(ec.SECP256R1())
    names = [x509.IPAddress(ipaddress.ip_address(h)) if _is_ip(h) else x509.DNSName(h) for h in hosts]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])])
    usage = x509.KeyUsage(True, False, False, False, False, False, False, False, False)  # digitalSignature
    ski = ca_cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value
    cert = (
        _builder(subject, ca_cert.subject, key.public_key(), now, LEAF_DAYS)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_subject_key_identifier(ski), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    _write_pair(folder / _CERT, cert, folder / _KEY, key)


def _builder(subject, issuer, public_key, now: datetime, days: int):
    from cryptography import x509

    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))  # a client's clock a little behind still accepts it
        .not_valid_after(now + timedelta(days=days))
    )


def _write_pair(cert_path: Path, cert, key_path: Path, key) -> None:
    from cryptography.hazmat.primitives import serialization

    pem_key = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    write_private_file(key_path, pem_key, 0o600)  # the key first: a certificate never lies beside a stale key
    write_private_file(cert_path, cert.public_bytes(serialization.Encoding.PEM), 0o644)
