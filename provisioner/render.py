"""Terraform-like rendering of a plan for people (the JSON form is `Plan.to_json`)."""

from __future__ import annotations

import json
from itertools import groupby
from typing import TYPE_CHECKING, Any

from provisioner.console import escape  # rich's, skipped where there is no `[`
from provisioner.graph import UNKNOWN, Ref
from provisioner.migration.model import Migration
from provisioner.plan import REPLACE_REQUESTED, Change, Plan
from provisioner.secrets import MASK, is_secret

if TYPE_CHECKING:  # piped output prints through provisioner.console.FastConsole: rich is not imported
    from rich.console import Console

SYMBOLS = {"create": ("+", "green"), "update": ("~", "yellow"), "replace": ("-/+", "magenta"),
           "delete": ("-", "red"), "noop": (" ", "dim")}


def fmt(value: Any, width: int = 80, indent: int = 0) -> str:
    """A value as JSON, never cut: on one line up to `width` characters; a longer object or list folds into
    indented lines (each continuation line `indent` spaces in, under its key); a long string stays whole."""
    if value is UNKNOWN:
        return "(known after apply)"
    plain = _plain(value)
    text = json.dumps(plain, sort_keys=True)
    if len(text) <= width or not isinstance(plain, dict | list) or not plain:
        return text
    return json.dumps(plain, sort_keys=True, indent=2).replace("\n", "\n" + " " * indent)


def _plain(value: Any) -> Any:
    if value is UNKNOWN or isinstance(value, Ref):
        return "(known after apply)"
    if is_secret(value):
        return MASK
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


def render_plan(console: Console, plan: Plan, cost: tuple[Any, Any] | None = None) -> None:
    """The plan for people; `cost` is (after apply, now) as `Stack.cost_reports` gives them."""
    for target, facts in sorted(plan.discovery.items()):
        shown = ", ".join(f"{key}={fmt(value, 60, 2)}" for key, value in sorted(facts.items()))
        console.print(f"[dim]discovered on target {escape(target)}: {escape(shown)}[/]")
    if plan.targets or plan.replace:
        from provisioner.targeting import render_note

        render_note(console, plan)
    if not plan.has_changes:
        for migration in plan.migrations:  # kept sources
            render_migration(console, migration)
        console.print(f"[green]No changes.[/] Stack [bold]{plan.stack}[/] matches its stack file "
                      f"({len(plan.changes)} resources)." if not plan.targets else
                      f"[green]No changes[/] in the targeted resources and what they depend on ({len(plan.changes)}).")
        _drift_only(console, plan)
        return
    verb = "destroy" if plan.destroy else "change"
    console.print(f"mlplat will {verb} stack [bold]{plan.stack}[/] as follows:\n")
    for migration in plan.migrations:
        render_migration(console, migration)
    changes = sorted((c for c in plan.changes if c.action != "noop" or c.deposed or c.drift), key=lambda c: c.target)
    for target, group in groupby(changes, key=lambda c: c.target):
        console.print(f"[bold underline]target {escape(target)}[/]")
        for change in group:
            _change(console, change)
        console.print()
    s = plan.summary()
    console.print(f"[bold]Plan:[/] {s['create']} to create, {s['update']} to update, {s['replace']} to replace, "
                  f"{s['delete']} to delete, {s['noop']} unchanged.")
    if cost is not None:
        from provisioner.cost import render_costs

        console.print("\n[bold]Cost after apply[/] (Δ: against what the state records now):")
        render_costs(console, cost[0], cost[1])


MODE_TEXT = {"move": "move", "rollback": "roll back", "finish": "finish moving", "kept": "moved"}


def render_migration(console: Console, m: Migration) -> None:
    """A component's move: phases, resources per target, compatibility, notes."""
    head = f"[bold cyan]migration[/] {escape(m.kind)} [bold]{escape(m.component)}[/]: {MODE_TEXT[m.mode]} " \
           f"{escape(m.source)} → {escape(m.destination)}"
    if m.mode == "rollback":
        head = f"[bold cyan]migration[/] {escape(m.kind)} [bold]{escape(m.component)}[/]: roll back to " \
               f"{escape(m.source)} (from {escape(m.destination)})"
    if m.started and m.mode == "move":
        head += f" [dim](resuming: {escape(m.phase)}, {m.traffic} % of traffic on {escape(m.destination)})[/]"
    if m.mode == "kept":
        head += f" [dim](source kept on {escape(m.source)}: mlplat migrate --finish {escape(m.component)} deletes " \
                f"it, --rollback {escape(m.component)} returns to it)[/]"
    console.print(head)
    for i, (phase, text) in enumerate(m.phases(), 1):
        console.print(f"  {i}. [bold]{escape(phase)}[/]: {escape(text)}")
    if m.source_resources:
        console.print(f"  on {escape(m.source)}: {len(m.source_resources)} resource(s): "
                      f"{escape(', '.join(m.source_resources))}", soft_wrap=True)
    if m.destination_resources:
        console.print(f"  on {escape(m.destination)}: {len(m.destination_resources)} resource(s): "
                      f"{escape(', '.join(m.destination_resources))}", soft_wrap=True)
    report = m.compatibility or {}
    for item in report.get("errors", ()):
        console.print(f"  [red]✗ {escape(item['message'])}[/]")
    for item in report.get("warnings", ()):
        console.print(f"  [yellow]! {escape(item['message'])}[/]")
    differences = report.get("differences") or {}
    if differences:
        console.print(f"  [dim]capabilities that differ ({escape(m.source)} → {escape(m.destination)}):[/]")
        for name, (before, after) in sorted(differences.items()):
            console.print(f"    [dim]{escape(name)}: {escape(fmt(before, 50, 4))} → {escape(fmt(after, 50, 4))}[/]")
    elif not report.get("errors"):
        console.print(f"  [green]✓[/] {escape(m.destination)} offers everything {escape(m.component)} uses")
    src, dst = (m.cost or {}).get("source"), (m.cost or {}).get("destination")
    if src and dst and m.mode == "move":
        def price(c: dict[str, Any]) -> str:
            return f"${c['hourly']:,.2f}/h (${c['monthly']:,.0f}/month)" + (
                f" + {c['unpriced']} unpriced" if c["unpriced"] else "")

        change = dst["hourly"] - src["hourly"]
        console.print(f"  cost: {price(src)} on {escape(m.source)} → {price(dst)} on {escape(m.destination)} "
                      f"(Δ {'+' if change >= 0 else '-'}${abs(change):,.2f}/h)")
    for note in m.notes:
        console.print(f"  [yellow]note:[/] {escape(note)}", soft_wrap=True)
    console.print()


def _change(console: Console, c: Change) -> None:
    symbol, color = SYMBOLS[c.action]
    note = ""
    if c.action == "replace":
        why = "requested with --replace" if c.forces_replacement == [REPLACE_REQUESTED] else \
            f"{', '.join(c.forces_replacement)} forces it"
        note = f" (replace: {why}" + \
               ("; new one first)" if c.create_before_destroy else "; recreated under its name)"
                if c.recreate_in_place else ")")
    if c.phase:
        note += {"shift": " (by the traffic shift)", "teardown": " (after the traffic shift)",
                 "after": " (once the source is restored)"}[c.phase]
    console.print(f"  [{color}]{symbol}[/] [bold]{escape(c.address)}[/] [dim]{escape(c.kind)}[/]{escape(note)}")
    if c.drift:
        if c.drift.get("$gone"):
            console.print("      [red]! deleted outside mlplat[/]")
        else:
            for key, (recorded, actual) in c.drift.items():
                for path, before, after in leaf_changes(recorded, actual, key):
                    console.print(f"      [red]! changed outside mlplat[/] {escape(path)}: {escape(fmt(before, 50, 6))}"
                                  f" → {escape(fmt(after, 50, 6))}", soft_wrap=True)
    if c.deposed:
        console.print(f"      [red]- old object(s) still to delete (a replace left them): "
                      f"{escape(', '.join(c.deposed))}[/]")
    if c.action == "create":
        for key, value in sorted((c.after or {}).items()):
            console.print(f"      {escape(key)}: {escape(fmt(value, 200, 6))}", soft_wrap=True)
    elif c.action in ("update", "replace"):
        for key in c.changed:
            for path, before, after in leaf_changes((c.before or {}).get(key), (c.after or {}).get(key), key):
                console.print(f"      [{color}]~[/] {escape(path)}: {escape(fmt(before, 60, 6))} → "
                              f"{escape(fmt(after, 60, 6))}", soft_wrap=True)


def leaf_changes(before: Any, after: Any, path: str) -> list[tuple[str, Any, Any]]:
    """`routes[0].weight: 80 → 50` rather than two whole lists."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [leaf for k in sorted(set(before) | set(after))
                for leaf in leaf_changes(before.get(k), after.get(k), f"{path}.{k}")]
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        return [leaf for i, (b, a) in enumerate(zip(before, after, strict=True))
                for leaf in leaf_changes(b, a, f"{path}[{i}]")]
    return [] if before == after else [(path, before, after)]


def _drift_only(console: Console, plan: Plan) -> None:
    for c in plan.changes:
        if c.drift:
            _change(console, c)
