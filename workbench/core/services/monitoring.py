"""Monitoring a served variant: its drift reference (cached in the workspace), its drift monitor, the loader the
admin endpoint switches variants with, and the scrape of a running server's /metrics that the live panel reads.

The reference is the variant's validation images run through the served model's own `detect`, so production
detections are compared with what this very deployment (runtime, precision, input size) answered on data it was
measured on. It is cached as JSON under `<workspace>/serve/drift/`, keyed by a hash of the artifact, the served
model's settings and the images' contents: a restart reads it back instead of running the images again.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import ssl
import urllib.error
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..errors import ConfigError, WorkbenchError, WorkspaceError
from ..serve.drift import DriftMonitor, ReferenceStats, reference_from_detector
from ..store.workspace import Workspace

REFERENCE_IMAGES = 64  # val images the reference is built from: enough for the KS tests, seconds to run
CACHE_VERSION = "1"  # bump when what goes into a cached reference changes
DRIFT_FOLDER = ("serve", "drift")
NO_DATA_FIX = (
    "pass --drift-data DATA_YAML (the data YAML whose val images the variant was measured on), or serve with --no-drift"
)


def drift_data(workspace: Workspace | None, variant_id: int | None, data: Path | str | None = None) -> Path | None:
    """The data YAML a variant's drift reference comes from: `data` where given, else the one the ledger recorded
    for the variant (`diagnose.recorded_data`); None when neither is known.

    Raises:
        ConfigError: `data` is given but is not a file.
    """
    if data is not None:
        path = Path(data).expanduser().resolve()
        if not path.is_file():
            raise ConfigError(f"the drift data YAML {path} does not exist", "pass the path of a YOLO data YAML")
        return path
    if workspace is None or variant_id is None:
        return None
    from .diagnose import recorded_data

    found = recorded_data(workspace, variant_id)
    return found.resolve() if found is not None else None


def drift_reference(
    workspace: Workspace | None,
    variant_id: int | None,
    model,
    *,
    data: Path | str | None = None,
    images: int = REFERENCE_IMAGES,
) -> ReferenceStats:
    """The variant's drift reference: up to `images` of its validation images (spread evenly over the val split)
    run through `model.detect`; read from the workspace's cache when it was built before for this artifact, served
    model and images, else built and cached (written atomically).

    Args:
        workspace, variant_id: the workspace variant served; either None (a bare artifact, a bundle): nothing is
            cached and `data` must be given.
        model: the `ServedModel` (anything with `detect(image) -> detections`, `imgsz`, `precision`, `platform`).
        data: the data YAML whose val images make the reference; None: the one the ledger recorded.
        images: how many val images at most.
    Raises:
        ConfigError: no data known, fewer than 2 readable val images, `images` < 2.
        DatasetError: the data YAML or its val split cannot be read.
    """
    if isinstance(images, bool) or not isinstance(images, int) or images < 2:
        raise ConfigError(f"images must be a whole number >= 2, got {images!r}", f"use e.g. {REFERENCE_IMAGES}")
    yaml_path = drift_data(workspace, variant_id, data)
    if yaml_path is None:
        raise _no_data(variant_id)
    from ..data.checks import list_images

    paths = _spread(list_images(yaml_path, "val"), images)
    if len(paths) < 2:
        raise ConfigError(
            f"the val split of {yaml_path} has {len(paths)} image(s): the drift reference needs at least 2",
            "pass a data YAML whose val split holds the variant's validation images",
        )
    source = f"{yaml_path} val ({len(paths)} images)"
    cache = _cache_path(workspace, variant_id, model, paths)
    if cache is not None and cache.is_file():
        try:
            return ReferenceStats.load(cache)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # a damaged cache file: built again and replaced below
    reference = reference_from_detector(paths, model.detect, source=source)
    if cache is not None:
        _save_atomic(reference, cache)
    return reference


def reference_cache(workspace: Workspace, variant_id: int, model, data: Path | str, images: int = REFERENCE_IMAGES):
    """Where `drift_reference` caches this variant's reference for `model` and `data` (it may not exist yet)."""
    from ..data.checks import list_images

    return _cache_path(workspace, variant_id, model, _spread(list_images(Path(data), "val"), images))


def drift_monitor(
    workspace: Workspace | None,
    variant_id: int | None,
    model,
    *,
    data: Path | str | None = None,
    window: int = 200,
    every: int = 1,
    images: int = REFERENCE_IMAGES,
) -> DriftMonitor:
    """A `DriftMonitor` of the served `model` against its reference (`drift_reference`), with the model itself as
    the channel probe's reference detector.

    Args:
        window: production images per window (at least 8); every: use every k-th request.
    Raises:
        ConfigError: as `drift_reference`, or a window under 8 images, every < 1.
    """
    from ..serve.drift import DriftThresholds

    least = DriftThresholds().min_images
    if isinstance(window, bool) or not isinstance(window, int) or window < least:
        raise ConfigError(f"a drift window needs at least {least} images, got {window!r}", "use e.g. 200")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be a whole number >= 1, got {every!r}", "use 1 to watch every request")
    reference = drift_reference(workspace, variant_id, model, data=data, images=images)
    return DriftMonitor(reference, window=window, every=every, probe=_probe(model))


def _no_data(variant_id: int | None) -> ConfigError:
    where = f"variant {variant_id}" if variant_id is not None else "this model"
    return ConfigError(f"no validation data is known for {where}: drift needs a reference", NO_DATA_FIX)


def _probe(model) -> Callable:
    """`model.detect` answering a `Detections` (what the channel probe reads), not the JSON of the service."""
    from ..models.detector import Detections

    def detect(image: np.ndarray) -> Detections:
        found = model.detect(image)
        return Detections(
            np.asarray(found["boxes"], np.float32).reshape(-1, 4),
            np.asarray(found["scores"], np.float32).reshape(-1),
            np.asarray(found["classes"], np.int64).reshape(-1),
        )

    return detect


def _spread(paths: list[Path], count: int) -> list[Path]:
    """At most `count` of `paths`, evenly spread (the first, then every k-th), in order."""
    if len(paths) <= count:
        return list(paths)
    return [paths[i] for i in np.linspace(0, len(paths) - 1, count).round().astype(int)]


def _cache_path(workspace, variant_id, model, paths: list[Path]) -> Path | None:
    if workspace is None or variant_id is None:
        return None
    from ..store.atomic import sha256

    variant = workspace.variant(variant_id)
    artifact = variant.sha256 or sha256(workspace.artifact_path(variant_id))
    digest = hashlib.sha256(f"{CACHE_VERSION}\0{artifact}\0".encode())
    served = (getattr(model, "platform", ""), getattr(model, "precision", ""), getattr(model, "imgsz", ""))
    digest.update("\0".join(str(s) for s in served).encode() + b"\0")
    for path in paths:
        digest.update(path.name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return workspace.root.joinpath(*DRIFT_FOLDER, f"variant-{variant_id}-{digest.hexdigest()[:16]}.json")


def _save_atomic(reference: ReferenceStats, path: Path) -> None:
    """Write the reference beside its final name, then rename: a reader sees the whole file or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        reference.save(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


# -- switching the served variant (the admin endpoint's loader) ----------------------------------------------------


def resolve_variant(workspace: Workspace, given: str, *, unknown: type[ConfigError] = ConfigError) -> int:
    """The id of the variant `given` names: its id (digits) or its name in the ledger; it must have an artifact.

    Raises:
        ConfigError: a name shared by several variants, or a variant without an artifact file; `unknown` (a
            ConfigError) when there is no such variant (the admin endpoint answers it with 404).
    """
    text = str(given).strip()
    variants = workspace.ledger.variants()
    if text.isdigit():
        matches = [v for v in variants if v.id == int(text)]
    else:
        matches = [v for v in variants if v.name == text]
    fix = f"pass the id (or the name) of a variant recorded in {workspace.root} (with an artifact: an export)"
    if not matches:
        raise unknown(f"no variant {text!r} in the workspace {workspace.root}", fix)
    if len(matches) > 1:
        ids = ", ".join(str(v.id) for v in matches)
        raise ConfigError(f"the name {text!r} is that of several variants ({ids})", "pass the variant's id instead")
    variant = matches[0]
    if not variant.path or not (workspace.root / variant.path).exists():
        raise ConfigError(
            f"variant {variant.id} ({variant.name}) has no artifact file in {workspace.root}",
            "serve a variant that has one (an export), or export this one first",
        )
    return variant.id


def workspace_loader(
    workspace: Workspace,
    *,
    drift: bool = False,
    data: Path | str | None = None,
    window: int = 200,
    every: int = 1,
    **open_options,
) -> Callable:
    """A loader for the admin endpoint (`PUT /v1/admin/model`): `loader(variant, served_name)` opens the workspace
    variant named by `variant` (an id or a ledger name) under `served_name`, with its drift monitor when `drift`.

    Args:
        drift: build each loaded variant's drift monitor (against `data`, else the data the ledger recorded for it).
        data: the data YAML of every variant's reference; None: each variant's recorded one.
        window, every: as for `drift_monitor`.
        open_options: for `ServedModel.from_variant` (threads, workers, precision...).
    Returns:
        the loader; it returns an `admin.LoadedVariant` and raises ConfigError / WorkspaceError (problem and fix)
        for a variant it cannot serve, before anything is switched.
    Raises:
        ConfigError, DatasetError: `data` is not a data YAML with a readable val split.
    """
    if data is not None:
        from ..data.checks import list_images

        data = drift_data(workspace, None, data)  # checked now, not at the first switch
        list_images(data, "val")

    def load(variant: str, served_name: str):
        from ..serve.admin import LoadedVariant, VariantNotFound  # the serving extra's: imported when serving
        from ..serve.model import ServedModel

        variant_id = resolve_variant(workspace, variant, unknown=VariantNotFound)
        if drift and drift_data(workspace, variant_id, data) is None:  # refused before the model is opened
            raise _no_data(variant_id)
        try:
            model = ServedModel.from_variant(workspace, variant_id, name=served_name, **open_options)
            monitor = (
                drift_monitor(workspace, variant_id, model, data=data, window=window, every=every) if drift else None
            )
        except (ConfigError, WorkspaceError):
            raise
        except WorkbenchError as exc:  # a model or dataset error: the admin endpoint answers these two kinds
            raise WorkspaceError(f"variant {variant_id} cannot be served: {exc.problem}", exc.fix) from exc
        except (OSError, RuntimeError) as exc:  # a runtime that cannot read the file
            raise WorkspaceError(
                f"variant {variant_id} could not be opened for serving: {exc}", "serve a variant whose export loads"
            ) from exc
        return LoadedVariant(model=model, variant_id=variant_id, drift=monitor)

    return load


# -- reading a running server's /metrics (the live panel) ----------------------------------------------------------


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
    """A `fetch` for `monitor.Scraper` of the server at `url` (its base URL or /metrics) with an operator's `key`;
    each failure is a `WorkbenchError` naming its cause (refused connection, rejected key, untrusted certificate)
    and its fix, never a bare network exception.

    Raises:
        ConfigError: a URL that is not http(s), no key, or a CA file that does not exist or is not PEM.
    """
    from ..serve.monitor import http_fetcher

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
