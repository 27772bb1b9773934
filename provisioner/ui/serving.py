"""The Serving page: each endpoint's front door URL, its declared split against the split observed in the last
window (the sampler: `mlplat top`'s source), request rate, error rate and p95 per path, and what `mlplat monitor`
finds (drift scores, alerts, shadow agreement) for endpoints with a `monitoring:` block.

The observed split is each live path's share of the requests per second the routers counted in the window; a
shadow path gets mirrored copies, not callers, so it is shown but is no part of the split. The monitoring report
reads capture files, so it is kept `MONITOR_TTL_S` per stack and never sends alerts (`mlplat monitor` does).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any

from provisioner.ui import html
from provisioner.ui.html import esc
from provisioner.ui.safe import public

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.monitoring import PathUsage
    from provisioner.spec.model import Serving
    from provisioner.ui.app import UiApp

REFRESH_S = 2
MONITOR_TTL_S = 30.0
MONITOR_SINCE_H = 24.0
_monitor_cache: dict[str, tuple[float, dict[str, Any]]] = {}  # stack file -> (when, report)
_monitor_lock = threading.Lock()


# -- data -------------------------------------------------------------------------------------------------------
def data(app: UiApp, key: str, query: dict[str, str]) -> dict[str, Any]:
    sample = app.samplers.read(key)
    notes: list[str] = []
    with app.stack(key) as stack:
        servings = endpoints_of(stack)
        outputs = _outputs(stack, notes)
        monitoring = _monitoring(app, key, stack, servings) if any(s.monitoring for s in servings) else None
        targets = {s.name: stack.platform.target_of(s) for s in servings}
    reports = {e["endpoint"]: e for e in (monitoring or {}).get("endpoints", [])}
    if monitoring and monitoring.get("error"):
        notes.append(monitoring["error"])
    rows = sample.usage.endpoints if sample is not None else []
    endpoints = [_endpoint(s, targets[s.name], outputs, [r for r in rows if r.endpoint == s.name],
                           sample is not None, reports.get(s.name)) for s in servings]
    if sample is not None:
        notes += sample.notes + sample.usage.notes
    return public({
        "stack": key,
        "refresh_s": REFRESH_S,
        "window_s": sample.window_s if sample is not None else app.samplers.window_s,
        "measured_at": sample.measured_at if sample is not None else None,
        "endpoints": endpoints,
        "monitoring": None if monitoring is None else {k: monitoring.get(k) for k in ("ts", "since", "error")},
        "notes": notes,
    })


def endpoints_of(stack: Stack) -> list[Serving]:
    from provisioner.spec.model import Serving

    return [c for c in stack.platform.components() if isinstance(c, Serving)]


def _outputs(stack: Stack, notes: list[str]) -> dict[str, Any]:
    try:
        return stack.outputs()
    except Exception as err:  # an unreadable state: the page still shows the stack file's side
        notes.append(f"could not read the outputs: {type(err).__name__}: {err}")
        return {}


def _endpoint(serving: Serving, target: str, outputs: dict[str, Any], rows: list[PathUsage], measured: bool,
              report: dict[str, Any] | None) -> dict[str, Any]:
    declared = []
    for name, path in (("production", serving.paths.production), ("experimental", serving.paths.experimental)):
        if path is None:
            continue
        shadow = path.mode == "shadow"
        declared.append({"path": name, "model": path.model, "mode": path.mode, "shadow": shadow,
                         "declared": 0.0 if shadow else (path.weight or 0) / 100,
                         "mirror": path.mirror_percent / 100 if shadow else None,
                         "accelerator": path.accelerator, "replicas": path.replicas})
    by_path: dict[str, list[PathUsage]] = {}
    for row in rows:
        by_path.setdefault(row.path, []).append(row)
    names = [p["path"] for p in declared]
    for extra in sorted(p for p in by_path if p != "*" and p not in names):  # seen in the metrics, not declared
        declared.append({"path": extra, "model": None, "mode": "undeclared", "shadow": False, "declared": 0.0,
                         "mirror": None, "accelerator": None, "replicas": None})
    paths = [{**p, **combine(by_path.get(p["path"], []))} for p in declared]
    live = [p for p in paths if not p["shadow"]]
    total = sum(p["requests_per_s"] or 0.0 for p in live)
    for p in paths:
        p["observed"] = (p["requests_per_s"] or 0.0) / total if total > 0 and not p["shadow"] else None
    whole = combine(by_path["*"]) if "*" in by_path else combine([r for p in live for r in by_path.get(p["path"], [])])
    return {
        "name": serving.name, "target": target, "front_door_targets": list(serving.front_door),
        "url": outputs.get(f"{serving.name}.url"), "direct_url": outputs.get(f"{serving.name}.direct_url"),
        "auth": serving.auth, "measured": measured, "traffic": total > 0,
        "requests_per_s": whole["requests_per_s"], "error_rate": whole["error_rate"], "p95_ms": whole["p95_ms"],
        "paths": paths,
        "monitored": serving.monitoring is not None,
        "monitoring": None if report is None else {k: v for k, v in report.items() if k != "deliveries"},
    }


def combine(rows: list[PathUsage]) -> dict[str, Any]:
    """One path's numbers from its rows (several during a move between targets): rates add up, the error rate is
    weighted by rate, p95 is the worst."""
    rates = [r.requests_per_s for r in rows if r.requests_per_s is not None]
    rate = sum(rates) if rates else None
    errors = [(r.error_rate, r.requests_per_s or 0.0) for r in rows if r.error_rate is not None]
    if not errors:
        error_rate = None
    elif rate:
        error_rate = sum(e * w for e, w in errors) / rate
    else:
        error_rate = max(e for e, _ in errors)
    p95s = [r.p95_ms for r in rows if r.p95_ms is not None]
    return {"requests_per_s": rate, "error_rate": error_rate, "p95_ms": max(p95s) if p95s else None,
            "targets": sorted({r.target for r in rows}), "sources": sorted({r.source for r in rows if r.source})}


def _monitoring(app: UiApp, key: str, stack: Stack, servings: list[Serving]) -> dict[str, Any]:
    """`mlplat monitor`'s report of the stack (no alert sent), kept MONITOR_TTL_S; a failure is its `error`."""
    cache_key = str(app.path(key))
    now = time.monotonic()
    with _monitor_lock:
        cached = _monitor_cache.get(cache_key)
        if cached is not None and now - cached[0] < MONITOR_TTL_S:
            return cached[1]
    from provisioner.monitoring.run import run

    try:
        report = run(stack, since_hours=MONITOR_SINCE_H, send=False).to_json()
        report["error"] = None
    except Exception as err:
        from provisioner.errors import MlplatError
        from provisioner.secrets import redact

        text = err.message if isinstance(err, MlplatError) else f"{type(err).__name__}: {err}"
        report = {"ts": time.time(), "since": None, "endpoints": [], "error": redact(f"monitoring: {text}")}
    report = public(report)
    with _monitor_lock:
        _monitor_cache[cache_key] = (now, report)
    return report


def forget_monitoring(app: UiApp, key: str) -> None:
    """Drop the kept report (after an apply, say)."""
    with _monitor_lock:
        _monitor_cache.pop(str(app.path(key)), None)


# -- render -----------------------------------------------------------------------------------------------------
def render(app: UiApp, key: str, data: dict[str, Any]) -> str:
    parts = ["<h1>Serving</h1>", measured_line(data)]
    parts.append(html.notes(data["notes"]))
    if not data["endpoints"]:
        parts.append('<p class="dim" id="no-endpoints">This stack declares no serving endpoint.</p>')
    for endpoint in data["endpoints"]:
        parts.append(_render_endpoint(endpoint))
    return "".join(parts)


def measured_line(data: dict[str, Any]) -> str:
    """The 'measured over the last N s at HH:MM:SS' line; it carries the page's auto-refresh."""
    window = f"{data['window_s']:g}"
    if data["measured_at"] is None:
        text = f"measuring the traffic: the first window of {window} s is under way…"
    else:
        at = time.strftime("%H:%M:%S", time.localtime(data["measured_at"]))
        text = f"measured over the last {window} s at {at}"
    return (f'<p class="measured dim" id="measured" data-refresh="{esc(data["refresh_s"])}" '
            f'data-window="{esc(window)}" data-measured-at="{esc(data["measured_at"] or "")}">{esc(text)} '
            f'· refreshes every {esc(data["refresh_s"])} s</p>')


def _fraction(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}".rstrip("0").rstrip(".") if value else "0"


def split_bar(label: str, parts: list[tuple[str, float]], *, width: int = 360, height: int = 18) -> str:
    """A horizontal bar of shares (SVG with attributes only: the CSP allows no inline styles)."""
    cells, x = [], 0.0
    for i, (name, share) in enumerate(parts):
        w = max(0.0, min(1.0, share)) * width
        if w <= 0:
            continue
        text = f"{name} {share:.0%}"
        cells.append(f'<rect class="s{i % 4}" x="{x:.1f}" y="0" width="{w:.1f}" height="{height}">'
                     f'<title>{esc(text)}</title></rect>')
        fits = next((t for t in (text, f"{share:.0%}") if w >= 6.5 * len(t) + 6), None)  # what fits (11px font)
        if fits is not None:
            cells.append(f'<text x="{x + w / 2:.1f}" y="{height - 5}" text-anchor="middle">{esc(fits)}</text>')
        x += w
    if not cells:
        cells.append(f'<rect class="none" x="0" y="0" width="{width}" height="{height}"></rect>'
                     f'<text class="none" x="{width / 2}" y="{height - 5}" text-anchor="middle">no traffic in the '
                     f'window</text>')
    return (f'<div class="bar"><span class="dim">{esc(label)}</span><svg class="splitbar" width="{width}" '
            f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(label)} split">'
            f'{"".join(cells)}</svg></div>')


def _render_endpoint(e: dict[str, Any]) -> str:
    name = e["name"]
    if e["url"]:
        door = f'<code data-front-door="{esc(name)}">{esc(e["url"])}</code>'
    else:
        door = f'<span class="dim" data-front-door="{esc(name)}">none yet (run apply)</span>'
    via = f' via {", ".join(esc(t) for t in e["front_door_targets"])}' if e["front_door_targets"] else ""
    direct = f' · direct: <code>{esc(e["direct_url"])}</code>' if e["direct_url"] else ""
    errors = "-" if e["error_rate"] is None else f"{e['error_rate']:.1%}"
    rate = html.number(e["requests_per_s"], ".1f", " req/s")
    summary = (f'<p class="totals" data-totals="{esc(name)}">{esc(rate)} · '
               f'errors {esc(errors)} · p95 {esc(html.number(e["p95_ms"], ".1f", " ms"))}</p>')
    live = [p for p in e["paths"] if not p["shadow"]]
    bars = split_bar("declared", [(p["path"], p["declared"]) for p in live])
    bars += split_bar("observed", [(p["path"], p["observed"] or 0.0) for p in live] if e["traffic"] else [])
    rows = "".join(_path_row(name, p) for p in e["paths"])
    table = ('<table class="paths"><thead><tr><th>path</th><th>model</th><th>mode</th><th class="num">declared</th>'
             '<th class="num">observed</th><th class="num">req/s</th><th class="num">errors</th>'
             '<th class="num">p95</th><th>source</th></tr></thead>'
             f'<tbody>{rows}</tbody></table>')
    return (f'<section class="card endpoint" id="endpoint-{esc(name)}" data-endpoint-card="{esc(name)}">'
            f'<h2>{esc(name)} <span class="dim">on {esc(e["target"])}{via} · auth {esc(e["auth"])}</span></h2>'
            f'<p>front door: {door}{direct}</p>{summary}<div class="bars">{bars}</div>{table}'
            f'{_render_monitoring(name, e)}</section>')


def _path_row(endpoint: str, p: dict[str, Any]) -> str:
    if p["shadow"]:
        mode = f'shadow (mirrors {html.number(p["mirror"], ".0%")})'
        declared_text, observed_text = "mirror", "not in the split"
    else:
        mode = p["mode"]
        declared_text, observed_text = html.number(p["declared"], ".0%"), html.number(p["observed"], ".0%")
    errors = "-" if p["error_rate"] is None else f"{p['error_rate']:.1%}"
    return (f'<tr data-endpoint="{esc(endpoint)}" data-path="{esc(p["path"])}" data-mode="{esc(p["mode"])}" '
            f'data-declared="{esc(_fraction(p["declared"]))}" data-observed="{esc(_fraction(p["observed"]))}" '
            f'data-rps="{esc("" if p["requests_per_s"] is None else round(p["requests_per_s"], 3))}">'
            f'<td>{esc(p["path"])}</td><td>{esc(p["model"] or "-")}</td><td>{esc(mode)}</td>'
            f'<td class="num">{esc(declared_text)}</td><td class="num">{esc(observed_text)}</td>'
            f'<td class="num">{esc(html.number(p["requests_per_s"], ".2f"))}</td><td class="num">{esc(errors)}</td>'
            f'<td class="num">{esc(html.number(p["p95_ms"], ".1f", " ms"))}</td>'
            f'<td class="dim">{esc(", ".join(p["sources"]) or "-")}</td></tr>')


def _render_monitoring(name: str, e: dict[str, Any]) -> str:
    if not e["monitored"]:
        return '<p class="dim monitoring">No monitoring declared (add a <code>monitoring:</code> block).</p>'
    report = e["monitoring"]
    if report is None:
        return '<p class="dim monitoring">No monitoring report.</p>'
    parts = [f'<div class="monitoring" data-monitoring="{esc(name)}"><h3>Monitoring</h3>']
    if report.get("error"):
        parts.append(f'<p class="error">{esc(report["error"])}</p>')
    elif report.get("checked_by", "mlplat") != "mlplat":
        parts.append(f'<p class="dim">checked by {esc(report["checked_by"])}</p>')
    else:
        parts.append(f'<p class="dim">{esc(report.get("rows", 0))} captured rows in the last '
                     f'{MONITOR_SINCE_H:g} h (kept {MONITOR_TTL_S:g} s)</p>')
    features = report.get("features") or []
    if features:
        rows = "".join(
            f'<tr data-feature="{esc(f["feature"])}" data-status="{esc(f["status"])}"><td>{esc(f["feature"])}</td>'
            f'<td>{esc(f["metric"])}</td><td class="num">{esc(html.number(f["score"], ".4f"))}</td>'
            f'<td class="num">{esc(f["threshold"])}</td><td class="num">{esc(f["rows"])}</td>'
            f'<td>{html.badge(_status_css(f["status"]), f["status"])}</td></tr>' for f in features)
        parts.append('<table class="drift"><thead><tr><th>feature</th><th>metric</th><th class="num">score</th>'
                     '<th class="num">threshold</th><th class="num">rows</th><th>status</th></tr></thead>'
                     f'<tbody>{rows}</tbody></table>')
    shadow = report.get("shadow") or []
    if shadow:
        rows = "".join(
            f'<tr data-shadow="{esc(s["shadow"])}" data-agreement="{esc(_fraction(s["agreement"]))}">'
            f'<td>{esc(s["primary"])} → {esc(s["shadow"])}</td><td class="num">{esc(s["pairs"])}</td>'
            f'<td class="num">{esc(html.number(s["agreement"], ".1%"))}</td>'
            f'<td class="num">{esc(html.number(s["min_agreement"], ".0%"))}</td>'
            f'<td class="num">{esc(html.number(s["latency_delta_ms"], "+.1f", " ms"))}</td>'
            f'<td>{html.badge(_status_css(s["status"]), s["status"])}</td></tr>' for s in shadow)
        parts.append('<table class="shadow"><thead><tr><th>primary → shadow</th><th class="num">pairs</th>'
                     '<th class="num">agreement</th><th class="num">min</th><th class="num">latency delta</th>'
                     f'<th>status</th></tr></thead><tbody>{rows}</tbody></table>')
    alerts = report.get("alerts") or []
    if alerts:
        parts.append('<ul class="alerts">' + "".join(
            f'<li class="error" data-alert="{esc(a["kind"])}">{esc(a["message"])}</li>' for a in alerts) + "</ul>")
    elif not report.get("error"):
        parts.append('<p class="ok alerts" data-alerts="0">No alerts.</p>')
    parts.append(html.notes(report.get("notes") or []))
    parts.append("</div>")
    return "".join(parts)


def _status_css(status: str) -> str:
    if status == "ok":
        return "in-sync"
    if status.startswith("not enough") or status.startswith("not a"):
        return "unknown"
    return "failed" if status in ("drift",) or "agreement" in status or "slow" in status else "drift"

