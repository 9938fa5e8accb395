"""Reading a running server's /metrics back: the live panel's snapshot from the scraped text (`Scraper`), and the
fetch that reads it with an operator's key over TLS, each failure named with its cause and fix."""

from __future__ import annotations

import http.client
import math
import ssl
import time
import urllib.error
from collections.abc import Callable, Mapping
from pathlib import Path

from ...errors import ConfigError, WorkbenchError


class Scraper:
    """A `snapshot()` from a server's /metrics text: the rate and the p50/p99 of total latency come from the
    differences between this scrape and the previous one (Prometheus' `histogram_quantile` over its buckets).

    Args:
        fetch: returns the exposition text (`http_fetcher(url, key, ca_file)`, or a test's function).
    """

    def __init__(self, fetch: Callable[[], str], *, clock: Callable[[], float] = time.monotonic):
        self.fetch, self._clock = fetch, clock
        self._previous: tuple[float, float, dict[float, float]] | None = None

    def __call__(self) -> dict:
        now, parsed = self._clock(), parse_exposition(self.fetch())
        before_t, before_n, before_b = self._previous or (None, 0.0, {})
        self._previous = (now, parsed["requests"], parsed["buckets"])
        window = {le: n - before_b.get(le, 0.0) for le, n in parsed["buckets"].items()}
        rate = (parsed["requests"] - before_n) / (now - before_t) if before_t is not None and now > before_t else None
        return {
            "variant": parsed["variant"],
            "time": now,
            "requests": int(parsed["requests"]),
            "requests_per_s": rate,
            "p50_ms": _ms(histogram_quantile(0.5, window)),
            "p99_ms": _ms(histogram_quantile(0.99, window)),
            "in_flight": parsed["in_flight"],
            "by_status": parsed["by_status"],
            "drift": parsed["drift"],
        }


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else seconds * 1000


def parse_exposition(text: str) -> dict:
    """The series `Metrics` exposes, read back from their text: totals, total-latency buckets, drift gauges."""
    from prometheus_client.parser import text_string_to_metric_families

    out = {"variant": "", "requests": 0.0, "by_status": {}, "buckets": {}, "in_flight": 0, "drift": None}
    drift: dict[str, dict] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            _read_sample(sample, out, drift)
    if drift:
        drifted = [name for name, f in drift.items() if f.get("drifted")]
        out["drift"] = {"window": None, "drifted": drifted, "looks_like": None, "features": drift}
    return out


def _read_sample(sample, out: dict, drift: dict) -> None:
    name, labels, value = sample.name, sample.labels, sample.value
    if name == "wb_requests_total":
        out["requests"] += value
        out["by_status"][labels["status"]] = out["by_status"].get(labels["status"], 0) + int(value)
    elif name == "wb_request_latency_seconds_bucket" and labels.get("stage") == "total":
        le = float(labels["le"])
        out["buckets"][le] = out["buckets"].get(le, 0.0) + value
    elif name == "wb_in_flight":
        out["in_flight"] = int(value)
    elif name == "wb_variant_info":
        out["variant"] = labels.get("variant", "")
    elif name in ("wb_drift_statistic", "wb_drift_threshold", "wb_drift_drifted"):
        key = {"wb_drift_statistic": "value", "wb_drift_threshold": "threshold", "wb_drift_drifted": "drifted"}[name]
        entry = drift.setdefault(labels["feature"], {"looks_like": None})
        entry[key] = bool(value) if key == "drifted" else value


def histogram_quantile(q: float, buckets: Mapping[float, float]) -> float | None:
    """The q-quantile of cumulative bucket counts {upper bound: count}, linear within a bucket (as Prometheus);
    None without observations. Beyond the last finite bound it answers that bound."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank, lower, below = q * buckets[bounds[-1]], 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 1.0)
        lower, below = bound, count
    return lower


def http_fetcher(url: str, key: str, ca_file: Path | str | None = None, *, timeout_s: float = 5.0) -> Callable[[], str]:
    """A `fetch` for `Scraper`: GET `url` (the server's /metrics) with the operator's API key; over https it trusts
    `ca_file` only (the server's local CA; None: the system's CAs)."""
    import urllib.request

    from ..security.tls import client_context

    context = client_context(ca_file) if url.startswith("https:") else None

    def fetch() -> str:
        request = urllib.request.Request(url, headers={"Authorization": f"Bearer {key}"})
        with urllib.request.urlopen(request, timeout=timeout_s, context=context) as response:  # noqa: S310 - http(s) only
            return response.read().decode()

    if not url.startswith(("http:", "https:")):
        raise ConfigError(
            f"not an http(s) URL: {url!r}", "pass the server's /metrics URL, e.g. https://127.0.0.1:8443/metrics"
        )
    return fetch


def metrics_url(url: str) -> str:
    """The /metrics URL of a server given by its base URL (`https://127.0.0.1:8443`) or by that URL itself.

    Raises:
        ConfigError: not an http(s) URL.
    """
    from urllib.parse import urlsplit

    text = str(url).strip()
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ConfigError(
            f"not an http(s) URL: {text!r}", "type the server's address, e.g. https://127.0.0.1:8000 (or its /metrics)"
        )
    return text.rstrip("/") + "/metrics" if parts.path in ("", "/") else text


def metrics_fetcher(url: str, key: str, ca_file: Path | str | None = None, *, timeout_s: float = 5.0) -> Callable:
    """A `fetch` for `Scraper` of the server at `url` (its base URL or /metrics) with an operator's `key`;
    each failure is a `WorkbenchError` naming its cause (refused connection, rejected key, untrusted certificate)
    and its fix, never a bare network exception.

    Raises:
        ConfigError: a URL that is not http(s), no key, or a CA file that does not exist or is not PEM.
    """
    target = metrics_url(url)
    if not str(key or "").strip():
        raise ConfigError("no API key given", "paste an operator's key (`workbench keys add NAME --role operator`)")
    if ca_file is not None and str(ca_file).strip():
        ca = Path(str(ca_file).strip()).expanduser()
        if not ca.is_file():
            raise ConfigError(f"the CA file {ca} does not exist", "pass the server's CA (<workspace>/serve/tls/ca.pem)")
    else:
        ca = None
    if ca is not None and not target.startswith("https:"):
        raise ConfigError(f"a CA file was given for the plain-HTTP URL {target}", "use https://, or clear the CA file")
    try:
        fetch = http_fetcher(target, str(key).strip(), ca, timeout_s=timeout_s)
    except ssl.SSLError as exc:
        raise ConfigError(f"the CA file {ca} is not a PEM certificate ({exc.reason or exc})", "pass ca.pem") from exc

    def checked() -> str:
        try:
            return fetch()
        except urllib.error.HTTPError as exc:
            exc.close()  # its response holds the connection open (a server would wait for it when it stops)
            raise _http_refusal(exc, target) from None
        except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
            raise _unreachable(exc, target, ca) from None

    return checked


class ServerUnreachable(WorkbenchError):
    """A running server's /metrics could not be read: nothing answered, or its TLS or its key did not fit."""


def _http_refusal(exc: urllib.error.HTTPError, url: str) -> ServerUnreachable:
    fixes = {
        401: ("the server refused the key (401)", "check the key: it may be mistyped, revoked or expired"),
        403: ("the key may not read metrics (403)", "use an operator's or an admin's key"),
        404: (f"no metrics at {url} (404)", "start the server with metrics (`workbench serve`), or check the URL"),
        429: ("the server is rate limiting this key (429)", "wait a moment, or connect with a longer interval"),
    }
    problem, fix = fixes.get(exc.code, (f"the server answered {exc.code} {exc.reason}", "check the server's log"))
    return ServerUnreachable(problem, fix)


def _unreachable(exc: BaseException, url: str, ca) -> ServerUnreachable:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if isinstance(reason, ssl.SSLCertVerificationError):
        fix = "pass the server's CA file" if ca is None else f"pass the CA of this server ({ca} did not sign it)"
        return ServerUnreachable(f"the server's certificate is not trusted: {reason.verify_message}", fix)
    if isinstance(reason, ssl.SSLError):
        return ServerUnreachable(
            f"TLS with {url} failed ({reason.reason or reason})", "use http:// for a server started without --tls"
        )
    if isinstance(reason, ConnectionRefusedError):
        return ServerUnreachable(f"nothing answers at {url} (connection refused)", "start the server, check the port")
    if isinstance(reason, TimeoutError):
        return ServerUnreachable(f"{url} did not answer in time", "check the address and that the server is running")
    if isinstance(reason, ConnectionError | http.client.HTTPException):
        return ServerUnreachable(
            f"{url} closed the connection ({type(reason).__name__})", "use https:// for a server started with --tls"
        )
    return ServerUnreachable(f"cannot read {url}: {reason}", "check the address and that the server is running")
