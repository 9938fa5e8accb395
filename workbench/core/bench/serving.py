"""What serving costs, measured in one run: a variant served over HTTPS with an API key and the audit log against the
same `ServedModel` called in process, for throughput (JPEGs from concurrent clients) and for latency at concurrency 1
(TLS, authentication and audit against plain HTTP with an open door and an audit that keeps nothing).

Throughput: `clients` threads, each with its own keep-alive `httpx.Client` verifying the server against the local CA,
post the JPEGs to /v1/detect of the real app (`create_app` with a `KeyStore` holding one inferrer key, its `Guard`,
an fsynced `AuditLog` in a temporary folder, TLS from `local_certificate`), run by `serving(...)` on 127.0.0.1. The
in-process side is `clients` threads calling the same model's `detect_encoded` (decode + detect + detections as
JSON-able lists, what the server runs for each request) on the same JPEG bytes. The two sides alternate in blocks
bounded by seconds and by requests, and `throughput_ratio` is served over in-process images/s (medians of the
blocks). The clients run in the bench's own process, on the same cores as the server: what a client costs (its TLS,
its HTTP parsing) is counted against the served side, as it is on any loopback measurement.

Latency at concurrency 1: one request at a time, in alternating rounds (the order rotated each round, so that a
machine whose speed drifts is compared with itself) through five paths: in process, plain HTTP (a guard that lets
everyone in, an audit that keeps nothing), TLS alone, authentication + audit alone (over plain HTTP) and all three.
`added_p50_ms` is the p50 of all three minus the p50 of plain HTTP; the per-protection figures beside it are each
one alone minus plain HTTP.

The per-key rate limit is raised for the measurement (it would otherwise cap the clients at its 50 requests/s); the
limiter still runs on every request. The servers, their clients and what they run on are `serving_stack`'s; the
alternating blocks and rounds are `measure.paired`'s.
"""

from __future__ import annotations

import itertools
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from ..errors import ConfigError, check_imgsz
from ..measure.paired import block_order, compare_calls, timed_block
from .serving_stack import BENCH_LIMITS, PATH_WORDS, PATHS, ServedStack, served_stack

TARGETS = {"throughput_ratio": 0.7}  # served over in-process images/s, at least


@dataclass(frozen=True)
class ServingConfig:
    """How long each part runs; every loop is bounded by a count and by a time. The defaults take about 45 s on
    2 cores (3 sides x 3 repeats x 3 s of throughput, then the latency rounds)."""

    clients: int = 4  # concurrent clients (and in-process threads) for throughput
    seconds: float = 3.0  # each throughput block, per side
    max_requests: int = 5000  # each throughput block, all clients together
    repeats: int = 3  # alternating in-process / served throughput blocks
    rounds: int = 10  # alternating latency rounds at concurrency 1
    block: int = 20  # requests per path per round
    max_latency_s: float = 60.0  # the latency rounds stop after this (at least one round runs)
    warmup: int = 10  # untimed requests per path first
    jpeg_quality: int = 90  # images that are not JPEG files are encoded at this quality, once
    timeout_s: float = 30.0  # one HTTP request
    workers: int | None = None  # the ServedModel's concurrent requests (None: what OpenVINO calls optimal)

    def __post_init__(self):
        for name in ("clients", "max_requests", "repeats", "rounds", "block"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"ServingConfig.{name} must be a whole number >= 1, got {value!r}", "use the default")
        for name in ("seconds", "max_latency_s", "timeout_s"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"ServingConfig.{name} must be > 0, got {getattr(self, name)!r}", "use the default")
        if self.warmup < 0 or not 1 <= self.jpeg_quality <= 100:
            raise ConfigError("warmup must be >= 0 and jpeg_quality in 1..100", "use the defaults")


def serving_section(
    artifact,
    images,
    *,
    imgsz: int,
    threads: int = 2,
    config: ServingConfig = ServingConfig(),
    progress=None,
) -> dict:
    """Served against in-process throughput and the latency TLS, keys and audit add, on one variant, in one run.

    Args:
        artifact: the variant's artifact (an OpenVINO model folder for the bench: the fast path is served).
        images: image files or HxWx3 uint8 BGR arrays; each is sent as JPEG bytes (JPEG files as they are).
        imgsz: the model's input size; threads: its inference threads.
    Returns:
        `throughput_ratio`, `added_p50_ms`, the figures behind them, `targets`, `targets_met` and the context.
    Raises:
        ConfigError: no images, an image that is not one, a missing artifact or a serving package not installed.
        RuntimeError: a request was not answered 200 (its status and body are named).
    """
    from ..progress import emit

    imgsz, artifact = check_imgsz(imgsz), _artifact(artifact)
    jpegs = jpeg_bytes(images, config.jpeg_quality)
    _require_serving()
    served = served_stack(
        artifact, imgsz, threads, workers=config.workers, clients=config.clients, timeout_s=config.timeout_s
    )
    with served as stack:
        emit(progress, "serving", 0, 3, "warm-up")
        calls = stack.calls()
        for name in PATHS:
            for index in range(config.warmup):
                calls[name](jpegs[index % len(jpegs)])
        emit(progress, "serving", 1, 3, f"throughput, {config.clients} clients")
        throughput = _throughput(stack, jpegs, config)
        emit(progress, "serving", 2, 3, "latency at concurrency 1")
        latency = _latency(calls, jpegs, config)
        latency["parts"] = _parts(stack, config)
        context = _context(stack, artifact, jpegs, imgsz, threads, config)
        stack.close_clients()
    context["audit"] = stack.audit  # checked once the servers had stopped
    emit(progress, "serving", 3, 3)
    return _result(throughput, latency, context)


def _result(throughput: dict, latency: dict, context: dict) -> dict:
    result = {
        "throughput_ratio": throughput["throughput_ratio"],
        "added_p50_ms": latency["added_p50_ms"],
        "throughput": throughput,
        "latency": latency,
        "targets": TARGETS,
        "context": context,
    }
    result["targets_met"] = bool(result["throughput_ratio"] >= TARGETS["throughput_ratio"])
    return result


# -- the pieces -----------------------------------------------------------------------------------------------------


def _artifact(artifact) -> Path:
    if artifact is None or not Path(artifact).exists():
        raise ConfigError(
            f"the artifact to serve {artifact} does not exist", "pass an exported model (OpenVINO folder)"
        )
    return Path(artifact)


def jpeg_bytes(images, quality: int = 90) -> list[bytes]:
    """Each image as JPEG bytes: a .jpg/.jpeg file as it is, any other file decoded and encoded once, an array
    encoded once."""
    import cv2

    from ..models.detector import decode

    out = []
    for image in images:
        if not isinstance(image, np.ndarray) and Path(image).suffix.lower() in (".jpg", ".jpeg"):
            out.append(Path(image).read_bytes())
            continue
        frame = image if isinstance(image, np.ndarray) else decode(Path(image).read_bytes(), str(image))
        if frame.ndim != 3 or frame.shape[2] != 3 or frame.dtype != np.uint8:
            raise ConfigError(f"an image is an HxWx3 uint8 array, got {frame.shape} {frame.dtype}", "pass BGR images")
        ok, data = cv2.imencode(".jpg", frame, [cv2.IMWRITE_JPEG_QUALITY, quality])
        if not ok:
            raise ConfigError(f"an image of shape {frame.shape} could not be encoded as JPEG", "pass BGR images")
        out.append(data.tobytes())
    if not out:
        raise ConfigError("the serving section needs images", "pass the val images of the dataset")
    return out


def _require_serving() -> None:
    import importlib.util

    missing = [
        m for m in ("uvicorn", "starlette", "argon2", "cryptography", "httpx") if not importlib.util.find_spec(m)
    ]
    if missing:
        raise ConfigError(
            f"the serving section needs {', '.join(missing)}", "pip install 'deploy-workbench[serve]' httpx"
        )


# -- throughput -----------------------------------------------------------------------------------------------------


def _hammer(calls: list[Callable[[bytes], object]], jpegs: list[bytes], seconds: float, max_requests: int) -> dict:
    """Every call in its own thread, started together, looping over the JPEGs until `seconds` have passed or the
    threads have made `max_requests` together; the first error stops them all and is raised."""
    quota, start_line = max(1, max_requests // len(calls)), threading.Barrier(len(calls) + 1)
    counts, ends, errors = [0] * len(calls), [0.0] * len(calls), []
    stop = threading.Event()
    begin: list[float] = []

    def work(index: int, call) -> None:
        start_line.wait()
        deadline = begin[0] + seconds
        try:
            while counts[index] < quota and time.perf_counter() < deadline and not stop.is_set():
                call(jpegs[(index * 7 + counts[index]) % len(jpegs)])
                counts[index] += 1
        except Exception as exc:  # noqa: BLE001 - raised in the caller's thread below
            errors.append(exc)
            stop.set()
        ends[index] = time.perf_counter()

    workers = [threading.Thread(target=work, args=(i, c), daemon=True) for i, c in enumerate(calls)]
    for worker in workers:
        worker.start()
    begin.append(time.perf_counter())
    start_line.wait()
    for worker in workers:
        worker.join(seconds + 120)
    if errors:
        raise errors[0]
    elapsed = max(ends) - begin[0]
    return {"requests": sum(counts), "elapsed_s": elapsed, "images_per_s": sum(counts) / elapsed}


def _throughput(stack: ServedStack, jpegs: list[bytes], config: ServingConfig) -> dict:
    """In-process, served and served-bare images/s in alternating blocks (the order reversed every other repeat);
    the ratios of the medians, and the served ratio's range per repeat."""
    sides = {
        "in_process": [stack.model.detect_encoded] * config.clients,
        "served": [stack.post("tls_auth_audit") for _ in range(config.clients)],
        "served_plain": [stack.post("plain_http") for _ in range(config.clients)],
    }
    for call in sides["served"] + sides["served_plain"]:  # each client's connection (and TLS session) made first
        call(jpegs[0])
    blocks: dict[str, list[dict]] = {name: [] for name in sides}
    for index in range(config.repeats):
        for name in block_order(list(sides), index):
            blocks[name].append(_hammer(sides[name], jpegs, config.seconds, config.max_requests))
    per_s = {name: [b["images_per_s"] for b in found] for name, found in blocks.items()}
    medians = {name: float(np.median(values)) for name, values in per_s.items()}
    ratios = [s / i for s, i in zip(per_s["served"], per_s["in_process"], strict=True)]
    return {
        "throughput_ratio": medians["served"] / medians["in_process"],
        "served_images_per_s": medians["served"],
        "in_process_images_per_s": medians["in_process"],
        "served_plain_images_per_s": medians["served_plain"],
        "plain_ratio": medians["served_plain"] / medians["in_process"],
        "ratio_per_repeat_min": float(min(ratios)),
        "ratio_per_repeat_max": float(max(ratios)),
        "repeats": config.repeats,
        "clients": config.clients,
        "requests": {name: [b["requests"] for b in found] for name, found in blocks.items()},
        "block_s": config.seconds,
        "max_requests_per_block": config.max_requests,
        "served": f"{config.clients} httpx clients (keep-alive, HTTPS verified against the local CA, API key), "
        "JPEG bodies to POST /v1/detect; key checked, every request audited (fsync)",
        "served_plain": f"the same {config.clients} clients' requests over plain HTTP to a server with an open guard "
        "and an audit that keeps nothing: what the HTTP stack alone costs",
        "in_process": f"{config.clients} threads calling ServedModel.detect_encoded on the same JPEG bytes",
    }


# -- latency --------------------------------------------------------------------------------------------------------


def _latency(calls: dict[str, Callable], jpegs: list[bytes], config: ServingConfig) -> dict:
    """Per-request wall clock of every path, one request at a time, in rounds whose order rotates
    (`measure.paired.compare_calls`: `block` requests per path per round, none discarded); stops after `rounds`
    rounds or `max_latency_s` (one round at least)."""
    cycled = {name: _cycling(calls[name], jpegs) for name in PATHS}
    paired = compare_calls(
        cycled,
        rounds=config.rounds,
        round_s=0.0,
        warm_calls=0,
        discard=0,
        min_calls=config.block,
        order="rotate",
        max_s=config.max_latency_s,
    )
    return _latency_figures(paired.samples_ms, paired.rounds_ms, config)


def _cycling(call: Callable, jpegs: list[bytes]) -> Callable[[], object]:
    """A no-argument call that sends JPEG 0, 1, ... in turn (each round continues where the last one stopped, so
    every path sends the same JPEGs in a round)."""
    data = itertools.cycle(jpegs)
    return lambda: call(next(data))


def _parts(stack: ServedStack, config: ServingConfig) -> dict:
    """The two protections' own calls, timed alone: the guard's check of the (cached) key and one audit append of
    a request's record (fsynced, with its head file), `rounds * block` of each (at most `max_latency_s`)."""
    from ..serve.security.principal import Action

    headers = {"authorization": f"Bearer {stack.key}", "content-type": "image/jpeg"}
    record = {"who": "0" * 12, "name": "bench-client", "action": "infer", "method": "POST", "path": "/v1/detect"}
    record |= {"status": 200, "outcome": "ok", "latency_ms": 7.5, "client": "127.0.0.1"}
    calls = {
        "key_check": lambda: stack.guard(headers, Action.INFER, "127.0.0.1"),
        "audit_append": lambda: stack.audits["probe"].append(record),
    }
    found, deadline = {}, time.perf_counter() + config.max_latency_s
    for name, call in calls.items():
        times = timed_block(call, calls=config.rounds * config.block, until=deadline)
        found[f"{name}_p50_ms"] = float(np.median(times))
        found[f"{name}_p99_ms"] = float(np.percentile(times, 99))
    found["what"] = "called directly, no server: Guard(headers) with the key already verified; AuditLog.append"
    return found


def _latency_figures(times: dict[str, list[float]], rounds_ms: dict[str, list[float]], config: ServingConfig) -> dict:
    p50 = {name: float(np.percentile(found, 50)) for name, found in times.items()}
    added = [full - plain for full, plain in zip(rounds_ms["tls_auth_audit"], rounds_ms["plain_http"], strict=True)]
    return {
        "added_p50_ms": p50["tls_auth_audit"] - p50["plain_http"],
        "added_p50_ms_per_round_median": float(statistics.median(added)),
        "added_p50_ms_per_round_min": float(min(added)),
        "added_p50_ms_per_round_max": float(max(added)),
        "tls_added_p50_ms": p50["tls"] - p50["plain_http"],
        "auth_audit_added_p50_ms": p50["auth_audit"] - p50["plain_http"],
        "http_added_p50_ms": p50["plain_http"] - p50["in_process"],
        "p50_ms": p50,
        "p99_ms": {name: float(np.percentile(found, 99)) for name, found in times.items()},
        "paths": PATH_WORDS,
        "rounds": len(added),
        "requests_per_path_per_round": config.block,
        "concurrency": 1,
    }


# -- context --------------------------------------------------------------------------------------------------------


def _context(
    stack: ServedStack, artifact: Path, jpegs: list[bytes], imgsz: int, threads: int, config: ServingConfig
) -> dict:
    from ..environment import cpu_info
    from ..serve.security.keys import ARGON2_PARAMETERS
    from .serving_stack import tls_negotiated, uvicorn_http, versions

    model = stack.model
    return {
        "variant": artifact.name,
        "artifact": str(artifact),
        "runtime": model.platform,
        "precision": model.precision,
        "imgsz": imgsz,
        "batch": 1,
        "threads": threads,
        "workers": model.parallelism,
        "images": len(jpegs),
        "jpeg_kb_mean": round(sum(map(len, jpegs)) / len(jpegs) / 1024, 2),
        "clients": config.clients,
        "config": asdict(config),
        "cpu": cpu_info(),
        "tls": tls_negotiated(stack.urls["tls_auth_audit"], stack.ca_file),
        "server": "uvicorn on 127.0.0.1, one process, clients in the bench's process on the same cores",
        "http": uvicorn_http(),
        "limits": f"the per-key rate limit raised to {BENCH_LIMITS['rate_per_s']:g}/s for the measurement; the rest "
        "as shipped",
        "keys": f"argon2id {ARGON2_PARAMETERS}, verified once, then the store's cache (SHA-256 + stat per request)",
        "audit_fsync": True,
        "versions": versions(),
    }


# -- markdown -------------------------------------------------------------------------------------------------------


def serving_markdown(summary: dict | None) -> str:
    """The bench's serving section: the throughput ratio against its target, the added latency and its parts."""
    from ..report.tables import markdown_table

    lines = ["## Serving: HTTPS + API key + audit vs in process", ""]
    if not summary:
        return "\n".join(lines + ["Not measured (no OpenVINO INT8 export at the size asked)."])
    if "skipped" in summary:
        return "\n".join(lines + [f"Skipped: {summary['skipped']}."])
    if "error" in summary:
        return "\n".join(lines + [f"Not measured: {summary['error']}"])
    thr, lat, ctx = summary["throughput"], summary["latency"], summary["context"]
    met = "met" if summary["targets_met"] else "NOT met"
    lines += [
        f"{ctx['variant']} ({ctx['runtime']}, {ctx['precision']}) at {ctx['imgsz']}, {ctx['threads']} threads, "
        f"{ctx['workers']} workers, {ctx['images']} JPEGs (mean {ctx['jpeg_kb_mean']} KiB); TLS "
        f"{ctx['tls']['version']} {ctx['tls']['cipher']}; {ctx['http']}.",
        "",
        f"- Throughput, served / in process: {summary['throughput_ratio']:.3f} (target >= "
        f"{TARGETS['throughput_ratio']}: {met}); served {thr['served_images_per_s']:.1f} images/s ({thr['served']}), "
        f"in process {thr['in_process_images_per_s']:.1f} images/s; median of {thr['repeats']} alternating blocks "
        f"(per block {thr['ratio_per_repeat_min']:.3f} to {thr['ratio_per_repeat_max']:.3f}). Plain HTTP with no "
        f"key or audit, same clients: {thr['served_plain_images_per_s']:.1f} images/s ({thr['plain_ratio']:.3f} of "
        "in process).",
        f"- Added p50 latency at concurrency 1, TLS + key + audit over plain HTTP: {summary['added_p50_ms']:.2f} ms "
        f"(per round {lat['added_p50_ms_per_round_min']:.2f} to {lat['added_p50_ms_per_round_max']:.2f}); TLS alone "
        f"{lat['tls_added_p50_ms']:.2f} ms, key + audit alone {lat['auth_audit_added_p50_ms']:.2f} ms; plain HTTP "
        f"over in process {lat['http_added_p50_ms']:.2f} ms. {lat['rounds']} rotating rounds of "
        f"{lat['requests_per_path_per_round']} requests per path. Alone, without a server: a key check "
        f"{lat['parts']['key_check_p50_ms']:.3f} ms, an audit append (fsync) {lat['parts']['audit_append_p50_ms']:.3f} "
        "ms (p50).",
        f"- {ctx['limits']}; keys: {ctx['keys']}; every request audited ({_audited(ctx['audit'])}).",
        "",
    ]
    rows = [
        {"path": name, "p50_ms": lat["p50_ms"][name], "p99_ms": lat["p99_ms"][name], "what": lat["paths"][name]}
        for name in PATHS
    ]
    return "\n".join(lines) + "\n" + markdown_table(rows, ["path", "p50_ms", "p99_ms", "what"])


def _audited(audit: dict) -> str:
    return ", ".join(
        f"{name}: {a['lines']} lines, chain {'verified' if a['verified'] else 'BROKEN'}"
        for name, a in audit.items()
        if name != "probe"
    )
