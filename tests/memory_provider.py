"""An in-memory cloud and a provider over it, for engine-level tests of plan and apply.

`MemoryCloud` keeps objects in a dict and records every provider call in order, so tests can assert what the
engine did (which calls, how many, in which order) rather than how it did it. `Engine` is a miniature `Stack`:
a SqliteState plus plan/refresh/apply wired the way the real API wires them.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from provisioner.apply import Applier, ApplyOptions, ApplyResult, RetryPolicy
from provisioner.events import Event
from provisioner.graph import Ref, Resource
from provisioner.operations import StepContext
from provisioner.plan import Plan, make_destroy_plan, make_plan
from provisioner.provider import Created, Observed, ResourceProvider, observed_inputs
from provisioner.state.base import ResourceRecord
from provisioner.state.sqlite import SqliteState

TARGET = "mem"
FAST_RETRY = RetryPolicy(attempts=4, base_delay=0.001, max_delay=0.001)


class MemoryCloud:
    """Objects by id, and a log of every call as (op, address)."""

    def __init__(self) -> None:
        self.objects: dict[str, dict[str, Any]] = {}
        self.calls: list[tuple[str, str]] = []
        self._lock = threading.Lock()
        self._next = 0

    def record(self, op: str, address: str) -> None:
        with self._lock:
            self.calls.append((op, address))

    def new_id(self, address: str) -> str:
        with self._lock:
            self._next += 1
            return f"{address}#{self._next}"

    def count(self, op: str, address: str | None = None) -> int:
        return sum(1 for o, a in self.calls if o == op and (address is None or a == address))

    def ops(self, *ops: str) -> list[tuple[str, str]]:
        """The calls of the given kinds, in the order they happened."""
        return [c for c in self.calls if c[0] in ops]

    def by_address(self, address: str) -> list[dict[str, Any]]:
        return [o for o in self.objects.values() if o["address"] == address]

    def only(self, address: str) -> dict[str, Any]:
        found = self.by_address(address)
        assert len(found) == 1, f"expected one object for {address}, found {len(found)}"
        return found[0]


class MemoryProvider(ResourceProvider):
    """A well-behaved provider: ids are fresh per create, outputs are `id` and `arn`.

    `name_keyed=True` makes it behave like Vertex, ARM or Kubernetes: the id is the address, and a create at an
    address that holds an object updates that object (an upsert by name). `revisions=True` gives each object an
    output `rev` that every update bumps (declared in `update_outputs`).
    """

    def __init__(self, cloud: MemoryCloud, *, force_new: frozenset[str] = frozenset(),
                 create_before_destroy: bool = False, replace_mode: str | None = None, name_keyed: bool = False,
                 revisions: bool = False) -> None:
        self.cloud = cloud
        self.force_new = force_new
        self.replace_mode = replace_mode or ("create_before_destroy" if create_before_destroy  # type: ignore[assignment]
                                             else "destroy_before_create")
        self.name_keyed = name_keyed
        self.revisions = revisions
        self.update_outputs = frozenset({"rev"}) if revisions else frozenset()
        #: address -> callable run at the start of each create / update (to inject failures or delays)
        self.on_create: dict[str, Callable[[], None]] = {}
        self.on_update: dict[str, Callable[[], None]] = {}

    def _address_of(self, id: str) -> str:
        obj = self.cloud.objects.get(id)
        return obj["address"] if obj else id.split("#")[0]

    def _outputs(self, id: str) -> dict[str, Any]:
        outputs = {"id": id, "arn": f"arn:mem:{id}"}
        if self.revisions:
            outputs["rev"] = self.cloud.objects[id].get("rev", 0)
        return outputs

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        self.cloud.record("create", address)
        hook = self.on_create.get(address)
        if hook is not None:
            hook()
        id = address if self.name_keyed else self.cloud.new_id(address)
        self.cloud.objects[id] = {"address": address, "inputs": dict(inputs), "token": ctx.token}
        return Created(id, self._outputs(id))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        for id, obj in self.cloud.objects.items():
            if obj["address"] == address and obj.get("token") == ctx.token and id not in ctx.exclude:
                return Created(id, self._outputs(id))
        return None

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        obj = self.cloud.objects.get(id)
        if obj is None:
            return None
        return Observed(dict(obj["inputs"]), self._outputs(id))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        address = self._address_of(id)
        self.cloud.record("update", address)
        hook = self.on_update.get(address)
        if hook is not None:
            hook()
        obj = self.cloud.objects[id]
        obj["inputs"] = dict(desired)
        obj["rev"] = obj.get("rev", 0) + 1
        return self._outputs(id)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        self.cloud.record("delete", self._address_of(id))
        self.cloud.objects.pop(id, None)


class Engine:
    """SqliteState + providers by kind + plan/refresh/apply, as `provisioner.api.Stack` wires them."""

    def __init__(self, tmp_path: Path, cloud: MemoryCloud | None = None,
                 options: ApplyOptions | None = None) -> None:
        self.cloud = cloud or MemoryCloud()
        self.path = tmp_path / "state.db"
        self.state = SqliteState(self.path, "test")
        self.providers: dict[str, MemoryProvider] = {}
        self.events: list[Event] = []
        self.options = options or ApplyOptions(retry=FAST_RETRY)

    def provider(self, kind: str, **kwargs: Any) -> MemoryProvider:
        """Register (or return) the provider for a resource kind."""
        if kind not in self.providers or kwargs:
            self.providers[kind] = MemoryProvider(self.cloud, **kwargs)
        return self.providers[kind]

    def provider_for(self, target: str, kind: str) -> ResourceProvider:
        assert target == TARGET
        return self.provider(kind)

    def refreshed(self) -> dict[str, Observed | None]:
        """What `Stack.observe` gives the plan: each record read, write-only inputs taken from the record."""
        seen: dict[str, Observed | None] = {}
        for address, r in self.records().items():
            provider = self.provider_for(r.target, r.kind)
            observed = provider.read(r.id, r.inputs)
            seen[address] = observed and Observed(observed_inputs(provider, r.inputs, observed.inputs),
                                                  observed.outputs)
        return seen

    def plan(self, resources: list[Resource], *, refresh: bool = False) -> Plan:
        meta = self.state.meta()
        return make_plan({r.address: r for r in resources}, self.state.resources(), self.provider_for,
                         stack="test", lineage=meta.lineage, serial=meta.serial,
                         refreshed=self.refreshed() if refresh else None)

    def destroy_plan(self) -> Plan:
        meta = self.state.meta()
        return make_destroy_plan(self.state.resources(), stack="test", lineage=meta.lineage, serial=meta.serial)

    def apply(self, plan: Plan) -> ApplyResult:
        self.state.bump_serial()
        return Applier(self.state, self.provider_for, self.events.append, self.options).run(plan)

    def converge(self, resources: list[Resource]) -> Plan:
        plan = self.plan(resources)
        self.apply(plan)
        return plan

    def records(self) -> dict[str, ResourceRecord]:
        return self.state.resources()

    def journal_phases(self) -> list[tuple[str, str, str]]:
        """(op, address, phase) of every journal entry, oldest first (read straight from the database)."""
        db = sqlite3.connect(self.path)
        try:
            return db.execute("SELECT op, address, phase FROM journal ORDER BY seq").fetchall()
        finally:
            db.close()

    def events_of(self, kind: str) -> list[Event]:
        return [e for e in self.events if e.kind == kind]


def res(address: str, kind: str = "mem.thing", depends_on: tuple[str, ...] = (), **inputs: Any) -> Resource:
    return Resource(address, kind, TARGET, inputs, depends_on)


def ref(address: str, output: str = "id") -> Ref:
    return Ref(address, output)


class ConcurrencyMeter:
    """Counts creates in flight; `hold` keeps each create open for a few ms so overlaps can happen.

    With `until_overlap=n` each create waits until n creates have been in flight at once, so a test can assert
    that its concurrency limit is *reached* (max_active == n) without relying on timing. The wait is bounded: if
    n never overlap (the engine serialised the steps), the first waiter gives up after `timeout_s`, no later
    create waits, and max_active stays below n for the test to report.
    """

    def __init__(self, *, hold_s: float = 0.005, until_overlap: int | None = None, timeout_s: float = 10) -> None:
        self.active = 0
        self.max_active = 0
        self.hold_s = hold_s
        self.until_overlap = until_overlap
        self.timeout_s = timeout_s
        self.gave_up = False
        self._cond = threading.Condition()

    def __call__(self) -> None:
        with self._cond:
            self.active += 1
            self.max_active = max(self.max_active, self.active)
            self._cond.notify_all()
            if self.until_overlap is not None and not self.gave_up:
                reached = self._cond.wait_for(lambda: self.max_active >= self.until_overlap or self.gave_up,
                                              timeout=self.timeout_s)
                if not reached:
                    self.gave_up = True
                    self._cond.notify_all()
        time.sleep(self.hold_s)
        with self._cond:
            self.active -= 1
