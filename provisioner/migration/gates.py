"""The health gate of a traffic step: the destination's error rate and p95 latency over a window, from the
cumulative per-upstream counters a front door reports (`stats(id, inputs)` on its provider):

    {upstream name: {"requests": int, "errors": int, "latency_ms_buckets": {"5": n, …, "inf": n}}}

where each request is counted in one bucket, the smallest upper bound (ms) at least its latency.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass
class Verdict:
    passed: bool
    requests: int
    errors: int
    p95_ms: float | None
    reason: str

    def describe(self) -> str:
        if not self.requests:
            return self.reason
        rate = self.errors / self.requests
        p95 = "unknown" if self.p95_ms is None else ("over 10 s" if self.p95_ms == float("inf")
                                                     else f"≤ {self.p95_ms:g} ms")
        return f"{self.requests} requests, {self.errors} errors ({rate:.1%}), p95 {p95}: {self.reason}"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["p95_ms"] == float("inf"):
            data["p95_ms"] = None
        return data


def window_verdict(upstream: str, before: list[dict[str, Any]], after: list[dict[str, Any]], *, counted: bool,
                   max_error_rate: float, max_latency_ms: float) -> Verdict:
    """Pass unless the requests `upstream` served between the two snapshots (summed over the front doors) show
    more errors per request than `max_error_rate`, or a p95 latency bucket above `max_latency_ms`."""
    if not counted:
        return Verdict(True, 0, 0, None, "no front door counts requests (weighted DNS): the gate relies on the "
                                         "health check")
    requests = errors = 0
    buckets: dict[float, int] = {}
    for old, new in zip(before, after, strict=True):
        now, then = new.get(upstream) or {}, old.get(upstream) or {}
        requests += int(now.get("requests", 0)) - int(then.get("requests", 0))
        errors += int(now.get("errors", 0)) - int(then.get("errors", 0))
        old_buckets = then.get("latency_ms_buckets") or {}
        for bound, count in (now.get("latency_ms_buckets") or {}).items():
            key = float("inf") if bound == "inf" else float(bound)
            buckets[key] = buckets.get(key, 0) + int(count) - int(old_buckets.get(bound, 0))
    if requests <= 0:
        return Verdict(True, 0, 0, None, f"no requests reached {upstream} in the window: nothing to judge")
    p95 = _quantile(buckets, 0.95)
    rate = errors / requests
    if rate > max_error_rate:
        return Verdict(False, requests, errors, p95, f"error rate over {max_error_rate:.1%}")
    if p95 is not None and p95 > max_latency_ms:
        return Verdict(False, requests, errors, p95, f"p95 latency over {max_latency_ms:g} ms")
    return Verdict(True, requests, errors, p95, "healthy")


def _quantile(buckets: dict[float, int], q: float) -> float | None:
    total = sum(buckets.values())
    if total <= 0:
        return None
    seen = 0
    for bound in sorted(buckets):
        seen += buckets[bound]
        if seen >= q * total:
            return bound
    return max(buckets)
