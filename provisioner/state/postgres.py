"""PostgreSQL state: many stacks share one database, every row keyed by its stack (`postgresql://user@host/db`).

One connection per backend (autocommit; multi-statement changes in explicit transactions), serialized across the
engine's threads by a lock. The stack's lock is a lease row per stack changed by single atomic statements, so
two stacks never block each other. A fenced write (`StateBackend.fence`) first reads its stack's lock row FOR
SHARE in its own transaction: a takeover's UPDATE of that row waits for the write to commit, and a write that
starts after a takeover sees the new holder and is refused. The password never appears in the URL we keep: it
comes from PGPASSWORD, ~/.pgpass (libpq reads both), or the URL itself if the user insists (then it is masked in
`self.url`).
"""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from provisioner import faults
from provisioner.errors import StateError
from provisioner.state.base import JournalEntry, LockInfo, ResourceRecord, StateBackend, StateMeta

if TYPE_CHECKING:
    import psycopg

#: the last object SCHEMA creates and the last column it adds: when both exist, the schema is complete and no
#: DDL (nor its locks) is needed
SCHEMA_MARKER = "mlplat_journal_pending"
SCHEMA_COLUMN = ("mlplat_journal", "operation")
SCHEMA = [
    """CREATE TABLE IF NOT EXISTS mlplat_meta (
        stack TEXT NOT NULL, key TEXT NOT NULL, value TEXT NOT NULL, PRIMARY KEY (stack, key))""",
    """CREATE TABLE IF NOT EXISTS mlplat_resources (
        stack TEXT NOT NULL, address TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, id TEXT NOT NULL,
        inputs TEXT NOT NULL, outputs TEXT NOT NULL, depends_on TEXT NOT NULL, deposed TEXT NOT NULL,
        PRIMARY KEY (stack, address))""",
    """CREATE TABLE IF NOT EXISTS mlplat_journal (
        seq BIGSERIAL NOT NULL, stack TEXT NOT NULL, apply_id TEXT NOT NULL, address TEXT NOT NULL,
        op TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL, inputs TEXT NOT NULL, cloud_id TEXT,
        phase TEXT NOT NULL, message TEXT, at DOUBLE PRECISION NOT NULL, token TEXT NOT NULL DEFAULT '',
        operation TEXT, PRIMARY KEY (stack, seq))""",
    # journals made before idempotency tokens and operation checkpoints gain their columns in place
    "ALTER TABLE mlplat_journal ADD COLUMN IF NOT EXISTS token TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE mlplat_journal ADD COLUMN IF NOT EXISTS operation TEXT",
    """CREATE TABLE IF NOT EXISTS mlplat_locks (
        stack TEXT PRIMARY KEY, id TEXT NOT NULL, operation TEXT NOT NULL, holder TEXT NOT NULL, host TEXT NOT NULL,
        pid INTEGER NOT NULL, started DOUBLE PRECISION NOT NULL, heartbeat DOUBLE PRECISION NOT NULL,
        lease DOUBLE PRECISION NOT NULL)""",
    f"CREATE INDEX IF NOT EXISTS {SCHEMA_MARKER} ON mlplat_journal (stack, seq) WHERE phase = 'pending'",
]
#: any constant: serializes first-time schema creation by concurrent processes (CREATE ... IF NOT EXISTS races)
DDL_LOCK_KEY = 0x6D6C706C6174
LOCK_COLUMNS = "id, operation, holder, host, pid, started, heartbeat, lease"
RESOURCE_COLUMNS = "address, kind, target, id, inputs, outputs, depends_on, deposed"
JOURNAL_COLUMNS = "seq, apply_id, address, op, kind, target, inputs, cloud_id, phase, at, message, token, operation"
JOURNAL_SEQUENCE = "mlplat_journal_seq_seq"  # BIGSERIAL's: shared by all stacks, so seq numbers are unique

JOURNAL_KEEP = 10_000  # closed entries kept per stack, as in sqlite


def mask_url(url: str) -> str:
    """The URL with any password (in the authority or a `password=` parameter) replaced by ***."""
    parts = urlsplit(url)
    if parts.password is not None:
        host = parts.netloc.rpartition("@")[2]
        parts = parts._replace(netloc=f"{parts.username or ''}:***@{host}")
    return re.sub(r"(?i)\bpassword=[^&]*", "password=***", urlunsplit(parts))


class PostgresState(StateBackend):
    def __init__(self, url: str, stack: str) -> None:
        self.url = mask_url(url)
        self.stack = stack
        self._lock = threading.Lock()
        self._url = url
        self._secret: str | None = None
        self._where = self.url
        self._conn = self._connect()
        self._ensure_schema()
        with self._tx() as cur:
            cur.execute("INSERT INTO mlplat_meta (stack, key, value) VALUES (%s,'lineage',%s), (%s,'serial','0'), "
                        "(%s,'stack',%s), (%s,'outputs','{}'), (%s,'format','1') ON CONFLICT DO NOTHING",
                        (stack, str(uuid.uuid4()), stack, stack, stack, stack, stack))

    # -- connection and transactions -------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        try:
            import psycopg
            from psycopg.conninfo import conninfo_to_dict
        except ImportError:
            raise StateError("the postgres state backend needs psycopg",
                             hint="pip install 'mlplat[postgres]'") from None
        hint = ("check that the server is up and reachable and that the database exists; the password comes from "
                "PGPASSWORD or ~/.pgpass")
        try:
            params = conninfo_to_dict(self._url)
            self._secret = str(params.get("password") or "") or None
            self._where = f"{params.get('host') or 'localhost'}:{params.get('port') or 5432}/{params.get('dbname')}"
            params.setdefault("connect_timeout", 10)
            params.setdefault("application_name", "mlplat")
            return psycopg.connect(autocommit=True, **params)
        except psycopg.Error as err:
            raise StateError(f"cannot connect to the PostgreSQL state at {self._where}: {self._clean(err)}",
                             hint=hint) from None

    def _clean(self, err: Exception) -> str:
        """libpq's message, first line, with the password scrubbed should it ever be echoed."""
        text = (str(err).strip().splitlines() or [type(err).__name__])[0]
        return text.replace(self._secret, "***") if self._secret else text

    def _ensure_schema(self) -> None:
        with self._tx() as cur:
            cur.execute("SELECT to_regclass(%s) IS NOT NULL AND EXISTS (SELECT 1 FROM pg_attribute WHERE "
                        "attrelid = to_regclass(%s) AND attname = %s AND NOT attisdropped)",
                        (SCHEMA_MARKER, *SCHEMA_COLUMN))
            if _scalar(cur):
                return
            cur.execute("SELECT pg_advisory_xact_lock(%s)", (DDL_LOCK_KEY,))  # held until this transaction ends
            for statement in SCHEMA:
                cur.execute(statement)

    @contextmanager
    def _tx(self, *, atomic: bool = True, fenced: bool = False) -> Iterator[psycopg.Cursor[Any]]:
        """One transaction (or, not atomic, one plain read), serialized across threads. A broken connection
        fails the call with a StateError and is reopened by the next one (a write is never retried blindly).
        `fenced`: a write that changes the state, refused unless the lock is still ours (see the module doc)."""
        import psycopg

        with self._lock:
            try:
                if self._conn.closed:
                    self._conn = self._connect()
                with self._conn.transaction() if atomic else nullcontext(), self._conn.cursor() as cur:
                    if fenced and self.fence is not None:
                        cur.execute(f"SELECT {LOCK_COLUMNS} FROM mlplat_locks WHERE stack=%s FOR SHARE",
                                    (self.stack,))
                        row = cur.fetchone()
                        self.fence_holds(LockInfo(*row) if row else None)
                    yield cur
            except psycopg.OperationalError as err:
                raise StateError(f"the PostgreSQL state at {self._where} failed: {self._clean(err)}",
                                 hint="check the server and the network, then run the command again") from None
            except psycopg.errors.InsufficientPrivilege as err:
                raise StateError(f"the PostgreSQL state at {self._where} refused: {self._clean(err)}",
                                 hint="the user needs CREATE on the schema (once) and read/write on the "
                                      "mlplat_* tables") from None

    def _fetch(self, sql: str, params: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._tx(atomic=False) as cur:
            cur.execute(sql, params)
            return cur.fetchall()

    # -- records and meta ------------------------------------------------------------------------------

    def meta(self) -> StateMeta:
        values = dict(self._fetch("SELECT key, value FROM mlplat_meta WHERE stack=%s AND key IN "
                                  "('lineage', 'serial', 'stack')", (self.stack,)))
        return StateMeta(values.get("lineage", ""), int(values.get("serial") or 0), values.get("stack", self.stack))

    def resources(self) -> dict[str, ResourceRecord]:
        rows = self._fetch(f"SELECT {RESOURCE_COLUMNS} FROM mlplat_resources WHERE stack=%s ORDER BY address",
                           (self.stack,))
        loads = self.codec.loads
        return {r[0]: ResourceRecord(r[0], r[1], r[2], r[3], loads(r[4]), loads(r[5]), json.loads(r[6]),
                                     json.loads(r[7])) for r in rows}

    def bump_serial(self) -> int:
        with self._tx(fenced=True) as cur:
            cur.execute("UPDATE mlplat_meta SET value = (value::bigint + 1)::text WHERE stack=%s AND key='serial' "
                        "RETURNING value", (self.stack,))
            serial = int(_scalar(cur))
            # keep this stack's last JOURNAL_KEEP entries (seq numbers are shared by all stacks: count rows)
            cur.execute("DELETE FROM mlplat_journal WHERE stack=%s AND phase <> 'pending' AND seq <= "
                        "(SELECT seq FROM mlplat_journal WHERE stack=%s ORDER BY seq DESC OFFSET %s LIMIT 1)",
                        (self.stack, self.stack, JOURNAL_KEEP))
            return serial

    def put(self, record: ResourceRecord) -> None:
        row = self._row(record)
        with self._tx(fenced=True) as cur:
            self._put(cur, row)

    def remove(self, address: str) -> None:
        with self._tx(fenced=True) as cur:
            self._remove(cur, address)

    def get_outputs(self) -> dict[str, Any]:
        rows = self._fetch("SELECT value FROM mlplat_meta WHERE stack=%s AND key='outputs'", (self.stack,))
        return self.codec.loads(rows[0][0] if rows else "{}")

    def set_outputs(self, outputs: dict[str, Any]) -> None:
        text = self.codec.dumps(outputs)
        with self._tx(fenced=True) as cur:
            cur.execute("INSERT INTO mlplat_meta (stack, key, value) VALUES (%s, 'outputs', %s) "
                        "ON CONFLICT (stack, key) DO UPDATE SET value = EXCLUDED.value", (self.stack, text))

    # -- the journal -----------------------------------------------------------------------------------

    def journal_pending(self, apply_id: str, op: str, record: ResourceRecord, *, token: str = "") -> int:
        self.check_lease()
        body = self.codec.dumps([record.inputs, record.depends_on, record.deposed])
        with self._tx(fenced=True) as cur:
            cur.execute("INSERT INTO mlplat_journal (stack, apply_id, address, op, kind, target, inputs, cloud_id, "
                        "phase, at, token) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,'pending',%s,%s) RETURNING seq",
                        (self.stack, apply_id, record.address, op, record.kind, record.target, body,
                         record.id or None, time.time(), token))
            seq = int(_scalar(cur))
        faults.reached("pending")
        return seq

    def journal_checkpoint(self, seq: int, operation: str) -> None:
        with self._tx(fenced=True) as cur:
            cur.execute("UPDATE mlplat_journal SET operation=%s WHERE stack=%s AND seq=%s",
                        (operation, self.stack, seq))

    def journal_done(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        faults.reached("before-done")
        row = self._row(put) if put is not None else None
        with self._tx(fenced=True) as cur:
            cur.execute("UPDATE mlplat_journal SET phase='done', cloud_id=COALESCE(%s, cloud_id) "
                        "WHERE stack=%s AND seq=%s", (put.id if put else None, self.stack, seq))
            self._apply(cur, row, remove)
        faults.reached("done")

    def journal_failed(self, seq: int, message: str) -> None:
        with self._tx(fenced=True) as cur:
            cur.execute("UPDATE mlplat_journal SET phase='failed', message=%s WHERE stack=%s AND seq=%s",
                        (message[:2000], self.stack, seq))

    def resolve_pending(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        row = self._row(put) if put is not None else None
        with self._tx(fenced=True) as cur:
            cur.execute("UPDATE mlplat_journal SET phase='resolved' WHERE stack=%s AND seq=%s", (self.stack, seq))
            self._apply(cur, row, remove)

    def pending(self) -> list[JournalEntry]:
        return self._entries("AND phase='pending'")

    def journal(self) -> list[JournalEntry]:
        return self._entries("")

    def _entries(self, where: str) -> list[JournalEntry]:
        rows = self._fetch(f"SELECT {JOURNAL_COLUMNS} FROM mlplat_journal WHERE stack=%s {where} ORDER BY seq",
                           (self.stack,))
        return [self.journal_entry(*row) for row in rows]

    def journal_size(self) -> int:
        return int(self._fetch("SELECT COUNT(*) FROM mlplat_journal WHERE stack=%s", (self.stack,))[0][0])

    # -- the lock: one lease row per stack -------------------------------------------------------------

    def read_lock(self) -> LockInfo | None:
        rows = self._fetch(f"SELECT {LOCK_COLUMNS} FROM mlplat_locks WHERE stack=%s", (self.stack,))
        return LockInfo(*rows[0]) if rows else None

    def write_lock(self, info: LockInfo, *, replacing: str | None) -> bool:
        values = (info.id, info.operation, info.holder, info.host, info.pid, info.started, info.heartbeat, info.lease)
        with self._tx() as cur:
            if replacing is None:
                cur.execute(f"INSERT INTO mlplat_locks (stack, {LOCK_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                            "ON CONFLICT (stack) DO NOTHING", (self.stack, *values))
            else:
                cur.execute("UPDATE mlplat_locks SET id=%s, operation=%s, holder=%s, host=%s, pid=%s, started=%s, "
                            "heartbeat=%s, lease=%s WHERE stack=%s AND id=%s", (*values, self.stack, replacing))
            return cur.rowcount > 0

    def delete_lock(self, lock_id: str) -> bool:
        with self._tx() as cur:
            cur.execute("DELETE FROM mlplat_locks WHERE stack=%s AND id=%s", (self.stack, lock_id))
            return cur.rowcount > 0

    # -- transfers -------------------------------------------------------------------------------------

    def import_state(self, meta: StateMeta, resources: list[ResourceRecord], journal: list[JournalEntry],
                     outputs: dict[str, Any]) -> None:
        dumps = self.codec.dumps
        meta_rows = [(self.stack, key, value) for key, value in (
            ("lineage", meta.lineage), ("serial", str(meta.serial)), ("stack", meta.stack),
            ("outputs", dumps(outputs)))]
        entries = [(entry.seq, self.stack, entry.apply_id, e.address, entry.op, e.kind, e.target,
                    dumps([e.inputs, e.depends_on, e.deposed]), e.id or None, entry.phase, entry.message, entry.at,
                    entry.token, entry.operation) for entry in journal for e in [entry.record]]
        rows = [self._row(record) for record in resources]
        with self._tx() as cur:
            cur.execute("SELECT 1 FROM mlplat_resources WHERE stack=%s LIMIT 1", (self.stack,))
            if cur.fetchone() is not None:
                raise StateError(f"{self.url} (stack {self.stack}) already holds resources; migrate only into an "
                                 "empty state")
            cur.executemany("INSERT INTO mlplat_meta (stack, key, value) VALUES (%s,%s,%s) "
                            "ON CONFLICT (stack, key) DO UPDATE SET value = EXCLUDED.value", meta_rows)
            cur.execute("DELETE FROM mlplat_journal WHERE stack=%s", (self.stack,))
            if entries:
                cur.executemany("INSERT INTO mlplat_journal (seq, stack, apply_id, address, op, kind, target, inputs, "
                                "cloud_id, phase, message, at, token, operation) "
                                "VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s,%s)", entries)
                # new entries must number above the imported ones (never move the shared sequence backwards)
                cur.execute(f"SELECT setval('{JOURNAL_SEQUENCE}', GREATEST(%s, nextval('{JOURNAL_SEQUENCE}')))",
                            (max(e[0] for e in entries),))
            for row in rows:
                self._put(cur, row)

    # -- helpers ---------------------------------------------------------------------------------------

    def _row(self, r: ResourceRecord) -> tuple[Any, ...]:
        """A resource's column values, sealed outside the transaction (the codec may ask for a key)."""
        return (self.stack, r.address, r.kind, r.target, r.id, self.codec.dumps(r.inputs),
                self.codec.dumps(r.outputs), json.dumps(r.depends_on), json.dumps(r.deposed))

    def _put(self, cur: psycopg.Cursor[Any], row: tuple[Any, ...]) -> None:
        cur.execute(f"INSERT INTO mlplat_resources (stack, {RESOURCE_COLUMNS}) VALUES (%s,%s,%s,%s,%s,%s,%s,%s,%s) "
                    "ON CONFLICT (stack, address) DO UPDATE SET kind=EXCLUDED.kind, target=EXCLUDED.target, "
                    "id=EXCLUDED.id, inputs=EXCLUDED.inputs, outputs=EXCLUDED.outputs, "
                    "depends_on=EXCLUDED.depends_on, deposed=EXCLUDED.deposed", row)

    def _remove(self, cur: psycopg.Cursor[Any], address: str) -> None:
        cur.execute("DELETE FROM mlplat_resources WHERE stack=%s AND address=%s", (self.stack, address))

    def _apply(self, cur: psycopg.Cursor[Any], row: tuple[Any, ...] | None, remove: str | None) -> None:
        if row is not None:
            self._put(cur, row)
        if remove is not None:
            self._remove(cur, remove)

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _scalar(cur: psycopg.Cursor[Any]) -> Any:
    row = cur.fetchone()
    if row is None:
        raise StateError("the PostgreSQL state is missing a row it was just given (was it changed by hand?)")
    return row[0]
