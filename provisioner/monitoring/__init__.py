"""Model and resource monitoring: the data a target hands `mlplat monitor` and `mlplat top`, and its shapes.

A target offers monitoring features in `Capabilities.monitoring` (capture, drift, alerts, shadow_comparison) and
realizes an endpoint's `monitoring:` block in its lowering (local: the router samples to JSONL; aws:
DataCaptureConfig, a data-quality job and schedule, CloudWatch alarms). Two read paths are cloud-neutral:

- `Target.monitor_source(serving, records)` → a `MonitorSource`: captured rows and shadow pairs, read by
  `mlplat monitor`, which computes drift (`drift.py`) and shadow agreement and posts alerts (`alerts.py`).
- `Target.usage(records, window_s)` → a `Usage`: per pool and per endpoint path utilisation, request rate, error
  rate and p95 latency from the target's metrics source, shown by `mlplat top`.

Captured row (one JSON object per line, local: `<capture dir>/capture-YYYYMMDD-HH.jsonl`, UTC hour)::

    {"ts": 1700000000.123, "id": "9f1c...", "endpoint": "iris", "path": "production", "status": 200,
     "latency_ms": 3.2, "request": {"instances": [[5.1, 3.5, 1.4, 0.2]]}, "response": {"predictions": [...]}}

`request` / `response` are the parsed JSON bodies (a body that is not JSON: `{"text": ...}`, at most 64 KiB kept);
either is absent when the capture does not keep it. Shadow pair (`<capture dir>/shadow-YYYYMMDD-HH.jsonl`), written
for each mirrored request whose copy was answered, when the endpoint has `shadow_comparison`::

    {"ts": ..., "id": ..., "endpoint": "iris", "primary": "production", "shadow": "experimental",
     "primary_status": 200, "shadow_status": 200, "primary_ms": 3.1, "shadow_ms": 4.0,
     "instances": 1, "agreements": 1}

`agreements` counts the instances whose predicted label (a prediction's "label", else the prediction itself) is the
same in both answers; `instances` the instances compared (0 when either answer is not a 200 with a `predictions`
list of the same length).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

CAPTURE_PREFIX = "capture-"
SHADOW_PREFIX = "shadow-"
#: where a target keeps the last drift scores `mlplat monitor` computed, for its metrics (local: the router's
#: /metrics shows them as mlplat_drift_score)
SCORES_FILE = "drift-scores.json"


class MonitorSource(Protocol):
    """An endpoint's captured data, as a target keeps it."""

    def rows(self, since: float | None = None) -> Iterator[dict[str, Any]]:
        """Captured rows (the shape above) with ts >= since, oldest first."""
        ...

    def shadow_pairs(self, since: float | None = None) -> Iterator[dict[str, Any]]:
        """Shadow pairs (the shape above) with ts >= since, oldest first."""
        ...

    def publish_scores(self, scores: dict[str, Any]) -> None:
        """Keep the last drift scores where the target's metrics show them (may do nothing)."""
        ...


@dataclass
class PathUsage:
    """One serving path (or a whole endpoint, path "*") over the window."""

    endpoint: str
    path: str
    target: str
    requests_per_s: float | None = None
    error_rate: float | None = None  # errors / requests, None when there were no requests
    p95_ms: float | None = None
    gpu_util_percent: float | None = None
    source: str = ""  # where the numbers came from ("/metrics of http://127.0.0.1:4123", "CloudWatch")


@dataclass
class PoolUsage:
    """One GPU pool (or the host, for local) over the window."""

    component: str
    pool: str
    target: str
    nodes: int | None = None
    gpus: int | None = None
    gpu_util_percent: float | None = None
    gpu_memory_used_mb: float | None = None
    gpu_memory_total_mb: float | None = None
    source: str = ""


@dataclass
class Usage:
    """What `Target.usage` returns; `notes` say what could not be read (a server down, no GPUs, no metrics)."""

    endpoints: list[PathUsage] = field(default_factory=list)
    pools: list[PoolUsage] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {"endpoints": [asdict(e) for e in self.endpoints], "pools": [asdict(p) for p in self.pools],
                "notes": list(self.notes)}


def label_of(prediction: Any) -> Any:
    """What two answers are compared on: a prediction's "label" (mlplat-linear, skops, onnx classifiers), else the
    prediction itself."""
    if isinstance(prediction, dict) and "label" in prediction:
        return prediction["label"]
    return prediction


def agreement(primary: Any, shadow: Any) -> tuple[int, int]:
    """(instances compared, instances agreeing) of two parsed 200 answers `{"predictions": [...]}`."""
    if not (isinstance(primary, dict) and isinstance(shadow, dict)):
        return 0, 0
    a, b = primary.get("predictions"), shadow.get("predictions")
    if not (isinstance(a, list) and isinstance(b, list)) or len(a) != len(b):
        return 0, 0
    return len(a), sum(label_of(x) == label_of(y) for x, y in zip(a, b, strict=True))
