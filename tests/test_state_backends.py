"""One contract for every state backend (sqlite, postgres, s3): records, journal, serial, leased locks, secrets,
migration. Backends join through a factory in tests/state_backends.py."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from provisioner.errors import LockHeld, StateError
from provisioner.secrets import Secret
from provisioner.state.base import LockInfo, ResourceRecord, StateBackend

from state_backends import FACTORIES, BackendFactory


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    return FACTORIES[request.param](request, tmp_path)


def record(address: str, **inputs: object) -> ResourceRecord:
    return ResourceRecord(address, "k", "t", f"id-{address}", {"x": 1, **inputs}, {"out": address},
                          ["a.b.dep"], [])


def test_records_serial_and_lineage_survive_reopening(backend: BackendFactory) -> None:
    state = backend.open()
    lineage = state.meta().lineage
    assert state.meta().serial == 0 and state.resources() == {}
    assert state.bump_serial() == 1
    state.put(record("a.b.c"))
    state.put(record("a.b.d"))
    state.put(record("a.b.d", x=2))
    state.remove("a.b.c")
    state.set_outputs({"iris.url": "http://x"})
    state.close()
    again = backend.open()
    assert (again.meta().lineage, again.meta().serial, again.meta().stack) == (lineage, 1, "stack")
    assert again.resources() == {"a.b.d": record("a.b.d", x=2)}
    assert again.get_outputs() == {"iris.url": "http://x"}


def test_journal_entries_and_their_effects(backend: BackendFactory) -> None:
    state = backend.open()
    first = state.journal_pending("apply1", "create", record("a.b.c"))
    second = state.journal_pending("apply1", "create", record("a.b.d"))
    third = state.journal_pending("apply1", "delete", record("a.b.e"))
    assert second > first and third > second
    assert [e.record.address for e in state.pending()] == ["a.b.c", "a.b.d", "a.b.e"]
    state.journal_done(first, put=record("a.b.c"))
    state.journal_failed(second, "boom")
    state.resolve_pending(third, remove="a.b.e")
    assert state.pending() == [] and list(state.resources()) == ["a.b.c"]
    phases = [(e.record.address, e.phase) for e in state.journal()]
    assert phases == [("a.b.c", "done"), ("a.b.d", "failed"), ("a.b.e", "resolved")]
    assert state.journal()[1].message == "boom"
    pending = state.pending() + [e for e in state.journal() if e.seq == first]
    assert pending[0].record.inputs == {"x": 1} and pending[0].record.depends_on == ["a.b.dep"]


def test_journal_entries_carry_their_token_and_operation_checkpoint(backend: BackendFactory) -> None:
    state = backend.open()
    plain = state.journal_pending("apply1", "create", record("a.b.plain"))
    seq = state.journal_pending("apply1", "create", record("a.b.c"), token="tok-123")
    assert [(e.token, e.operation) for e in state.pending()] == [("", None), ("tok-123", None)]
    state.journal_checkpoint(seq, "arn:op/create-42")
    again = backend.open()  # what recovery in another process reads
    assert [(e.seq, e.token, e.operation) for e in again.pending()] == [
        (plain, "", None), (seq, "tok-123", "arn:op/create-42")]
    state.journal_done(seq, put=record("a.b.c"))
    state.journal_failed(plain, "boom")
    assert [(e.phase, e.token, e.operation) for e in backend.open().journal()] == [
        ("failed", "", None), ("done", "tok-123", "arn:op/create-42")]


def as_written_before_tokens(backend: BackendFactory, tmp_path: Path) -> int:
    """A state whose journal predates tokens and checkpoints, holding one pending entry; returns its seq."""
    if backend.name == "sqlite":
        with sqlite3.connect(tmp_path / "stack.db") as db:  # the journal table as the first release made it
            db.executescript("""
                CREATE TABLE journal (seq INTEGER PRIMARY KEY AUTOINCREMENT, apply_id TEXT NOT NULL,
                    address TEXT NOT NULL, op TEXT NOT NULL, kind TEXT NOT NULL, target TEXT NOT NULL,
                    inputs TEXT NOT NULL, cloud_id TEXT, phase TEXT NOT NULL, message TEXT, at REAL NOT NULL);
                INSERT INTO journal (apply_id, address, op, kind, target, inputs, cloud_id, phase, at)
                    VALUES ('old', 'a.b.old', 'create', 'k', 't', '[{"x": 1}, [], []]', NULL, 'pending', 1.0);""")
        return 1
    state = backend.open()
    seq = state.journal_pending("old", "create", record("a.b.old"))
    if backend.name == "postgres":
        import psycopg

        with psycopg.connect(backend.url("stack"), autocommit=True) as conn:
            conn.execute("ALTER TABLE mlplat_journal DROP COLUMN token, DROP COLUMN operation")
    else:  # s3: entry objects written without the two keys
        key = state._journal_key(seq)  # type: ignore[attr-defined]
        entry = json.loads(state._get(key)[0])  # type: ignore[attr-defined]
        del entry["token"], entry["operation"]
        state._put(key, json.dumps(entry))  # type: ignore[attr-defined]
    state.close()
    return seq


def test_a_journal_written_before_tokens_is_read_and_extended_in_place(backend: BackendFactory,
                                                                      tmp_path: Path) -> None:
    old = as_written_before_tokens(backend, tmp_path)
    state = backend.open()
    assert [(e.seq, e.record.address, e.token, e.operation) for e in state.pending()] == [
        (old, "a.b.old", "", None)]
    state.journal_checkpoint(old, "op-1")
    seq = state.journal_pending("new", "create", record("a.b.new"), token="tok")
    assert [(e.seq, e.token, e.operation) for e in backend.open().pending()] == [(old, "", "op-1"), (seq, "tok", None)]


def test_a_live_holder_is_named_and_a_second_lock_refused(backend: BackendFactory) -> None:
    state = backend.open()
    assert state.acquire_lock(LockInfo("first", "apply")) is None
    with pytest.raises(LockHeld, match=rf"pid {os.getpid()}, apply, since .*lock id first"):
        backend.open().acquire_lock(LockInfo("second", "apply"))
    assert not state.write_lock(LockInfo("third", "apply"), replacing=None)  # create-if-absent is atomic
    assert not state.write_lock(LockInfo("third", "apply"), replacing="nope")  # and so is compare-and-swap
    assert not state.force_unlock("nope")
    state.release_lock("first")
    assert backend.open().acquire_lock(LockInfo("fourth", "apply")) is None
    assert backend.open().force_unlock("fourth")
    assert backend.open().read_lock() is None


def test_an_expired_lease_is_taken_over_and_a_renewing_holder_keeps_it(backend: BackendFactory,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """On fake clocks: a loaded machine's stalls (a slow HTTP call to S3, a busy database) cannot expire or keep
    a lease here, only the clocks moved by the test can. Waiting moves only the watcher's monotonic clock."""
    now = [1_700_000_000.0]
    watched = [0.0]
    monkeypatch.setattr(StateBackend, "clock", staticmethod(lambda: now[0]))
    monkeypatch.setattr(StateBackend, "monotonic", staticmethod(lambda: watched[0]))

    def wait(seconds: float) -> None:
        watched[0] += seconds

    monkeypatch.setattr(StateBackend, "sleep", staticmethod(wait))
    state = backend.open()
    holder = LockInfo("old", "apply", host="elsewhere", started=now[0], heartbeat=now[0], lease=30)
    state.acquire_lock(holder)
    with pytest.raises(LockHeld):
        backend.open().acquire_lock(LockInfo("new", "apply"))
    for _ in range(4):  # a live holder renews: never taken over, though 80 s outlast its 30 s lease
        now[0] += 20
        assert state.renew_lock(holder)
        assert getattr(backend.open().read_lock(), "heartbeat", None) == now[0]
        with pytest.raises(LockHeld):
            backend.open().acquire_lock(LockInfo("new", "apply"))
    now[0] += 29  # heartbeats stop: still within the lease
    with pytest.raises(LockHeld):
        backend.open().acquire_lock(LockInfo("new", "apply"))
    now[0] += 2  # now past it: watched for one more lease (no heartbeat comes), then taken over
    taker = backend.open()
    previous = taker.acquire_lock(LockInfo("new", "apply"))
    assert previous is not None and previous.id == "old"
    assert 30 < watched[0] <= 31
    assert "lease expired" in (taker.took_over_because or "")
    assert "lease expired 1s ago" in (previous.gone_because(now[0]) or "")
    assert not state.renew_lock(holder)  # the old holder learns it lost the lock


def test_a_dead_process_on_this_host_loses_its_lock_at_once(backend: BackendFactory) -> None:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    backend.open().acquire_lock(LockInfo("dead", "apply", pid=proc.pid))
    previous = backend.open().acquire_lock(LockInfo("alive", "apply"))
    assert previous is not None and previous.id == "dead"


def test_lock_timeout_waits_for_the_holder_to_finish(backend: BackendFactory) -> None:
    state, second = backend.open(), backend.open()
    state.acquire_lock(LockInfo("first", "apply"))
    waited: list[str] = []

    def waiting(holder: LockInfo) -> None:  # told once it found the lock held: only then does the holder finish
        waited.append(holder.id)
        threading.Timer(0.3, state.release_lock, args=("first",)).start()

    # None: it got the lock free (released), not taken over; a deadline, not a sleep, bounds the wait
    assert second.acquire_lock(LockInfo("second", "apply"), timeout=60, waiting=waiting) is None
    assert waited == ["first"]
    assert getattr(backend.open().read_lock(), "id", None) == "second"


def test_a_process_that_lost_its_lock_writes_no_more_journal(backend: BackendFactory) -> None:
    state = backend.open()
    state.lost_lock = "someone else"
    with pytest.raises(LockHeld, match="lost the stack's lock"):
        state.journal_pending("a", "create", record("a.b.c"))


def test_secrets_are_sealed_at_rest_and_opened_with_the_passphrase(backend: BackendFactory,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    plaintext = "s3cr3t-token-value-42"
    monkeypatch.setenv("MLPLAT_STATE_PASSPHRASE", "correct horse")
    state = backend.open()
    state.put(record("a.b.c", key=Secret(plaintext)))
    state.journal_done(state.journal_pending("a", "create", record("a.b.d", key=Secret(plaintext))),
                       put=record("a.b.d", key=Secret(plaintext)))
    state.set_outputs({"iris.key": Secret(plaintext)})
    state.close()
    assert plaintext.encode() not in backend.raw()
    again = backend.open()
    key = again.resources()["a.b.c"].inputs["key"]
    assert key == plaintext and isinstance(key, Secret)
    assert isinstance(again.get_outputs()["iris.key"], Secret)
    monkeypatch.setenv("MLPLAT_STATE_PASSPHRASE", "wrong")
    with pytest.raises(StateError, match="cannot be opened with this key"):
        backend.open().resources()
    monkeypatch.delenv("MLPLAT_STATE_PASSPHRASE")
    with pytest.raises(StateError, match="no key is configured"):
        backend.open().resources()


def test_stacks_sharing_a_location_do_not_see_or_block_each_other(backend: BackendFactory) -> None:
    if not backend.shared_location:
        pytest.skip(f"{backend.name} keeps one stack per file")
    one, two = backend.open("one"), backend.open("two")
    one.acquire_lock(LockInfo("l1", "apply"))
    assert two.acquire_lock(LockInfo("l2", "apply")) is None  # no global lock
    one.put(record("a.b.one"))
    two.put(record("a.b.two"))
    one.journal_pending("x", "create", record("a.b.p1"))
    assert list(one.resources()) == ["a.b.one"] and list(two.resources()) == ["a.b.two"]
    assert two.pending() == [] and one.meta().lineage != two.meta().lineage


def test_migrate_copies_everything_losslessly(backend: BackendFactory, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.state import open_state
    from provisioner.state.migrate import migrate

    monkeypatch.setenv("MLPLAT_STATE_PASSPHRASE", "pass")
    source = open_state("stack", tmp_path, url=f"sqlite:///{tmp_path}/source.db")
    source.bump_serial()
    source.put(record("a.b.c", key=Secret("k1")))
    source.journal_done(source.journal_pending("a", "create", record("a.b.c")), put=record("a.b.c", key=Secret("k1")))
    source.journal_checkpoint(source.journal_pending("a", "create", record("a.b.pending"), token="t1"), "op-7")
    source.set_outputs({"o": 1})
    target = backend.open()
    migrate(source, target)
    again = backend.open()
    assert again.meta() == source.meta()
    assert again.resources() == source.resources()
    assert isinstance(again.resources()["a.b.c"].inputs["key"], Secret)
    assert [(e.seq, e.phase, e.record.address, e.token, e.operation) for e in again.journal()] == [
        (e.seq, e.phase, e.record.address, e.token, e.operation) for e in source.journal()]
    assert [(e.token, e.operation) for e in again.pending()] == [("t1", "op-7")]
    assert again.get_outputs() == {"o": 1}
    with pytest.raises(StateError, match="already holds"):
        migrate(source, backend.open())
