"""The inference service as a Starlette app (`create_app`): the Open Inference Protocol v2 endpoints and an image
endpoint, each request passed through the guard, the limits and the audit log.

Every request, in order: the guard names the caller or refuses (its `Denied` status; the liveness and readiness
probes alone are answered without a key, as Kubernetes sends none, and say nothing but up and ready); the per-key
rate limit (429 with Retry-After; health checks are not counted); the route and method (404, 405); for inference, a
place among the admitted requests (503 with Retry-After at once when the queue is full), taken before the body is read
so that bodies held in memory are bounded too; the body, bounded while it is read (413); the request's own checks
(400, 413 for an image declaring too many pixels, 415 for a body that is not a JPEG or PNG); the answer within the
timeout, body, queue and inference together (504). Every request, answered or refused, leaves one audit record
(who, what, the status, the outcome, the latency; never image or tensor data); when the record cannot be written
the request is answered 500 instead of its result, so nothing is served unrecorded. Guard, audit and JSON parsing
run in Starlette's thread pool (a key check hashes, an append fsyncs); inference and the encoding of its answer
run in a pool of `model.parallelism` threads.

Endpoints: GET /v2/health/live, /v2/health/ready, /v2 (server metadata), /v2/models/{name}[/versions/{v}] (model
metadata), .../ready; POST /v2/models/{name}[/versions/{v}]/infer (tensors as JSON); POST /v1/detect (a JPEG or
PNG as the body -> detections); GET /metrics (Prometheus, operators and admins, when started with metrics). The admin
and operator endpoints (their handlers in `admin.py`): GET, POST /v1/admin/keys and DELETE /v1/admin/keys/{id} (list,
add, revoke keys: admins with a TOTP code); GET /v1/admin/audit?tail=N (the chain verified and its last lines:
admins with a TOTP code); GET /v1/admin/model (what is served: operators and admins) and PUT /v1/admin/model (switch
to another variant through the `loader`: operators and admins). A switch swaps the model for the requests that
start after it; the inference threads and the admission queue stay sized for the first model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..security.principal import Action, Denied, Principal
from . import admin
from .admin import Current, Loader
from .limits import Admission, LimitExceeded, Limits, RateLimiter, check_content_length, check_image, read_body
from .model import ServedModel, decode_image
from .protocol import ProtocolError, error_body, infer_response, parse_infer_request, server_metadata

log = logging.getLogger(__name__)
SERVER_NAME = "deploy-workbench"
IMAGE_TYPES = ("image/jpeg", "image/png")
MAX_AUDIT_PATH = 200
ALL_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")  # routed here, refused with 405
Guard = Callable[[Mapping[str, str], Action, str], Principal]


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(SERVER_NAME)
    except PackageNotFoundError:
        return "0"


class Refused(Exception):
    """A request answered with an error status: `outcome` is what the audit records (error, shed)."""

    def __init__(self, status: int, message: str, *, outcome: str = "error", headers: dict | None = None):
        super().__init__(message)
        self.status, self.message, self.outcome, self.headers = status, message, outcome, headers or {}


@dataclass
class _Call:
    """What one request collected on its way, for its audit record and the metrics."""

    action: Action
    principal: Principal | None = None
    outcome: str = "ok"
    refused_key: str | None = None  # the key id of a 403: the key was proven, its role may not (or no TOTP code)


class Service:
    """The state the endpoints share: the model served (`current`), the guard, the audit log, the limits, the
    inference threads and the variant loader. The threads and the admission queue are sized for the first model."""

    def __init__(self, model: ServedModel, guard: Guard, audit, limits: Limits, metrics=None, loader=None):
        self.guard, self.audit, self.limits, self.metrics, self.loader = guard, audit, limits, metrics, loader
        self.current = Current(model, getattr(metrics, "variant_id", None), time.time())
        self.switching = threading.Lock()  # held from a switch's start until its model is served (or refused)
        self.rate = RateLimiter(limits.rate_per_s, limits.burst)
        self.threads = model.parallelism
        self.admission = Admission(model.parallelism, limits.max_queue)
        self.executor = ThreadPoolExecutor(model.parallelism, thread_name_prefix="workbench-infer")
        self.ready = False

    @property
    def model(self) -> ServedModel:
        """The model served now: a request reads it once and keeps it, so a switch never changes it halfway."""
        return self.current.model

    @asynccontextmanager
    async def lifespan(self, app):
        self.ready = True
        try:
            yield
        finally:
            self.ready = False
            self.executor.shutdown(wait=False, cancel_futures=True)

    @asynccontextmanager
    async def place(self):
        """A place among the admitted requests, taken before the body is read (503 at once when none is free), so
        bodies in memory are bounded too. Handed to the work `run` starts, it is given back when that work ends,
        even after a timeout: a running inference cannot be stopped, and it still counts."""
        try:
            self.admission.enter()
        except LimitExceeded as exc:
            raise Refused(exc.status, exc.message, outcome="shed", headers=exc.headers) from None
        holder: dict = {}
        try:
            yield holder
        finally:
            future = holder.get("future")
            if future is None:
                self.admission.leave()
            else:
                future.add_done_callback(self.admission.leave)

    async def run(self, place: dict, fn, *args, timings: dict) -> object:
        """`fn(*args)` on an inference thread, holding `place` (from `place()`) until it has finished."""
        queued = time.perf_counter()

        def timed():
            started = time.perf_counter()
            timings["queue_ms"] = (started - queued) * 1000
            try:
                return fn(*args)
            finally:
                timings["infer_ms"] = (time.perf_counter() - started) * 1000

        try:
            place["future"] = self.executor.submit(timed)
        except RuntimeError:  # shutting down
            raise Refused(503, "the server is shutting down", outcome="shed", headers={"Retry-After": "1"}) from None
        return await asyncio.wrap_future(place["future"])

    def record(self, request: Request, call: _Call, status: int, latency_ms: float) -> dict:
        """The request's audit record; an admin handler adds flat fields of its own (`request.state.audit`: the key
        it added, the versions it switched between), which never replace these."""
        principal = call.principal
        return getattr(request.state, "audit", {}) | {
            "who": principal.key_id if principal else call.refused_key,
            "name": principal.name if principal else None,
            "action": call.action.value,
            "method": request.method[:16],
            "path": request.url.path[:MAX_AUDIT_PATH],
            "status": int(status),
            "outcome": call.outcome,
            "latency_ms": round(latency_ms, 3),
            "client": _client(request),
        }


def _client(request: Request) -> str:
    return request.client.host if request.client else ""


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse(error_body(message), status_code=status, headers=headers)


def endpoint(
    service: Service,
    action: Action | Mapping[str, Action],
    methods: tuple[str, ...],
    handler,
    *,
    anonymous: bool = False,
    timeout_s: float | None = None,
):
    """An endpoint: guard, rate limit, method, then `handler(service, request, timings)`; audited and observed.

    Args:
        action: what the guard checks; a mapping method -> action for a path whose methods differ (any other
            method is checked as the first one's action, then refused with 405).
        anonymous: a request without any key is let through (the liveness and readiness probes: Kubernetes sends
            none); one with a key is still checked.
        timeout_s: the longest the handler may take (None: the limits' timeout).
    """
    timeout_s = service.limits.timeout_s if timeout_s is None else timeout_s

    async def handle(request: Request) -> Response:
        start, call, timings = time.perf_counter(), _Call(_action_of(action, request.method)), {}
        try:
            keyless = anonymous and not {"authorization", "x-api-key"} & {k.lower() for k in request.headers}
            if not keyless:
                call.principal = await run_in_threadpool(service.guard, request.headers, call.action, _client(request))
            timings["guard_ms"] = (time.perf_counter() - start) * 1000
            if call.action is not Action.HEALTH:
                service.rate.take(call.principal.key_id)  # only health is ever keyless
            if methods and request.method not in methods:
                raise Refused(405, f"{request.method} is not allowed on {request.url.path}; use {', '.join(methods)}")
            response = await _within(timeout_s, handler(service, request, timings))
        except Denied as exc:
            call.outcome, response = "denied", _error(exc.status, exc.reason)
            if exc.status == 403:  # the key checked out: the audit names who tried what they may not
                call.refused_key = getattr(exc, "key_id", None)
        except LimitExceeded as exc:
            call.outcome = "shed" if exc.status in (429, 503) else "error"
            response = _error(exc.status, exc.message, exc.headers)
        except (Refused, ProtocolError) as exc:
            call.outcome = getattr(exc, "outcome", "error")
            response = _error(exc.status, exc.message, getattr(exc, "headers", None))
        except Exception:
            log.exception("unexpected error answering %s %s", request.method, request.url.path)
            call.outcome, response = "error", _error(500, "internal error (logged on the server)")
        return await _audited(service, request, call, response, start, timings)

    return handle


def _action_of(action: Action | Mapping[str, Action], method: str) -> Action:
    if isinstance(action, Action):
        return action
    return action.get(method) or next(iter(action.values()))


async def _within(timeout_s: float, answer) -> Response:
    """The handler's answer, or 504 after `timeout_s` (body, queue and inference together)."""
    try:
        return await asyncio.wait_for(answer, timeout_s)
    except TimeoutError:
        raise Refused(504, f"no answer within {timeout_s:g} s; try again later") from None


async def _audited(service: Service, request: Request, call: _Call, response: Response, start, timings) -> Response:
    """Append the request's audit record (a response is only sent once it is recorded) and observe it."""
    latency_ms = (time.perf_counter() - start) * 1000
    try:
        await run_in_threadpool(service.audit.append, service.record(request, call, response.status_code, latency_ms))
    except Exception:
        log.exception("the audit log could not be written; answering 500")
        call.outcome, response = "error", _error(500, "the audit log could not be written; the request was not served")
    if service.metrics is not None:
        timings["total_ms"] = latency_ms
        image, found = getattr(request.state, "payload", (None, None))  # set by detect when drift or sampling is on
        try:
            service.metrics.observe(
                call.action, response.status_code, timings, service.admission.in_flight, image=image, detections=found
            )
        except Exception:  # metrics never take a request down
            log.exception("metrics observe failed")
    return response


# -- the handlers ---------------------------------------------------------------------------------------------------


async def live(service: Service, request: Request, timings: dict) -> Response:
    return JSONResponse({"live": True})


async def ready(service: Service, request: Request, timings: dict) -> Response:
    return JSONResponse({"ready": service.ready}, status_code=200 if service.ready else 503)


async def metadata(service: Service, request: Request, timings: dict) -> Response:
    return JSONResponse(server_metadata(SERVER_NAME, _version()))


def _check_model(service: Service, request: Request) -> ServedModel:
    """The model served now, if the path names it (and its version); the request keeps it to the end."""
    name, version = request.path_params["name"], request.path_params.get("version")
    model = service.model
    if name != model.name:
        raise Refused(404, f"unknown model {name[:100]!r}: this server serves {model.name!r}")
    if version is not None and version != model.version:
        raise Refused(404, f"model {model.name!r} has no version {version[:40]!r}; it has {model.version!r}")
    return model


async def model_metadata(service: Service, request: Request, timings: dict) -> Response:
    return JSONResponse(_check_model(service, request).metadata())


async def model_ready(service: Service, request: Request, timings: dict) -> Response:
    model = _check_model(service, request)
    return JSONResponse({"name": model.name, "ready": service.ready}, status_code=200 if service.ready else 503)


async def _body(service: Service, request: Request, timings: dict) -> bytes:
    started = time.perf_counter()
    limit = service.limits.max_body_bytes
    check_content_length(request.headers.get("content-length"), limit)
    body = await read_body(request.stream(), limit)
    timings["read_ms"] = (time.perf_counter() - started) * 1000
    return body


async def infer(service: Service, request: Request, timings: dict) -> Response:
    model = _check_model(service, request)
    async with service.place() as place:
        body = await _body(service, request, timings)
        parsed = await run_in_threadpool(parse_infer_request, body, model.inputs, model.outputs, request.headers)
        del body
        content = await service.run(place, _answer, model, parsed, timings=timings)
    return Response(content, media_type="application/json")


def _answer(model: ServedModel, parsed) -> bytes:
    """The infer response's JSON for a parsed request (on an inference thread: a large output takes a while)."""
    outputs = model.infer(parsed.inputs)
    if parsed.outputs is not None:
        outputs = {name: outputs[name] for name in parsed.outputs}
    content = infer_response(model.name, model.version, outputs, parsed.id)
    return json.dumps(content, separators=(",", ":")).encode()


async def detect(service: Service, request: Request, timings: dict) -> Response:
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() not in IMAGE_TYPES:
        shown = content_type[:60] or "none"
        raise Refused(415, f"send a JPEG or PNG as the body with Content-Type image/jpeg or image/png (got {shown})")
    model = service.model  # kept to the end: a variant switch meanwhile does not change it
    async with service.place() as place:
        body = await _body(service, request, timings)
        check_image(body, content_type, service.limits.max_pixels)  # the header only: nothing is decoded yet
        if _watches_payloads(service.metrics):
            image, found = await service.run(place, _detect_keeping_image, model, body, timings=timings)
            request.state.payload = (image, found)  # for drift and sampling, never for the audit
        else:
            found = await service.run(place, model.detect_encoded, body, timings=timings)
    return JSONResponse(found)


def _watches_payloads(metrics) -> bool:
    return metrics is not None and (getattr(metrics, "drift", None) or getattr(metrics, "sampler", None)) is not None


def _detect_keeping_image(model: ServedModel, body: bytes) -> tuple:
    image = decode_image(body)
    return image, model.detect(image)


async def prometheus(service: Service, request: Request, timings: dict) -> Response:
    """The Prometheus exposition of the server's metrics (operators and admins)."""
    if service.metrics is None:
        raise Refused(404, "this server was started without metrics")
    body, content_type = service.metrics.exposition()
    return Response(body, media_type=content_type)


async def not_found(service: Service, request: Request, timings: dict) -> Response:
    raise Refused(404, f"no endpoint {request.method} {request.url.path[:100]}; see GET /v2 and POST /v1/detect")


PROBES = ("/v2/health/live", "/v2/health/ready")  # answered without a key: they say only "up" and "ready"


def create_app(
    model: ServedModel,
    *,
    guard: Guard,
    audit,
    limits: Limits = Limits(),
    metrics=None,
    loader: Loader | None = None,
) -> Starlette:
    """The service's ASGI app.

    Args:
        model: what it serves first; its `parallelism` sizes the inference threads and the admission queue for the
            server's life (a variant switched to later is served by as many threads).
        guard: `guard(headers, action, client_host) -> Principal`, raising `Denied(status, reason)`; the key
            endpoints manage its `keystore` (a `Guard`'s; none: they answer 404).
        audit: has `append(record: dict)`; receives one record per request. GET /v1/admin/audit reads its `path`
            (an `AuditLog`'s; none: 404).
        limits: body, pixels, rate, timeout and queue.
        metrics: None, or a `monitor.Metrics`: `observe(action, status, stage_timings, in_flight, image=, detections=)`
            per request (the decoded image and detections only when it has drift or a sampler), and `exposition()`
            for GET /metrics; told of a variant switch (`set_variant`).
        loader: `loader(variant, served_name) -> admin.LoadedVariant` for PUT /v1/admin/model (None: it answers
            404, e.g. a server started from a bundle).
    """
    service = Service(model, guard, audit, limits, metrics, loader)
    get, post = ("GET",), ("POST",)
    operate = {"GET": Action.METRICS, "PUT": Action.LOAD_VARIANT}
    table = [
        ("/v2/health/live", Action.HEALTH, get, live),
        ("/v2/health/ready", Action.HEALTH, get, ready),
        ("/v2", Action.METADATA, get, metadata),
        ("/v2/models/{name}", Action.METADATA, get, model_metadata),
        ("/v2/models/{name}/versions/{version}", Action.METADATA, get, model_metadata),
        ("/v2/models/{name}/ready", Action.HEALTH, get, model_ready),
        ("/v2/models/{name}/versions/{version}/ready", Action.HEALTH, get, model_ready),
        ("/v2/models/{name}/infer", Action.INFER, post, infer),
        ("/v2/models/{name}/versions/{version}/infer", Action.INFER, post, infer),
        ("/v1/detect", Action.INFER, post, detect),
        ("/metrics", Action.METRICS, get, prometheus),
        ("/v1/admin/keys", Action.MANAGE_KEYS, ("GET", "POST"), admin.keys),
        ("/v1/admin/keys/{key_id}", Action.MANAGE_KEYS, ("DELETE",), admin.revoke_key),
        ("/v1/admin/audit", Action.READ_AUDIT, get, admin.audit_tail),
        ("/v1/admin/model", operate, ("GET", "PUT"), admin.model),
        ("/{rest:path}", Action.METADATA, (), not_found),
    ]
    routes = [
        Route(
            path,
            endpoint(service, action, methods, handler, anonymous=path in PROBES, timeout_s=admin.LONG.get(path)),
            methods=ALL_METHODS,
        )
        for path, action, methods, handler in table
    ]
    app = Starlette(routes=routes, lifespan=service.lifespan)
    app.state.service = service
    return app
