"""Disk and database faults turned into WorkspaceErrors that name the cause and the fix (full, read-only, ...)."""

from __future__ import annotations

import errno
import os
import re
import shutil
import sqlite3
from pathlib import Path

from ..errors import WorkspaceError

_FULL = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
_DENIED = {errno.EACCES, errno.EPERM}
ANOTHER = "choose another workspace (--workspace DIR)"


def os_fault(exc: OSError, doing: str, path: Path | str) -> WorkspaceError:
    """The WorkspaceError for an OSError met while `doing` (e.g. "copying the model into the workspace") in `path`.

    Classified by errno: disk full or quota used up (with the space left on that disk when it can be read),
    permission denied, read-only file system; any other error keeps its strerror as it is.
    """
    path = Path(path)
    code = _errno(exc)
    failed = f"{doing[:1].upper()}{doing[1:]} failed"
    where = _where(exc, path)
    if code in _FULL:
        full = "the disk quota is used up" if code == getattr(errno, "EDQUOT", None) else "the disk is full"
        free = free_space(path)
        return WorkspaceError(
            f"{failed}: {full} ({path} is on that disk{f', {free} free' if free else ''})",
            "free space on that disk, or choose a workspace on another disk (--workspace DIR)",
        )
    if code in _DENIED:
        return WorkspaceError(
            f"{failed}: permission denied on {where}",
            f"give your user write access to {where} (chmod/chown), or {ANOTHER}",
        )
    if code == errno.EROFS:
        return WorkspaceError(
            f"{failed}: {where} is on a read-only file system",
            "remount that disk read-write, or choose a workspace on a writable disk (--workspace DIR)",
        )
    reason = exc.strerror or str(exc)
    return WorkspaceError(f"{failed}: {reason} ({where})", f"check {where} and retry, or {ANOTHER}")


def check_folder_writable(folder: Path, doing: str) -> None:
    """Raise the os_fault for `folder` now if it exists and cannot be written (read-only folder or disk)."""
    if not folder.is_dir() or os.access(folder, os.W_OK):
        return
    code = errno.EROFS if _read_only_mount(folder) else errno.EACCES
    raise os_fault(OSError(code, os.strerror(code), str(folder)), doing, folder)


def free_space(path: Path) -> str | None:
    """Space left on the file system holding `path` (or its nearest existing parent), e.g. '1.5 GiB'."""
    existing = next((p for p in (path, *path.parents) if p.exists()), None)
    try:
        return _size(shutil.disk_usage(existing).free) if existing is not None else None
    except OSError:
        return None


def sqlite_fault(exc: sqlite3.Error, path: Path, action: str) -> WorkspaceError:
    """The WorkspaceError for an SQLite error on the ledger at `path`; `action` is "opened", "read" or "written".

    SQLite's own message is kept as it is; the cause (full, read-only, locked, damaged, ...) picks the fix.
    """
    said = f"SQLite: {exc}"
    cause = _sqlite_cause(exc)
    if cause == "damaged":
        return damaged_ledger(path, action, said)
    problem, fix = {
        "full": (
            f"the disk is full ({free_space(path.parent) or 'unknown space'} free there)",
            "free space on that disk, or choose a workspace on another disk (--workspace DIR); the ledger is not"
            " damaged and this change was not recorded, so run the step again afterwards",
        ),
        "readonly": (
            "the ledger file or its folder is read-only",
            f"give your user write access to {path} and its folder {path.parent} (SQLite writes {path.name}-wal and"
            f" {path.name}-shm beside it), or {ANOTHER}; the file is not damaged",
        ),
        "locked": (
            "another process holds its write lock",
            "wait for the other command using this workspace (a run, the notebook or the app) to finish, or close"
            " it, then retry; the ledger is not damaged",
        ),
        "cantopen": (
            "the file cannot be opened",
            f"check that the folder {path.parent} exists and that you can read and write it, or {ANOTHER}",
        ),
        "io": (
            "the disk reported an input/output error",
            f"check that the disk holding {path} is attached, has free space and reports no errors, then retry",
        ),
    }.get(cause, ("an unexpected database error", f"retry; if it fails again, {ANOTHER}"))
    return WorkspaceError(f"ledger {path} cannot be {action}: {problem} ({said})", fix)


def damaged_ledger(path: Path, action: str, detail: str) -> WorkspaceError:
    """The ledger at `path` is damaged (corrupted pages, or not an SQLite file at all)."""
    return WorkspaceError(
        f"ledger {path} cannot be {action}: the file is damaged ({detail})",
        f"move {path} aside (e.g. rename it to {path.name}.damaged) and run again: a new, empty ledger is made; the"
        f" artifacts in {path.parent / 'artifacts'} stay where they are, or {ANOTHER}",
    )


def foreign_ledger(path: Path, detail: str) -> WorkspaceError:
    """`path` is an SQLite file, but not a ledger this version of the workbench can use."""
    return WorkspaceError(
        f"ledger {path} cannot be opened: {detail}",
        f"{ANOTHER}; the file was left as it is (a newer workbench can read a newer ledger)",
    )


_SQLITE_CODES = {3: "readonly", 5: "locked", 6: "locked", 8: "readonly", 10: "io", 11: "damaged", 13: "full"}
_SQLITE_CODES |= {14: "cantopen", 26: "damaged"}
_SQLITE_WORDS = {
    "disk is full": "full",
    "readonly database": "readonly",
    "database is locked": "locked",
    "table is locked": "locked",
    "malformed": "damaged",
    "not a database": "damaged",
    "unable to open": "cantopen",
    "disk i/o error": "io",
}


def _sqlite_cause(exc: sqlite3.Error) -> str | None:
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in _SQLITE_CODES:
        return _SQLITE_CODES[code & 0xFF]  # primary code: the extended ones (READONLY_DIRECTORY, ...) share it
    text = str(exc).lower()
    return next((cause for words, cause in _SQLITE_WORDS.items() if words in text), None)


def _errno(exc: OSError) -> int | None:
    if exc.errno is not None:
        return exc.errno
    found = re.search(r"\[Errno (\d+)\]", str(exc))  # shutil.Error (copytree) keeps its errors as text
    return int(found.group(1)) if found else None


def _where(exc: OSError, folder: Path) -> Path:
    """The file to name: the one that failed, unless it is a staging file inside `folder` (then the folder)."""
    if not exc.filename or not isinstance(exc.filename, (str, os.PathLike)):
        return folder
    failed = Path(exc.filename)
    return folder if failed == folder or folder in failed.parents else failed


def _read_only_mount(folder: Path) -> bool:
    try:
        return bool(os.statvfs(folder).f_flag & os.ST_RDONLY)
    except (OSError, AttributeError):  # no statvfs on Windows
        return False


def _size(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if count < 1024:
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"
