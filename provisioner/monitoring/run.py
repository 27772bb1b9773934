"""One run of `mlplat monitor`: drift scores and shadow agreement of every monitored endpoint, alerts, scores
published for the target's metrics.

For each serving endpoint with `monitoring:`, its target's `monitor_source(serving, records)` (the state's
records of the endpoint) gives the captured rows and shadow pairs since the window's start (default: the last 24
hours). Then:

- drift (`monitoring.drift`): per feature (default every baseline column), the declared metric of the captured
  values against the baseline's (`drift.py`); a feature needs `min_rows` captured values (one per instance of a
  2xx request) before it is scored, else its status says "not enough rows (n/min)". Score > threshold = drift.
- shadow (`monitoring.shadow_comparison`): per (primary, shadow) pair of paths, agreement = the sum of
  `agreements` / the sum of `instances` over the pairs that compared something, and the mean latency delta
  (shadow_ms - primary_ms). Below `min_agreement`, or a delta over `max_latency_delta_ms`, alerts once at least
  `min_pairs` requests were compared.
- the scores go to `MonitorSource.publish_scores` (local: the router's /metrics shows them as mlplat_drift_score);
  each alert is sent to `monitoring.alerts` (webhook, e-mail); an alert fires on every run that finds it.

An endpoint whose target returns no MonitorSource is checked by the target's own service (aws: SageMaker Model
Monitor with CloudWatch alarms) and is reported as such. Nothing here raises for one endpoint's problem: it is
that endpoint's `error`.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from provisioner.errors import MlplatError
from provisioner.monitoring.alerts import Alert, Delivery

if TYPE_CHECKING:
    from provisioner.api import Stack
    from provisioner.monitoring import MonitorSource
    from provisioner.spec.model import Serving

SCHEDULE_S = {"hourly": 3600.0, "daily": 86400.0}
DEFAULT_SINCE_H = 24.0


@dataclass
class FeatureScore:
    feature: str
    metric: str
    threshold: float
    rows: int  # captured values of the feature in the window
    score: float | None = None
    status: str = "ok"  # ok | drift | not enough rows (n/min) | what else stopped the score

    @property
    def drifted(self) -> bool:
        return self.status == "drift"


@dataclass
class ShadowScore:
    primary: str
    shadow: str
    pairs: int  # requests whose two answers were compared (instances > 0)
    instances: int
    agreements: int
    min_agreement: float
    min_pairs: int
    agreement: float | None = None
    latency_delta_ms: float | None = None  # mean of shadow_ms - primary_ms
    max_latency_delta_ms: float | None = None
    status: str = "ok"  # ok | low agreement | slow | low agreement, slow | not enough pairs (n/min)


@dataclass
class EndpointReport:
    endpoint: str
    target: str
    checked_by: str = "mlplat"
    rows: int = 0  # captured rows in the window
    features: list[FeatureScore] = field(default_factory=list)
    shadow: list[ShadowScore] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass
class MonitorReport:
    stack: str
    ts: float
    since: float | None  # the window's start (None: every row)
    endpoints: list[EndpointReport] = field(default_factory=list)

    @property
    def alerts(self) -> list[Alert]:
        return [a for e in self.endpoints for a in e.alerts]

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def monitored(stack: Stack) -> list[Serving]:
    """The stack's endpoints with `monitoring:`; MlplatError when there is none."""
    from provisioner.spec.model import Serving

    found = [c for c in stack.platform.components() if isinstance(c, Serving) and c.monitoring is not None]
    if not found:
        raise MlplatError(f"stack {stack.name!r} declares no monitoring on any serving endpoint",
                          hint="add a monitoring: block (capture, drift, alerts, shadow_comparison) to an endpoint")
    return found


def schedule_s(servings: list[Serving]) -> float:
    """Seconds between runs: the shortest drift schedule declared (hourly when none is)."""
    declared = [SCHEDULE_S[s.monitoring.drift.schedule] for s in servings
                if s.monitoring is not None and s.monitoring.drift is not None]
    return min(declared, default=SCHEDULE_S["hourly"])


def run(stack: Stack, *, since_hours: float | None = DEFAULT_SINCE_H, now: float | None = None,
        send: bool = True) -> MonitorReport:
    """Check every monitored endpoint of `stack` over the rows since `since_hours` ago (None or 0: every row)."""
    servings = monitored(stack)
    now = time.time() if now is None else now
    since = now - since_hours * 3600 if since_hours else None
    report = MonitorReport(stack.name, now, since)
    records = list(stack.state.resources().values())
    for serving in servings:
        target_name = stack.platform.target_of(serving)
        endpoint = EndpointReport(serving.name, target_name)
        report.endpoints.append(endpoint)
        target = stack.targets[target_name]
        mine = [r for r in records if r.address.startswith(f"{serving.name}.")]
        try:
            source = target.monitor_source(serving, mine)
        except MlplatError as err:
            endpoint.error = _problem(err)
            continue
        if source is None:
            endpoint.checked_by = (f"the target's own service (target {target_name!r}, {target.name}: it keeps "
                                   "the capture, runs the drift checks and sends the alerts)")
            continue
        try:
            check(stack.directory, serving, source, endpoint, since=since, now=now)
        except (MlplatError, OSError) as err:
            endpoint.error = _problem(err)
            continue
        alerts = serving.monitoring.alerts if serving.monitoring is not None else None
        if endpoint.alerts and alerts is not None and send:
            endpoint.deliveries = _deliver(stack, target, target_name, endpoint.alerts, alerts)
        elif endpoint.alerts and alerts is None:
            endpoint.notes.append("no `alerts:` declared, so none was sent")
    return report


def _problem(err: Exception) -> str:
    from provisioner.secrets import redact

    if isinstance(err, MlplatError):
        return redact(err.message + (f" ({err.hint})" if err.hint else ""))
    return redact(f"cannot read the capture: {err}")


def _deliver(stack: Stack, target: Any, target_name: str, alerts: list[Alert], config: Any) -> list[Delivery]:
    from provisioner.monitoring.alerts import deliver

    return deliver(alerts, stack=stack.name, webhook=config.webhook, emails=list(config.emails),
                   smtp=getattr(target.settings, "smtp", None), smtp_setting=f"targets.{target_name}.smtp")


def check(stack_dir: Path, serving: Serving, source: MonitorSource, endpoint: EndpointReport, *,
          since: float | None, now: float) -> None:
    """Fill `endpoint` with the drift and shadow scores of `serving` from `source`, and its alerts (the drift
    baseline is relative to `stack_dir`, the stack file's directory)."""
    monitoring = serving.monitoring
    assert monitoring is not None
    drift = monitoring.drift
    if drift is not None or monitoring.capture is not None:
        rows = list(source.rows(since))
        endpoint.rows = len(rows)
        if drift is not None:
            endpoint.features = drift_scores(Path(stack_dir) / drift.baseline, drift, rows, endpoint.notes)
            scores = [{"feature": f.feature, "metric": f.metric, "value": f.score}
                      for f in endpoint.features if f.score is not None]
            try:
                source.publish_scores({"ts": now, "scores": scores})
            except OSError as err:
                endpoint.notes.append(f"could not publish the scores: {err}")
            for f in endpoint.features:
                if f.drifted:
                    endpoint.alerts.append(Alert(serving.name, "drift", (
                        f"{serving.name}: feature {f.feature} drifted: {f.metric} {f.score:.4f} > threshold "
                        f"{f.threshold:g} ({f.rows} captured values)"), now, {
                        "feature": f.feature, "metric": f.metric, "value": f.score, "threshold": f.threshold}))
    if monitoring.shadow_comparison is not None:
        endpoint.shadow = shadow_scores(list(source.shadow_pairs(since)), monitoring.shadow_comparison)
        if not endpoint.shadow:
            endpoint.notes.append("no shadow pairs in the window (is traffic mirrored to a shadow path?)")
        for s in endpoint.shadow:
            endpoint.alerts += _shadow_alerts(serving.name, s, now)


def drift_scores(baseline_path: Any, drift: Any, rows: list[dict[str, Any]], notes: list[str]) -> list[FeatureScore]:
    """Each checked feature's score of the 2xx rows' instances against the baseline."""
    from provisioner.monitoring import baseline as bl
    from provisioner.monitoring import drift as stats

    base = bl.load(baseline_path)
    answered = [r for r in rows if not isinstance(r.get("status"), int) or 200 <= r["status"] < 300]
    captured = bl.columns_of(answered, base.columns)
    out = []
    for feature in drift.features or base.columns:
        result = FeatureScore(feature, drift.metric, drift.threshold, 0)
        out.append(result)
        if feature not in base.values:
            result.status = f"not a baseline column (columns: {', '.join(base.columns)})"
            continue
        expected, actual = base.values[feature], captured[feature]
        if not expected:
            result.status = "the baseline holds no values of this feature"
            continue
        if stats.numeric(expected):
            numbers = [v for v in actual if stats.is_number(v)]
            if len(numbers) < len(actual):
                notes.append(f"{feature}: {len(actual) - len(numbers)} captured values are not numbers (left out)")
            actual = numbers
        else:
            expected, actual = [bl.category(v) for v in expected], [bl.category(v) for v in actual]
        result.rows = len(actual)
        if len(actual) < drift.min_rows:
            result.status = f"not enough rows ({len(actual)}/{drift.min_rows})"
            continue
        result.score = stats.score(drift.metric, expected, actual)
        result.status = "drift" if result.score > drift.threshold else "ok"
    return out


def shadow_scores(pairs: list[dict[str, Any]], config: Any) -> list[ShadowScore]:
    """Agreement and latency delta per (primary, shadow) path pair."""
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for pair in pairs:
        grouped.setdefault((str(pair.get("primary")), str(pair.get("shadow"))), []).append(pair)
    out = []
    for (primary, shadow), items in sorted(grouped.items()):
        compared = [p for p in items if _count(p.get("instances")) > 0]
        instances = sum(_count(p.get("instances")) for p in compared)
        agreements = sum(min(_count(p.get("agreements")), _count(p.get("instances"))) for p in compared)
        deltas = [float(p["shadow_ms"]) - float(p["primary_ms"]) for p in items
                  if _is_ms(p.get("shadow_ms")) and _is_ms(p.get("primary_ms"))]
        score = ShadowScore(primary, shadow, len(compared), instances, agreements, config.min_agreement,
                            config.min_pairs, agreement=agreements / instances if instances else None,
                            latency_delta_ms=sum(deltas) / len(deltas) if deltas else None,
                            max_latency_delta_ms=config.max_latency_delta_ms)
        problems = []
        if len(compared) < config.min_pairs:
            score.status = f"not enough pairs ({len(compared)}/{config.min_pairs})"
        else:
            if score.agreement is not None and score.agreement < config.min_agreement:
                problems.append("low agreement")
            if (config.max_latency_delta_ms is not None and score.latency_delta_ms is not None
                    and score.latency_delta_ms > config.max_latency_delta_ms):
                problems.append("slow")
            score.status = ", ".join(problems) or "ok"
        out.append(score)
    return out


def _shadow_alerts(endpoint: str, s: ShadowScore, now: float) -> list[Alert]:
    alerts = []
    base = {"primary": s.primary, "shadow": s.shadow, "pairs": s.pairs, "instances": s.instances}
    if "low agreement" in s.status and s.agreement is not None:
        alerts.append(Alert(endpoint, "shadow", (
            f"{endpoint}: shadow {s.shadow} agrees with {s.primary} on {s.agreement:.1%} of {s.instances} "
            f"instances ({s.pairs} requests), below min_agreement {s.min_agreement:.1%}"), now,
            {**base, "agreement": s.agreement, "min_agreement": s.min_agreement}))
    if "slow" in s.status and s.latency_delta_ms is not None:
        alerts.append(Alert(endpoint, "shadow", (
            f"{endpoint}: shadow {s.shadow} answers {s.latency_delta_ms:.1f} ms slower than {s.primary} on "
            f"average ({s.pairs} requests), over max_latency_delta_ms {s.max_latency_delta_ms:g}"), now,
            {**base, "latency_delta_ms": s.latency_delta_ms, "max_latency_delta_ms": s.max_latency_delta_ms}))
    return alerts


def _count(value: Any) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else 0


def _is_ms(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def render(report: MonitorReport) -> Any:
    """The report as rich tables: drift scores, shadow agreement, alerts and their deliveries, notes."""
    from rich.console import Group
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    window = "every captured row" if report.since is None else \
        f"rows since {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(report.since))}"
    parts: list[Any] = [Text.from_markup(f"[bold]mlplat monitor[/] {escape(report.stack)}: {window}")]
    drift = Table(title="Drift", title_justify="left")
    for column in ("endpoint", "feature", "metric", "score", "threshold", "rows", "status"):
        drift.add_column(column, justify="right" if column in ("score", "threshold", "rows") else "left")
    shadow = Table(title="Shadow comparison", title_justify="left")
    for column in ("endpoint", "primary → shadow", "pairs", "agreement", "min", "latency delta", "status"):
        shadow.add_column(column, justify="left" if column in ("endpoint", "primary → shadow", "status")
                          else "right")
    others = []
    for e in report.endpoints:
        if e.error is not None:
            others.append(f"[red]{escape(e.endpoint)}[/]: {escape(e.error)}")
            continue
        if e.checked_by != "mlplat":
            others.append(f"{escape(e.endpoint)}: checked by {escape(e.checked_by)}")
            continue
        for f in e.features:
            color = "red" if f.drifted else ("green" if f.status == "ok" else "yellow")
            drift.add_row(escape(e.endpoint), escape(f.feature), f.metric,
                          "-" if f.score is None else f"{f.score:.4f}", f"{f.threshold:g}", str(f.rows),
                          f"[{color}]{escape(f.status)}[/]")
        for s in e.shadow:
            color = "green" if s.status == "ok" else ("yellow" if s.status.startswith("not enough") else "red")
            delta = "-" if s.latency_delta_ms is None else f"{s.latency_delta_ms:+.1f} ms"
            if s.max_latency_delta_ms is not None:
                delta += f" (max {s.max_latency_delta_ms:g})"
            shadow.add_row(escape(e.endpoint), escape(f"{s.primary} → {s.shadow}"), str(s.pairs),
                           "-" if s.agreement is None else f"{s.agreement:.1%}", f"{s.min_agreement:.1%}", delta,
                           f"[{color}]{escape(s.status)}[/]")
        if not e.features and not e.shadow:
            others.append(f"{escape(e.endpoint)}: {e.rows} captured rows (no drift check or shadow comparison "
                          "declared)")
        others += [f"[yellow]note:[/] {escape(e.endpoint)}: {escape(n)}" for n in e.notes]
    if drift.row_count:
        parts.append(drift)
    if shadow.row_count:
        parts.append(shadow)
    deliveries = [d for e in report.endpoints for d in e.deliveries]
    alerts = report.alerts
    if not alerts:
        parts.append(Text.from_markup("[green]No alerts.[/]"))
    else:
        parts.append(Text.from_markup(f"[bold]{len(alerts)} alert(s)[/]"))
        for alert in alerts:
            parts.append(Text.from_markup(f"  [red]![/] {escape(alert.message)}"))
            for d in (d for d in deliveries if d.alert == alert.message):
                mark = "[green]sent[/]" if d.ok else f"[red]not sent[/] ({escape(d.error or '')})"
                parts.append(Text.from_markup(f"    {d.channel} → {escape(d.to)}: {mark}"))
    parts += [Text.from_markup(line) for line in others]
    return Group(*parts)
