"""The service's admin and operator endpoints (routed by `app.create_app`): API keys listed, added and revoked; the
audit log's chain verified and its last lines; the model served, and a switch to another variant through the
server's loader while requests go on.

A variant switch loads the new model on a thread of its own (never one of the inference threads, never holding an
admission place), then replaces the served model in one assignment: a request reads the model once when it starts,
so those in flight finish on the old model and the ones after run on the new one; the old one is freed when the last
of them is done (both are in memory meanwhile). One switch at a time (409 for another meanwhile). The served name
stays (clients' URLs keep working); the version is the new variant's. The inference threads and the admission
queue stay sized for the first model: a new model with another parallelism is served by as many threads as the
first; the answer's notes say so, and name the tensors that changed (the images endpoint is the same for every
variant, a raw-tensor client may have to follow a new input name).

Refusals are `ProtocolError`s with their status, answered and audited by `app.endpoint` (this module imports
nothing of app.py, which routes to it).

The audit log is read with `audit.verify_audit`, which is safe while the server appends; the chain is checked from
the first line every time: 20 us a line on this machine (1M lines, 20 s; hence its long timeout).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from ...errors import ConfigError, WorkbenchError, WorkspaceError
from ..security.audit import verify_audit
from ..security.keys import KeyInfo, NewKey, check_new_key
from .limits import check_content_length, read_body
from .model import ServedModel
from .protocol import ProtocolError

if TYPE_CHECKING:
    from ..monitoring.drift import DriftMonitor

log = logging.getLogger(__name__)
MAX_JSON_BYTES = 64 * 1024  # an admin request's JSON body (a few fields); the server's body limit if lower
MAX_VARIANT = 200
MAX_TAIL = 1000
LOAD_TIMEOUT_S = 300.0  # opening and compiling a model can outlast a request's timeout
AUDIT_TIMEOUT_S = 300.0
LONG = {"/v1/admin/model": LOAD_TIMEOUT_S, "/v1/admin/audit": AUDIT_TIMEOUT_S}  # path -> its handler's timeout
NO_STORE = {"Cache-Control": "no-store"}  # a new key's secrets are shown once: no cache keeps them
_KEY_ID = re.compile(r"^[0-9a-f]{12}$")
_JSON_TYPES = {str: "a string", int: "a whole number"}  # the types admin requests' fields have


@dataclass(frozen=True)
class Current:
    """What a server serves now, swapped as one by a variant switch: the model, its ledger id (None: unknown),
    since when (seconds since the epoch)."""

    model: ServedModel
    variant_id: int | None
    since: float


@dataclass(frozen=True)
class LoadedVariant:
    """What a loader opened: the model (under the served name it was given), its ledger id, its drift monitor."""

    model: ServedModel
    variant_id: int | None = None
    drift: DriftMonitor | None = None


Loader = Callable[[str, str], LoadedVariant]  # (the variant as the caller wrote it, the served name to keep)


class VariantNotFound(ConfigError):
    """A loader's refusal of a variant that does not exist (answered 404; any other ConfigError is a 400)."""


# -- request bodies -------------------------------------------------------------------------------------------------


def refuse(status: int, message: str) -> ProtocolError:
    """A refusal `app.endpoint` answers with `status` and `message` (and audits as an error)."""
    return ProtocolError(message, status)


def _explain(exc: WorkbenchError) -> str:
    return f"{exc.problem}; fix: {exc.fix}" if exc.fix else exc.problem


def _json_type(value) -> str:
    kinds = ((bool, "true or false"), (int, "a whole number"), (float, "a number"), (str, "a string"))
    kinds += ((list, "an array"), (dict, "an object"), (type(None), "null"))
    return next(name for kind, name in kinds if isinstance(value, kind))


def _fits(value, kind: type) -> bool:
    return isinstance(value, kind) and not (kind is int and isinstance(value, bool))


async def read_json(service, request: Request, timings: dict, fields: dict[str, type], required) -> dict:
    """The request's JSON object, bounded, with only `fields` (name -> type), the `required` ones present.

    Raises:
        ProtocolError: 400 for a body that is not a JSON object, an unknown, missing or mistyped field.
        LimitExceeded: 413 for a body over `MAX_JSON_BYTES` (or the server's body limit, if lower).
    """
    started, limit = time.perf_counter(), min(MAX_JSON_BYTES, service.limits.max_body_bytes)
    check_content_length(request.headers.get("content-length"), limit)
    body = await read_body(request.stream(), limit)
    timings["read_ms"] = (time.perf_counter() - started) * 1000
    example = json.dumps({name: _JSON_TYPES[kind] for name, kind in fields.items()})
    try:
        data = json.loads(body)
    except (ValueError, RecursionError) as exc:  # RecursionError: thousands of nested brackets
        raise refuse(400, f"the body is not JSON ({str(exc)[:100]}); send an object like {example}") from None
    if not isinstance(data, dict):
        raise refuse(400, f"the body is {_json_type(data)}; send an object like {example}")
    unknown = [repr(name[:40]) for name in data if name not in fields]
    if unknown:
        raise refuse(400, f"unknown field {', '.join(unknown[:5])}; this endpoint takes {', '.join(fields)}")
    for name, kind in fields.items():
        if name not in data and name in required:
            raise refuse(400, f"the field {name!r} ({_JSON_TYPES[kind]}) is missing; send an object like {example}")
        if name in data and not _fits(data[name], kind):
            raise refuse(400, f"the field {name!r} must be {_JSON_TYPES[kind]}, got {_json_type(data[name])}")
    return data


def _audit_fields(request: Request, **fields) -> None:
    """Flat fields the request's audit record adds (ids, roles, versions; never a secret)."""
    request.state.audit = getattr(request.state, "audit", {}) | fields


# -- keys -----------------------------------------------------------------------------------------------------------


def _keystore(service):
    store = getattr(service.guard, "keystore", None)
    if store is None:
        raise refuse(404, "this server keeps no API keys (its guard has no key store); fix: serve with a key store")
    return store


def key_json(info: KeyInfo) -> dict:
    """What a key listing shows of a key: never its hash or secret."""
    return {
        "id": info.key_id,
        "name": info.name,
        "role": info.role.value,
        "created": info.created,
        "expires": info.expires,
        "revoked": info.revoked,
        "status": info.status,
    }


def new_key_json(new: NewKey) -> dict:
    return {
        "id": new.key_id,
        "key": new.key,
        "name": new.name,
        "role": new.role.value,
        "expires": new.expires,
        "totp_secret": new.totp_secret,
        "totp_uri": new.totp_uri,
        "note": "the key (and an admin's TOTP secret) is shown only now: the server keeps its hash",
    }


async def keys(service, request: Request, timings: dict) -> Response:
    """GET: every key with its status; POST {"name", "role", "expires_days"}: a new key, 201."""
    store = _keystore(service)
    if request.method == "POST":
        return await _add_key(service, store, request, timings)
    listed = await run_in_threadpool(store.list)
    return JSONResponse({"keys": [key_json(info) for info in listed]})


async def _add_key(service, store, request: Request, timings: dict) -> Response:
    fields = {"name": str, "role": str, "expires_days": int}
    data = await read_json(service, request, timings, fields, required=("name", "role"))
    name, role, days = data["name"], data["role"], data.get("expires_days", 90)
    try:
        check_new_key(name, role, days)  # the caller's mistakes refused before anything is hashed or written
    except ConfigError as exc:
        raise refuse(400, _explain(exc)) from None
    new = await run_in_threadpool(lambda: store.add(name, role, expires_days=days))
    _audit_fields(request, target_key=new.key_id, target_role=new.role.value)
    return JSONResponse(new_key_json(new), status_code=201, headers=NO_STORE)


async def revoke_key(service, request: Request, timings: dict) -> Response:
    """DELETE /v1/admin/keys/{key_id}: revoked from now on (its next request is refused); the key's info."""
    store, key_id = _keystore(service), request.path_params["key_id"]
    info = await run_in_threadpool(_revoke, store, key_id)
    if info is None:
        raise refuse(404, f"no key with id {key_id[:40]!r}; GET /v1/admin/keys lists the ids")
    _audit_fields(request, target_key=info.key_id, target_role=info.role.value)
    return JSONResponse(key_json(info))


def _revoke(store, key_id: str) -> KeyInfo | None:
    if not _KEY_ID.match(key_id) or key_id not in {info.key_id for info in store.list()}:
        return None
    return store.revoke(key_id)


# -- the audit log --------------------------------------------------------------------------------------------------


async def audit_tail(service, request: Request, timings: dict) -> Response:
    """GET /v1/admin/audit?tail=N: whether the chain verifies, how many lines, the first problem, the last N lines."""
    count = _tail(request)
    path = getattr(service.audit, "path", None)
    if path is None:
        raise refuse(404, "this server keeps no audit log; fix: serve with one (`workbench serve` always keeps one)")
    return JSONResponse(await run_in_threadpool(read_audit, Path(path), count))


def _tail(request: Request) -> int:
    params = request.query_params
    unknown = [repr(name[:40]) for name in params if name != "tail"]
    if unknown:
        raise refuse(400, f"unknown query parameter {', '.join(unknown[:5])}; this endpoint takes tail")
    text = params.get("tail", "50")
    if not (text.isascii() and text.isdigit() and len(text) <= 4 and 1 <= int(text) <= MAX_TAIL):
        raise refuse(400, f"tail must be a whole number from 1 to {MAX_TAIL}, got {text[:20]!r}")
    return int(text)


def read_audit(path: Path, tail: int) -> dict:
    """The audit log verified as it stands now (`audit.verify_audit`, safe while appending) and its last entries."""
    try:
        report = verify_audit(path, tail=tail)
    except FileNotFoundError:
        return {"verified": False, "records": 0, "problem": f"the audit log {path.name} is missing", "line": None,
                "tail": []}  # fmt: skip
    found = asdict(report)
    return {"verified": found.pop("ok"), **found, "tail": list(report.tail)}


# -- the model served -----------------------------------------------------------------------------------------------


async def model(service, request: Request, timings: dict) -> Response:
    """GET /v1/admin/model: what is served; PUT {"variant": id or name}: switch to that variant."""
    if request.method == "PUT":
        return await _switch(service, request, timings)
    return JSONResponse(served_json(service, service.current))


def served_json(service, current: Current) -> dict:
    model = current.model
    answer = {
        "name": model.name,
        "version": model.version,
        "variant_id": current.variant_id,
        "serving": model.describe(),
        "since": datetime.fromtimestamp(current.since, UTC).isoformat(timespec="seconds"),
        "threads": service.threads,
        "switching": service.switching.locked(),
        "can_switch": service.loader is not None,
        "notes": [],
    }
    if model.parallelism != service.threads:
        answer["notes"].append(
            f"the model has {model.parallelism} worker(s); the server keeps the {service.threads} inference thread(s) "
            "and the admission queue it started with: restart it on this variant to size them for it"
        )
    return answer


def tensor_changes(before: ServedModel, after: ServedModel) -> list[str]:
    """What a raw-tensor client must change after a switch: the inputs' or outputs' names, types or shapes."""
    notes = []
    for kind in ("inputs", "outputs"):
        old, new = ([(t.name, t.datatype, list(t.shape)) for t in getattr(m, kind)] for m in (before, after))
        if old != new:
            shown = "; ".join(f"{n} {d} {s}" for n, d, s in new)[:300]
            notes.append(f"the {kind} differ from the previous model's, now {shown}: see GET /v2/models/{after.name}")
    return notes


async def _switch(service, request: Request, timings: dict) -> Response:
    if service.loader is None:
        raise refuse(
            404,
            "this server cannot load variants: it was started without a loader (from a bundle, or a model opened "
            "by hand); fix: restart it on the variant to serve (`workbench serve VARIANT`)",
        )
    data = await read_json(service, request, timings, {"variant": str}, required=("variant",))
    variant = data["variant"].strip()
    if not variant or len(variant) > MAX_VARIANT or not variant.isprintable():
        raise refuse(400, f"variant must be a variant's id or name (1 to {MAX_VARIANT} printable characters)")
    _audit_fields(request, variant=variant)
    if not service.switching.acquire(blocking=False):
        raise refuse(409, "another variant is being loaded; try again once it is served (GET /v1/admin/model)")
    try:
        loading = asyncio.get_running_loop().run_in_executor(None, _load_and_swap, service, variant)
    except BaseException:
        service.switching.release()
        raise
    try:  # shielded: a request that times out leaves the switch to finish (and to release the lock) on its own
        before, after = await asyncio.shield(loading)
    except VariantNotFound as exc:
        raise refuse(404, _explain(exc)) from None
    except (ConfigError, WorkspaceError) as exc:
        raise refuse(400, _explain(exc)) from None
    _audit_fields(request, previous_version=before.model.version[:100], new_version=after.model.version[:100])
    answer = served_json(service, after) | {"previous": before.model.version}
    answer["notes"] += tensor_changes(before.model, after.model)
    return JSONResponse(answer)


def _load_and_swap(service, variant: str) -> tuple[Current, Current]:
    """Load `variant` under the served name, then serve it; on a thread of its own, holding `service.switching`."""
    try:
        before = service.current
        loaded = service.loader(variant, before.model.name)
        _check_loaded(loaded, before.model.name)
        after = Current(loaded.model, loaded.variant_id, time.time())
        service.current = after  # the switch: one assignment; requests that started before keep the old model
        _tell_metrics(service.metrics, loaded)
        log.info("switched from %s to %s", before.model.describe(), after.model.describe())
        return before, after
    finally:
        service.switching.release()


def _check_loaded(loaded, name: str) -> None:
    if not isinstance(loaded, LoadedVariant):
        raise ConfigError(
            f"the server's loader returned a {type(loaded).__name__}, not a LoadedVariant",
            "a loader returns admin.LoadedVariant(model, variant_id, drift)",
        )
    if loaded.model.name != name:
        raise ConfigError(
            f"the loader served the variant as {loaded.model.name!r}, not as {name!r}",
            "a loader opens the variant under the served name it is given, so clients' URLs keep working",
        )


def _tell_metrics(metrics, loaded: LoadedVariant) -> None:
    if metrics is None:
        return
    model = loaded.model
    try:  # metrics never undo a switch
        metrics.set_variant(model.version or model.name, drift=loaded.drift, variant_id=loaded.variant_id)
    except Exception:
        log.exception("metrics could not be told of the switch to %s", model.describe())
