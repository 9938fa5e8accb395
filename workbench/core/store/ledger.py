"""The experiment ledger: variants with lineage and measurements with context, in one SQLite file."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from ..environment import fingerprint, fingerprint_id
from ..errors import WorkspaceError

SCHEMA_VERSION = 1
_SCHEMA = """
CREATE TABLE IF NOT EXISTS fingerprints (
    id TEXT PRIMARY KEY,
    data TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS variants (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL,
    parent_id INTEGER REFERENCES variants(id),
    step TEXT NOT NULL,
    params TEXT NOT NULL,
    format TEXT,
    path TEXT,
    sha256 TEXT,
    size_bytes INTEGER,
    fingerprint_id TEXT REFERENCES fingerprints(id),
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    variant_id INTEGER NOT NULL REFERENCES variants(id),
    kind TEXT NOT NULL,
    metrics TEXT NOT NULL,
    context TEXT NOT NULL,
    fingerprint_id TEXT REFERENCES fingerprints(id),
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS variants_sha ON variants(sha256);
CREATE INDEX IF NOT EXISTS measurements_variant ON measurements(variant_id);
"""


def now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


class Ledger:
    """Append-mostly store; every write is one short IMMEDIATE transaction, so processes can share the file."""

    def __init__(self, path: Path | str, *, timeout: float = 60.0):
        self.path = Path(path)
        self.timeout = timeout
        try:
            with self._connect() as db:
                db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                db.executescript(_SCHEMA)
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            raise WorkspaceError(f"ledger {self.path} cannot be opened: {exc}",
                                 "move the damaged file aside, or choose another workspace") from exc

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA foreign_keys=ON")
        try:
            yield db
        finally:
            db.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")  # take the write lock up front: no upgrade deadlocks between processes
            try:
                yield db
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise

    def _fingerprint(self, db: sqlite3.Connection) -> str:
        data = fingerprint()
        fid = fingerprint_id(data)
        db.execute("INSERT OR IGNORE INTO fingerprints VALUES (?, ?, ?)", (fid, json.dumps(data), now()))
        return fid

    def add_variant(self, name: str, *, step: str, params: dict | None = None, parent_id: int | None = None,
                    format: str | None = None, path: str | None = None, sha256: str | None = None,
                    size_bytes: int | None = None) -> int:
        """Record a variant; the same artifact made by the same step from the same parent is recorded once."""
        params_json = json.dumps(params or {}, sort_keys=True, default=str)
        with self._write() as db:
            if sha256 is not None:
                row = db.execute(
                    "SELECT id FROM variants WHERE sha256=? AND step=? AND parent_id IS ? AND params=?",
                    (sha256, step, parent_id, params_json)).fetchone()
                if row:
                    return int(row["id"])
            cursor = db.execute(
                "INSERT INTO variants (name, parent_id, step, params, format, path, sha256, size_bytes,"
                " fingerprint_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, parent_id, step, params_json, format, path, sha256, size_bytes, self._fingerprint(db), now()))
            return int(cursor.lastrowid)

    def find_variant(self, *, step: str, parent_id: int | None, params: dict) -> int | None:
        """The latest variant made by `step` from `parent_id` with exactly `params`, if any."""
        params_json = json.dumps(params or {}, sort_keys=True, default=str)
        with self._connect() as db:
            row = db.execute("SELECT id FROM variants WHERE step=? AND parent_id IS ? AND params=? ORDER BY id DESC",
                             (step, parent_id, params_json)).fetchone()
        return int(row["id"]) if row else None

    def add_measurement(self, variant_id: int, kind: str, metrics: dict, context: dict | None = None) -> int:
        """Record one measurement of `variant_id` (kind: accuracy, latency, parity, ...) with its context."""
        with self._write() as db:
            cursor = db.execute(
                "INSERT INTO measurements (variant_id, kind, metrics, context, fingerprint_id, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                (variant_id, kind, json.dumps(metrics, default=str), json.dumps(context or {}, default=str),
                 self._fingerprint(db), now()))
            return int(cursor.lastrowid)

    def remove_measurements(self, ids: list[int]) -> None:
        """Forget measurements of a run that was cancelled part-way (the ledger stays as before the run)."""
        with self._write() as db:
            db.executemany("DELETE FROM measurements WHERE id=?", [(int(i),) for i in ids])

    def rows(self, table: str) -> list[dict]:
        """All rows of `variants`, `measurements` or `fingerprints`, JSON columns decoded."""
        if table not in ("variants", "measurements", "fingerprints"):
            raise ValueError(f"unknown table {table!r}")
        with self._connect() as db:
            rows = [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY rowid")]  # noqa: S608 - fixed names
        for row in rows:
            for key in ("params", "metrics", "context", "data"):
                if key in row:
                    row[key] = json.loads(row[key])
        return rows

    def lineage(self, variant_id: int) -> list[dict]:
        """The variant and its ancestors, root last."""
        by_id = {row["id"]: row for row in self.rows("variants")}
        chain, current = [], by_id.get(variant_id)
        while current is not None:
            chain.append(current)
            current = by_id.get(current["parent_id"])
        return chain
