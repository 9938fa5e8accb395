"""Write to a staging path, check, then rename: an interrupted step never leaves a half-written artifact.

Staging names carry the writing process's id (`.staging-<pid>-...`), and scratch folders live in the workspace's
`.staging/`; `sweep_stale` removes what a process that no longer runs left behind (a `kill -9`, a power cut).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .portable import pid_alive, process_started

STAGING_PREFIXES = (".staging-", ".incoming-", ".old-")  # beside final names, in artifacts/ and reports/
SCRATCH_FOLDER = ".staging"  # under a workspace root: scratch folders of exports, training and validation
_scratch_root: Path | None = None  # the workspace opened last in this process; None: the system's temp folder


def tag() -> str:
    """A unique staging tag that names this process: `<pid>-<random>`."""
    return f"{os.getpid()}-{uuid.uuid4().hex[:8]}"


def use_scratch_root(root: Path | None) -> None:
    """Put this process's scratch folders under `root` (a workspace's `.staging/`)."""
    global _scratch_root
    _scratch_root = None if root is None else Path(root)


@contextmanager
def scratch(prefix: str) -> Iterator[Path]:
    """A temporary folder in the current workspace's `.staging/` (removed afterwards, swept if interrupted)."""
    base = _scratch_root
    if base is not None:
        base.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-", dir=base) as tmp:
        yield Path(tmp)


@contextmanager
def staged(final: Path, *, check: Callable[[Path], None] | None = None) -> Iterator[Path]:
    """Yield a staging path beside `final`; when the block succeeds and `check` passes, rename it onto `final`.

    The staging path may become a file or a folder. On any error, including KeyboardInterrupt, it is removed
    and `final` is left as it was.
    """
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    staging = final.parent / f".staging-{tag()}-{final.name}"  # keeps the suffix runtimes look at
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
        old = dst.parent / f".old-{tag()}-{dst.name}"
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


def _owner(name: str) -> int | None:
    """The process id a staging name carries (`.staging-<pid>-...`), or None for a name without one."""
    for prefix in STAGING_PREFIXES:
        if name.startswith(prefix):
            head = name[len(prefix) :].split("-", 1)[0]
            return int(head) if head.isdigit() else None
    return None


def sweep_stale(folders: list[Path]) -> list[Path]:
    """Remove staging entries and scratch folders whose writer no longer runs; returns what was removed.

    An entry is stale when the process id in its name is not running, or (for a name with no id, written by an
    older version) when it is older than this process. Entries of live processes are never touched.
    """
    started, removed = process_started(), []
    for folder in folders:
        if not folder.is_dir():
            continue
        for entry in folder.iterdir():
            in_scratch = folder.name == SCRATCH_FOLDER
            if not in_scratch and not entry.name.startswith(STAGING_PREFIXES):
                continue
            pid = _owner(entry.name) if not in_scratch else _scratch_owner(entry.name)
            try:
                stale = (pid is not None and pid != os.getpid() and not pid_alive(pid)) or (
                    pid is None and entry.lstat().st_mtime < started
                )
            except OSError:
                continue
            if stale:
                remove(entry)
                removed.append(entry)
    return removed


def _scratch_owner(name: str) -> int | None:
    """`scratch` names its folders `<prefix><pid>-<random>`: the pid is the last all-digit part before the end."""
    parts = name.split("-")
    return int(parts[-2]) if len(parts) >= 2 and parts[-2].isdigit() else None
