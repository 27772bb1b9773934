"""Crash recovery: resolve journal entries left pending by a killed apply, using the providers' `find`/`read`.

Runs under the stack lock before planning. Adopt what was created, forget what was not — never duplicate. A
create is found by the idempotency token journalled before its call (never by address alone: during a replace
the address names the predecessor too), and a step that checkpointed a long-running cloud operation is finished
by waiting on that operation, not by issuing it again. Every call goes through the target's gate (limits,
retries of throttling), like apply's.
"""

from __future__ import annotations

from collections.abc import Callable

from provisioner.errors import ProviderError
from provisioner.events import Event
from provisioner.history import RUN_OP
from provisioner.operations import CallGates, StepContext, TargetCalls, TimeoutFor, operation_timeout
from provisioner.provider import Created, Observed, ResourceProvider, mark_secret_outputs, observed_inputs
from provisioner.state.base import JournalEntry, ResourceRecord, StateBackend

Outcome = tuple[ResourceRecord | None, str | None, str]  # (record to write, address to remove, what happened)


class Recovery:
    def __init__(self, state: StateBackend, provider_for: Callable[[str, str], ResourceProvider],
                 gate: Callable[[str], TargetCalls], emit: Callable[[Event], None],
                 timeout_for: TimeoutFor | None = None) -> None:
        self.state, self.provider_for, self.gate, self.emit = state, provider_for, gate, emit
        self.timeout_for = timeout_for

    def run(self) -> int:
        entries = self.state.pending()
        for entry in entries:
            if entry.op == RUN_OP:  # a run record (`provisioner.history`) cut short: it touches no resource
                self.state.resolve_pending(entry.seq)
                continue
            record = entry.record
            current = self.state.resources().get(record.address)
            put, remove, message = self._resolve(entry, current)
            self.state.resolve_pending(entry.seq, put=put, remove=remove)
            self.emit(Event("recovered", record.address, entry.op, message))
        return len(entries)

    def _context(self, entry: JournalEntry, op: str, **values: object) -> StepContext:
        record = entry.record
        provider = self.provider_for(record.target, record.kind)
        timeout = operation_timeout(provider, self.timeout_for, record.target, record.kind, op)
        return StepContext(record.address, op, entry.token, timeout=timeout, calls=self.gate(record.target),
                           operation=entry.operation,
                           on_checkpoint=lambda operation: self.state.journal_checkpoint(entry.seq, operation),
                           **values)  # type: ignore[arg-type]

    def _resolve(self, entry: JournalEntry, current: ResourceRecord | None) -> Outcome:
        record = entry.record
        provider = self.provider_for(record.target, record.kind)
        gate = self.gate(record.target)
        if entry.op == "create":
            return self._create(entry, provider, gate, current)
        observed = self._read(gate, provider, record) if record.id else None
        if entry.op == "update":
            if current is None:
                return None, None, "resource no longer recorded"
            if entry.operation and observed is not None:
                ctx = self._context(entry, "update")
                try:
                    outputs = gate.call(record.address, "update",
                                        lambda: provider.update(record.id, current.inputs, record.inputs, ctx))
                except ProviderError as err:
                    self.emit(Event("warning", record.address, "update", f"resuming the update failed: {err}"))
                else:
                    current.inputs = record.inputs
                    current.outputs = {**current.outputs, **mark_secret_outputs(provider, outputs or {})}
                    return current, None, f"finished the update operation {entry.operation} begun before the crash"
                observed = self._read(gate, provider, record)
            if observed is None:
                if current.deposed:
                    return None, None, f"{record.id} is gone; it will be planned again"
                return None, record.address, f"{record.id} is gone; it will be planned again"
            current.inputs = observed_inputs(provider, current.inputs, observed.inputs)
            current.outputs = {**current.outputs, **mark_secret_outputs(provider, observed.outputs)}
            return current, None, "refreshed after an interrupted update"
        if entry.op in ("delete", "delete-deposed") and observed is not None and entry.operation:
            ctx = self._context(entry, "delete")
            try:
                gate.call(record.address, "delete", lambda: provider.delete(record.id, record.inputs, ctx))
            except ProviderError as err:
                self.emit(Event("warning", record.address, "delete", f"resuming the delete failed: {err}"))
            observed = self._read(gate, provider, record)
        if entry.op == "delete":
            if observed is None and current is not None and current.id == record.id and not current.deposed:
                return None, record.address, f"{record.id} was deleted before the crash"
            if observed is None:
                return None, None, f"{record.id} was deleted before the crash; deposed objects remain planned"
            return None, None, f"{record.id} still exists; it will be planned for deletion again"
        if entry.op == "delete-deposed" and current is not None and observed is None and record.id in current.deposed:
            current.deposed.remove(record.id)
            return current, None, f"deposed {record.id} was deleted before the crash"
        return None, None, "nothing to do"

    def _create(self, entry: JournalEntry, provider: ResourceProvider, gate: TargetCalls,
                current: ResourceRecord | None) -> Outcome:
        record = entry.record
        exclude = frozenset(record.deposed)  # a replace's predecessor: never adopted as the new object
        found: Created | None = None
        if entry.operation:  # the create began a long operation: wait for it rather than start another
            ctx = self._context(entry, "create", exclude=exclude)
            try:
                found = gate.call(record.address, "create", lambda: provider.create(record.address, record.inputs,
                                                                                     ctx))
            except ProviderError as err:
                self.emit(Event("warning", record.address, "create", f"resuming the create failed: {err}"))
        if found is None:
            ctx = self._context(entry, "find", exclude=exclude)
            found = gate.call(record.address, "find", lambda: provider.find(record.address, record.inputs, ctx))
        if found is None or found.id in exclude:
            return None, None, "interrupted create made nothing; it will be planned again"
        if current is not None and current.id == found.id:
            return None, None, f"already recorded ({found.id})"
        deposed = [d for d in record.deposed if d != found.id]  # as journalled: the predecessors still to delete
        adopted = ResourceRecord(record.address, record.kind, record.target, found.id, record.inputs,
                                 mark_secret_outputs(provider, found.outputs), record.depends_on, deposed)
        return adopted, None, f"adopted {found.id} created before the crash"

    @staticmethod
    def _read(gate: TargetCalls, provider: ResourceProvider, record: ResourceRecord) -> Observed | None:
        return gate.call(record.address, "read", lambda: provider.read(record.id, record.inputs))


def recover(state: StateBackend, provider_for: Callable[[str, str], ResourceProvider],
            emit: Callable[[Event], None], gate: Callable[[str], TargetCalls] | None = None,
            timeout_for: TimeoutFor | None = None) -> int:
    return Recovery(state, provider_for, gate or CallGates(parallelism=1), emit, timeout_for).run()
