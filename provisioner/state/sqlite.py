"""Embedded default state: one SQLite file (WAL) beside the stack, `.mlplat/<stack>.db`."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner import faults
from provisioner.errors import StateError
from provisioner.state.base import JournalEntry, LockInfo, ResourceRecord, StateBackend, StateMeta

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS resources (
    address TEXT PRIMARY KEY, kind TEXT NOT NULL, target TEXT NOT NULL, id TEXT NOT NULL,
    inputs TEXT NOT NULL, outputs TEXT NOT NULL, depends_on TEXT NOT NULL, deposed TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS journal (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, apply_id TEXT NOT NULL, address TEXT NOT NULL, op TEXT NOT NULL,
    kind TEXT NOT NULL, target TEXT NOT NULL, inputs TEXT NOT NULL, cloud_id TEXT, phase TEXT NOT NULL,
    message TEXT, at REAL NOT NULL, token TEXT NOT NULL DEFAULT '', operation TEXT);
CREATE INDEX IF NOT EXISTS journal_pending ON journal (phase) WHERE phase = 'pending';
CREATE TABLE IF NOT EXISTS lock (
    one INTEGER PRIMARY KEY CHECK (one = 1), id TEXT NOT NULL, operation TEXT NOT NULL, holder TEXT NOT NULL,
    host TEXT NOT NULL, pid INTEGER NOT NULL, started REAL NOT NULL, heartbeat REAL NOT NULL DEFAULT 0,
    lease REAL NOT NULL DEFAULT 60);
"""
LOCK_COLUMNS = "id, operation, holder, host, pid, started, heartbeat, lease"
JOURNAL_COLUMNS = "seq, apply_id, address, op, kind, target, inputs, cloud_id, phase, at, message, token, operation"
#: columns added after the first release: (table, column, declaration), added in place to older files
ADDED_COLUMNS = (("lock", "heartbeat", "REAL NOT NULL DEFAULT 0"), ("lock", "lease", "REAL NOT NULL DEFAULT 60"),
                 ("journal", "token", "TEXT NOT NULL DEFAULT ''"), ("journal", "operation", "TEXT"))

JOURNAL_KEEP = 10_000


#: SQLite's result codes for a damaged file (SQLITE_CORRUPT, SQLITE_NOTADB)
_CORRUPT_CODES = frozenset({11, 26})


def _corruption(path: Path, err: sqlite3.DatabaseError) -> StateError | None:
    """A StateError naming the damaged file and the backup to restore; None if `err` is not about damage."""
    if getattr(err, "sqlite_errorcode", None) not in _CORRUPT_CODES and type(err) is not sqlite3.DatabaseError:
        return None
    backup = backup_path(path)
    hint = (f"restore the copy made before the last state change: cp {backup} {path}" if backup.is_file() else
            f"restore {path} from a copy (there is no {backup.name} beside it)")
    return StateError(f"the state file {path} is damaged ({err}); nothing was changed", hint=hint)


def backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".backup")


def _guarded(cls: type[SqliteState]) -> type[SqliteState]:
    """Every public method turns SQLite's "malformed"/"not a database" into a StateError naming the file."""
    for name, method in list(vars(cls).items()):
        if name.startswith("_") or not callable(method):
            continue

        def wrapper(self: SqliteState, *args: Any, __method: Any = method, **kwargs: Any) -> Any:
            try:
                return __method(self, *args, **kwargs)
            except sqlite3.DatabaseError as err:
                translated = _corruption(self.path, err)
                if translated is None:
                    raise
                raise translated from None

        functools.update_wrapper(wrapper, method)
        setattr(cls, name, wrapper)
    return cls


@_guarded
class SqliteState(StateBackend):
    def __init__(self, path: str | Path, stack: str) -> None:
        self.path = Path(path)
        self.url = f"sqlite:///{self.path}"
        try:
            fresh = not self.path.is_file() or self.path.stat().st_size == 0
        except OSError:
            fresh = True
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=30)
            self._identity = _identity(self.path)
            if not fresh:
                problem = self._db.execute("PRAGMA quick_check(1)").fetchone()[0]
                if problem != "ok":
                    raise sqlite3.DatabaseError(problem)
            self._db.execute("PRAGMA page_size=1024")  # new files: each commit appends whole pages to the WAL
            _wal(self._db)
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(SCHEMA)
            self._add_columns()
        except sqlite3.DatabaseError as err:
            self._close_quietly()
            raise _corruption(self.path, err) or StateError(f"cannot open state {self.path}: {err}") from None
        except sqlite3.Error as err:
            self._close_quietly()
            raise StateError(f"cannot open state {self.path}: {err}") from None
        self._lock = threading.Lock()
        with self._tx() as db:
            if db.execute("SELECT 1 FROM meta WHERE key='lineage'").fetchone() is None:
                db.executemany("INSERT INTO meta VALUES (?, ?)",
                               [("lineage", str(uuid.uuid4())), ("serial", "0"), ("stack", stack),
                                ("outputs", "{}"), ("format", "1")])

    def _add_columns(self) -> None:
        """States written before leases, idempotency tokens and operation checkpoints gain their columns."""
        present: dict[str, set[str]] = {}
        for table, column, declaration in ADDED_COLUMNS:
            if table not in present:
                present[table] = {row[1] for row in self._db.execute(f"PRAGMA table_info({table})")}
            if column not in present[table]:
                self._db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")

    def _tx(self) -> _Transaction:
        return _Transaction(self._db, self._lock)

    def _write(self) -> _Transaction:
        """A transaction that changes the state: when fenced, the lock row is read inside it, so a takeover
        (which must wait for this IMMEDIATE transaction) is either wholly before it and refuses it, or after."""
        return _Transaction(self._db, self._lock, None if self.fence is None else self._fence_holds)

    def _fence_holds(self, db: sqlite3.Connection) -> None:
        if db.execute("SELECT id FROM lock").fetchone() != (self.fence,):
            row = db.execute(f"SELECT {LOCK_COLUMNS} FROM lock").fetchone()
            self.refuse_write(LockInfo(*row) if row else None)

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
        loads = self.codec.loads
        return {r[0]: ResourceRecord(r[0], r[1], r[2], r[3], loads(r[4]), loads(r[5]), json.loads(r[6]),
                                     json.loads(r[7])) for r in rows}

    def _close_quietly(self) -> None:
        db = getattr(self, "_db", None)
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                db.close()

    def bump_serial(self) -> int:
        self._backup()
        with self._write() as db:
            db.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key='serial'")
            # the journal is for recovery and recent audit: keep the last JOURNAL_KEEP closed entries
            db.execute("DELETE FROM journal WHERE phase != 'pending' AND seq <= "
                       "(SELECT COALESCE(MAX(seq), 0) FROM journal) - ?", (JOURNAL_KEEP,))
            return int(db.execute("SELECT value FROM meta WHERE key='serial'").fetchone()[0])

    def put(self, record: ResourceRecord) -> None:
        with self._write() as db:
            self._put(db, record)

    def remove(self, address: str) -> None:
        with self._write() as db:
            db.execute("DELETE FROM resources WHERE address=?", (address,))

    def journal_pending(self, apply_id: str, op: str, record: ResourceRecord, *, token: str = "") -> int:
        self.check_lease()
        body = self.codec.dumps([record.inputs, record.depends_on, record.deposed])
        with self._write() as db:
            cur = db.execute(
                "INSERT INTO journal (apply_id, address, op, kind, target, inputs, cloud_id, phase, at, token) "
                "VALUES (?,?,?,?,?,?,?,'pending',?,?)",
                (apply_id, record.address, op, record.kind, record.target, body, record.id or None, time.time(),
                 token))
            seq = int(cur.lastrowid)
        faults.reached("pending")
        return seq

    def journal_instant(self, apply_id: str, op: str, record: ResourceRecord, *, token: str = "",
                        put: ResourceRecord | None = None, remove: str | None = None) -> None:
        self.journal_instant_many([(apply_id, op, record, token, put, remove)])

    def journal_instant_many(self, entries: list[tuple[str, str, ResourceRecord, str, ResourceRecord | None,
                                                       str | None]]) -> None:
        self.check_lease()
        with self._write() as db:
            for apply_id, op, record, token, put, remove in entries:
                body = self.codec.dumps([record.inputs, record.depends_on, record.deposed])
                db.execute(
                    "INSERT INTO journal (apply_id, address, op, kind, target, inputs, cloud_id, phase, at, token) "
                    "VALUES (?,?,?,?,?,?,?,'done',?,?)",
                    (apply_id, record.address, op, record.kind, record.target, body, (put or record).id or None,
                     time.time(), token))
                if put is not None:
                    self._put(db, put)
                if remove is not None:
                    db.execute("DELETE FROM resources WHERE address=?", (remove,))

    def journal_checkpoint(self, seq: int, operation: str) -> None:
        with self._write() as db:
            db.execute("UPDATE journal SET operation=? WHERE seq=?", (operation, seq))

    def journal_done(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        faults.reached("before-done")
        with self._write() as db:
            db.execute("UPDATE journal SET phase='done', cloud_id=COALESCE(?, cloud_id) WHERE seq=?",
                       (put.id if put else None, seq))
            if put is not None:
                self._put(db, put)
            if remove is not None:
                db.execute("DELETE FROM resources WHERE address=?", (remove,))
        faults.reached("done")

    def journal_failed(self, seq: int, message: str) -> None:
        with self._write() as db:
            db.execute("UPDATE journal SET phase='failed', message=? WHERE seq=?", (message[:2000], seq))

    def pending(self) -> list[JournalEntry]:
        return self._entries("WHERE phase='pending'")

    def journal(self) -> list[JournalEntry]:
        return self._entries("")

    def _entries(self, where: str) -> list[JournalEntry]:
        with self._lock:
            rows = self._db.execute(f"SELECT {JOURNAL_COLUMNS} FROM journal {where} ORDER BY seq").fetchall()
        return [self.journal_entry(*row) for row in rows]

    def resolve_pending(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        with self._write() as db:
            db.execute("UPDATE journal SET phase='resolved' WHERE seq=?", (seq,))
            if put is not None:
                self._put(db, put)
            if remove is not None:
                db.execute("DELETE FROM resources WHERE address=?", (remove,))

    def get_outputs(self) -> dict[str, Any]:
        with self._lock:
            text = self._meta_value("outputs") or "{}"
        return self.codec.loads(text)

    def set_outputs(self, outputs: dict[str, Any]) -> None:
        text = self.codec.dumps(outputs)
        with self._write() as db:
            db.execute("INSERT OR REPLACE INTO meta VALUES ('outputs', ?)", (text,))

    def _backup(self) -> None:
        """Copy the state to `<file>.backup` before it changes (what a damaged file is restored from)."""
        target = backup_path(self.path)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        try:
            copy = sqlite3.connect(tmp)
            try:
                with self._lock:
                    self._db.backup(copy)
            finally:
                copy.close()
            os.replace(tmp, target)
        except (OSError, sqlite3.OperationalError):
            pass  # a backup is a convenience: a full disk must not stop the apply (the WAL still protects it)
        finally:
            tmp.unlink(missing_ok=True)

    def remove_if_empty(self) -> bool:
        """Delete the state file (and its backup) if it records nothing, nothing is pending, nobody holds the
        lock and no other process has it open; closes this backend. True if removed."""
        with self._lock:
            # leaving WAL mode needs the only connection: another process with the file open keeps it
            try:
                if self._db.execute("PRAGMA journal_mode=DELETE").fetchone()[0].lower() != "delete":
                    return False
            except sqlite3.OperationalError:  # "database is locked": another process is reading it right now
                return False
            self._db.execute("BEGIN EXCLUSIVE")
            try:
                busy = (self._db.execute("SELECT COUNT(*) FROM resources").fetchone()[0]
                        or self._db.execute("SELECT COUNT(*) FROM journal WHERE phase='pending'").fetchone()[0]
                        or self._db.execute("SELECT COUNT(*) FROM lock").fetchone()[0])
                if not busy:
                    for path in (self.path, backup_path(self.path)):
                        path.unlink(missing_ok=True)
            finally:
                self._db.execute("ROLLBACK")
            if busy:
                self._db.execute("PRAGMA journal_mode=WAL")
                return False
            self._db.close()
            return True

    def _check_identity(self) -> None:
        """The file we opened must still be the one at our path: a destroy that removed the state while we
        waited for its lock must not leave us writing into a deleted file."""
        if _identity(self.path) != self._identity:
            raise StateError(f"the state file {self.path} was removed or replaced while this command waited",
                             hint="run the command again")

    def read_lock(self) -> LockInfo | None:
        with self._lock:
            row = self._db.execute(f"SELECT {LOCK_COLUMNS} FROM lock").fetchone()
        return LockInfo(*row) if row else None

    def write_lock(self, info: LockInfo, *, replacing: str | None) -> bool:
        values = (info.id, info.operation, info.holder, info.host, info.pid, info.started, info.heartbeat, info.lease)
        self._check_identity()
        with self._tx() as db:
            if replacing is None:
                return db.execute(f"INSERT OR IGNORE INTO lock (one, {LOCK_COLUMNS}) VALUES (1,?,?,?,?,?,?,?,?)",
                                  values).rowcount > 0
            return db.execute("UPDATE lock SET id=?, operation=?, holder=?, host=?, pid=?, started=?, heartbeat=?, "
                              "lease=? WHERE id=?", (*values, replacing)).rowcount > 0

    def delete_lock(self, lock_id: str) -> bool:
        with self._tx() as db:
            return db.execute("DELETE FROM lock WHERE id=?", (lock_id,)).rowcount > 0

    def import_state(self, meta: StateMeta, resources: list[ResourceRecord], journal: list[JournalEntry],
                     outputs: dict[str, Any]) -> None:
        text = self.codec.dumps(outputs)
        with self._tx() as db:
            if db.execute("SELECT COUNT(*) FROM resources").fetchone()[0]:
                raise StateError(f"{self.url} already holds resources; migrate only into an empty state")
            db.executemany("INSERT OR REPLACE INTO meta VALUES (?, ?)",
                           [("lineage", meta.lineage), ("serial", str(meta.serial)), ("stack", meta.stack),
                            ("outputs", text)])
            db.execute("DELETE FROM journal")
            for entry in journal:
                r = entry.record
                db.execute(f"INSERT INTO journal ({JOURNAL_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)",
                           (entry.seq, entry.apply_id, r.address, entry.op, r.kind, r.target,
                            self.codec.dumps([r.inputs, r.depends_on, r.deposed]), r.id or None, entry.phase,
                            entry.at, entry.message, entry.token, entry.operation))
            for record in resources:
                self._put(db, record)

    def _put(self, db: sqlite3.Connection, r: ResourceRecord) -> None:
        db.execute("INSERT OR REPLACE INTO resources VALUES (?,?,?,?,?,?,?,?)",
                   (r.address, r.kind, r.target, r.id, self.codec.dumps(r.inputs), self.codec.dumps(r.outputs),
                    json.dumps(r.depends_on), json.dumps(r.deposed)))

    def journal_size(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM journal").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _wal(db: sqlite3.Connection, patience_s: float = 30.0) -> None:
    """Switch to WAL mode. The switch takes no notice of the busy timeout: a process or thread opening the same new
    file at that moment (two `mlplat` commands, the UI's pages) makes it fail with "database is locked" at once, so
    it is tried again for up to `patience_s`."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            db.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as err:
            if "locked" not in str(err) or time.monotonic() > deadline:
                raise
            time.sleep(0.02)


class _Transaction:
    """`with` block = one IMMEDIATE transaction, serialized across the engine's threads; `check` runs first in
    it (and rolls it back by raising)."""

    def __init__(self, db: sqlite3.Connection, lock: threading.Lock,
                 check: Callable[[sqlite3.Connection], None] | None = None) -> None:
        self._db, self._lock, self._check = db, lock, check

    def __enter__(self) -> sqlite3.Connection:
        self._lock.acquire()
        try:
            self._db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self._lock.release()
            raise
        if self._check is not None:
            try:
                self._check(self._db)
            except BaseException:
                self.__exit__(BaseException, None, None)
                raise
        return self._db

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        try:
            self._db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self._lock.release()


