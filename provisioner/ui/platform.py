"""The Platform page: every resource, grouped by target and component, coloured by its status; and one
resource's page (inputs, outputs with secrets masked, its journal).

Status of a resource, from a refreshing plan (what `mlplat preview` computes) and the journal:

- failed: its object is gone (deleted outside mlplat, a killed server), or its last journal step failed;
- drift: the refresh found it changed outside mlplat;
- pending: apply would create, update, replace or delete it;
- in-sync: none of these.

A component's colour is its worst resource's. The component graph (SVG, layered by dependency depth) is drawn
when there are at most `GRAPH_LIMIT` components; the grouped chips below it are always shown.
"""

from __future__ import annotations

from collections import defaultdict
from typing import TYPE_CHECKING, Any

from provisioner.errors import LockHeld, MlplatError
from provisioner.history import RUN_OP
from provisioner.ui import html
from provisioner.ui.html import esc, href
from provisioner.ui.safe import public

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.ui.app import UiApp

#: worst first: a component takes its worst resource's status
ORDER = ("failed", "drift", "pending", "unknown", "in-sync")
GRAPH_LIMIT = 60


def _component(address: str) -> str:
    from provisioner.migration.model import component_of

    return component_of(address)


def _journal_failures(stack: Stack) -> dict[str, str]:
    """address -> message, for addresses whose last closed journal step failed."""
    last: dict[str, tuple[str, str]] = {}
    for entry in stack.state.journal():
        if entry.op == RUN_OP or entry.phase not in ("done", "failed"):
            continue
        last[entry.record.address] = (entry.phase, entry.message or "")
    return {a: m for a, (phase, m) in last.items() if phase == "failed"}


def data(app: UiApp, key: str, query: dict[str, str]) -> dict[str, Any]:
    refresh = query.get("refresh", "1") not in ("0", "false", "no")
    with app.stack(key) as stack:
        records = stack.state.resources()
        problem, locked = None, False
        try:
            plan = stack.plan(refresh=refresh)
            changes = {c.address: c for c in plan.changes}
        except LockHeld as err:  # an apply is running (the plan would recover its pending steps)
            problem, changes, locked = f"{err.message}: statuses show again once it ends", {}, True
        except MlplatError as err:  # e.g. a target cannot be read: show what the state records
            problem, changes = str(err), {}
        failures = _journal_failures(stack)
        resources = []
        for address in sorted({*records, *changes}):
            record, change = records.get(address), changes.get(address)
            status, why = "in-sync", ""
            if change is not None and change.drift and change.drift.get("$gone"):
                status, why = "failed", "its object is gone (deleted or stopped outside mlplat)"
            elif address in failures:
                status, why = "failed", failures[address]
            elif change is not None and change.drift:
                status, why = "drift", "changed outside mlplat: " + ", ".join(sorted(change.drift))
            elif change is not None and (change.action != "noop" or change.deposed):
                status, why = "pending", change.action if change.action != "noop" else "old objects to delete"
            elif change is None:
                status, why = "unknown", "not planned: " + (problem.splitlines()[0] if problem else "")
            kind = change.kind if change is not None else record.kind if record else ""
            target = change.target if change is not None else record.target if record else ""
            depends = list(change.depends_on if change is not None else record.depends_on if record else [])
            resources.append({"address": address, "component": _component(address), "kind": kind,
                              "target": target, "status": status, "why": why,
                              "action": change.action if change is not None else None,
                              "id": record.id if record else None, "depends_on": depends})
        components = _components(stack, resources)
    counts = {s: sum(r["status"] == s for r in resources) for s in ORDER}
    return public({"stack": stack.name, "refreshed": refresh, "problem": problem, "locked": locked,
                   "total": len(resources),
                   "counts": counts, "components": components, "resources": resources})


def _components(stack: Stack, resources: list[dict[str, Any]]) -> list[dict[str, Any]]:
    kinds = {c.name: type(c).__name__.lower() for _, c in stack.components()}
    kinds.update({raw.name: f"resource ({raw.kind})" for raw in stack.platform.resources})
    owner = {r["address"]: r["component"] for r in resources}
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in resources:
        grouped[r["component"]].append(r)
    out = []
    for name, members in grouped.items():
        targets = sorted({m["target"] for m in members if m["target"]})
        needs = sorted({owner[d] for m in members for d in m["depends_on"] if d in owner and owner[d] != name})
        status = min((m["status"] for m in members), key=ORDER.index)
        out.append({"name": name, "kind": kinds.get(name, "stack"), "targets": targets, "status": status,
                    "depends_on": needs, "resources": [m["address"] for m in members]})
    return out


def render(app: UiApp, key: str, data: dict[str, Any]) -> str:
    counts = data["counts"]
    legend = " ".join(html.badge(s, f"{html.STATUS[s][1]}: {counts[s]}") for s in ORDER if counts[s] or s != "unknown")
    problem = f'<pre class="error" id="problem">{esc(data["problem"])}</pre>' if data["problem"] else ""
    if data.get("locked"):  # look again shortly: the apply holding the lock ends
        problem += '<p class="dim" data-refresh="3">this page reloads every 3 s until then</p>'
    by_address = {r["address"]: r for r in data["resources"]}
    lanes: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for c in data["components"]:
        lanes[c["targets"][0] if len(c["targets"]) == 1 else " + ".join(c["targets"]) or "-"].append(c)
    parts = []
    for target in sorted(lanes):
        boxes = []
        for c in lanes[target]:
            css = html.STATUS[c["status"]][0]
            chips = "".join(_chip(key, by_address[a]) for a in c["resources"])
            deps = (f'<div class="deps">needs {esc(", ".join(c["depends_on"]))}</div>' if c["depends_on"] else "")
            boxes.append(f'<div class="component {css}" data-component="{esc(c["name"])}" '
                         f'data-status="{esc(c["status"])}"><h3>{esc(c["name"])} <span class="dim">'
                         f'{esc(c["kind"])}</span></h3>{chips}{deps}</div>')
        parts.append(f'<section class="lane" data-target="{esc(target)}"><h2>target {esc(target)}</h2>'
                     f'{"".join(boxes)}</section>')
    refreshed = "" if data["refreshed"] else ' <span class="dim">(not refreshed: statuses from the state)</span>'
    return (f'<h1>Platform <span class="dim">· {esc(data["stack"])}</span></h1>'
            f'<p id="counts" data-total="{data["total"]}">{data["total"]} resources in '
            f'{len(data["components"])} components{refreshed} &nbsp; <span class="legend">{legend}</span></p>'
            f'{problem}{_graph(data["components"])}'
            f'<p><input type="search" placeholder="filter resources" data-filter="a.res"></p>'
            f'<div class="lanes" id="graph">{"".join(parts)}</div>')


def _chip(key: str, r: dict[str, Any]) -> str:
    css = html.STATUS[r["status"]][0]
    title = f'{r["kind"]} on {r["target"]}: {html.STATUS[r["status"]][1]}' + (f' ({r["why"]})' if r["why"] else "")
    short = r["address"].split(".", 1)[1] if "." in r["address"] else r["address"]
    return (f'<a class="res {css}" href="{esc(href("resource", key, address=r["address"]))}" '
            f'data-address="{esc(r["address"])}" data-status="{esc(r["status"])}" title="{esc(title)}">'
            f'{esc(short)}</a>')


def _graph(components: list[dict[str, Any]]) -> str:
    """Components as boxes in columns by dependency depth, an arrow from each to what it needs."""
    if not components or len(components) > GRAPH_LIMIT:
        return "" if not components else (f'<p class="dim">{len(components)} components: the graph is drawn up to '
                                          f'{GRAPH_LIMIT}; every resource is below.</p>')
    names = {c["name"]: c for c in components}
    depth: dict[str, int] = {}

    def level(name: str, seen: frozenset[str] = frozenset()) -> int:
        if name not in depth:
            needs = [d for d in names[name]["depends_on"] if d in names and d not in seen]
            depth[name] = 1 + max((level(d, seen | {name}) for d in needs), default=-1)
        return depth[name]

    columns: dict[int, list[str]] = defaultdict(list)
    for name in names:
        columns[level(name)].append(name)
    width, height, gap_x, gap_y = 170, 44, 60, 16
    where: dict[str, tuple[int, int]] = {}
    for col, members in sorted(columns.items()):
        for row, name in enumerate(sorted(members)):
            where[name] = (10 + col * (width + gap_x), 10 + row * (height + gap_y))
    total_w = 20 + (max(columns) + 1) * (width + gap_x) - gap_x
    total_h = 20 + max(len(m) for m in columns.values()) * (height + gap_y) - gap_y
    lines, boxes = [], []
    for name, c in names.items():
        x, y = where[name]
        for dep in c["depends_on"]:
            if dep in where:
                dx, dy = where[dep]
                lines.append(f'<line x1="{dx + width}" y1="{dy + height // 2}" x2="{x}" y2="{y + height // 2}" '
                             'stroke="#8c959f" marker-end="url(#arrow)"/>')
        colour = {"ok": "#1f883d", "drift": "#bf8700", "pending": "#0969da", "failed": "#cf222e"}.get(
            html.STATUS[c["status"]][0], "#6e7781")
        boxes.append(f'<g data-node="{esc(name)}"><rect x="{x}" y="{y}" width="{width}" height="{height}" rx="6" '
                     f'fill="#fff" stroke="{colour}" stroke-width="3"/><text x="{x + 10}" y="{y + 18}" '
                     f'font-weight="600">{esc(name)}</text><text x="{x + 10}" y="{y + 35}" fill="#6e7781">'
                     f'{esc(c["kind"])} · {len(c["resources"])} · {esc(", ".join(c["targets"]))}</text></g>')
    return (f'<svg class="graph" id="component-graph" width="{total_w}" height="{total_h}" '
            f'viewBox="0 0 {total_w} {total_h}" role="img" aria-label="components and what they need">'
            '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
            'orient="auto-start-reverse"><path d="M 0 0 L 10 5 L 0 10 z" fill="#8c959f"/></marker></defs>'
            f'{"".join(lines)}{"".join(boxes)}</svg>')


# -- one resource ------------------------------------------------------------------------------------------------

def resource_data(app: UiApp, key: str, query: dict[str, str]) -> dict[str, Any]:
    address = query.get("address") or ""
    with app.stack(key) as stack:
        records = stack.state.resources()
        record = records.get(address)
        if record is None:
            from provisioner.api import _did_you_mean

            raise MlplatError(f"no resource {address!r} in the state of stack {stack.name!r}"
                              f"{_did_you_mean(address, records)}", hint="the Platform page lists them")
        from provisioner.plan import input_drift

        status, why = "in-sync", ""
        try:
            seen = stack.observe({address: record})[address]
            if seen is None:
                status, why = "failed", "its object is gone (deleted or stopped outside mlplat)"
            else:
                drift = input_drift(record.inputs, seen.inputs)
                if drift:
                    status, why = "drift", "changed outside mlplat: " + ", ".join(sorted(drift))
        except MlplatError as err:
            status, why = "unknown", f"could not read it: {err.message}"
        journal = [{"seq": e.seq, "apply_id": e.apply_id, "op": e.op, "phase": e.phase, "at": e.at,
                    "message": e.message} for e in stack.state.journal()
                   if e.record.address == address and e.op != RUN_OP]
        journal.reverse()
        if status == "in-sync" and journal and journal[0]["phase"] == "failed":
            status, why = "failed", journal[0]["message"] or "its last step failed"
        return public({"stack": stack.name, "address": address, "kind": record.kind, "target": record.target,
                       "id": record.id, "status": status, "why": why, "inputs": record.inputs,
                       "outputs": record.outputs, "depends_on": record.depends_on, "deposed": record.deposed,
                       "history": journal[:100]})


def render_resource(app: UiApp, key: str, data: dict[str, Any]) -> str:
    rows = [[esc(html.when(e["at"])), esc(e["op"]), html.badge("failed" if e["phase"] == "failed" else "in-sync",
                                                               e["phase"]),
             esc(e["apply_id"]), esc(e["message"] or "")] for e in data["history"]]
    deps = ", ".join(f'<a href="{esc(href("resource", key, address=d))}">{esc(d)}</a>' for d in data["depends_on"])
    why = f' <span class="dim">{esc(data["why"])}</span>' if data["why"] else ""
    return (f'<p><a href="{esc(href("platform", key))}">← Platform</a></p>'
            f'<h1 id="address">{esc(data["address"])}</h1>'
            f'<p>{html.badge(data["status"])}{why}</p>'
            f'<table class="kv"><tbody><tr><th>kind</th><td>{esc(data["kind"])}</td></tr>'
            f'<tr><th>target</th><td>{esc(data["target"])}</td></tr><tr><th>id</th><td><code>{esc(data["id"])}'
            f'</code></td></tr><tr><th>needs</th><td>{deps or "-"}</td></tr></tbody></table>'
            f'<section id="inputs"><h2>Inputs</h2>{html.kv(data["inputs"])}</section>'
            f'<section id="outputs"><h2>Outputs</h2>{html.kv(data["outputs"])}</section>'
            f'<section id="history"><h2>History</h2>'
            + (html.table(("when", "step", "phase", "apply", "message"), rows) if rows else
               '<p class="dim">no journal entries kept for it</p>') + "</section>")
