"""Crash recovery: resolve journal entries left pending by a killed apply, using the providers' `find`/`read`.

Runs under the stack lock before planning. Adopt what was created, forget what was not — never duplicate.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner.events import Event
from provisioner.provider import ResourceProvider
from provisioner.state.base import JournalEntry, ResourceRecord, StateBackend


def recover(state: StateBackend, provider_for: Callable[[str, str], ResourceProvider],
            emit: Callable[[Event], None]) -> int:
    entries = state.pending()
    for entry in entries:
        record = entry.record
        provider = provider_for(record.target, record.kind)
        current = state.resources().get(record.address)
        outcome = _resolve(entry, provider, current)
        state.resolve_pending(entry.seq, put=outcome[0], remove=outcome[1])
        emit(Event("recovered", record.address, entry.op, outcome[2]))
    return len(entries)


def _resolve(entry: JournalEntry, provider: ResourceProvider,
             current: ResourceRecord | None) -> tuple[ResourceRecord | None, str | None, str]:
    """-> (record to write, address to remove, what happened)"""
    record = entry.record
    if entry.op == "create":
        found = provider.find(record.address, record.inputs)
        if found is None:
            return None, None, "interrupted create made nothing; it will be planned again"
        if current is not None and current.id == found.id:
            return None, None, f"already recorded ({found.id})"
        deposed = list(record.deposed)
        adopted = ResourceRecord(record.address, record.kind, record.target, found.id, record.inputs,
                                 found.outputs, record.depends_on, deposed)
        return adopted, None, f"adopted {found.id} created before the crash"
    observed = provider.read(record.id, record.inputs) if record.id else None
    if entry.op == "update":
        if current is None:
            return None, None, "resource no longer recorded"
        if observed is None:
            return None, record.address, f"{record.id} is gone; it will be planned again"
        current.inputs, current.outputs = observed.inputs, {**current.outputs, **observed.outputs}
        return current, None, "refreshed after an interrupted update"
    if entry.op == "delete":
        if observed is None:
            return None, record.address, f"{record.id} was deleted before the crash"
        return None, None, f"{record.id} still exists; it will be planned for deletion again"
    if entry.op == "delete-deposed" and current is not None and observed is None and record.id in current.deposed:
        current.deposed.remove(record.id)
        return current, None, f"deposed {record.id} was deleted before the crash"
    return None, None, "nothing to do"
