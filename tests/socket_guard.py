"""Block every network connection that would leave this machine, and record each attempt.

Used in-process by tests (`install`), as a wrapper around a command:
    python tests/socket_guard.py ATTEMPTS_FILE MODULE [ARGS...]
and in every Python process the test suite starts (`guarded/sitecustomize.py`, put on PYTHONPATH by conftest.py),
which appends each attempt as a line to $WORKBENCH_SOCKET_LOG.
"""

from __future__ import annotations

import atexit
import errno
import json
import runpy
import socket
import sys

ATTEMPTS: list[str] = []
LOG_VARIABLE = "WORKBENCH_SOCKET_LOG"
_LOCAL = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "")


def _is_local(host) -> bool:
    return isinstance(host, str) and (host in _LOCAL or host.startswith("127."))


def _record(what: str) -> None:
    import os

    ATTEMPTS.append(what)
    log = os.environ.get(LOG_VARIABLE)
    if log:
        with open(log, "a") as f:
            f.write(f"{os.getpid()} {' '.join(os.sys.argv)[:200]}: {what}\n")


def _blocked(what: str):
    _record(what)
    return OSError(errno.ENETUNREACH, f"network blocked by the test: {what}")


def install():
    """Patch socket so that only loopback and Unix sockets work. Returns a function that undoes it."""
    original_connect, original_connect_ex = socket.socket.connect, socket.socket.connect_ex
    original_getaddrinfo = socket.getaddrinfo

    def connect(self, address):
        if self.family != socket.AF_UNIX and not _is_local(address[0]):
            raise _blocked(f"connect {address}")
        return original_connect(self, address)

    def connect_ex(self, address):
        if self.family != socket.AF_UNIX and not _is_local(address[0]):
            _blocked(f"connect_ex {address}")
            return errno.ENETUNREACH
        return original_connect_ex(self, address)

    def getaddrinfo(host, *args, **kwargs):
        if not _is_local(host if isinstance(host, str) else (host or b"").decode()):
            _record(f"resolve {host}")
            raise socket.gaierror(socket.EAI_NONAME, f"name resolution blocked by the test: {host}")
        return original_getaddrinfo(host, *args, **kwargs)

    socket.socket.connect, socket.socket.connect_ex, socket.getaddrinfo = connect, connect_ex, getaddrinfo

    def restore():
        socket.socket.connect, socket.socket.connect_ex = original_connect, original_connect_ex
        socket.getaddrinfo = original_getaddrinfo

    return restore


if __name__ == "__main__":
    log, module, *rest = sys.argv[1:]
    install()
    atexit.register(lambda: open(log, "w").write(json.dumps(ATTEMPTS)))
    sys.argv = [module, *rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
