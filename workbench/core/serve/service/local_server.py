"""A served model behind the service's protections, for a notebook or a test: TLS with a local CA, the guard over
a key store and the hash-chained audit log, on 127.0.0.1 in a background thread, stopped when the block ends.

`serve_model` wires what `workbench serve` wires (`cli/serve.py`), minus the command line: the caller brings the
`ServedModel` and the `KeyStore` (with its keys already made), and gets the URL, the CA file clients trust and the
guard back. Each protection can be left out, one by one, so that a notebook can measure what each costs against a
bare server; a server without keys lets every caller in, so it is for loopback measurements only, and it says so in
its `protections`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

from ...errors import ConfigError
from ..security.principal import Action, Principal, Role
from .limits import Limits

ANONYMOUS = Principal("anonymous", "no key asked (measurement baseline)", Role.INFERRER)


@dataclass(frozen=True)
class RunningServer:
    """A server started by `serve_model`, while its block lasts.

    Attributes:
        url: its base URL (https:// with TLS), on 127.0.0.1 at a free port.
        ca_file: the local CA's certificate that clients trust (`client_context(ca_file)`); None over plain HTTP.
        guard: what checks each request's key (`guard(headers, action, client)`), the very object the server asks:
            calling it directly counts failures and lockouts as a request would.
        audit: the audit log's path; None when nothing is recorded.
        protections: what is on, in words (tls, api keys, audit), for printing beside a measurement.
    """

    url: str
    ca_file: Path | None
    guard: object
    audit: Path | None
    protections: tuple[str, ...]


def open_guard(headers: Mapping[str, str], action: Action, client: str) -> Principal:
    """A guard that lets everyone in as an inferrer: the no-key baseline a measurement compares against."""
    return ANONYMOUS


class _Unrecorded:
    """An audit log that keeps nothing: the no-audit baseline."""

    def append(self, record: Mapping) -> None:
        return None


@contextmanager
def serve_model(
    model,
    *,
    keys=None,
    audit: Path | str | None = None,
    tls: Path | str | None = None,
    limits: Limits = Limits(),
    metrics=None,
    loader=None,
) -> Iterator[RunningServer]:
    """Serve `model` on 127.0.0.1 in a background thread until the block ends, with the protections asked for.

    Args:
        model: a `ServedModel`.
        keys: a `KeyStore` whose keys every request must present (a `Guard` over it: 401, 403, lockouts); None:
            no key is asked and every caller is an anonymous inferrer (a baseline for measuring, on loopback only).
        audit: the path of the hash-chained audit log every request is appended to (continued if it exists);
            None: nothing is recorded.
        tls: a folder for the local CA and the server's certificate (made once, reused while valid); None: plain
            HTTP.
        limits: body, pixels, per-key rate, timeout and queue, as for `create_app`.
        metrics: None, or a `Metrics` the app reports each request to.
        loader: None, or `loader(variant, served_name) -> LoadedVariant` (`admin`): PUT /v1/admin/model
            switches the served variant through it (e.g. `loader.workspace_loader(workspace,
            drift=False)`); it needs `keys` (only operators and admins may switch).
    Yields:
        the `RunningServer`: URL, CA file, guard, audit path.
    Raises:
        ConfigError: `keys` is not a key store, or a loader without keys.
        RuntimeError: the server did not start.
    """
    from ..security.audit import AuditLog
    from ..security.guard import Guard
    from ..security.keys import KeyStore
    from ..security.tls import local_certificate
    from .app import create_app
    from .server import serving

    if keys is not None and not isinstance(keys, KeyStore):
        raise ConfigError(f"keys must be a KeyStore, got {type(keys).__name__}", "pass KeyStore(path), or None")
    if loader is not None and keys is None:
        raise ConfigError(
            "a server without keys lets every caller in: with a loader, anyone could switch the model it serves",
            "pass keys=KeyStore(path) with an operator's key for the switch, or leave the loader out",
        )
    guard = Guard(keys) if keys is not None else open_guard
    certificate = local_certificate(Path(tls)) if tls is not None else None
    with ExitStack() as stack:
        log = stack.enter_context(AuditLog(Path(audit))) if audit is not None else _Unrecorded()
        app = create_app(model, guard=guard, audit=log, limits=limits, metrics=metrics, loader=loader)
        files = {"certfile": certificate.certfile, "keyfile": certificate.keyfile} if certificate else {}
        url = stack.enter_context(serving(app, **files))
        asked = (("tls", certificate), ("api keys", keys), ("audit", audit))
        on = tuple(name for name, given in asked if given is not None)
        yield RunningServer(
            url=url,
            ca_file=certificate.ca_certfile if certificate else None,
            guard=guard,
            audit=log.path if audit is not None else None,
            protections=on or ("none",),
        )
