"""Disk and database faults: each gives a WorkspaceError naming its cause and fix, and leaves nothing half-done."""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest

from workbench.core.errors import WorkspaceError
from workbench.core.store.faults import os_fault
from workbench.core.store.ledger import SCHEMA_VERSION, Ledger
from workbench.core.store.workspace import Workspace

REAL_CONNECT = sqlite3.connect


def _source(tmp_path: Path) -> Path:
    source = tmp_path / "model.pt"
    source.write_bytes(random.Random(0).randbytes(64 * 1024))
    return source


def _left_in(ws: Workspace) -> list[str]:
    return sorted(p.name for p in ws.artifacts.iterdir())


@pytest.mark.parametrize(
    ("code", "problem", "fix"),
    [
        (errno.ENOSPC, "the disk is full", "free space on that disk"),
        (errno.EDQUOT, "disk quota is used up", "free space on that disk"),
        (errno.EACCES, "permission denied on", "write access"),
        (errno.EPERM, "permission denied on", "write access"),
        (errno.EROFS, "read-only file system", "remount"),
        (errno.EIO, "Input/output error", "retry"),
    ],
)
def test_os_fault_names_each_cause_and_its_fix(tmp_path, code, problem, fix):
    error = os_fault(OSError(code, os.strerror(code)), "copying the model into the workspace", tmp_path)
    assert error.problem.startswith("Copying the model into the workspace failed: ")
    assert problem in error.problem and fix in error.fix and "--workspace" in error.fix
    if code == errno.ENOSPC:
        assert " free)" in error.problem  # the space left on that disk, read by shutil.disk_usage


@pytest.mark.parametrize(
    ("code", "said"),
    [(errno.ENOSPC, "the disk is full"), (errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied")],
)
def test_fault_while_copying_the_model_leaves_nothing(tmp_path, monkeypatch, code, said):
    ws = Workspace(tmp_path / "ws")

    def half_copy(src, dst, **kwargs):
        Path(dst).write_bytes(Path(src).read_bytes()[:1000])
        raise OSError(code, os.strerror(code), str(dst))

    monkeypatch.setattr(shutil, "copy2", half_copy)
    with pytest.raises(WorkspaceError, match=said) as info:
        ws.add_artifact(_source(tmp_path), "model.pt", step="source")
    assert "Copying" in info.value.problem and str(ws.artifacts) in str(info.value)
    assert ".staging-" not in str(info.value)  # names the folder, not a staging file that is gone
    assert _left_in(ws) == [] and ws.ledger.variants() == []


@pytest.mark.parametrize("failing_move", [0, 1], ids=["into-staging", "onto-final-name"])
def test_full_disk_while_moving_an_export_leaves_nothing(tmp_path, monkeypatch, failing_move):
    ws = Workspace(tmp_path / "ws")
    real_replace, moves = os.replace, []

    def replace(src, dst):
        moves.append(dst)
        if len(moves) - 1 == failing_move:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(src), None, str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    with pytest.raises(WorkspaceError, match="the disk is full") as info:
        ws.add_artifact(lambda p: p.write_bytes(b"onnx" * 1000), "m.onnx", step="export")
    assert "free space" in info.value.fix
    assert _left_in(ws) == [] and ws.ledger.variants() == []


@pytest.mark.parametrize(("read_only_disk", "said"), [(False, "permission denied"), (True, "read-only file system")])
def test_read_only_artifacts_folder_is_refused_before_copying(tmp_path, monkeypatch, read_only_disk, said):
    ws = Workspace(tmp_path / "ws")  # the root stays writable; only artifacts/ is not
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **kw: Path(p) != ws.artifacts and real_access(p, mode, **kw))
    if read_only_disk:
        monkeypatch.setattr(os, "statvfs", lambda p: SimpleNamespace(f_flag=os.ST_RDONLY))
    copies = []
    monkeypatch.setattr(shutil, "copy2", lambda *args, **kwargs: copies.append(args))
    with pytest.raises(WorkspaceError, match=said) as info:
        ws.add_artifact(_source(tmp_path), "model.pt", step="source")
    assert str(ws.artifacts) in info.value.problem and copies == []
    assert _left_in(ws) == [] and ws.ledger.variants() == []


def test_workspace_on_a_read_only_disk_says_to_remount(tmp_path, monkeypatch):
    def refuse(self, data):
        raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(self))

    monkeypatch.setattr(Path, "write_bytes", refuse)
    with pytest.raises(WorkspaceError, match="not writable") as info:
        Workspace(tmp_path / "ws")
    assert "remount" in info.value.fix


def _cap_pages(*args, **kwargs):
    """A connection that may not grow the file: SQLite reports 'database or disk is full' as on a full disk."""
    db = REAL_CONNECT(*args, **kwargs)
    db.execute(f"PRAGMA max_page_count={db.execute('PRAGMA page_count').fetchone()[0]}")
    return db


def test_full_disk_in_the_ledger_reports_the_real_error(tmp_path, monkeypatch):
    ledger = Ledger(tmp_path / "workbench.db")
    ledger.add_variant("kept", step="source")
    monkeypatch.setattr(sqlite3, "connect", _cap_pages)
    with pytest.raises(WorkspaceError) as info:
        ledger.add_variant("big", step="source", params={"blob": "x" * 200_000})
    monkeypatch.undo()
    assert "database or disk is full" in info.value.problem and "cannot rollback" not in str(info.value)
    assert "the disk is full" in info.value.problem and "free space" in info.value.fix
    assert "not damaged" in info.value.fix and "aside" not in info.value.fix
    assert [v.name for v in Ledger(ledger.path).variants()] == ["kept"]  # nothing recorded, still opens


def _read_only_connect(target, *args, uri=False, **kwargs):
    """As SQLite opens a ledger file this user cannot write (root ignores chmod, so mode=ro stands in)."""
    if not uri:
        target, uri = f"{Path(target).absolute().as_uri()}?mode=ro", True
    return REAL_CONNECT(target, *args, uri=uri, **kwargs)


@pytest.mark.parametrize("how", ["read_only=True", "file-not-writable"])
def test_read_only_ledger_opens_for_reading_and_refuses_writes(tmp_path, monkeypatch, how):
    path = tmp_path / "workbench.db"
    Ledger(path).add_variant("kept", step="source")
    if how == "read_only=True":
        ledger = Ledger(path, read_only=True)
    else:
        monkeypatch.setattr(sqlite3, "connect", _read_only_connect)
        ledger = Ledger(path)
    assert [v.name for v in ledger.variants()] == ["kept"]  # the dashboard only reads
    with pytest.raises(WorkspaceError, match="attempt to write a readonly database") as info:
        ledger.add_variant("new", step="source")
    assert "cannot be written: the ledger file or its folder is read-only" in info.value.problem
    assert "write access" in info.value.fix and "not damaged" in info.value.fix and "aside" not in info.value.fix


def test_read_only_ledger_without_tables_is_not_called_damaged(tmp_path):
    path = tmp_path / "workbench.db"
    path.write_bytes(b"")  # an empty file is an empty SQLite database: the tables must still be made
    with pytest.raises(WorkspaceError, match="cannot be opened: the ledger file or its folder is read-only") as info:
        Ledger(path, read_only=True)
    assert "aside" not in info.value.fix


def test_locked_ledger_names_the_other_process(tmp_path):
    path = tmp_path / "workbench.db"
    Ledger(path)
    holder = REAL_CONNECT(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        waiting = Ledger(path, timeout=0.05)  # reads do not wait for the writer (WAL)
        with pytest.raises(WorkspaceError, match="database is locked") as info:
            waiting.add_variant("m", step="source")
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "another process holds its write lock" in info.value.problem
    assert "wait" in info.value.fix and "aside" not in info.value.fix
    assert waiting.variants() == []


def test_corrupted_pages_are_refused_on_open(tmp_path):
    path = tmp_path / "workbench.db"
    ledger = Ledger(path)
    for i in range(3):
        ledger.add_measurement(ledger.add_variant(f"v{i}", step="source"), "latency", {"ms": i})
    assert not Path(f"{path}-wal").exists()  # the last connection closed: every page is in the file
    data = bytearray(path.read_bytes())
    page = int.from_bytes(data[16:18], "big")
    data[page : 3 * page] = random.Random(1).randbytes(2 * page)  # pages 2 and 3; the header stays valid
    path.write_bytes(bytes(data))
    with pytest.raises(WorkspaceError, match="cannot be opened: the file is damaged") as info:
        Ledger(path)
    assert "malformed" in info.value.problem  # quick_check on open meets the bad pages, before any new row
    assert f"move {path} aside" in info.value.fix and "artifacts" in info.value.fix and "stay" in info.value.fix


def test_random_bytes_are_not_a_database(tmp_path):
    path = tmp_path / "workbench.db"
    path.write_bytes(random.Random(2).randbytes(8192))
    with pytest.raises(WorkspaceError, match="the file is damaged .*file is not a database") as info:
        Ledger(path)
    assert f"move {path} aside" in info.value.fix and "artifacts" in info.value.fix


@pytest.mark.parametrize(
    ("setup", "said"),
    [
        ("CREATE TABLE variants (id INTEGER PRIMARY KEY, colour TEXT)", "its table variants has columns (id, colour)"),
        (f"PRAGMA user_version={SCHEMA_VERSION + 1}", "written by a newer workbench"),
        ("CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL)", "another program's SQLite file"),
    ],
    ids=["other-columns", "newer-schema", "other-tables"],
)
def test_foreign_sqlite_file_is_refused_and_left_as_it_is(tmp_path, setup, said):
    path = tmp_path / "workbench.db"
    db = REAL_CONNECT(path)
    db.execute(setup)
    db.commit()
    db.close()
    before = path.read_bytes()
    with pytest.raises(WorkspaceError, match=re.escape(said)) as info:
        Ledger(path)
    assert "choose another workspace" in info.value.fix and "aside" not in info.value.fix
    assert path.read_bytes() == before
