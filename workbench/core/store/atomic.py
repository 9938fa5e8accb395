"""Write to a staging path, check, then rename: an interrupted step never leaves a half-written artifact."""

from __future__ import annotations

import hashlib
import os
import shutil
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def staged(final: Path, *, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a staging path beside `final`; when the block succeeds and `check` passes, rename it onto `final`.

    The staging path may become a file or a folder. On any error, including KeyboardInterrupt, it is removed
    and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".staging-{uuid.uuid4().hex[:8]}-{final.name}"  # keeps the suffix runtimes look at
    try:
        yield staging
        if not staging.exists():
            raise FileNotFoundError(f"the step did not write {staging}")
        if check is not None:
            check(staging)
        _replace(staging, final)
    finally:
        remove(staging)


def _replace(src: Path, dst: Path) -> None:
    if src.is_dir() and dst.exists():
        # os.replace cannot overwrite a non-empty folder: move the old one aside first, then drop it.
        old = dst.parent / f".old-{dst.name}-{uuid.uuid4().hex[:8]}"
        os.replace(dst, old)
        os.replace(src, dst)
        remove(old)
    else:
        os.replace(src, dst)


def remove(path: Path) -> None:
    """Delete a file or folder if it exists."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def sha256(path: Path) -> str:
    """Hex digest of a file, or of a folder's files in sorted order with their relative names."""
    digest = hashlib.sha256()
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    for file in files:
        if Path(path).is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with open(file, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def size_bytes(path: Path) -> int:
    """Size of a file, or the sum over a folder's files."""
    path = Path(path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) if path.is_dir() else path.stat().st_size
