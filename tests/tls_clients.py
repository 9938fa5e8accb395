"""TLS contexts the serving tests share: a client that speaks only TLS 1.1, contexts with an older system's
permissive defaults (TLS 1.0, SECLEVEL 0), and a bare handshake that answers the version agreed."""

from __future__ import annotations

import socket
import ssl
import warnings


def permissive(context: ssl.SSLContext) -> ssl.SSLContext:
    """A context as an older Python or a lax system openssl.cnf makes it: TLS 1.0 and SECLEVEL 0 allowed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        context.minimum_version = ssl.TLSVersion.TLSv1
    context.set_ciphers("DEFAULT@SECLEVEL=0")
    return context


class PermissiveSSL:
    """The `ssl` module as `tls` sees it, with permissive defaults: the server's own settings must hold the floor."""

    def __getattr__(self, name):
        return getattr(ssl, name)

    @staticmethod
    def SSLContext(protocol):  # named as what it stands in for
        return permissive(ssl.SSLContext(protocol))


def tls11_client() -> ssl.SSLContext:
    """A client that offers TLS 1.1 at most (and checks no certificate): what the server's floor must refuse."""
    client = permissive(ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    client.check_hostname, client.verify_mode = False, ssl.CERT_NONE
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        client.maximum_version = ssl.TLSVersion.TLSv1_1
    return client


def handshake(port: int, context: ssl.SSLContext, timeout_s: float = 10) -> str:
    """The TLS version `context` agrees with the server on 127.0.0.1:`port` (ssl.SSLError when refused)."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as wrapped:
            return wrapped.version()
