"""Fencing: a process whose lock was taken over (its heartbeats stalled past the lease) writes nothing more.

While `StateBackend.fence` holds the lock id this process took, every write that changes the state checks, in
the write's own transaction (S3: by ordering and If-Match, see provisioner/state/s3.py), that the stored lock
still has that id. The end-to-end test freezes a real apply with SIGSTOP, lets a second apply take the lock over
and finish, then wakes the first.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from provisioner.errors import LockHeld
from provisioner.state import open_state
from provisioner.state.base import LockInfo, ResourceRecord, StateBackend

from conftest import run_mlplat
from state_backends import FACTORIES, BackendFactory
from test_locking import objects, start_apply

LOST = r"this process lost the stack's lock to .*lock id B\); nothing was written"


@pytest.fixture(params=sorted(FACTORIES))
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> BackendFactory:
    return FACTORIES[request.param](request, tmp_path)


def record(address: str, **inputs: object) -> ResourceRecord:
    return ResourceRecord(address, "k", "t", f"id-{address}", {"x": 1, **inputs}, {"out": address})


def snapshot(backend: BackendFactory) -> tuple[Any, ...]:
    """Everything a write could change, as a fresh reader sees it."""
    state = backend.open()
    journal = [(e.seq, e.phase, e.token, e.operation, e.message, e.record.id) for e in state.journal()]
    seen = (state.meta(), state.resources(), journal, [e.seq for e in state.pending()], state.get_outputs())
    state.close()
    return seen


def fenced_holder(backend: BackendFactory) -> tuple[StateBackend, int]:
    """Holder A, fenced on its lock, with a record, outputs and a pending entry (token and checkpoint) written
    while the lock was still its own; returns A's backend and the pending entry."""
    a = backend.open()
    info = LockInfo("A", "apply")
    assert a.acquire_lock(info) is None
    a.fence = "A"
    a.bump_serial()
    a.put(record("a.b.kept"))
    a.set_outputs({"o": 1})
    seq = a.journal_pending("apply", "create", record("a.b.open"), token="t0")
    assert a.renew_lock(info)  # its own heartbeat does not unfence it
    a.journal_checkpoint(seq, "op-0")
    a.journal_done(a.journal_pending("apply", "create", record("a.b.done")), put=record("a.b.done"))
    return a, seq


def writes(a: StateBackend, seq: int) -> dict[str, Callable[[], object]]:
    """Every state-changing write, aimed at what A holds."""
    return {
        "bump_serial": a.bump_serial,
        "put": lambda: a.put(record("a.b.new")),
        "remove": lambda: a.remove("a.b.kept"),
        "set_outputs": lambda: a.set_outputs({"o": 2}),
        "journal_pending": lambda: a.journal_pending("apply", "create", record("a.b.new"), token="t1"),
        "journal_checkpoint": lambda: a.journal_checkpoint(seq, "op-1"),
        "journal_done": lambda: a.journal_done(seq, put=record("a.b.open")),
        "journal_failed": lambda: a.journal_failed(seq, "boom"),
        "resolve_pending": lambda: a.resolve_pending(seq, remove="a.b.kept"),
    }


def test_every_write_of_a_holder_whose_lock_was_taken_over_is_refused(backend: BackendFactory) -> None:
    a, seq = fenced_holder(backend)
    b = backend.open()
    assert b.write_lock(LockInfo("B", "apply"), replacing="A")  # B takes the lock over (compare-and-swap)
    before = snapshot(backend)
    for name, write in writes(a, seq).items():
        a.lost_lock = None  # each write must find out for itself, not from an earlier refusal
        with pytest.raises(LockHeld, match=LOST):
            write()
        assert "lock id B" in (a.lost_lock or ""), name
        assert snapshot(backend) == before, f"{name} changed the state after the takeover"


def test_a_holder_whose_lock_was_removed_writes_nothing(backend: BackendFactory) -> None:
    a, seq = fenced_holder(backend)
    b = backend.open()
    assert b.write_lock(LockInfo("B", "apply"), replacing="A")
    b.release_lock("B")  # the taker finished: no lock at all
    before = snapshot(backend)
    for name, write in writes(a, seq).items():
        a.lost_lock = None
        with pytest.raises(LockHeld, match=r"lost the stack's lock: the lock was removed.*nothing was written"):
            write()
        assert snapshot(backend) == before, name


def test_an_unfenced_backend_is_not_checked(backend: BackendFactory) -> None:
    """Engines and tools that never lock (fence None) write as before, whoever holds the lock."""
    state = backend.open()
    assert backend.open().acquire_lock(LockInfo("B", "apply")) is None
    state.put(record("a.b.c"))
    state.journal_done(state.journal_pending("x", "create", record("a.b.d")), put=record("a.b.d"))
    assert sorted(backend.open().resources()) == ["a.b.c", "a.b.d"]


@pytest.mark.parametrize("name", ["sqlite", "postgres"])
def test_a_takeover_waits_for_a_fenced_write_in_flight(name: str, request: pytest.FixtureRequest, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """The lock check and the write share one transaction: a takeover that comes while the write is in flight
    waits for it to commit, and the holder's next write sees the new holder."""
    backend = FACTORIES[name](request, tmp_path)
    a = backend.open()
    assert a.acquire_lock(LockInfo("A", "apply")) is None
    a.fence = "A"
    b = backend.open()  # opened first: opening writes too (sqlite), and would wait for A as well
    inside, go = threading.Event(), threading.Event()
    put_row = a._put  # type: ignore[attr-defined]

    def slow_put(*args: Any) -> None:  # inside A's transaction, after its lock check
        inside.set()
        assert go.wait(30)
        put_row(*args)

    monkeypatch.setattr(a, "_put", slow_put)
    writer = threading.Thread(target=a.put, args=(record("a.b.c"),))
    writer.start()
    assert inside.wait(30)
    took: list[bool] = []
    taker = threading.Thread(target=lambda: took.append(b.write_lock(LockInfo("B", "apply"), replacing="A")))
    taker.start()
    taker.join(0.5)
    assert taker.is_alive() and not took, "the takeover did not wait for the write in flight"
    go.set()
    writer.join(30)
    taker.join(30)
    assert took == [True] and list(backend.open().resources()) == ["a.b.c"]
    monkeypatch.undo()
    with pytest.raises(LockHeld, match=LOST):
        a.put(record("a.b.d"))


def test_s3_a_late_close_after_the_takers_recovery_is_refused(request: pytest.FixtureRequest, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """S3's lock check and write are separate requests: a holder stalled right after its check still reads its
    own lock. Its entry close is conditional on the entry's etag, so once the taker's recovery rewrote the entry
    the close is refused and the entry stays as the taker resolved it."""
    backend = FACTORIES["s3"](request, tmp_path)
    a = backend.open()
    assert a.acquire_lock(LockInfo("A", "apply")) is None
    a.fence = "A"
    done, failed, waiting = (a.journal_pending("apply", "create", record(f"a.b.{n}"))
                             for n in ("done", "failed", "waiting"))
    b = backend.open()
    assert b.write_lock(LockInfo("B", "apply"), replacing="A")
    b.fence = "B"
    for seq in (done, failed, waiting):
        b.resolve_pending(seq)  # the taker's recovery: the creates made nothing
    stale = LockInfo("A", "apply")
    monkeypatch.setattr(a, "read_lock", lambda: stale)  # every check A makes sees the lock as it was
    with pytest.raises(LockHeld, match="nothing was written"):
        a.journal_done(done, put=record("a.b.done"))
    with pytest.raises(LockHeld, match="nothing was written"):
        a.journal_failed(failed, "boom")
    with pytest.raises(LockHeld, match="nothing was written"):
        a.journal_checkpoint(waiting, "op-1")
    state = backend.open()
    assert [(e.seq, e.phase, e.operation) for e in state.journal()] == [
        (done, "resolved", None), (failed, "resolved", None), (waiting, "resolved", None)]
    assert state.pending() == []


# -- end to end: SIGSTOP a real apply, let another take its lock over, SIGCONT it ------------------------------

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: frozen}}
target: sim
targets:
  sim: {{store: cloud, latency_ms: 300}}
storage:
{volumes}
"""
LEASE = {"MLPLAT_LOCK_LEASE": "2"}


def freeze(proc: subprocess.Popen[str], db: Path, timeout: float = 30) -> None:
    """SIGSTOP `proc` outside any state transaction (a frozen writer would hold SQLite's write lock, which no
    takeover can wait out): stop it, and if the state is mid-write, let it run on a moment and stop it again."""
    deadline = time.monotonic() + timeout
    while True:
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with sqlite3.connect(db, timeout=0.2) as probe:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            return
        except sqlite3.OperationalError:
            os.kill(proc.pid, signal.SIGCONT)
            assert time.monotonic() < deadline, "the apply never left a state transaction"
            time.sleep(0.05)


def read_lock(stack: Path) -> LockInfo | None:
    state = open_state("frozen", stack.parent)
    try:
        return state.read_lock()
    finally:
        state.close()


def state_rows(stack: Path) -> tuple[Any, ...]:
    state = open_state("frozen", stack.parent)
    try:
        journal = [(e.seq, e.phase, e.record.address, e.record.id) for e in state.journal()]
        return state.meta(), state.resources(), journal, state.get_outputs()
    finally:
        state.close()


def test_a_frozen_apply_whose_lock_was_taken_over_writes_nothing_when_it_wakes(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(STACK.format(volumes="\n".join(f"  - {{name: v{i}}}" for i in range(6))))
    db = tmp_path / ".mlplat" / "frozen.db"
    first = start_apply(stack, "--parallelism", "1", env=LEASE)
    try:
        deadline = time.monotonic() + 60
        while not objects(tmp_path):  # it has started applying: its lock is held and renewed
            assert first.poll() is None, f"the first apply ended early: {first.communicate()[1]}"
            assert time.monotonic() < deadline, "the first apply made nothing in 60 s"
            time.sleep(0.02)
        freeze(first, db)
        # its heartbeats stop; once the wall clock says its lease ran out, another apply watches one more lease
        deadline = time.monotonic() + 30
        while (lock := read_lock(stack)) is not None and time.time() - lock.heartbeat <= lock.lease:
            assert time.monotonic() < deadline, "the frozen holder's heartbeat kept moving"
            time.sleep(0.1)
        second = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, env=LEASE, timeout=120)
        assert "took over the lock of" in second.stderr and f"pid {first.pid}" in second.stderr, second.stderr
        assert "lease expired" in second.stderr
        after_second = state_rows(stack)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, err = first.communicate(timeout=60)
    assert first.returncode not in (0, None), err
    assert "lost the stack's lock" in err, err
    assert state_rows(stack) == after_second  # the woken apply wrote nothing to the state
    found = objects(tmp_path)
    assert len(found) == 6 and len({o["address"] for o in found}) == 6
    run_mlplat("preview", "-f", str(stack), cwd=tmp_path)
    state = open_state("frozen", tmp_path)
    assert state.pending() == []
    assert {r.id: r.address for r in state.resources().values()} == {o["id"]: o["address"] for o in found}
    state.close()
    assert run_mlplat("preview", "--detailed-exitcode", "-f", str(stack), cwd=tmp_path,
                      check=False).returncode == 0
