"""Targeted changes (Terraform's `-target` / `-replace`) and the refresh preview.

A targeted plan keeps the changes of the resources a `--target` names, every change they depend on (through
desired edges, transitively) and, where an old object goes (a delete or a replace), the pending changes of the
resources still using it, which must move off it first; every other change is left out and stays pending. The
plan records its targets and what it left out, so preview, apply and `mlplat show` say it is partial."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from provisioner.errors import PlanError
from provisioner.graph import from_json, iter_refs

if TYPE_CHECKING:
    from rich.console import Console

    from provisioner.graph import Resource
    from provisioner.plan import Change, Plan
    from provisioner.provider import Observed
    from provisioner.state.base import ResourceRecord

PARTIAL_WARNING = ("the plan is partial: only the targeted resources and what they depend on are planned; run a "
                   "full `mlplat apply` (without --target) afterwards to make the whole stack match its stack file")


def match_targets(targets: Iterable[str], addresses: Iterable[str]) -> set[str]:
    """The addresses each target names: itself, or every address under it (`iris` → `iris.endpoint.main`, …).
    A target naming nothing is an error that says what is close."""
    addresses = set(addresses)
    matched: set[str] = set()
    for target in targets:
        target = target.strip().rstrip(".")
        found = {a for a in addresses if a == target or a.startswith(target + ".")}
        if not found:
            from provisioner.api import _did_you_mean

            prefixes = {a.rsplit(".", n)[0] for a in addresses for n in (1, 2)}
            raise PlanError(f"--target {target}: no resource of the stack file or the state has that address"
                            f"{_did_you_mean(target, addresses | prefixes)}",
                            hint="give a resource address (mlplat graph / mlplat state list list them) or a "
                                 "component name for all its resources")
        matched |= found
    return matched


def check_replace(replace: Iterable[str], records: dict[str, ResourceRecord],
                  desired: dict[str, Resource]) -> frozenset[str]:
    """`--replace` addresses: each must be a recorded resource the stack file still declares."""
    for address in replace:
        if address not in records:
            from provisioner.api import _did_you_mean

            raise PlanError(f"--replace {address}: no resource {address!r} in the state"
                            f"{_did_you_mean(address, records)}",
                            hint="only a resource mlplat made can be replaced (mlplat state list lists them); "
                                 "one not made yet is created by apply anyway")
        if address not in desired:
            raise PlanError(f"--replace {address}: the stack file no longer declares it, so apply deletes it",
                            hint="nothing to replace; apply without --replace deletes it")
    return frozenset(replace)


def selected(changes: list[Change], matched: set[str]) -> set[str]:
    """The addresses of `changes` a targeted plan keeps (see the module's docstring)."""
    by_address = {c.address: c for c in changes}
    users: dict[str, set[str]] = {}  # address -> addresses whose desired or recorded edges point at it
    for c in changes:
        for dep in (*c.depends_on, *c.prior_depends_on) if c.action != "delete" else c.prior_depends_on:
            users.setdefault(dep, set()).add(c.address)
    keep: set[str] = set()
    todo = [a for a in matched if a in by_address]
    while todo:
        address = todo.pop()
        if address in keep:
            continue
        keep.add(address)
        change = by_address[address]
        if change.action != "delete":
            todo.extend(d for d in change.depends_on if d in by_address)
        if change.action in ("delete", "replace"):  # the old object goes: its users move off it first
            todo.extend(u for u in users.get(address, ()) if by_address[u].action != "noop")
    return keep


def narrow(plan: Plan, matched: set[str], *, targets: list[str], recorded_outputs: dict[str, Any],
           records: dict[str, ResourceRecord]) -> None:
    """Restrict `plan` to the targeted changes, in place; its outputs are those valid after applying it."""
    if any(m.mode != "kept" for m in plan.migrations):
        moving = ", ".join(m.component for m in plan.migrations if m.mode != "kept")
        raise PlanError(f"--target cannot be used while a component is moving to another target ({moving})",
                        hint="a migration moves whole components: apply without --target (or use mlplat migrate)")
    keep = selected(plan.changes, matched)
    plan.left_out = [c.address for c in plan.changes if c.address not in keep and (c.action != "noop" or c.deposed)]
    plan.changes = [c for c in plan.changes if c.address in keep]
    plan.targets = list(targets)
    plan.outputs = outputs_after(plan, recorded_outputs, records)


def outputs_after(plan: Plan, recorded_outputs: dict[str, Any], records: dict[str, ResourceRecord]) -> dict[str, Any]:
    """The stack outputs to record with a partial plan: each output as the stack file defines it when every
    resource it refers to exists after the plan is applied, else as recorded when that still holds, else none
    (so `mlplat output` never shows a value of a resource not made yet)."""
    gone = {c.address for c in plan.changes if c.action == "delete"}
    made = {c.address for c in plan.changes if c.action != "delete"}
    exists = (set(records) - gone) | made

    def valid(value: Any) -> bool:
        return all(ref.address in exists for ref in iter_refs(value))

    old = from_json(recorded_outputs or {})
    result: dict[str, Any] = {}
    for key in sorted(set(old) | set(plan.outputs)):
        if key in plan.outputs and valid(plan.outputs[key]):
            result[key] = plan.outputs[key]
        elif key in old and valid(old[key]):
            result[key] = old[key]
    return result


def render_note(console: Console, plan: Plan) -> None:
    """The warning a partial or forced plan carries, as preview, apply and show print it."""
    from rich.markup import escape

    if plan.replace:
        console.print(f"[magenta]replacing on request (--replace):[/] {escape(', '.join(plan.replace))}")
    if not plan.targets:
        return
    console.print(f"[yellow]warning:[/] resource targeting is in effect (--target {escape(' '.join(plan.targets))})"
                  f": {escape(PARTIAL_WARNING)}", soft_wrap=True)
    if plan.left_out:
        shown = ", ".join(plan.left_out[:10]) + (f", … ({len(plan.left_out) - 10} more)"
                                                 if len(plan.left_out) > 10 else "")
        console.print(f"[yellow]left out (still pending):[/] {len(plan.left_out)} change(s): {escape(shown)}",
                      soft_wrap=True)
    console.print()


def refresh_drift(records: dict[str, ResourceRecord], observed: dict[str, Observed | None]) -> dict[str, Any]:
    """What a refresh records, per address: "gone" (deleted outside mlplat) or input -> [recorded, actual]."""
    from provisioner.plan import input_drift

    drift: dict[str, Any] = {}
    for address, seen in observed.items():
        if seen is None:
            drift[address] = "gone"
        elif changed := input_drift(records[address].inputs, seen.inputs):
            drift[address] = changed
    return drift
