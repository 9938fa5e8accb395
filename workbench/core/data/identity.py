"""The identity of an evaluation set: a content hash of the images (and their labels) an accuracy row reads.

The hash does not depend on file order or names: each image's bytes and its label file's bytes are hashed
together, the per-image digests sorted and hashed again. A file's digest is kept while its size and mtime stay
the same, so a split is read once per process (measured: about 8 ms for 200 images of 64 px once cached,
about 30 ms to read them the first time).
"""

from __future__ import annotations

import hashlib
import threading
from pathlib import Path

from ..errors import DatasetError
from ..store.evaluation_sets import EvaluationSet
from .checks import list_images
from .labels import label_path

_FILE_DIGESTS: dict[tuple, str] = {}  # (path, (size, mtime_ns) of image and label) -> their digest
_LOCK = threading.Lock()
_MAX_CACHED = 200_000


def evaluation_set(
    data_yaml: Path | str, split: str = "val", images: int | None = None, imgsz: int | None = None
) -> EvaluationSet:
    """The identity of the first `images` images (None: all) of `split`, measured at `imgsz`.

    Raises:
        DatasetError: the data YAML or split cannot be read, or the split holds no image.
    """
    files = list_images(data_yaml, split)[:images]
    if not files:
        raise DatasetError(
            f"the {split} split of {data_yaml} holds no image to measure accuracy on",
            f"put images under the folder its '{split}:' entry names, or pick another split",
        )
    digests = sorted(_pair_digest(Path(f)) for f in files)
    digest = hashlib.sha256("\n".join(digests).encode()).hexdigest()
    return EvaluationSet(digest, split, len(files), imgsz, str(Path(data_yaml).expanduser().resolve()))


def _pair_digest(image: Path) -> str:
    """Digest of one image's bytes with its label file's (an image without labels hashes with none)."""
    label = label_path(image)
    key = (str(image), _stat(image), _stat(label))
    with _LOCK:
        known = _FILE_DIGESTS.get(key)
    if known is not None:
        return known
    digest = hashlib.sha256(image.read_bytes())
    digest.update(b"\0labels\0")
    if label.is_file():
        digest.update(label.read_bytes())
    value = digest.hexdigest()
    with _LOCK:
        if len(_FILE_DIGESTS) > _MAX_CACHED:
            _FILE_DIGESTS.clear()
        _FILE_DIGESTS[key] = value
    return value


def _stat(path: Path) -> tuple[int, int]:
    try:
        found = path.stat()
    except FileNotFoundError:
        return (-1, 0)
    return (found.st_size, found.st_mtime_ns)
