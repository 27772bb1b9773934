"""Planning a move: which components changed target, what stays recorded where while they move, and which of the
plan's changes wait for the traffic shift (teardown) or for the source to be restored (after a rollback).

`plan_migrations` runs before the ordinary planner: it hands `make_plan` a *view* of the records in which a
moving component's source is absent (so its destination resources plan as creates, at the component's real
addresses) and returns the teardown deletes itself; `finish_plan` then tags the plan's changes with the segment
of apply they belong to (see `provisioner.apply.SEGMENTS`).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from provisioner.errors import PlanError
from provisioner.migration.model import (
    MIGRATION_KIND,
    Migration,
    component_of,
    held_address,
    is_held,
    original_address,
)
from provisioner.plan import Change, Plan
from provisioner.spec.model import component_kind
from provisioner.target import FRONT_DOOR, STACK_SCOPE

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.graph import Resource
    from provisioner.state.base import ResourceRecord


@dataclass
class Planned:
    view: dict[str, ResourceRecord]
    migrations: list[Migration] = field(default_factory=list)
    teardown: list[Change] = field(default_factory=list)
    #: components rolled back: their non-noop changes wait until the source is restored
    restoring: set[str] = field(default_factory=set)
    #: targets whose stack-scoped resources go with the teardown (no component left on them)
    torn_targets: set[str] = field(default_factory=set)
    kept_targets: set[str] = field(default_factory=set)


def is_front_door(address: str) -> bool:
    parts = address.split(".")
    return len(parts) >= 3 and parts[1] == FRONT_DOOR


def owned_by_component(address: str) -> bool:
    """A component resource (not stack-scoped, not a front door, not a migration record)."""
    return not address.startswith(STACK_SCOPE + ".") and not is_front_door(address) and not address.startswith("_")


def plan_migrations(stack: Stack, desired: dict[str, Resource], records: dict[str, ResourceRecord], *,
                    keep_source: frozenset[str] = frozenset(), finish: frozenset[str] = frozenset()) -> Planned:
    platform = stack.platform
    components = {c.name: c for c in platform.components()}
    view: dict[str, ResourceRecord] = {}
    real: dict[str, list[ResourceRecord]] = defaultdict(list)
    held: dict[str, list[ResourceRecord]] = defaultdict(list)
    markers: dict[str, ResourceRecord] = {}
    for address, record in records.items():
        if record.kind == MIGRATION_KIND:
            markers[address.split(".", 1)[1]] = record
        elif is_held(address):
            held[component_of(address)].append(record)
        else:
            view[address] = record
            if owned_by_component(address):
                real[component_of(address)].append(record)
    planned = Planned(view)
    for name in sorted(set(markers) | set(held) | set(real)):
        component = components.get(name)
        marker = markers.get(name)
        if component is None or (marker is None and held[name]):
            # the component left the stack (or a marker-less hold, which apply never writes): delete it all
            view.update({r.address: r for r in held[name]})
            if marker is not None:
                view[marker.address] = marker
            continue
        wanted = platform.target_of(component)
        kind = component_kind(component)
        if marker is None:
            targets = {r.target for r in real[name]}
            if not targets or targets == {wanted}:
                continue
            if len(targets) > 1:
                raise PlanError(f"{kind} {name!r} has resources on several targets ({', '.join(sorted(targets))})",
                                hint="mlplat state list shows them; remove the strays with mlplat state rm")
            source = targets.pop()
            migration = _new(stack, component, kind, source, wanted, keep=name in keep_source)
            sources = real[name]
        else:
            info = marker.inputs
            source, destination = info["source"], info["destination"]
            if wanted == destination:
                migration = _new(stack, component, kind, source, wanted,
                                 keep=bool(info.get("keep_source")) or name in keep_source)
                migration.started, migration.phase = True, str(info.get("phase", ""))
                migration.traffic = int(info.get("traffic", 0))
                if migration.phase == "kept":
                    migration.mode = "finish" if name in finish else "kept"
                    migration.keep_source = name not in finish
                sources = [*held[name], *(r for r in real[name] if r.target == source)]
            elif wanted == source:
                migration = _new(stack, component, kind, source, destination, keep=False)
                migration.mode, migration.started = "rollback", True
                migration.traffic, migration.phase = int(info.get("traffic", 0)), "rollback"
                _plan_rollback(planned, migration, real[name], held[name])
                planned.migrations.append(migration)
                continue
            else:
                raise PlanError(f"{kind} {name!r} is still moving from {source!r} to {destination!r}",
                                hint=f"finish the move first (target: {destination}, mlplat apply) or roll it back "
                                     f"(mlplat migrate --rollback {name}), then move it to {wanted!r}")
        for record in sources:
            view.pop(record.address, None)
        own = {r.address if not is_held(r.address) else original_address(r.address)[0] for r in sources}
        migration.source_resources = sorted(own)
        migration.destination_resources = sorted(a for a in desired
                                                 if component_of(a) == name and owned_by_component(a))
        if not migration.keep_source:
            for record in sources:
                planned.teardown.append(_delete(_as_held(record, own), phase="teardown"))
        planned.migrations.append(migration)
    _hold_edges_between_components(planned)
    in_use = set(stack.targets_in_use())
    for migration in planned.migrations:
        for target in (migration.source, migration.destination):
            if target not in in_use:
                (planned.kept_targets if migration.keep_source and target == migration.source
                 else planned.torn_targets).add(target)
    planned.torn_targets -= planned.kept_targets
    for address in [a for a in view if a.startswith(STACK_SCOPE + ".")]:
        target = address.split(".")[1]
        if target in planned.kept_targets:
            view.pop(address)  # still holds the kept source: neither planned nor deleted
        elif target in planned.torn_targets:
            planned.teardown.append(_delete(view.pop(address), phase="teardown"))
    return planned


def _new(stack: Stack, component: Any, kind: str, source: str, destination: str, *, keep: bool) -> Migration:
    shift = getattr(component, "migration", None)
    migration = Migration(component.name, kind, source, destination, keep_source=keep)
    if shift is not None:
        migration.steps, migration.window_s = list(shift.steps), shift.window_s
        migration.max_error_rate, migration.max_latency_ms = shift.max_error_rate, shift.max_latency_ms
    migration.compatibility = stack.compatibility(component, source, destination)
    migration.cost = _cost(stack, component, source, destination)
    migration.notes = _notes(component, kind, source, destination)
    return migration


def _cost(stack: Stack, component: Any, source: str, destination: str) -> dict[str, Any]:
    from provisioner.cost import estimate_component

    out = {}
    for side, name in (("source", source), ("destination", destination)):
        target = stack.targets.get(name)
        if target is None:
            continue
        priced = estimate_component(component, stack.platform, name, target.name)
        out[side] = {"hourly": round(priced.hourly, 4), "monthly": round(priced.monthly, 2),
                     "unpriced": priced.unpriced_count}
    return out


def _notes(component: Any, kind: str, source: str, destination: str) -> list[str]:
    if kind == "storage":
        return [f"the contents of storage {component.name!r} are not copied: copy them from {source} to "
                f"{destination} (rsync, aws datasync, gcloud storage) before the teardown, or move with "
                "--keep-source"]
    if kind == "cluster":
        return [f"jobs running on cluster {component.name!r} on {source} stop at the teardown"]
    if kind == "serving" and not component.front_door:
        return [f"endpoint {component.name!r} has no front door: its URL changes at the cut-over (declare "
                "front_door: <target> to keep one stable URL and shift traffic in steps)"]
    return []


def _as_held(record: ResourceRecord, own: set[str]) -> ResourceRecord:
    """The record as it is held during the move (its edges to the component's other resources held too)."""
    if is_held(record.address):
        return record
    deps = [held_address(d, record.target) if d in own else d for d in record.depends_on]
    return replace(record, address=held_address(record.address, record.target), depends_on=deps)


def _hold_edges_between_components(planned: Planned) -> None:
    """Edges between two components moving off the same target lead to the held records too: an endpoint's
    source resources that read a registry's source model versions (both leaving gcp, say) are deleted before
    those versions, not after (Vertex AI refuses to delete a model version still deployed)."""
    held = {original_address(c.address)[0]: c.target for c in planned.teardown if is_held(c.address)}

    def edge(address: str, target: str) -> str:
        return held_address(address, target) if not is_held(address) and held.get(address) == target else address

    planned.teardown = [replace(c, depends_on=[edge(d, c.target) for d in c.depends_on],
                                prior_depends_on=[edge(d, c.target) for d in c.prior_depends_on or []])
                        for c in planned.teardown]


def _delete(record: ResourceRecord, *, phase: str) -> Change:
    return Change(record.address, "delete", record.kind, record.target, record.inputs, None, [], [],
                  list(record.depends_on), cloud_id=record.id, prior_depends_on=list(record.depends_on),
                  deposed=list(record.deposed), phase=phase)


def _plan_rollback(planned: Planned, migration: Migration, real: list[ResourceRecord],
                   held: list[ResourceRecord]) -> None:
    """Back to the source: the destination's resources go (after the traffic is back), the held ones are
    restored under their own addresses."""
    for record in real:
        if record.target == migration.destination:
            planned.view.pop(record.address, None)
            planned.teardown.append(_delete(record, phase="teardown"))
    restored = []
    for record in held:
        address, _ = original_address(record.address)
        deps = [original_address(d)[0] if is_held(d) else d for d in record.depends_on]
        planned.view[address] = replace(record, address=address, depends_on=deps)
        restored.append(address)
    migration.source_resources = sorted(restored)
    migration.destination_resources = sorted(r.address for r in real if r.target == migration.destination)
    planned.restoring.add(migration.component)


def finish_plan(plan: Plan, planned: Planned) -> None:
    """Tag the plan's changes with their apply segment and add the teardown deletes."""
    moving = {m.component: m for m in planned.migrations if m.mode in ("move", "rollback")}
    for change in plan.changes:
        name = component_of(change.address)
        migration = moving.get(name)
        if migration is None:
            continue
        if is_front_door(change.address) and change.action == "update":
            change.phase = "shift"
            migration.front_doors.append(change.address)
        elif name in planned.restoring and change.action != "noop" and not is_front_door(change.address):
            change.phase = "after"
    plan.changes.extend(planned.teardown)
    plan.migrations = planned.migrations
