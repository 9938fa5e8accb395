"""Running the service on uvicorn: `ServeConfig` (where it listens, TLS, limits, the key store and audit log),
`run_server` (in the foreground, until stopped) and `serving` (in a background thread on loopback, for tests and
the bench).

Secure by default: it listens on 127.0.0.1; any other address must be asked for, and one that other machines can
reach needs TLS (API keys would otherwise cross the network in clear text) unless `plaintext_remote` says so.
"""

from __future__ import annotations

import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from ...errors import ConfigError
from ..security.tls import uvicorn_config as tls_uvicorn_config
from .limits import Limits

LOOPBACK = "127.0.0.1"


def is_loopback(host: str) -> bool:
    """True for an address only this machine reaches (127.0.0.0/8, ::1, localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class ServeConfig:
    """How the service runs.

    Attributes:
        host: the address to listen on (127.0.0.1: this machine only).
        port: 1-65535 (0: any free one).
        certfile, keyfile: the PEM certificate and key for TLS (both or neither; None: plain HTTP).
        limits: body, pixels, rate, timeout, queue.
        keys, audit: the key store's and the audit log's paths (the CLI's defaults: <workspace>/serve/...).
        plaintext_remote: allow a non-loopback address without TLS (keys then cross the network readable).
    """

    host: str = LOOPBACK
    port: int = 8000
    certfile: Path | None = None
    keyfile: Path | None = None
    limits: Limits = field(default_factory=Limits)
    keys: Path | None = None
    audit: Path | None = None
    plaintext_remote: bool = False

    def __post_init__(self):
        if isinstance(self.port, bool) or not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ConfigError(f"port must be a whole number 0-65535, got {self.port!r}", "use e.g. 8000")
        if (self.certfile is None) != (self.keyfile is None):
            raise ConfigError("a TLS certificate needs its key, and a key its certificate", "pass both, or neither")
        for name in ("certfile", "keyfile"):
            path = getattr(self, name)
            if path is not None and not Path(path).is_file():
                raise ConfigError(f"the TLS {name} {path} does not exist", "pass the path of a PEM file")
        if not is_loopback(self.host) and not self.tls and not self.plaintext_remote:
            raise ConfigError(
                f"listening on {self.host} without TLS would send API keys across the network in clear text",
                "serve with TLS (--tls, or --certfile and --keyfile), or listen on 127.0.0.1 behind a TLS proxy",
            )

    @property
    def tls(self) -> bool:
        return self.certfile is not None


def uvicorn_config(app, *, host: str, port: int, certfile=None, keyfile=None, **kwargs):
    """A `uvicorn.Config` for `app`: over TLS (the TLS module's context, TLS 1.2 at least) when a certificate is
    given, else plain HTTP."""
    import uvicorn

    kwargs.setdefault("log_level", "warning")
    kwargs.setdefault("server_header", False)
    kwargs.setdefault("lifespan", "on")
    kwargs.setdefault("loop", "asyncio")  # not uvloop where installed: an unexplained SIGSEGV in a run that used it
    if certfile is None:
        return uvicorn.Config(app, host=host, port=port, **kwargs)
    return tls_uvicorn_config(app, host=host, port=port, certfile=certfile, keyfile=keyfile, **kwargs)


def run_server(config: ServeConfig, model, guard, audit, *, metrics=None, loader=None) -> None:
    """Serve `model` as `config` says until interrupted (Ctrl-C, SIGTERM): uvicorn's graceful shutdown.

    Args:
        model: a `ServedModel`.
        guard, audit, metrics, loader: as `create_app` takes them (`loader`: PUT /v1/admin/model switches the
            variant through it; None: it cannot).
    """
    import uvicorn

    from .app import create_app

    app = create_app(model, guard=guard, audit=audit, limits=config.limits, metrics=metrics, loader=loader)
    settings = uvicorn_config(app, host=config.host, port=config.port, certfile=config.certfile, keyfile=config.keyfile)
    uvicorn.Server(settings).run()


@contextmanager
def serving(
    app, *, certfile=None, keyfile=None, ready_timeout_s: float = 20.0, stop_timeout_s: float = 10.0
) -> Iterator[str]:
    """Serve `app` on 127.0.0.1 at a free port in a background thread; yields the base URL once it answers.

    Args:
        certfile, keyfile: serve over TLS with these (the URL is then https://).
        ready_timeout_s: the longest to wait for the server to start.
        stop_timeout_s: the longest to wait for it to stop when the block ends.
    Raises:
        RuntimeError: the server did not start in time (or failed: its error is chained).
    """
    import uvicorn

    # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY on accepted connections only then; without it a response written
    # in two parts (headers, body) waits for the client's delayed ACK, 40 ms a request on loopback.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((LOOPBACK, 0))
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn_config(app, host=LOOPBACK, port=port, certfile=certfile, keyfile=keyfile))
    failure: list[BaseException] = []

    def run():
        try:
            server.run(sockets=[sock])
        except BaseException as exc:  # noqa: BLE001 - raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=run, name=f"workbench-serve-{port}", daemon=True)
    thread.start()
    try:
        _wait_started(server, thread, ready_timeout_s, failure)
        yield f"{'https' if certfile else 'http'}://{LOOPBACK}:{port}"
    finally:
        server.should_exit = True
        thread.join(stop_timeout_s)
        if thread.is_alive():
            server.force_exit = True
            thread.join(stop_timeout_s)
        sock.close()


def _wait_started(server, thread: threading.Thread, timeout_s: float, failure: list) -> None:
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            cause = failure[0] if failure else None
            raise RuntimeError(f"the server did not start within {timeout_s:g} s") from cause
        time.sleep(0.01)
