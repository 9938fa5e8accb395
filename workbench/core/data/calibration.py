"""Calibration and validation subsets of a dataset split, recorded by the hash of every image they hold."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import ConfigError

MIN_CALIBRATION_IMAGES = 8  # fewer give unstable activation ranges


@dataclass(frozen=True)
class ImageSet:
    """A recorded subset of a split: paths and the sha256 of each file (first `count` in sorted order)."""

    split: str
    paths: tuple[Path, ...]
    hashes: tuple[str, ...] = field(default=())

    @classmethod
    def from_data(cls, data_yaml: Path | str, split: str, count: int, minimum: int = 1) -> ImageSet:
        from .checks import list_images

        images = list_images(data_yaml, split)
        if len(images) < minimum:
            raise ConfigError(
                f"the '{split}' split of {data_yaml} has {len(images)} images, fewer than the {minimum} needed",
                f"add images to '{split}' or calibrate on a larger split",
            )
        paths = tuple(images[:count])
        return cls(split, paths, tuple(hashlib.sha256(p.read_bytes()).hexdigest() for p in paths))

    def record(self) -> dict:
        """What the ledger keeps: the split, the count, one digest over all files, and each file's short hash."""
        digest = hashlib.sha256("".join(self.hashes).encode()).hexdigest()
        return {
            "split": self.split,
            "count": len(self.paths),
            "sha256": digest,
            "images": {p.name: h[:12] for p, h in zip(self.paths, self.hashes, strict=True)},
        }
