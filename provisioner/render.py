"""Terraform-like rendering of a plan for people (the JSON form is `Plan.to_json`)."""

from __future__ import annotations

import json
from itertools import groupby
from typing import Any

from rich.console import Console
from rich.markup import escape

from provisioner.graph import UNKNOWN, Ref
from provisioner.plan import Change, Plan
from provisioner.secrets import MASK, is_secret

SYMBOLS = {"create": ("+", "green"), "update": ("~", "yellow"), "replace": ("-/+", "magenta"),
           "delete": ("-", "red"), "noop": (" ", "dim")}


def fmt(value: Any, width: int = 80) -> str:
    if value is UNKNOWN:
        return "(known after apply)"
    text = json.dumps(_plain(value), sort_keys=True)
    return text if len(text) <= width else text[: width - 1] + "…"


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


def render_plan(console: Console, plan: Plan, cost: float | None = None) -> None:
    for target, facts in sorted(plan.discovery.items()):
        shown = ", ".join(f"{key}={fmt(value, 60)}" for key, value in sorted(facts.items()))
        console.print(f"[dim]discovered on target {escape(target)}: {escape(shown)}[/]")
    if not plan.has_changes:
        console.print(f"[green]No changes.[/] Stack [bold]{plan.stack}[/] matches its stack file "
                      f"({len(plan.changes)} resources).")
        _drift_only(console, plan)
        return
    verb = "destroy" if plan.destroy else "change"
    console.print(f"mlplat will {verb} stack [bold]{plan.stack}[/] as follows:\n")
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
        console.print(f"Estimated cost after apply: [bold]${cost:,.2f}/hour[/]")


def _change(console: Console, c: Change) -> None:
    symbol, color = SYMBOLS[c.action]
    note = ""
    if c.action == "replace":
        note = f" (replace: {', '.join(c.forces_replacement)} forces it" + \
               ("; new one first)" if c.create_before_destroy else "; recreated under its name)"
                if c.recreate_in_place else ")")
    console.print(f"  [{color}]{symbol}[/] [bold]{escape(c.address)}[/] [dim]{escape(c.kind)}[/]{escape(note)}")
    if c.drift:
        if c.drift.get("$gone"):
            console.print("      [red]! deleted outside mlplat[/]")
        else:
            for key, (recorded, actual) in c.drift.items():
                for path, before, after in leaf_changes(recorded, actual, key):
                    console.print(f"      [red]! changed outside mlplat[/] {escape(path)}: {escape(fmt(before, 50))}"
                                  f" → {escape(fmt(after, 50))}", soft_wrap=True)
    if c.deposed:
        console.print(f"      [red]- old object(s) still to delete (a replace left them): "
                      f"{escape(', '.join(c.deposed))}[/]")
    if c.action == "create":
        for key, value in sorted((c.after or {}).items()):
            console.print(f"      {escape(key)}: {escape(fmt(value, 200))}", soft_wrap=True)
    elif c.action in ("update", "replace"):
        for key in c.changed:
            for path, before, after in leaf_changes((c.before or {}).get(key), (c.after or {}).get(key), key):
                console.print(f"      [{color}]~[/] {escape(path)}: {escape(fmt(before, 60))} → "
                              f"{escape(fmt(after, 60))}", soft_wrap=True)


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
