"""Embedded default state: one SQLite file (WAL) beside the stack, `.mlplat/<stack>.db`."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from provisioner import faults
from provisioner.errors import LockHeld, StateError
from provisioner.state.base import JournalEntry, LockInfo, ResourceRecord, StateBackend, StateMeta

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    address TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL, id TEXT NOT NULL,
    inputs TEXT NOT NULL, outputs TEXT NOT NULL, depends_on TEXT NOT NULL, deposed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, apply_id TEXT NOT NULL, address TEXT NOT NULL, op TEXT NOT NULL,
    kind TEXT NOT NULL, target TEXT NOT NULL, inputs TEXT NOT NULL, cloud_id TEXT, phase TEXT NOT NULL,
    message TEXT, at REAL NOT NULL);
CREATE INDEX IF NOT EXISTS journal_pending ON journal (phase) WHERE phase = 'pending';
CREATE TABLE IF NOT EXISTS lock (
    one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT NOT NULL, operation TEXT NOT NULL, holder TEXT NOT NULL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL);
"""

JOURNAL_KEEP = 10_000
_dumps = json.JSONEncoder(separators=(",", ":"), sort_keys=True).encode


class SqliteState(StateBackend):
    def __init__(self, path: str | Path, stack: str) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
        except sqlite3.Error as err:
            raise StateError(f"cannot open state {self.path}: {err}") from None
        self._lock = threading.Lock()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM meta WHERE key='lineage'").fetchone() is None:
                db.executemany("INSERT INTO meta VALUES (?, ?)",
                               [("lineage", str(uuid.uuid4())), ("serial", "0"), ("stack", stack),
                                ("outputs", "{}"), ("format", "1")])

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def _meta_value(self, key: str) -> str:
        row = self._db.execute("SELECT value FROM meta WHERE key=?", (key,)).fetchone()
        return row[0] if row else ""

    def meta(self) -> StateMeta:
        with self._lock:
            return StateMeta(self._meta_value("lineage"), int(self._meta_value("serial") or 0),
                             self._meta_value("stack"))

    def resources(self) -> dict[str, ResourceRecord]:
        with self._lock:
            rows = self._db.execute("SELECT address, kind, target, id, inputs, outputs, depends_on, deposed "
                                    "FROM resources ORDER BY address").fetchall()
        return {r[0]: ResourceRecord(r[0], r[1], r[2], r[3], json.loads(r[4]), json.loads(r[5]),
                                     json.loads(r[6]), json.loads(r[7])) for r in rows}

    def bump_serial(self) -> int:
        with self._tx() as db:
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='serial'")
            # the journal is for recovery and recent audit: keep the last JOURNAL_KEEP closed entries
            db.execute("DELETE FROM journal WHERE phase != 'pending' AND seq <= "
                       "(SELECT COALESCE(MAX(seq), 0) FROM journal) - ?", (JOURNAL_KEEP,))
            return int(db.execute("SELECT value FROM meta WHERE key='serial'").fetchone()[0])

    def put(self, record: ResourceRecord) -> None:
        with self._tx() as db:
            _put(db, record)

    def remove(self, address: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM resources WHERE address=?", (address,))

    def journal_pending(self, apply_id: str, op: str, record: ResourceRecord) -> int:
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO journal (apply_id, address, op, kind, target, inputs, cloud_id, phase, at) "
                "VALUES (?,?,?,?,?,?,?,'pending',?)",
                (apply_id, record.address, op, record.kind, record.target,
                 _dumps([record.inputs, record.depends_on, record.deposed]), record.id or None, time.time()))
            seq = int(cur.lastrowid)
        faults.reached("pending")
        return seq

    def journal_done(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        faults.reached("before-done")
        with self._tx() as db:
            db.execute("UPDATE journal SET phase='done', cloud_id=COALESCE(?, cloud_id) WHERE seq=?",
                       (put.id if put else None, seq))
            if put is not None:
                _put(db, put)
            if remove is not None:
                db.execute("DELETE FROM resources WHERE address=?", (remove,))
        faults.reached("done")

    def journal_failed(self, seq: int, message: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE journal SET phase='failed', message=? WHERE seq=?", (message[:2000], seq))

    def pending(self) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute("SELECT seq, apply_id, address, op, kind, target, inputs, cloud_id, phase, at "
                                    "FROM journal WHERE phase='pending' ORDER BY seq").fetchall()
        entries = []
        for seq, apply_id, address, op, kind, target, body, cloud_id, phase, at in rows:
            inputs, depends_on, deposed = json.loads(body)
            record = ResourceRecord(address, kind, target, cloud_id or "", inputs, {}, depends_on, deposed)
            entries.append(JournalEntry(seq, apply_id, op, record, phase, at))
        return entries

    def resolve_pending(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        with self._tx() as db:
            db.execute("UPDATE journal SET phase='resolved' WHERE seq=?", (seq,))
            if put is not None:
                _put(db, put)
            if remove is not None:
                db.execute("DELETE FROM resources WHERE address=?", (remove,))

    def get_outputs(self) -> dict[str, Any]:
        with self._lock:
            return json.loads(self._meta_value("outputs") or "{}")

    def set_outputs(self, outputs: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('outputs', ?)", (_dumps(outputs),))

    def acquire_lock(self, info: LockInfo) -> LockInfo | None:
        with self._tx() as db:
            row = db.execute("SELECT id, operation, holder, host, pid, started FROM lock").fetchone()
            previous = LockInfo(*row) if row else None
            if previous is not None:
                if not _holder_is_dead(previous):
                    raise LockHeld(f"the stack is locked by {previous.describe()}",
                                   hint=f"wait for it to finish; if that process is gone for good, run "
                                        f"`mlplat state unlock {previous.id}`")
                db.execute("DELETE FROM lock")
            db.execute("INSERT INTO lock VALUES (1, ?, ?, ?, ?, ?, ?)",
                       (info.id, info.operation, info.holder, info.host, info.pid, info.started))
            return previous

    def release_lock(self, lock_id: str) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM lock WHERE id=?", (lock_id,))

    def force_unlock(self, lock_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM lock WHERE id=?", (lock_id,)).rowcount > 0

    def journal_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


class _Transaction:
    """`with` block = one IMMEDIATE transaction, serialized across the engine's threads."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock) -> None:
        self._db, self._lock = db, lock

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


def _put(db: sqlite3.Connection, r: ResourceRecord) -> None:
    db.execute("INSERT OR REPLACE INTO resources VALUES (?,?,?,?,?,?,?,?)",
               (r.address, r.kind, r.target, r.id, _dumps(r.inputs), _dumps(r.outputs), _dumps(r.depends_on),
                _dumps(r.deposed)))


def _holder_is_dead(info: LockInfo) -> bool:
    """Only provable on the same host: the pid no longer exists."""
    if info.host != socket.gethostname():
        return False
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False
