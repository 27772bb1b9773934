"""Plan: desired resources vs recorded (optionally refreshed) state -> ordered changes. A plan is a value:
it serializes to JSON, can be saved, and is applied exactly (refused if the state moved since)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from dataclasses import fields as dataclass_fields
from typing import TYPE_CHECKING, Any

from provisioner.errors import PlanError
from provisioner.graph import Ref, Resource, check_edges, from_json, resolve, to_json, topological_order
from provisioner.migration.model import Migration
from provisioner.provider import Observed, ResourceProvider
from provisioner.state.base import ResourceRecord

PLAN_FORMAT = 1
ACTIONS = ("create", "update", "replace", "delete", "noop")
#: apply runs a plan's changes in these segments, in order ("shift" changes are made by the traffic shift)
SEGMENTS = ("", "shift", "teardown", "after")
#: `forces_replacement` of a change replaced only because the user asked for it (`--replace ADDRESS`)
REPLACE_REQUESTED = "--replace"


if TYPE_CHECKING:
    from provisioner.state.codec import StateCodec


@dataclass
class Change:
    address: str
    action: str
    kind: str
    target: str
    before: dict[str, Any] | None = None  # recorded inputs (after refresh)
    after: dict[str, Any] | None = None  # desired inputs; Refs resolved where already known
    changed: list[str] = field(default_factory=list)
    forces_replacement: list[str] = field(default_factory=list)
    depends_on: list[str] = field(default_factory=list)  # desired edges (create/update/replace) or recorded ones
    drift: dict[str, Any] | None = None  # field -> [recorded, actual], or {"$gone": True}
    create_before_destroy: bool = False
    cloud_id: str | None = None
    prior_depends_on: list[str] = field(default_factory=list)  # recorded edges, for ordering deletes
    deposed: list[str] = field(default_factory=list)  # replaced objects still to delete (never forgotten)
    recreate_in_place: bool = False  # replace_mode "in_place_recreate": one create call replaces the object
    #: the segment of apply that runs it (`SEGMENTS`): "" first; a migration's traffic shift, its teardown, then
    #: what waits for a rolled-back source to be restored
    phase: str = ""

    def to_json(self) -> dict[str, Any]:
        # not asdict(): its deep copy was most of `preview --json`'s and `apply --json`'s plan cost
        data = {f.name: getattr(self, f.name) for f in dataclass_fields(self)}
        for key in ("changed", "forces_replacement", "depends_on", "prior_depends_on", "deposed"):
            data[key] = list(data[key])
        data["before"], data["after"], data["drift"] = to_json(self.before), to_json(self.after), to_json(self.drift)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Change:
        data = dict(data)
        data["before"], data["after"] = from_json(data.get("before")), from_json(data.get("after"))
        data["drift"] = from_json(data.get("drift"))
        return cls(**data)


@dataclass
class Plan:
    stack: str
    lineage: str
    serial: int
    changes: list[Change]
    outputs: dict[str, Any] = field(default_factory=dict)
    destroy: bool = False
    created_at: float = field(default_factory=time.time)
    stack_file: str = ""
    #: what each target discovered when the plan was made (`Target.discover`); apply refuses if it changed
    discovery: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: components moving between targets (`provisioner.migration`)
    migrations: list[Migration] = field(default_factory=list)
    format: int = PLAN_FORMAT
    #: a partial plan (`--target`, `provisioner.targeting`): what it targets and the pending changes it left out
    targets: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)  # addresses replaced on request (`--replace`)
    #: the environment and --var values it was made with (`provisioner.spec.variables`); apply uses the same
    environment: str = ""
    variables: dict[str, str] = field(default_factory=dict)

    def summary(self) -> dict[str, int]:
        counts = dict.fromkeys(ACTIONS, 0)
        for c in self.changes:
            counts[c.action] += 1
        return counts

    @property
    def has_drift(self) -> bool:
        return any(c.drift for c in self.changes)

    @property
    def has_changes(self) -> bool:
        return any(c.action != "noop" or c.deposed for c in self.changes) or any(
            m.mode != "kept" for m in self.migrations)

    def segment(self, phase: str) -> Plan:
        """The plan restricted to the changes of one apply segment."""
        return replace(self, changes=[c for c in self.changes if c.phase == phase])

    def to_json(self) -> dict[str, Any]:
        return {"format": self.format, "stack": self.stack, "lineage": self.lineage, "serial": self.serial,
                "destroy": self.destroy, "created_at": self.created_at, "stack_file": self.stack_file,
                "summary": self.summary(), "outputs": to_json(self.outputs), "discovery": self.discovery,
                "migrations": [m.to_json() for m in self.migrations], "changes": [c.to_json() for c in self.changes],
                **{k: v for k, v in (("targets", self.targets), ("left_out", self.left_out),
                                     ("replace", self.replace)) if v},
                **({"environment": self.environment, "variables": self.variables} if self.environment else {})}

    def dumps(self, codec: StateCodec | None = None) -> str:
        """The plan as JSON; with the state's codec, secret values are sealed as they are in the state."""
        if codec is None:
            return json.dumps(self.to_json(), indent=1, sort_keys=True)
        return codec.dumps(self.to_json())

    @classmethod
    def loads(cls, text: str, codec: StateCodec | None = None) -> Plan:
        try:
            data = codec.loads(text) if codec is not None else json.loads(text)
            if data.get("format") != PLAN_FORMAT:
                raise PlanError(f"plan format {data.get('format')} is not supported (expected {PLAN_FORMAT})",
                                hint="make the plan again with this version: mlplat preview -o plan.json")
            return cls(stack=data["stack"], lineage=data["lineage"], serial=data["serial"],
                       changes=[Change.from_json(c) for c in data["changes"]], outputs=from_json(data["outputs"]),
                       destroy=data["destroy"], created_at=data["created_at"], stack_file=data["stack_file"],
                       discovery=data.get("discovery") or {},
                       migrations=[Migration.from_json(m) for m in data.get("migrations") or []],
                       targets=data.get("targets") or [], left_out=data.get("left_out") or [],
                       replace=data.get("replace") or [], environment=data.get("environment") or "",
                       variables=data.get("variables") or {})
        except (ValueError, KeyError, TypeError) as err:
            raise PlanError(f"not a saved mlplat plan: {err}") from None


def make_plan(
    desired: dict[str, Resource],
    recorded: dict[str, ResourceRecord],
    provider_for: Callable[[str, str], ResourceProvider],
    *,
    stack: str,
    lineage: str,
    serial: int,
    refreshed: dict[str, Observed | None] | None = None,
    outputs: dict[str, Any] | None = None,
    force_replace: frozenset[str] = frozenset(),
) -> Plan:
    """`provider_for(target, kind)`; `refreshed[address]` is what `read` saw (None = gone), absent = not read;
    `force_replace`: recorded addresses replaced even if unchanged (`--replace`)."""
    check_edges(desired)
    refreshed = refreshed or {}
    changes: dict[str, Change] = {}
    # Outputs of resources that will be (re)created are unknown until apply; others come from the state.
    recorded_outputs = {a: (refreshed[a].outputs if refreshed.get(a) else r.outputs) for a, r in recorded.items()}
    modes: dict[str, str] = {}  # address -> its provider's replace_mode (for create-before-destroy propagation)

    order = topological_order(desired, {a: r.edges for a, r in desired.items()})
    for address in order:
        res = desired[address]
        record = recorded.get(address)

        def lookup(ref: Ref) -> Any:
            """A known value, or the Ref itself: "known after apply", resolved by apply from the state."""
            dep = changes.get(ref.address)
            if dep is None or dep.action in ("create", "replace"):
                return ref
            if dep.action == "update" and ref.output in provider_for(dep.target, dep.kind).update_outputs:
                return ref  # the update may change it: known after apply, so one apply converges
            return recorded_outputs.get(ref.address, {}).get(ref.output, ref)

        after = resolve(res.inputs, lookup)
        deps = sorted(res.edges)
        if record is None:
            changes[address] = Change(address, "create", res.kind, res.target, None, after, sorted(after), [], deps)
            continue
        observed = refreshed.get(address, record) if address in refreshed else record
        drift = _drift(record, refreshed, address)
        deposed = list(record.deposed)  # kept on every path until deleted
        if observed is None:  # deleted outside mlplat
            changes[address] = Change(address, "create", res.kind, res.target, None, after, sorted(after), [], deps,
                                      drift=drift, cloud_id=record.id, deposed=deposed)
            continue
        before = observed.inputs
        if record.kind != res.kind or record.target != res.target:
            changes[address] = Change(address, "replace", res.kind, res.target, before, after, ["kind/target"],
                                      ["kind/target"], deps, drift, False, record.id, list(record.depends_on),
                                      deposed)
            continue
        provider = provider_for(res.target, res.kind)
        modes[address] = provider.replace_mode
        diff = provider.diff(before, after)
        forced = address in force_replace
        if diff.empty and not forced:
            action = "noop"
        elif diff.forces_replacement or forced:
            action = "replace"
        else:
            action = "update"
        changes[address] = Change(address, action, res.kind, res.target, before, after, list(diff.changed),
                                  list(diff.forces_replacement) or ([REPLACE_REQUESTED] if forced else []), deps, drift,
                                  action == "replace" and provider.replace_mode == "create_before_destroy",
                                  record.id, list(record.depends_on), deposed,
                                  action == "replace" and provider.replace_mode == "in_place_recreate")

    _propagate_create_before_destroy(changes, order, modes)

    # Deletes: recorded but no longer desired; listed dependents-first (reverse dependency order).
    gone = {a: r for a, r in recorded.items() if a not in desired}
    for address in reversed(topological_order(gone, {a: r.depends_on for a, r in gone.items()})):
        r = gone[address]
        drift = _drift(r, refreshed, address)
        changes[address] = Change(address, "delete", r.kind, r.target, r.inputs, None, [], [],
                                  list(r.depends_on), drift, cloud_id=r.id, prior_depends_on=list(r.depends_on),
                                  deposed=list(r.deposed))
    return Plan(stack, lineage, serial, list(changes.values()), outputs or {})


def _propagate_create_before_destroy(changes: dict[str, Change], order: list[str], modes: dict[str, str]) -> None:
    """As in Terraform: a resource replaced create-before-destroy keeps its old object until its users moved on,
    so the old objects it points at must also outlive that moment — their replacements go new-first too.

    Only where the provider can hold two objects at once: forcing it on a name-keyed provider would "create"
    the same object and then delete it as the old one. A replacement whose dependency must go destroy-first
    cannot keep its old object that long, so it goes destroy-first too (dependencies before dependents)."""
    def replaced(address: str) -> bool:
        return changes[address].action == "replace"

    for address in reversed(order):  # dependents before their dependencies
        change = changes[address]
        if replaced(address) and change.create_before_destroy:
            for dep in change.depends_on:
                if replaced(dep) and modes.get(dep) == "create_before_destroy":
                    changes[dep].create_before_destroy = True
    for address in order:  # dependencies before their dependents
        change = changes[address]
        if replaced(address) and change.create_before_destroy and any(
                replaced(dep) and not changes[dep].create_before_destroy and not changes[dep].recreate_in_place
                for dep in change.depends_on):
            change.create_before_destroy = False


def make_destroy_plan(recorded: dict[str, ResourceRecord], *, stack: str, lineage: str, serial: int) -> Plan:
    order = topological_order(recorded, {a: r.depends_on for a, r in recorded.items()})
    changes = [Change(a, "delete", recorded[a].kind, recorded[a].target, recorded[a].inputs, None, [], [],
                      list(recorded[a].depends_on), cloud_id=recorded[a].id,
                      prior_depends_on=list(recorded[a].depends_on), deposed=list(recorded[a].deposed))
               for a in reversed(order)]
    return Plan(stack, lineage, serial, changes, {}, destroy=True)


def _drift(record: ResourceRecord, refreshed: dict[str, Observed | None], address: str) -> dict[str, Any] | None:
    if address not in refreshed:
        return None
    observed = refreshed[address]
    if observed is None:
        return {"$gone": True}
    return input_drift(record.inputs, observed.inputs) or None


def input_drift(recorded: dict[str, Any], observed: dict[str, Any]) -> dict[str, list[Any]]:
    """field -> [recorded, observed] for every input that differs."""
    fields = sorted(k for k in set(recorded) | set(observed) if recorded.get(k) != observed.get(k))
    return {k: [recorded.get(k), observed.get(k)] for k in fields}
