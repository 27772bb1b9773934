"""The History page: the applies, destroys and migrations the state's journal holds, newest first (who, when, what
changed, how long), each migration with its phases and its traffic steps.

It reads the run records every apply journals (`provisioner.history`); older journals show as runs grouped by
apply id. Reading takes no lock: the journal only grows, and a run being applied shows once its record is written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from provisioner.ui import html
from provisioner.ui.html import esc
from provisioner.ui.safe import public

if TYPE_CHECKING:
    from provisioner.ui.app import UiApp

UNKNOWN_WHO = '<span class="dim">unknown</span>'
#: runs shown by default (`?limit=N` shows more)
LIMIT = 200
_ACTION_WORDS = {"create": "created", "update": "updated", "replace": "replaced", "delete": "deleted",
                 "delete-deposed": "deposed deleted", "move": "moved", "drift": "drift recorded"}


def data(app: UiApp, key: str, query: dict[str, str]) -> dict[str, Any]:
    from provisioner.history import runs

    try:
        limit = max(1, int(query.get("limit") or LIMIT))
    except ValueError:
        limit = LIMIT
    with app.stack(key) as stack:
        found = runs(stack.state)
        name = stack.name
    return public({"stack": key, "name": name, "total": len(found), "limit": limit, "runs": found[:limit]})


def _counts(counts: dict[str, int]) -> str:
    shown = [f"{n} {_ACTION_WORDS.get(action, action)}" for action, n in counts.items() if n]
    return ", ".join(shown) if shown else "no changes"


def _result(run: dict[str, Any]) -> str:
    ok = run.get("ok")
    if ok is True:
        return '<span class="badge ok" data-result="ok">ok</span>'
    if ok is False:
        return '<span class="badge failed" data-result="failed">failed</span>'
    return '<span class="badge unknown" data-result="interrupted">interrupted</span>'


def _changes(run: dict[str, Any]) -> str:
    changes = run.get("changes") or []
    if not changes:
        return '<p class="dim">no resource changed</p>'
    rows = "".join(
        f'<tr data-address="{esc(c.get("address"))}" data-action="{esc(c.get("action"))}" '
        f'data-outcome="{esc(c.get("outcome"))}"><td><code>{esc(c.get("address"))}</code></td>'
        f'<td class="{esc(c.get("action"))}">{esc(c.get("action"))}</td><td>{esc(c.get("kind"))}</td>'
        f'<td>{esc(c.get("target"))}</td><td>{esc(c.get("outcome"))}</td>'
        f'<td class="num">{esc(html.seconds(c.get("seconds")))}</td></tr>' for c in changes)
    total = run.get("changes_total") or len(changes)
    more = f'<p class="dim">… and {total - len(changes)} more</p>' if total > len(changes) else ""
    return ('<table class="changes diff"><thead><tr><th>address</th><th>action</th><th>kind</th><th>target</th>'
            f'<th>outcome</th><th class="num">took</th></tr></thead><tbody>{rows}</tbody></table>{more}')


def _migration(m: dict[str, Any]) -> str:
    phases = "".join(f'<tr data-phase="{esc(p.get("phase"))}"><td>{esc(p.get("phase"))}</td>'
                     f'<td class="num">{esc(html.seconds(p.get("seconds")))}</td></tr>'
                     for p in m.get("phases") or [])
    phases_table = (f'<table class="phases"><thead><tr><th>phase</th><th class="num">took</th></tr></thead>'
                    f'<tbody>{phases}</tbody></table>' if phases else '<p class="dim">no phase finished</p>')
    steps = []
    for s in m.get("steps") or []:
        traffic = s.get("traffic")
        attr = f' data-traffic="{esc(traffic)}"' if traffic is not None else ""
        message = str(s.get("message") or "")
        extra = {k: v for k, v in (s.get("data") or {}).items() if not (isinstance(v, str) and v in message)}
        steps.append(f'<tr data-step-phase="{esc(s.get("phase"))}"{attr}>'
                     f'<td class="num">{esc(html.seconds(s.get("after")))}</td><td>{esc(s.get("phase"))}</td>'
                     f'<td class="num">{esc(f"{traffic} %") if traffic is not None else ""}</td>'
                     f'<td>{esc(message)}{" " + html.value(extra) if extra else ""}</td></tr>')
    steps_table = ('<table class="traffic-steps"><thead><tr><th class="num">after</th><th>phase</th>'
                   '<th class="num">traffic on destination</th><th>what happened</th></tr></thead>'
                   f'<tbody>{"".join(steps)}</tbody></table>' if steps else "")
    mode = m.get("mode") or "move"
    title = (f'{esc(m.get("kind"))} {esc(m.get("component"))}: {esc(m.get("source"))} → '
             f'{esc(m.get("destination"))}' + (f" ({esc(mode)})" if mode != "move" else "")
             + (" (source kept)" if m.get("keep_source") else ""))
    return (f'<div class="migration" data-migration="{esc(m.get("component"))}" data-mode="{esc(mode)}">'
            f'<h3>Migration of {title}</h3>{phases_table}{steps_table}</div>')


def _details(run: dict[str, Any]) -> str:
    parts = []
    if run.get("error"):
        parts.append(f'<pre class="error">{esc(run["error"])}</pre>')
    parts.extend(_migration(m) for m in run.get("migrations") or [])
    parts.append(_changes(run))
    facts = []
    if run.get("targets"):
        facts.append(f'targeted: {", ".join(str(t) for t in run["targets"])}')
    if run.get("apply_ids"):
        facts.append(f'journal: {run.get("entries", 0)} step entr{"y" if run.get("entries") == 1 else "ies"}, '
                     f'apply id(s) {", ".join(str(a) for a in run["apply_ids"])}')
    if not run.get("recorded"):
        facts.append("no run record (journalled before run records existed, or the apply was killed): its "
                     "entries grouped by apply id")
    if facts:
        parts.append(f'<p class="dim">{esc("; ".join(facts))}</p>')
    n = run.get("changes_total") or 0
    summary = f"{n} change{'' if n == 1 else 's'}" + (f", {len(run['migrations'])} migration"
                                                       f"{'' if len(run['migrations']) == 1 else 's'}"
                                                       if run.get("migrations") else "")
    return f'<details><summary>{esc(summary)}</summary>{"".join(parts)}</details>'


def render(app: UiApp, key: str, data: dict[str, Any]) -> str:
    runs = data.get("runs") or []
    if not runs:
        return ('<h1>History</h1><p class="dim" id="no-runs">Nothing applied yet: the journal of this stack\'s '
                'state holds no run.</p>')
    rows = []
    for run in runs:
        ok = run.get("ok")
        who = run.get("who")
        rows.append(
            f'<tr data-run-id="{esc(run.get("id"))}" data-verb="{esc(run.get("verb"))}" '
            f'data-ok="{"true" if ok is True else "false" if ok is False else "unknown"}" '
            f'data-recorded="{"true" if run.get("recorded") else "false"}">'
            f'<td>{esc(html.when(run.get("started")))}</td>'
            f'<td>{esc(who) if who else UNKNOWN_WHO}</td>'
            f'<td>{esc(run.get("verb"))}</td><td>{_result(run)}</td>'
            f'<td class="num">{esc(html.seconds(run.get("seconds")))}</td>'
            f'<td>{esc(_counts(run.get("counts") or {}))}{_details(run)}</td></tr>')
    shown = len(runs)
    total = data.get("total", shown)
    more = (f' (the newest {shown} of {total}: <a href="{esc(html.href("history", key, limit=total))}">show all</a>)'
            if total > shown else "")
    return (f'<h1>History</h1><p class="dim">Applies, destroys and migrations of {esc(data.get("name"))}, newest '
            f'first, from the state\'s journal{more}.</p>'
            '<table class="history" id="history"><thead><tr><th>when</th><th>who</th><th>what</th><th>result</th>'
            f'<th class="num">took</th><th>changes</th></tr></thead><tbody>{"".join(rows)}</tbody></table>')
