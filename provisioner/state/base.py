"""The state backend interface: one record per resource, a journal of steps, serial + lineage, a lock.

Backends write per resource and per journal entry — never the whole state — so apply stays linear.
"""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any


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
    phase: str
    at: float


@dataclass
class LockInfo:
    id: str
    operation: str
    holder: str = field(default_factory=lambda: f"{os.environ.get('USER', 'unknown')}@{socket.gethostname()}")
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    started: float = field(default_factory=time.time)

    def describe(self) -> str:
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"{self.holder} (pid {self.pid}, {self.operation}, since {when}, lock id {self.id})"


@dataclass
class StateMeta:
    lineage: str
    serial: int
    stack: str


class StateBackend(ABC):
    """Same semantics on every backend (sqlite now; postgres and s3 implement the same methods)."""

    url: str

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
    def journal_pending(self, apply_id: str, op: str, record: ResourceRecord) -> int:
        """Write the pending entry (before the cloud call); returns its sequence number."""

    @abstractmethod
    def journal_done(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        """Close entry `seq` and apply its effect on the resource record in one transaction."""

    @abstractmethod
    def journal_failed(self, seq: int, message: str) -> None: ...

    @abstractmethod
    def pending(self) -> list[JournalEntry]: ...

    @abstractmethod
    def resolve_pending(self, seq: int, *, put: ResourceRecord | None = None, remove: str | None = None) -> None:
        """Mark a pending entry resolved by crash recovery, applying its outcome in the same transaction."""

    @abstractmethod
    def get_outputs(self) -> dict[str, Any]: ...

    @abstractmethod
    def set_outputs(self, outputs: dict[str, Any]) -> None: ...

    @abstractmethod
    def acquire_lock(self, info: LockInfo) -> LockInfo | None:
        """Take the stack's lock. Returns the previous holder's info if a dead holder's lock was taken over;
        raises LockHeld naming a live holder."""

    @abstractmethod
    def release_lock(self, lock_id: str) -> None: ...

    @abstractmethod
    def force_unlock(self, lock_id: str) -> bool:
        """`mlplat state unlock ID`: remove the lock if its id matches; False if no such lock."""

    @abstractmethod
    def close(self) -> None: ...
