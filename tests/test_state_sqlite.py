"""The embedded SQLite state: serial and lineage, per-resource records, a bounded journal, the stack lock."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from provisioner.errors import LockHeld
from provisioner.state import sqlite as sqlite_state
from provisioner.state.base import LockInfo, ResourceRecord
from provisioner.state.sqlite import SqliteState


def record(address: str) -> ResourceRecord:
    return ResourceRecord(address, "k", "t", f"id-{address}", {"x": 1})


def test_lineage_is_stable_and_serial_moves_once_per_operation(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db", "stack")
    lineage = state.meta().lineage
    assert state.meta().serial == 0
    state.bump_serial()
    state.put(record("a.b.c"))
    state.put(record("a.b.d"))
    again = SqliteState(tmp_path / "s.db", "stack")
    assert (again.meta().lineage, again.meta().serial) == (lineage, 1)
    assert sorted(again.resources()) == ["a.b.c", "a.b.d"]


def test_openers_of_a_new_state_file_at_the_same_moment_all_succeed(tmp_path: Path) -> None:
    """Switching a new file to WAL ignores the busy timeout: without a retry, one of several openers racing on it
    (two commands, the UI's pages) failed with "database is locked" (about 1 in 20 rounds of 3)."""
    import threading

    for round_ in range(30):
        path = tmp_path / f"s{round_}.db"
        start = threading.Barrier(4)
        lineages: list[str] = []
        errors: list[str] = []

        def open_it(path: Path = path, start: threading.Barrier = start, lineages: list[str] = lineages,
                    errors: list[str] = errors) -> None:
            start.wait(10)
            try:
                state = SqliteState(path, "stack")
                lineages.append(state.meta().lineage)
                state.close()
            except Exception as err:
                errors.append(f"{type(err).__name__}: {err}")

        threads = [threading.Thread(target=open_it) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert errors == [] and len(lineages) == 4 and len(set(lineages)) == 1, (round_, errors)


def test_done_entry_and_its_record_are_written_together(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db", "stack")
    seq = state.journal_pending("apply1", "create", record("a.b.c"))
    assert [e.seq for e in state.pending()] == [seq] and state.resources() == {}
    state.journal_done(seq, put=record("a.b.c"))
    assert state.pending() == [] and list(state.resources()) == ["a.b.c"]


def test_journal_keeps_recent_closed_entries_and_every_pending_one(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sqlite_state, "JOURNAL_KEEP", 3)
    state = SqliteState(tmp_path / "s.db", "stack")
    pending = state.journal_pending("old", "create", record("a.b.pending"))
    for i in range(10):
        state.journal_done(state.journal_pending("x", "create", record(f"a.b.r{i}")), put=record(f"a.b.r{i}"))
    state.bump_serial()
    assert state.journal_size() == 3 + 1
    assert [e.seq for e in state.pending()] == [pending]


def test_lock_held_by_a_live_process_names_it(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db", "stack")
    state.acquire_lock(LockInfo("first", "apply"))
    with pytest.raises(LockHeld, match=rf"locked by .*pid {os.getpid()}, apply, since .*lock id first"):
        SqliteState(tmp_path / "s.db", "stack").acquire_lock(LockInfo("second", "apply"))
    state.release_lock("first")
    assert SqliteState(tmp_path / "s.db", "stack").acquire_lock(LockInfo("third", "apply")) is None


def test_lock_of_a_dead_process_on_this_host_is_taken_over(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db", "stack")
    dead = LockInfo("ghost", "apply", pid=2**22 + 12345)  # above pid_max's default: never a live pid
    state.acquire_lock(dead)
    previous = state.acquire_lock(LockInfo("mine", "apply"))
    assert previous is not None and previous.id == "ghost"
