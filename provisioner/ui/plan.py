"""The Plan page: the stack's current preview as a diff with its cost, a button that previews again, and apply.

A preview here is `mlplat preview` (a refreshing plan, no lock taken), kept in memory with an id. Apply takes
exactly that plan, as `mlplat apply plan.json` takes a saved one: under the stack's lock, refused when the state
changed since the preview (the engine's serial check). Its events stream to the page (`runs.py`).
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from provisioner.ui import html
from provisioner.ui.html import esc
from provisioner.ui.safe import public

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.plan import Plan
    from provisioner.ui.app import UiApp
    from provisioner.ui.runs import Run


def _plan_data(stack: Stack, plan: Plan, cost: tuple[Any, Any] | None) -> dict[str, Any]:
    from provisioner.console import FastConsole
    from provisioner.live import plan_json, step_count
    from provisioner.render import leaf_changes, render_plan

    text = io.StringIO()
    render_plan(FastConsole(text, color=False), plan, cost)  # the very text `mlplat preview` prints
    changes = []
    for c in plan.changes:
        if c.action == "noop" and not c.drift and not c.deposed:
            continue
        if c.action == "create":
            leaves = [(k, None, v) for k, v in sorted((c.after or {}).items())]
        elif c.action in ("update", "replace"):
            leaves = [leaf for k in c.changed
                      for leaf in leaf_changes((c.before or {}).get(k), (c.after or {}).get(k), k)]
        elif c.action == "delete":
            leaves = [(k, v, None) for k, v in sorted((c.before or {}).items())]
        else:
            leaves = []
        drift = [] if not c.drift or c.drift.get("$gone") else [
            leaf for k, (recorded, actual) in c.drift.items() for leaf in leaf_changes(recorded, actual, k)]
        changes.append({"address": c.address, "action": c.action, "kind": c.kind, "target": c.target,
                        "forces_replacement": list(c.forces_replacement), "phase": c.phase,
                        "gone": bool(c.drift and c.drift.get("$gone")), "deposed": list(c.deposed),
                        "fields": [{"field": f, "before": b, "after": a} for f, b, a in leaves],
                        "drift": [{"field": f, "recorded": b, "actual": a} for f, b, a in drift]})
    full = plan_json(plan, cost)
    return public({"stack": plan.stack, "serial": plan.serial, "lineage": plan.lineage, "made_at": plan.created_at,
                   "summary": plan.summary(), "has_changes": plan.has_changes, "has_drift": plan.has_drift,
                   "steps": step_count(plan) if plan.has_changes else 0, "changes": changes,
                   "migrations": full.get("migrations", []), "cost": full.get("cost"),
                   "estimated_cost_usd_hour": full.get("estimated_cost_usd_hour"), "text": text.getvalue()})


def run_preview(app: UiApp, key: str) -> dict[str, Any]:
    """A fresh preview (what `mlplat preview` shows), kept as the stack's current one for apply."""
    with app.stack(key) as stack:
        plan = stack.plan(refresh=True)
        cost = stack.cost_reports()
        data = _plan_data(stack, plan, cost)
    preview = app.keep_preview(key, plan, data)
    return {**data, "preview": preview.id}


def start_apply(app: UiApp, key: str, preview_id: str) -> Run:
    """Apply the preview `preview_id` in a thread (under the stack's lock, as the CLI's apply)."""
    preview = app.take_preview(key, preview_id)
    plan = preview.plan

    def work(run: Run) -> dict[str, Any]:
        with app.stack(key, listeners=[run.add]) as stack, stack.locked("apply"):
            if plan.has_changes or plan.has_drift:
                result = stack.apply(plan)  # refuses a stale plan: the state changed since the preview
                done, elapsed = result.done, result.elapsed
            else:
                stack.sync_outputs(plan)
                stack.sweep()
                done, elapsed = 0, 0.0
            outputs = stack.outputs()
        with app._lock:  # applied: the next visit previews afresh
            if app.previews.get(key) is preview:
                del app.previews[key]
        from provisioner.ui.serving import forget_monitoring

        forget_monitoring(app, key)  # the Serving page reads monitoring afresh
        return {"applied": done, "elapsed_s": round(elapsed, 3), "summary": plan.summary(), "outputs": outputs}

    return app.runs.start(key, "apply", work)


def data(app: UiApp, key: str, query: dict[str, str]) -> dict[str, Any]:
    """The current preview (one is made on the first visit, and after an apply), and the running apply if any."""
    preview = app.previews.get(key)
    fresh = preview is None or bool(query.get("fresh"))
    if fresh:  # the state's serial is the one it was just made at
        shown = run_preview(app, key)
        serial = shown["serial"]
    else:
        shown = {**preview.data, "preview": preview.id}
        with app.stack(key) as stack:
            serial = stack.state.meta().serial
    running = app.runs.active(key)
    return {**shown, "stale": serial != shown["serial"], "state_serial": serial,
            "running": running.to_json() if running else None}


_ACTION_WORD = {"create": "+ create", "update": "~ update", "replace": "-/+ replace", "delete": "- destroy",
                "noop": "  (drift only)"}


def _cell(v: Any) -> str:
    if v is None:
        return '<span class="dim">-</span>'
    return html.value(v)


def render(app: UiApp, key: str, data: dict[str, Any]) -> str:
    s = data["summary"]
    summary = (f"Plan: {s['create']} to create, {s['update']} to update, {s['replace']} to replace, "
               f"{s['delete']} to delete, {s['noop']} unchanged.")
    running = data.get("running")
    can_apply = (data["has_changes"] or data["has_drift"]) and not data["stale"] and not running
    stale = ('<p class="error" id="stale">The state changed since this preview (serial '
             f'{esc(data["serial"])} → {esc(data["state_serial"])}): apply would refuse it. Run the preview again.'
             '</p>') if data["stale"] else ""
    buttons = ('<p class="row"><button id="run-preview">Run preview</button>'
               f'<button id="apply" class="primary" data-preview="{esc(data["preview"])}" '
               f'data-steps="{esc(data["steps"])}"{"" if can_apply else " disabled"}>Apply…</button>'
               f'<span id="plan-message" hidden></span></p>')
    dialog = ('<dialog id="confirm-apply"><h2>Apply these changes?</h2>'
              f'<p>{esc(summary)}</p><p>Stack <b>{esc(data["stack"])}</b>, under its lock, exactly as previewed.</p>'
              '<p class="row"><button id="confirm-yes" class="danger">Yes, apply</button>'
              '<button id="confirm-cancel">Cancel</button></p></dialog>')
    progress = ('<progress id="progress-bar" hidden></progress><ol id="progress" hidden></ol>'
                + (f'<span data-running="{esc(running["id"])}" data-steps="{esc(data["steps"])}"></span>'
                   if running else ""))
    rows = []
    for c in data["changes"]:
        note = ""
        if c["action"] == "replace" and c["forces_replacement"]:
            note = f' <span class="dim">({esc(", ".join(c["forces_replacement"]))} forces replacement)</span>'
        if c["gone"]:
            note += ' <span class="error">deleted outside mlplat</span>'
        rows.append(f'<tr class="change {esc(c["action"])}" data-address="{esc(c["address"])}" '
                    f'data-action="{esc(c["action"])}"><td class="{esc(c["action"])}">'
                    f'{esc(_ACTION_WORD.get(c["action"], c["action"]))}</td>'
                    f'<td colspan="2"><b>{esc(c["address"])}</b> <span class="dim">{esc(c["kind"])} on '
                    f'{esc(c["target"])}</span>{note}</td></tr>')
        for leaf in c["fields"]:
            rows.append(f'<tr class="leaf" data-address="{esc(c["address"])}" data-field="{esc(leaf["field"])}">'
                        f'<td class="dim">{esc(leaf["field"])}</td><td class="before">{_cell(leaf["before"])}</td>'
                        f'<td class="after">{_cell(leaf["after"])}</td></tr>')
        for leaf in c["drift"]:
            rows.append(f'<tr class="leaf drift" data-address="{esc(c["address"])}" '
                        f'data-field="{esc(leaf["field"])}"><td class="dim">! {esc(leaf["field"])} (changed outside '
                        f'mlplat)</td><td class="before">{_cell(leaf["recorded"])}</td>'
                        f'<td class="after">{_cell(leaf["actual"])}</td></tr>')
    diff = (f'<table class="diff" id="diff"><thead><tr><th>change</th><th>before</th><th>after</th></tr></thead>'
            f'<tbody>{"".join(rows)}</tbody></table>' if rows else
            f'<p class="ok" id="no-changes">No changes. Stack {esc(data["stack"])} matches its stack file.</p>')
    return (f'<h1>Plan <span class="dim">· {esc(data["stack"])}</span></h1>'
            f'<p class="dim">previewed {esc(html.when(data["made_at"]))} at state serial {esc(data["serial"])}</p>'
            f'{stale}{buttons}{dialog}{progress}'
            f'<p id="plan-summary"><b>{esc(summary)}</b></p>{_migrations(data["migrations"])}{diff}'
            f'{_cost(data.get("cost"))}'
            f'<details><summary>As <code>mlplat preview</code> prints it</summary>'
            f'<pre id="plan-text">{esc(data["text"])}</pre></details>')


def _migrations(migrations: list[dict[str, Any]]) -> str:
    if not migrations:
        return ""
    rows = [[esc(m.get("component")), esc(m.get("source")), esc(m.get("destination")), esc(m.get("mode"))]
            for m in migrations]
    return "<h2>Migrations</h2>" + html.table(("component", "from", "to", "mode"), rows, attrs='id="migrations"')


def _money(v: float | None) -> str:
    return "-" if v is None else f"${v:,.2f}"


def _cost(cost: dict[str, Any] | None) -> str:
    if not cost:
        return ""
    delta = cost["delta"]["components"]
    rows = []
    for c in cost["after"]["components"]:
        d = delta.get(c["component"], {})
        rows.append([esc(c["component"]), esc(c["kind"]), esc(c["target"]),
                     f'<span class="num">{_money(c["hourly_usd"])}</span>',
                     f'<span class="num">{_money(c["monthly_usd"])}</span>',
                     f'<span class="num">{"+" if d.get("monthly", 0) > 0 else ""}{_money(d.get("monthly"))}</span>'
                     + ("" if d.get("complete", True) else ' <span class="dim">(partly unpriced)</span>')])
    total = cost["delta"]["total"]
    rows.append(["<b>total</b>", "", "", f'<b>{_money(cost["after"]["hourly_usd"])}</b>',
                 f'<b>{_money(cost["after"]["monthly_usd"])}</b>',
                 f'<b>{"+" if total["monthly"] > 0 else ""}{_money(total["monthly"])}</b>'])
    note = esc(cost["after"].get("note") or "")
    return ("<h2>Cost</h2>" + html.table(("component", "kind", "target", "per hour", "per month", "change per month"),
                                        rows, attrs='id="cost"') + f'<p class="dim">{note}</p>')
