"""Portable code: the library, the scripts and the chapters work where a Linux-only (or POSIX-only) call is missing.

Each helper runs here with the call removed (macOS has no `os.sched_getaffinity`; Windows has none of it, no
`os.getloadavg`, `os.pread`, `os.fchmod`, `os.getuid` and no `fcntl`), the chapters' own lines that use them run
the same way, and a scan keeps such calls out of every other module, script and notebook.
"""

from __future__ import annotations

import ast
import errno
import fcntl
import os
import re
import subprocess
import sys
import threading
import time
import types
from pathlib import Path

import jupytext
import pytest

import workbench as wb
from workbench.core import environment
from workbench.core.serve.security.audit import AuditLog, verify_audit
from workbench.core.serve.security.keys import KeyStore
from workbench.core.serve.security.tls import write_private_file
from workbench.core.store import portable

ROOT = Path(__file__).resolve().parents[1]
# Calls that exist only on Linux or only on POSIX systems, and the one module allowed each (it falls back).
UNPORTABLE_ATTRIBUTES = {
    ("os", "sched_getaffinity"): "workbench/core/environment.py",
    ("os", "sched_setaffinity"): None,
    ("os", "getloadavg"): "workbench/core/environment.py",
    ("os", "pread"): "workbench/core/store/portable.py",
    ("os", "pwrite"): None,
    ("os", "fchmod"): "workbench/core/store/portable.py",
    ("os", "fork"): None,
    ("os", "kill"): None,  # on Windows any signal but Ctrl-C/Break terminates: os.kill(pid, 0) kills the process
    ("os", "killpg"): None,
    ("os", "setsid"): None,
    ("os", "nice"): None,
    ("os", "getuid"): "workbench/cli/serve_admin.py",
    ("os", "geteuid"): "scripts/serve_app.py",
    ("os", "statvfs"): "workbench/core/store/faults.py",
    ("os", "sysconf"): None,
    ("signal", "SIGKILL"): None,
    ("signal", "SIGHUP"): None,
    ("signal", "SIGALRM"): None,
    ("signal", "alarm"): None,
}
UNPORTABLE_MODULES = {
    "fcntl": "workbench/core/store/portable.py",
    "resource": None,
    "pwd": None,
    "grp": None,
    "termios": None,
    "pty": None,
}


def _sources() -> list[Path]:
    files = [*(ROOT / "workbench").rglob("*.py"), *(ROOT / "scripts").glob("*.py"), *(ROOT / "notebooks").glob("*.py")]
    assert len(files) > 50
    return files


def _code(path: Path) -> str:
    if path.parent.name != "notebooks":
        return path.read_text()
    cells = jupytext.read(path).cells
    return "\n".join(c.source for c in cells if c.cell_type == "code" and not c.source.lstrip().startswith(("%", "!")))


def _uses(tree: ast.AST) -> list[tuple[str, int]]:
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name):
            if (node.value.id, node.attr) in UNPORTABLE_ATTRIBUTES:
                found.append((f"{node.value.id}.{node.attr}", node.lineno))
        elif isinstance(node, ast.Import):
            found += [(a.name, node.lineno) for a in node.names if a.name.split(".")[0] in UNPORTABLE_MODULES]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.split(".")[0] in UNPORTABLE_MODULES:
                found.append((node.module, node.lineno))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            if node.value.startswith(("/proc/", "/sys/", "/dev/shm", "/tmp/")) or node.value == "/tmp":
                found.append((node.value, node.lineno))
    return found


def _allowed(name: str, relative: str) -> bool:
    if name.startswith(("/proc/", "/sys/")):
        return True  # read with an OSError fallback: checked below, per file
    allowed = UNPORTABLE_ATTRIBUTES.get(tuple(name.split(".", 1)), UNPORTABLE_MODULES.get(name.split(".")[0]))
    return allowed == relative


def test_no_linux_only_call_outside_the_modules_that_fall_back():
    offenders = []
    for path in _sources():
        relative = path.relative_to(ROOT).as_posix()
        text = _code(path)
        for name, line in _uses(ast.parse(text)):
            if not _allowed(name, relative):
                offenders.append(f"{relative}:{line} {name}")
            elif name.startswith(("/proc/", "/sys/")):
                assert "except OSError" in text or "except (OSError" in text, f"{relative}: {name} without fallback"
            elif name.startswith("os.") and path.parent.name != "notebooks":
                guard = f'hasattr(os, "{name[3:]}")' in text or re.search(r"except \(?[\w, ]*AttributeError", text)
                assert guard, f"{relative}: {name} without a fallback"
    assert not offenders, "Linux/POSIX-only calls (use workbench.core.store.portable or environment):\n" + "\n".join(
        offenders
    )


def test_the_scan_finds_what_it_looks_for():
    tree = ast.parse("import os, fcntl\nos.sched_getaffinity(0)\nos.getloadavg()\nopen('/proc/self/io')\n")
    assert [name for name, _ in _uses(tree)] == ["fcntl", "os.sched_getaffinity", "os.getloadavg", "/proc/self/io"]
    assert not _allowed("os.getloadavg", "notebooks/09_secure_deployment.py")


def test_usable_cores_without_sched_getaffinity(monkeypatch):
    if hasattr(os, "sched_getaffinity"):
        assert environment.usable_cores() == len(os.sched_getaffinity(0))
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    assert wb.usable_cores() == os.cpu_count()


def test_load_average_without_getloadavg(monkeypatch):
    if hasattr(os, "getloadavg"):
        assert wb.load_average() == pytest.approx(os.getloadavg()[0], abs=5)
    assert (
        wb.load_note(3.5, 1.0, 2)
        == "load average 3.5 before, 1.0 after (above the 2 usable cores: other work shared them)"
    )
    assert wb.load_note(0.5, 1.25, 2) == "load average 0.5 before, 1.2 after (within the 2 usable cores)"
    monkeypatch.delattr(os, "getloadavg", raising=False)
    assert wb.load_average() is None
    assert wb.load_note(wb.load_average(), wb.load_average(), 2) == "load average not available on this system"


def _chapter_lines(stem: str, names: tuple[str, ...]) -> list[str]:
    """The top-level statements of a chapter's code cells that call one of `wb.<names>`, as source."""
    found = []
    for cell in jupytext.read(ROOT / "notebooks" / f"{stem}.py").cells:
        if cell.cell_type != "code":
            continue
        source = cell.source
        for statement in ast.parse(source).body:
            calls = {
                n.func.attr
                for n in ast.walk(statement)
                if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and isinstance(n.func.value, ast.Name)
                and n.func.value.id == "wb"
            }
            if calls & set(names) and not isinstance(statement, (ast.For, ast.While, ast.With, ast.FunctionDef)):
                found.append(ast.get_source_segment(source, statement))
    return found


@pytest.mark.parametrize("without", [(), ("sched_getaffinity", "getloadavg")], ids=["here", "without"])
def test_the_chapters_lines_run_without_the_linux_calls(monkeypatch, without):
    """Chapter 08's core count and chapter 09's load note: their own lines, run with the calls removed."""
    for name in without:
        monkeypatch.delattr(os, name, raising=False)
    environment.fingerprint.cache_clear()
    try:
        speed = _chapter_lines("08_slow_inference", ("usable_cores",))
        secure = _chapter_lines("09_secure_deployment", ("fingerprint", "load_average", "load_note"))
        assert speed == ["cores = wb.usable_cores()"] and len(secure) == 3, (speed, secure)
        namespace = {"wb": wb}
        for line in speed + secure:
            exec(line, namespace)  # noqa: S102 (the chapter's own statements)
    finally:
        environment.fingerprint.cache_clear()
    assert namespace["cores"] == namespace["cpu"]["usable_cores"] >= 1
    if without:
        assert namespace["cores"] == os.cpu_count() and namespace["load_before"] is None
        assert namespace["load"] == "load average not available on this system"
    else:
        assert namespace["load"].startswith("load average ") and "usable cores" in namespace["load"]


class FakeMsvcrt(types.ModuleType):
    """Windows' `msvcrt.locking` as far as the lock needs it (a lock from the file's position that raises OSError
    when held elsewhere), made of `flock` so that it really excludes; it records the position of every call."""

    LK_UNLCK, LK_LOCK, LK_NBLCK, LK_RLCK, LK_NBRLCK = 0, 1, 2, 3, 4

    def __init__(self):
        super().__init__("msvcrt")
        self.calls, self.refusals = [], 0

    def locking(self, fd, mode, nbytes):
        self.calls.append((mode, os.lseek(fd, 0, os.SEEK_CUR), nbytes))
        if mode == self.LK_UNLCK:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.refusals += 1
            raise OSError(errno.EDEADLOCK, "Resource deadlock avoided") from None


def _two_writers_and_a_reader(path: Path) -> None:
    """Two audit logs on one file appending from four threads while the chain is verified: one chain of 100."""
    writers = [AuditLog(path, fsync=False), AuditLog(path, fsync=False)]
    record = {"who": "k1", "action": "infer", "status": 200, "client": "10.0.0.1"}

    def append(log):
        for _ in range(25):
            log.append(record)

    threads = [threading.Thread(target=append, args=(writers[i % 2],)) for i in range(4)]
    for thread in threads:
        thread.start()
    while any(t.is_alive() for t in threads):
        assert verify_audit(path).ok
    for thread in threads:
        thread.join()
    for log in writers:
        log.close()
    report = verify_audit(path, tail=2)
    assert report.ok and report.records == 100 and [e["seq"] for e in report.tail] == [99, 100]


def test_without_fcntl_the_audit_log_and_key_store_lock_through_msvcrt(monkeypatch, tmp_path):
    fake = FakeMsvcrt()
    monkeypatch.setattr(portable, "fcntl", None)
    monkeypatch.setattr(portable, "msvcrt", fake)
    monkeypatch.delattr(os, "pread")
    _two_writers_and_a_reader(tmp_path / "audit.jsonl")
    store = KeyStore(tmp_path / "keys.json")
    new = store.add("ci", "inferrer")
    store.revoke(new.key_id)
    assert [k.status for k in KeyStore(tmp_path / "keys.json").list()] == ["revoked"]
    locks = [c for c in fake.calls if c[0] == fake.LK_NBLCK]
    unlocks = [c for c in fake.calls if c[0] == fake.LK_UNLCK]
    assert len(locks) - fake.refusals >= 100 and len(unlocks) == len(locks) - fake.refusals  # each one released
    assert {(offset, nbytes) for _, offset, nbytes in fake.calls} == {(portable.LOCK_OFFSET, 1)}
    assert (tmp_path / "audit.jsonl").stat().st_size < 100_000  # locking past the end does not grow the file


def test_with_no_process_lock_at_all_one_writer_still_works(monkeypatch, tmp_path):
    """A system with neither lock: one log object's threads are still serialized (two writers would not be)."""
    monkeypatch.setattr(portable, "fcntl", None)
    monkeypatch.setattr(portable, "msvcrt", None)
    path = tmp_path / "audit.jsonl"
    with AuditLog(path, fsync=False) as log:
        threads = [
            threading.Thread(target=lambda: [log.append({"who": "k1", "action": "infer"}) for _ in range(25)])
            for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert verify_audit(path).records == 100
    store = KeyStore(tmp_path / "keys.json")
    store.add("ci", "reader")
    assert [k.name for k in KeyStore(tmp_path / "keys.json").list()] == ["ci"]


def test_read_at_without_pread_keeps_the_position(monkeypatch, tmp_path):
    path = tmp_path / "data"
    path.write_bytes(bytes(range(200)))
    monkeypatch.delattr(os, "pread")
    fd = os.open(path, os.O_RDONLY)
    try:
        os.lseek(fd, 7, os.SEEK_SET)
        assert portable.read_at(fd, 10, 100) == bytes(range(100, 110))
        assert portable.read_at(fd, 50, 180) == bytes(range(180, 200))
        assert os.lseek(fd, 0, os.SEEK_CUR) == 7
    finally:
        os.close(fd)


def test_private_files_without_fchmod_and_modes_where_there_are_none(monkeypatch, tmp_path):
    monkeypatch.delattr(os, "fchmod")
    old = os.umask(0o027)  # narrows 0o660 to 0o640 at creation: the mode is made exact afterwards
    try:
        path = write_private_file(tmp_path / "key.pem", b"secret", 0o660)
    finally:
        os.umask(old)
    assert path.read_bytes() == b"secret" and path.stat().st_mode & 0o777 == 0o660
    path.chmod(0o644)
    assert portable.loose_mode(path) == 0o644
    monkeypatch.setattr(portable, "POSIX_MODES", False)  # Windows: every writable file reads as 0o666
    assert portable.loose_mode(path) is None


def test_a_process_is_found_alive_or_gone():
    """Through psutil, which signals nothing on Windows (`os.kill(pid, 0)` there would terminate the process)."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    assert portable.pid_alive(os.getpid()) and not portable.pid_alive(child.pid)
    assert time.time() - 3600 < portable.process_started() <= time.time()


def test_the_library_imports_and_locks_without_fcntl(tmp_path):
    """A fresh interpreter where `import fcntl` fails and the POSIX calls are gone, as on Windows."""
    script = f"""
import os, sys
sys.modules["fcntl"] = sys.modules["pwd"] = None  # as on Windows: both imports fail
for name in ("pread", "fchmod", "getloadavg", "sched_getaffinity", "getuid"):
    if hasattr(os, name):
        delattr(os, name)
from workbench.core.store import portable
from workbench.core.serve.security.audit import AuditLog, verify_audit
from workbench.cli.serve_admin import _operator
import workbench as wb
assert portable.PROCESS_LOCK is None
with AuditLog({str(tmp_path / "audit.jsonl")!r}) as log:
    log.append({{"who": "k1", "action": "infer"}})
assert verify_audit({str(tmp_path / "audit.jsonl")!r}).ok
print(wb.usable_cores() == os.cpu_count(), wb.load_average(), _operator())
"""
    env = {**os.environ, "USER": "", "LOGNAME": "", "LNAME": "", "USERNAME": ""}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "None", "cli:unknown"]
