"""The state backend interface: one record per resource, a journal of steps, serial + lineage, a leased lock.

Backends write per resource and per journal entry — never the whole state — so apply stays linear. Every JSON
value a backend stores goes through `self.codec` (secrets are sealed there), and the lock logic (leases,
takeover, waiting) lives here on top of three atomic primitives each backend provides.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any, NoReturn

from provisioner.errors import LockHeld
from provisioner.pids import pid_alive
from provisioner.state.codec import PLAIN, StateCodec


def host_name() -> str:
    """This machine as lock holders name it; $MLPLAT_HOSTNAME overrides it where hostnames repeat (containers)."""
    return os.environ.get("MLPLAT_HOSTNAME") or socket.gethostname()


def login_name() -> str:
    """Who runs this process, as lock holders name it: the login name of its uid ($USER and $LOGNAME are often
    unset in CI jobs, cron and containers), else $USER / $LOGNAME (a uid without a passwd entry), else uid<N>."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    if uid is not None:
        try:
            import pwd

            return pwd.getpwuid(uid).pw_name
        except (ImportError, KeyError):  # no passwd entry: a container run as an arbitrary --user
            pass
    return os.environ.get("USER") or os.environ.get("LOGNAME") or (f"uid{uid}" if uid is not None else "unknown")


#: seconds between looks at a held lock
WATCH_POLL = 0.25


def default_lease() -> float:
    """Seconds a lock stays valid without a heartbeat (the holder renews every third of it)."""
    return float(os.environ.get("MLPLAT_LOCK_LEASE", "60"))


@dataclass
class ResourceRecord:
    address: str
    kind: str
    target: str
    id: str
    inputs: dict[str, Any]
    outputs: dict[str, Any] = field(default_factory=dict)
    depends_on: list[str] = field(default_factory=list)
    #: ids of replaced objects still to delete (create-before-destroy in progress)
    deposed: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class JournalEntry:
    """A step written *before* its cloud call (phase pending) and closed *after* (phase done or failed)."""

    seq: int
    apply_id: str
    op: str  # create | update | delete | delete-deposed
    record: ResourceRecord  # what the step will write; record.id is the cloud id when known beforehand
    phase: str  # pending | done | failed | resolved
    at: float
    message: str | None = None
    #: idempotency token the step passes to the cloud call, so a repeated call cannot make a second object
    token: str = ""
    #: a long-running cloud operation the step started (its id), so recovery can resume waiting on it
    operation: str | None = None


@dataclass
class LockInfo:
    id: str
    operation: str
    holder: str = field(default_factory=lambda: f"{login_name()}@{host_name()}")
    host: str = field(default_factory=host_name)
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)
    #: last renewal (wall clock of the holder); the lock is free once heartbeat + lease has passed
    heartbeat: float = field(default_factory=time.time)
    lease: float = field(default_factory=default_lease)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"{self.holder} (pid {self.pid}, {self.operation}, since {when}, lock id {self.id})"

    def lease_expired(self, now: float) -> bool:
        """The heartbeat is older than the lease by the reader's wall clock `now`: a hint, never proof (the
        holder's and the reader's clocks may disagree)."""
        return now - self.heartbeat > self.lease

    def gone_because(self, now: float | None = None, *, unchanged_for: float | None = None) -> str | None:
        """Why the holder is gone, else None: its process on this host is dead, or (given `unchanged_for`, the
        seconds a reader watched this lock's id and heartbeat stay the same on its own monotonic clock) no
        heartbeat came for longer than the lease. Without `unchanged_for` the wall clock `now` describes it."""
        if self.host == host_name() and not pid_alive(self.pid):
            return f"its process {self.pid} on this host is gone"
        if unchanged_for is not None:
            if unchanged_for > self.lease:
                return f"its lease expired (no heartbeat seen for {unchanged_for:.0f}s; lease {self.lease:.0f}s)"
            return None
        late = (now if now is not None else time.time()) - self.heartbeat
        if late > self.lease:
            return f"its lease expired {late - self.lease:.0f}s ago (no heartbeat for {late:.0f}s)"
        return None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LockInfo:
        known = {k: data[k] for k in cls.__dataclass_fields__ if k in data}
        return cls(**known)


@dataclass
class StateMeta:
    lineage: str
    serial: int
    stack: str


class StateBackend(ABC):
    """Same semantics on every backend (sqlite, postgres, s3); tests/test_state_backends.py holds them to it."""

    url: str
    #: how JSON values are written (secrets sealed); open_state sets it
    codec: StateCodec = PLAIN
    #: set by the lease keeper when another process took the lock over: no further journal writes
    lost_lock: str | None = None
    #: the id of the lock this process holds (Stack.locked sets it): while set, every write that changes the
    #: state is refused, in the write's own transaction, unless the stored lock still has this id
    fence: str | None = None
    #: why the last acquire_lock took a lock over (None if it found the lock free)
    took_over_because: str | None = None

    @abstractmethod
    def meta(self) -> StateMeta: ...

    @abstractmethod
    def resources(self) -> dict[str, ResourceRecord]: ...

    @abstractmethod
    def bump_serial(self) -> int:
        """Called once at the start of every state-changing operation; a saved plan made before is stale."""

    @abstractmethod
    def put(self, record: ResourceRecord) -> None: ...

    @abstractmethod
    def remove(self, address: str) -> None: ...

    @abstractmethod
    def journal_pending(self, apply_id: str, op: str, record: ResourceRecord, *, token: str = "") -> int:
        """Write the pending entry (before the cloud call), with the idempotency token the call will carry;
        returns its sequence number."""

    @abstractmethod
    def journal_checkpoint(self, seq: int, operation: str) -> None:
        """Record on pending entry `seq` the long-running cloud operation it started, so crash recovery can
        resume waiting on it."""

    @abstractmethod
    def journal_done(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        """Close entry `seq` and apply its effect on the resource record in one transaction."""

    @abstractmethod
    def journal_failed(self, seq: int, message: str) -> None: ...

    def journal_instant(self, apply_id: str, op: str, record: ResourceRecord, *, token: str = "",
                        put: ResourceRecord | None = None, remove: str | None = None) -> None:
        """Journal a step that was done as it began (a state-only resource: nothing outside the state to orphan)
        and apply its effect. Default: a pending entry closed at once; a backend may write both in one
        transaction."""
        self.journal_done(self.journal_pending(apply_id, op, record, token=token), put=put, remove=remove)

    def journal_instant_many(self, entries: list[tuple[str, str, ResourceRecord, str, ResourceRecord | None,
                                                       str | None]]) -> None:
        """`journal_instant` of each (apply_id, op, record, token, put, remove); a backend may write them all in
        one transaction."""
        for apply_id, op, record, token, put, remove in entries:
            self.journal_instant(apply_id, op, record, token=token, put=put, remove=remove)

    @abstractmethod
    def pending(self) -> list[JournalEntry]: ...

    @abstractmethod
    def resolve_pending(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        """Mark a pending entry resolved by crash recovery, applying its outcome in the same transaction."""

    @abstractmethod
    def get_outputs(self) -> dict[str, Any]: ...

    @abstractmethod
    def set_outputs(self, outputs: dict[str, Any]) -> None: ...

    # -- the lock: three atomic primitives per backend, the policy here ---------------------------------

    @staticmethod
    def clock() -> float:
        """The clock heartbeats are written with: wall-clock time, shown to people and used as a hint that a
        lease ran out (tests substitute a fake clock rather than sleep through leases)."""
        return time.time()

    @staticmethod
    def monotonic() -> float:
        """This process's own clock, on which it watches a holder's heartbeat (tests substitute it)."""
        return time.monotonic()

    @staticmethod
    def sleep(seconds: float) -> None:
        """How acquire_lock waits between looks (tests substitute it to move their fake clocks)."""
        time.sleep(seconds)

    @abstractmethod
    def read_lock(self) -> LockInfo | None: ...

    @abstractmethod
    def write_lock(self, info: LockInfo, *, replacing: str | None) -> bool:
        """Atomically: with replacing=None create the lock only if there is none; otherwise overwrite it only if
        the current lock's id is `replacing` (compare-and-swap). True if written."""

    @abstractmethod
    def delete_lock(self, lock_id: str) -> bool:
        """Atomically delete the lock if its id is `lock_id`; True if deleted."""

    def acquire_lock(self, info: LockInfo, *, timeout: float = 0.0,
                     waiting: Callable[[LockInfo], None] | None = None) -> LockInfo | None:
        """Take the stack's lock, waiting up to `timeout` seconds for a live holder.

        A holder is gone when its process on this host is dead, or when this process has watched the lock's
        id and heartbeat stay unchanged for longer than the lease, on its own monotonic clock: wall clocks of
        two hosts may disagree by more than a lease. A heartbeat that looks expired by the wall clock is
        watched for up to one lease, even past `timeout`, so a crashed holder is still taken over. Returns the
        previous holder when its lock was taken over (compare-and-swap on its id; the reason in
        `took_over_because`); raises LockHeld naming a live holder once the time is up.
        """
        self.took_over_because = None
        deadline = self.monotonic() + timeout
        told = False
        seen: tuple[str, float] | None = None  # (id, heartbeat) as last read, and since when on our clock
        since = watch_until = 0.0
        while True:
            current = self.read_lock()
            now = self.monotonic()
            if current is None:
                if self.write_lock(info, replacing=None):
                    return None
                seen = None
                continue  # somebody was quicker: look again
            if seen is None or seen[0] != current.id:
                watch_until = 0.0  # a new holder: judged afresh
            if (current.id, current.heartbeat) != seen:
                seen, since = (current.id, current.heartbeat), now
            reason = current.gone_because(unchanged_for=now - since)
            if reason is not None:
                if self.write_lock(info, replacing=current.id):
                    self.took_over_because = reason
                    return current
                continue
            if not watch_until and current.lease_expired(self.clock()):
                watch_until = now + current.lease + WATCH_POLL  # then unchanged for longer than the lease
            until = max(deadline, watch_until)
            if now >= until:
                raise LockHeld(f"the stack is locked by {current.describe()}",
                               hint="wait for it to finish (or pass --lock-timeout SECONDS to wait); if that "
                                    f"process is gone for good, run `mlplat state unlock {current.id}`")
            if waiting is not None and not told:
                waiting(current)
                told = True
            self.sleep(min(until - now, WATCH_POLL))

    def renew_lock(self, info: LockInfo) -> bool:
        """Heartbeat: extend our lease; False if the lock is no longer ours."""
        info.heartbeat = self.clock()
        return self.write_lock(info, replacing=info.id)

    def release_lock(self, lock_id: str) -> None:
        self.delete_lock(lock_id)

    def force_unlock(self, lock_id: str) -> bool:
        """`mlplat state unlock ID`: remove the lock if its id matches; False if no such lock."""
        return self.delete_lock(lock_id)

    def check_lease(self) -> None:
        """Called before each journal write: a process that lost its lock must not write on."""
        if self.lost_lock is not None:
            raise LockHeld(f"this process lost the stack's lock: {self.lost_lock}",
                           hint="another apply took it over (our heartbeats stopped); run apply again")

    def fence_holds(self, current: LockInfo | None) -> None:
        """Inside a write's transaction, given the stored lock: refuse the write unless the lock is still
        ours (no-op when this backend is not fenced)."""
        if self.fence is not None and (current is None or current.id != self.fence):
            self.refuse_write(current)

    def refuse_write(self, current: LockInfo | None) -> NoReturn:
        """Another process took the lock over (or it was removed): record who holds it and refuse."""
        if current is not None:
            self.lost_lock = current.describe()
            lost = f"lost the stack's lock to {self.lost_lock}"
        else:
            self.lost_lock = "the lock was removed (released by a process that took it over, or state unlock)"
            lost = f"lost the stack's lock: {self.lost_lock}"
        raise LockHeld(f"this process {lost}; nothing was written",
                       hint="its heartbeats stopped long enough for another process to take the lock over; "
                            "run apply again: it continues from what the state records")

    def journal_entry(self, seq: int, apply_id: str, address: str, op: str, kind: str, target: str, body: str,
                      cloud_id: str | None, phase: str, at: float, message: str | None, token: str | None = "",
                      operation: str | None = None) -> JournalEntry:
        """A journal row as SQL backends store it (body: the codec's [inputs, depends_on, deposed])."""
        inputs, depends_on, deposed = self.codec.loads(body)
        record = ResourceRecord(address, kind, target, cloud_id or "", inputs, {}, depends_on, deposed)
        return JournalEntry(seq, apply_id, op, record, phase, at, message, token or "", operation)

    # -- transfers (state migrate) ---------------------------------------------------------------------

    @abstractmethod
    def journal(self) -> list[JournalEntry]:
        """Every journal entry still kept (closed ones and pending), oldest first."""

    @abstractmethod
    def import_state(self, meta: StateMeta, resources: list[ResourceRecord], journal: list[JournalEntry],
                     outputs: dict[str, Any]) -> None:
        """Replace this (empty) state with another's, lineage and serial included (`mlplat state migrate`)."""

    def remove_if_empty(self) -> bool:
        """Delete the state if it records nothing (after a destroy); True if removed. Default: kept (a shared
        database or bucket is not this stack's to remove)."""
        return False

    @abstractmethod
    def close(self) -> None: ...

