"""What the service takes and how much at once: the `Limits` (body size, decoded pixels, per-key rate, request
timeout, queue), the image header read before any decoding, a per-key token bucket and the bounded admission of
requests to the inference workers.

Each refusal is a `LimitExceeded` with the HTTP status it answers: 413 (a body or an image too large), 429 with
Retry-After (a key over its rate), 503 with Retry-After (the queue is full: shed at once instead of growing),
504 (no answer within the timeout).
"""

from __future__ import annotations

import math
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from ...errors import ConfigError

MIB = 1024 * 1024
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}  # frame headers: the size
_STANDALONE = {0x01, *range(0xD0, 0xD8)}  # markers without a length


class LimitExceeded(Exception):
    """A request over a limit: `status` to answer, `message` for the caller, `retry_after_s` where waiting helps."""

    def __init__(self, status: int, message: str, retry_after_s: float | None = None):
        super().__init__(message)
        self.status, self.message, self.retry_after_s = status, message, retry_after_s

    @property
    def headers(self) -> dict[str, str]:
        if self.retry_after_s is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after_s)))}


@dataclass(frozen=True)
class Limits:
    """The service's limits. The defaults fit a detector at 640 on a small machine.

    Attributes:
        max_body_bytes: the largest request body (an image, or an infer request's JSON: a 640 input as JSON
            floats is about 12 MiB).
        max_pixels: the most pixels an image may declare in its header (checked before it is decoded: a 0.4 MB
            PNG can declare 20000 x 20000, 1.2 GB decoded).
        rate_per_s, burst: each key's token bucket: `burst` requests at once, refilled at `rate_per_s`.
        timeout_s: the longest a request waits for its answer, queue included (504 after).
        max_queue: how many requests may wait for a worker beyond those running (503 beyond).
    """

    max_body_bytes: int = 16 * MIB
    max_pixels: int = 25_000_000
    rate_per_s: float = 50.0
    burst: int = 100
    timeout_s: float = 10.0
    max_queue: int = 32

    def __post_init__(self):
        for name in ("max_body_bytes", "max_pixels", "burst", "max_queue"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "max_queue" else 1):
                low = 0 if name == "max_queue" else 1
                raise ConfigError(f"Limits.{name} must be a whole number >= {low}, got {value!r}", "see Limits")
        for name in ("rate_per_s", "timeout_s"):
            value = getattr(self, name)
            ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value > 0
            if not ok:
                raise ConfigError(f"Limits.{name} must be a number > 0, got {value!r}", "see Limits")


def check_content_length(value: str | None, limit: int) -> None:
    """Refuse a declared body over `limit` before reading it (413), or a malformed Content-Length (400)."""
    if value is None:
        return
    if not value.strip().isdigit():
        raise LimitExceeded(400, f"Content-Length {value[:40]!r} is not a whole number")
    if int(value) > limit:
        raise LimitExceeded(413, f"the body is {int(value)} bytes; this server takes at most {limit}")


async def read_body(stream, limit: int) -> bytes:
    """The body from an ASGI byte stream, stopped with 413 as soon as it passes `limit` (a sender may lie about
    or leave out Content-Length)."""
    chunks, size = [], 0
    async for chunk in stream:
        size += len(chunk)
        if size > limit:
            raise LimitExceeded(413, f"the body is over {limit} bytes, the most this server takes")
        chunks.append(chunk)
    return b"".join(chunks)


def image_size(data: bytes) -> tuple[str, int, int]:
    """The format ('png' or 'jpeg') and the width and height an image declares in its header, without decoding.

    Raises:
        LimitExceeded: 400 when the bytes are neither a PNG nor a JPEG, or the header is cut or malformed.
    """
    if data.startswith(PNG_SIGNATURE):
        if len(data) < 24 or data[12:16] != b"IHDR":
            raise LimitExceeded(400, "the PNG has no IHDR header")
        width, height = struct.unpack(">II", data[16:24])
        return "png", width, height
    if data.startswith(JPEG_SIGNATURE):
        return ("jpeg", *_jpeg_size(data))
    raise LimitExceeded(400, "the body is neither a PNG nor a JPEG image")


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """Walk the JPEG's marker segments to its frame header (SOFn), which holds the height and width."""
    at = 2
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            raise LimitExceeded(400, "the JPEG's headers are malformed")
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        if marker in _STANDALONE:
            at += 2
            continue
        (length,) = struct.unpack(">H", data[at + 2 : at + 4])
        if marker in _SOF:
            if at + 9 > len(data):
                break
            height, width = struct.unpack(">HH", data[at + 5 : at + 9])
            return width, height
        if marker == 0xDA or length < 2:  # scan data before any frame header
            break
        at += 2 + length
    raise LimitExceeded(400, "the JPEG has no frame header with its size")


def check_image(data: bytes, content_type: str, max_pixels: int) -> tuple[int, int]:
    """The image's declared width and height, checked: the format Content-Type names, at most `max_pixels` (413).

    Raises:
        LimitExceeded: 400 for bytes that are not the format declared, 413 for too many pixels.
    """
    kind, width, height = image_size(data)
    declared = content_type.split(";")[0].strip().lower()
    if declared != f"image/{kind}":
        raise LimitExceeded(400, f"Content-Type says {declared} but the body is a {kind.upper()}")
    if width < 1 or height < 1:
        raise LimitExceeded(400, f"the {kind.upper()} declares {width} x {height} pixels")
    if width * height > max_pixels:
        raise LimitExceeded(
            413, f"the image declares {width} x {height} = {width * height} pixels; at most {max_pixels} are decoded"
        )
    return width, height


class RateLimiter:
    """A token bucket per key: `burst` requests at once, refilled at `rate_per_s`; `clock` is injectable."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic):
        self.rate, self.burst, self.clock = float(rate_per_s), float(burst), clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)
        self._lock = threading.Lock()

    def take(self, key: str) -> None:
        """Spend one token of `key`'s bucket.

        Raises:
            LimitExceeded: 429, with the seconds until a token is back as Retry-After.
        """
        now = self.clock()
        with self._lock:
            tokens, at = self._buckets.get(key, (self.burst, now))
            tokens = min(self.burst, tokens + (now - at) * self.rate)
            if tokens < 1:
                self._buckets[key] = (tokens, now)
                wait = (1 - tokens) / self.rate
                raise LimitExceeded(429, f"over the rate limit of {self.rate:g} requests/s for this key", wait)
            self._buckets[key] = (tokens - 1, now)
            if len(self._buckets) > 10_000:  # keys come from the key store, but never grow without bound
                self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        full = [k for k, (t, at) in self._buckets.items() if t + (now - at) * self.rate >= self.burst]
        for key in full:
            del self._buckets[key]


class Admission:
    """The requests let through to `workers` inference workers: at most `max_queue` more wait; beyond, 503 at once.

    A request holds its place until its work has finished, even when its caller stopped waiting (a timeout), so
    work that cannot be stopped still counts and the queue stays bounded.
    """

    def __init__(self, workers: int, max_queue: int, retry_after_s: float = 1.0):
        self.capacity = workers + max_queue
        self.retry_after_s = retry_after_s
        self._in_flight = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def enter(self) -> None:
        """Take a place, or raise LimitExceeded (503, Retry-After) when every place is taken."""
        with self._lock:
            if self._in_flight >= self.capacity:
                raise LimitExceeded(
                    503, "the server is busy: every worker and queue place is taken", self.retry_after_s
                )
            self._in_flight += 1

    def leave(self, *_ignored) -> None:
        """Give a place back (usable as a future's done callback)."""
        with self._lock:
            self._in_flight -= 1
