"""Installed in every Python process the test suite starts (conftest.py puts this folder on PYTHONPATH): the socket
guard, which blocks and records any connection that would leave this machine."""

import os
import sys

if os.environ.get("WORKBENCH_SOCKET_LOG"):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    import socket_guard

    socket_guard.install()
    sys.path.pop(0)
