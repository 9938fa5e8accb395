"""A served variant's drift reference (cached in the workspace) and its drift monitor.

The reference is the variant's validation images run through the served model's own `detect`, so production
detections are compared with what this very deployment (runtime, precision, input size) answered on data it was
measured on. It is cached as JSON under `<workspace>/serve/drift/`, keyed by a hash of the artifact, the served
model's settings and the images' contents: a restart reads it back instead of running the images again.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ...errors import ConfigError
from ...store.recorded_data import recorded_data
from ...store.workspace import Workspace
from .drift import DriftMonitor, DriftThresholds, ReferenceStats, reference_from_detector

REFERENCE_IMAGES = 64  # val images the reference is built from: enough for the KS tests, seconds to run
CACHE_VERSION = "1"  # bump when what goes into a cached reference changes
DRIFT_FOLDER = ("serve", "drift")
NO_DATA_FIX = (
    "pass --drift-data DATA_YAML (the data YAML whose val images the variant was measured on), or serve with --no-drift"
)


def drift_data(workspace: Workspace | None, variant_id: int | None, data: Path | str | None = None) -> Path | None:
    """The data YAML a variant's drift reference comes from: `data` where given, else the one the ledger recorded
    for the variant (`store.recorded_data`); None when neither is known.

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
        raise no_data_error(variant_id)
    from ...data.checks import list_images

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
    from ...data.checks import list_images

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
    least = DriftThresholds().min_images
    if isinstance(window, bool) or not isinstance(window, int) or window < least:
        raise ConfigError(f"a drift window needs at least {least} images, got {window!r}", "use e.g. 200")
    if isinstance(every, bool) or not isinstance(every, int) or every < 1:
        raise ConfigError(f"every must be a whole number >= 1, got {every!r}", "use 1 to watch every request")
    reference = drift_reference(workspace, variant_id, model, data=data, images=images)
    return DriftMonitor(reference, window=window, every=every, probe=_probe(model))


def no_data_error(variant_id: int | None) -> ConfigError:
    where = f"variant {variant_id}" if variant_id is not None else "this model"
    return ConfigError(f"no validation data is known for {where}: drift needs a reference", NO_DATA_FIX)


def _probe(model) -> Callable:
    """`model.detect` answering a `Detections` (what the channel probe reads), not the JSON of the service."""
    from ...models.detector import Detections

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


def _cache_path(workspace: Workspace, variant_id, model, paths: list[Path]) -> Path | None:
    if workspace is None or variant_id is None:
        return None
    from ...store.atomic import sha256

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
