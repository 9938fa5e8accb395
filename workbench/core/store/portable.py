"""What differs between operating systems, in one place: file locks between processes, reading at an offset,
whether a process still runs and when this one started, and whether a file's mode bits mean anything.

Linux and macOS lock with `fcntl.flock`; Windows has no `fcntl` and locks with `msvcrt.locking`, which has no
shared locks (a shared lock is taken exclusively there) and which Windows enforces on reads and writes of the
locked bytes, so the byte it locks is `LOCK_OFFSET`, far past any data this project writes, never the data. A
system with neither (none that runs this project's models) gets no lock between processes, nor between two open
files in one process; the callers' thread locks still serialize the threads that share one. `PROCESS_LOCK` names
the mechanism in use.
"""

from __future__ import annotations

import contextlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None
try:
    import msvcrt
except ImportError:  # everything but Windows
    msvcrt = None

LOCK_OFFSET = 2**31 - 2  # the byte msvcrt locks: past the data, inside the signed 32-bit range every C runtime takes
POLL_S = 0.01  # how often a waiting msvcrt lock asks again (msvcrt's own blocking mode gives up after 10 s)
PROCESS_LOCK = "flock" if fcntl is not None else "msvcrt" if msvcrt is not None else None
# Windows keeps access in ACLs: Python reports every writable file there as mode 0o666, so the mode says nothing
POSIX_MODES = os.name == "posix"


def _fd(file) -> int:
    return file if isinstance(file, int) else file.fileno()


@contextlib.contextmanager
def locked(file, *, shared: bool = False) -> Iterator[None]:
    """Hold a lock on an open file (a descriptor or a file object) between processes for the `with` block.

    `shared`: a reader's lock (several may hold one at once, no writer meanwhile); exclusive where the system has
    no shared locks (Windows). Blocks until the lock is free.
    """
    fd = _fd(file)
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    elif msvcrt is not None:
        _msvcrt_lock(fd, msvcrt.LK_NBLCK, wait=True)
        try:
            yield
        finally:
            _msvcrt_lock(fd, msvcrt.LK_UNLCK, wait=False)
    else:
        yield


def _msvcrt_lock(fd: int, mode: int, *, wait: bool) -> None:
    """Lock or unlock the byte at LOCK_OFFSET (msvcrt locks from the file's position), the position kept."""
    position = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        while True:
            os.lseek(fd, LOCK_OFFSET, os.SEEK_SET)
            try:
                msvcrt.locking(fd, mode, 1)
                return
            except OSError:
                if not wait:
                    raise
            time.sleep(POLL_S)
    finally:
        os.lseek(fd, position, os.SEEK_SET)


def read_at(fd: int, count: int, offset: int) -> bytes:
    """`count` bytes of an open file from `offset` (fewer at its end): `os.pread` where it exists, else a seek
    and reads with the file's position put back (Windows has no `pread`; hold a lock or own the descriptor)."""
    if hasattr(os, "pread"):
        return os.pread(fd, count, offset)
    position = os.lseek(fd, 0, os.SEEK_CUR)
    try:
        os.lseek(fd, offset, os.SEEK_SET)
        parts, left = [], count
        while left > 0 and (part := os.read(fd, left)):
            parts.append(part)
            left -= len(part)
        return b"".join(parts)
    finally:
        os.lseek(fd, position, os.SEEK_SET)


def set_mode(fd: int, path: Path | str, mode: int) -> None:
    """Give an open file exactly `mode`: `os.fchmod` on its descriptor where it exists, else `os.chmod` on its
    path (Windows, where only the read-only bit applies)."""
    if hasattr(os, "fchmod"):
        os.fchmod(fd, mode)
    else:
        os.chmod(path, mode)


def loose_mode(path: Path | str) -> int | None:
    """The file's mode bits when group or others may read or write it; None when they may not, or where the
    system keeps access in ACLs instead of mode bits (Windows), so a check for loose permissions passes there."""
    if not POSIX_MODES:
        return None
    mode = stat.S_IMODE(os.stat(path).st_mode)
    return mode if mode & 0o077 else None


def pid_alive(pid: int) -> bool:
    """Whether a process with this id runs (another user's included). Never signals it: on Windows `os.kill` with
    signal 0 would terminate it."""
    import psutil

    return psutil.pid_exists(pid)


def process_started() -> float:
    """When this process started (wall clock, seconds since the epoch); now when the system does not say."""
    import psutil

    try:
        return psutil.Process().create_time()
    except (psutil.Error, OSError):
        return time.time()
