"""Monitoring on the local target: the capture directory (`local.monitor`), what `mlplat monitor` reads from it,
and what `mlplat top` reads from the routers' /metrics and this host's GPUs.

- `LocalMonitorProvider` (kind `local.monitor`): the endpoint's capture directory, owned like a volume (its
  marker names the address); its path is the id and the output `capture_dir` the router's `capture.dir` input.
  Its other inputs (capture, drift with the baseline's SHA-256, alerts, shadow_comparison) are settings
  `mlplat monitor` reads from the stack file: a change updates the record and touches nothing on disk. Destroy
  deletes the directory, captured data and all. Import id: the directory's absolute path.
- `LocalMonitorSource`: the router's `capture-YYYYMMDD-HH.jsonl` and `shadow-YYYYMMDD-HH.jsonl` (UTC hour), one
  JSON object per line; a line that does not parse (the partial last line of a file being written) is skipped.
  `publish_scores` writes `drift-scores.json` atomically beside them, which the router's /metrics shows.
- `usage`: each router's /metrics scraped at the start and the end of the window; per path, requests/s and the
  error rate from the counters' increase (a counter that went down is a restarted router: its end value is the
  increase), p95 from the latency histogram's bucket increase, interpolated linearly inside the bucket as
  Prometheus' `histogram_quantile` does; a shadow path (callers never get its answers) shows the rate of the
  mirrored copies compared; an endpoint of several paths gets a "*" row, every path together. Pools: the
  state's `local.gpu_pool` records and, through NVML (the runtime's `Gpus` collector), the utilisation and memory
  of their devices; without NVML a note says so.
"""

from __future__ import annotations

import calendar
import json
import math
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlplat_plugins.local.base import OwnedDirectoryProvider, claim, owned_by
from provisioner.errors import MlplatError
from provisioner.monitoring import CAPTURE_PREFIX, SCORES_FILE, SHADOW_PREFIX, PathUsage, PoolUsage, Usage
from provisioner.provider import Created, Observed

if TYPE_CHECKING:
    from mlplat_plugins.local.target import LocalTarget
    from provisioner.operations import StepContext
    from provisioner.spec.model import Serving
    from provisioner.state.base import ResourceRecord

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

#: seconds a server has to answer a scrape
SCRAPE_TIMEOUT_S = 3.0
#: the router's path label of the requests no live path could take (503): in the endpoint's "*" row only
NO_PATH = "-"
_HOURLY = re.compile(r"^(?:capture|shadow)-(\d{4})(\d{2})(\d{2})-(\d{2})\.jsonl$")


# ---------------------------------------------------------------------------------------------------------
# local.monitor
# ---------------------------------------------------------------------------------------------------------


class LocalMonitorProvider(OwnedDirectoryProvider):
    """An endpoint's capture directory. `update` rewrites nothing (the settings live in the record)."""

    force_new = frozenset({"path"})
    noun = "capture directory"

    @staticmethod
    def _outputs(path: str) -> dict[str, Any]:
        return {"path": path, "capture_dir": path}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        path = Path(inputs["path"])
        claim(path, address)
        return Created(str(path), self._outputs(str(path)))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        path = Path(inputs["path"])
        return Created(str(path), self._outputs(str(path))) if owned_by(path, address) else None

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        return Observed(dict(inputs), self._outputs(id)) if Path(id).is_dir() else None

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._outputs(id)

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        seen = super().import_(address, id, inputs)
        return None if seen is None else Observed(seen.inputs, self._outputs(id))


# ---------------------------------------------------------------------------------------------------------
# What `mlplat monitor` reads
# ---------------------------------------------------------------------------------------------------------


class LocalMonitorSource:
    """The JSONL files a router writes into an endpoint's capture directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)

    def __repr__(self) -> str:
        return f"LocalMonitorSource({str(self.directory)!r})"

    def rows(self, since: float | None = None) -> Iterator[dict[str, Any]]:
        return self._read(CAPTURE_PREFIX, since)

    def shadow_pairs(self, since: float | None = None) -> Iterator[dict[str, Any]]:
        return self._read(SHADOW_PREFIX, since)

    def publish_scores(self, scores: dict[str, Any]) -> None:
        from mlplat_plugins.local.runtime.processes import write_json_atomic

        write_json_atomic(self.directory / SCORES_FILE, scores)

    def _read(self, prefix: str, since: float | None) -> Iterator[dict[str, Any]]:
        if not self.directory.is_dir():
            return
        for path in sorted(self.directory.glob(f"{prefix}*.jsonl")):
            hour = _hour_of(path.name)
            if since is not None and hour is not None and hour + 3600 <= since:
                continue  # every row of this file is older than the window
            yield from sorted(_objects(path, since), key=lambda o: o["ts"] if _is_number(o.get("ts")) else 0.0)


def _hour_of(name: str) -> float | None:
    """The UTC start of the hour a capture file's name gives (None when the name has no hour)."""
    match = _HOURLY.match(name)
    if match is None:
        return None
    year, month, day, hour = (int(g) for g in match.groups())
    try:
        return float(calendar.timegm((year, month, day, hour, 0, 0, 0, 0, 0)))
    except (ValueError, OverflowError):
        return None


def _objects(path: Path, since: float | None) -> list[dict[str, Any]]:
    """The JSON objects of one JSONL file with ts >= since; lines that do not parse are skipped (the last one may
    be half-written while the router appends)."""
    try:
        data = path.read_bytes()
    except OSError:
        return []  # rotated or removed meanwhile
    found = []
    for line in data.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        if not isinstance(item, dict):
            continue
        if since is not None and not (_is_number(item.get("ts")) and item["ts"] >= since):
            continue
        found.append(item)
    return found


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def monitor_source(serving: Serving, records: list[ResourceRecord]) -> LocalMonitorSource:
    """The capture directory of the endpoint's `local.monitor` record."""
    for record in records:
        if record.kind == "local.monitor":
            return LocalMonitorSource(Path(record.outputs.get("capture_dir") or record.id))
    raise MlplatError(f"endpoint {serving.name!r} has no capture directory in the state",
                      hint="run `mlplat apply` to create its monitoring, then send it requests")


# ---------------------------------------------------------------------------------------------------------
# What `mlplat top` reads
# ---------------------------------------------------------------------------------------------------------


def scrape(url: str, api_key: str | None = None, timeout: float = SCRAPE_TIMEOUT_S) -> tuple[Samples | None, str]:
    """The samples of `url`/metrics, or None and why not."""
    from mlplat_plugins.local.runtime.metrics import parse

    headers = {"X-Api-Key": str(api_key)} if api_key else {}
    try:
        with urllib.request.urlopen(urllib.request.Request(url + "/metrics", headers=headers),
                                    timeout=timeout) as response:
            return parse(response.read().decode("utf-8", errors="replace")), ""
    except urllib.error.HTTPError as exc:
        return None, f"HTTP {exc.code}"
    except urllib.error.URLError as exc:
        return None, str(exc.reason)
    except (OSError, ValueError) as exc:
        return None, f"{type(exc).__name__}: {exc}"


def _matching(samples: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    found = {}
    for (sample_name, key), value in samples.items():
        if sample_name != name:
            continue
        have = dict(key)
        if all(have.get(k) == v for k, v in labels.items()):
            found[key] = value
    return found


def _increase(start: Samples, end: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    """Per series, how much a counter grew over the window (a reset: its end value)."""
    before = _matching(start, name, **labels)
    out = {}
    for key, value in _matching(end, name, **labels).items():
        prior = before.get(key, 0.0)
        out[key] = value - prior if value >= prior else value
    return out


def histogram_quantile(q: float, buckets: list[tuple[float, float]]) -> float | None:
    """Prometheus' histogram_quantile of cumulative `buckets` [(le, count)]: the bucket holding rank q * total,
    linear inside it; a rank in the +Inf bucket gives the highest finite bound. None without observations."""
    buckets = sorted(buckets)
    if len(buckets) < 2 or not math.isinf(buckets[-1][0]):
        return None
    running = 0.0
    monotone = []
    for le, count in buckets:  # a reset in one series may break monotonicity: Prometheus fixes it the same way
        running = max(running, count)
        monotone.append((le, running))
    total = monotone[-1][1]
    if total <= 0:
        return None
    rank = q * total
    index = next(i for i, (_, count) in enumerate(monotone) if count >= rank)
    if index == len(monotone) - 1:
        return monotone[-2][0]
    upper, count = monotone[index]
    lower, below = (0.0, 0.0) if index == 0 else monotone[index - 1]
    if index == 0 and upper <= 0:
        return upper
    if count == below:
        return upper
    return lower + (upper - lower) * (rank - below) / (count - below)


def _path_usage(start: Samples, end: Samples, elapsed: float, endpoint: str, path: str | None) -> dict[str, Any]:
    """requests/s, error rate and p95 (ms) of one path (None: the whole endpoint) over the window."""
    labels = {"endpoint": endpoint} if path is None else {"endpoint": endpoint, "path": path}
    requests = sum(_increase(start, end, "mlplat_requests_total", **labels).values())
    if any(name == "mlplat_request_errors_total" for name, _ in end):
        errors = sum(_increase(start, end, "mlplat_request_errors_total", **labels).values())
    else:
        errors = sum(v for key, v in _increase(start, end, "mlplat_requests_total", **labels).items()
                     if dict(key).get("code", "").isdigit() and int(dict(key)["code"]) >= 500)
    by_le: dict[float, float] = {}
    for key, value in _increase(start, end, "mlplat_request_duration_seconds_bucket", **labels).items():
        try:
            le = float(dict(key).get("le", ""))
        except ValueError:
            continue
        by_le[le] = by_le.get(le, 0.0) + value
    p95 = histogram_quantile(0.95, list(by_le.items())) if requests > 0 else None
    return {"requests_per_s": requests / elapsed if elapsed > 0 else None,
            "error_rate": errors / requests if requests > 0 else None,
            "p95_ms": p95 * 1000 if p95 is not None else None}


def _gpu_readings(samples: Samples | None) -> dict[int, tuple[float, float, float]]:
    """GPU index -> (utilisation %, memory used MiB, memory free MiB) from DCGM-named samples."""
    if not samples:
        return {}
    readings: dict[int, list[float]] = {}
    for position, name in enumerate(("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED", "DCGM_FI_DEV_FB_FREE")):
        for key, value in _matching(samples, name).items():
            gpu = dict(key).get("gpu", "")
            if gpu.isdigit():
                readings.setdefault(int(gpu), [math.nan] * 3)[position] = value
    return {i: (r[0], r[1], r[2]) for i, r in readings.items()}


def _host_gpus() -> tuple[Samples | None, str | None]:
    """This host's GPU samples through NVML (the runtime's collector), or None and why not."""
    from mlplat_plugins.local.runtime.metrics import Gpus, parse

    gpus = Gpus()
    samples = parse("\n".join(gpus.lines()))
    if samples.get(("mlplat_gpu_available", ()), 0.0) != 1.0:
        return None, gpus.error or "NVML did not initialise"
    return samples, None


def usage(target: LocalTarget, records: list[ResourceRecord], window_s: float) -> Usage:
    """Per path of every router in `records` and per GPU pool, over the next `window_s` seconds."""
    from mlplat_plugins.local.host import detect

    result = Usage()
    name = target.context.target_name
    routers = [r for r in records if r.kind == "local.router" and r.outputs.get("url")]
    pools = [r for r in records if r.kind == "local.gpu_pool"]

    def scrape_all() -> list[tuple[Samples | None, str]]:
        if not routers:
            return []
        with ThreadPoolExecutor(max_workers=min(8, len(routers))) as pool:
            return list(pool.map(lambda r: scrape(r.outputs["url"], r.inputs.get("api_key")), routers))

    gpu_start, gpu_problem = _host_gpus() if pools or detect().gpus else (None, None)
    began = time.monotonic()
    first = scrape_all()
    if routers and window_s > 0:
        time.sleep(window_s)
    last = scrape_all()
    elapsed = time.monotonic() - began
    gpu_end = _host_gpus()[0] if gpu_start is not None else None

    for record, (start, why_start), (end, why_end) in zip(routers, first, last, strict=True):
        endpoint = str(record.inputs.get("endpoint") or record.address.split(".")[0])
        url = record.outputs["url"]
        paths = [str(route.get("path")) for route in record.inputs.get("routes") or [] if isinstance(route, dict)]
        if start is None or end is None:
            result.notes.append(f"the router of {endpoint!r} ({url}) did not answer /metrics: {why_start or why_end}")
            result.endpoints += [PathUsage(endpoint, p, name, source=f"/metrics of {url} (no answer)") for p in paths]
            continue
        seen = {dict(key).get("path") for n, key in end if n == "mlplat_requests_total"
                and dict(key).get("endpoint") == endpoint}
        paths += sorted(p for p in seen if p and p != NO_PATH and p not in paths)
        for path in paths:
            numbers = _path_usage(start, end, elapsed, endpoint, path)
            source = f"/metrics of {url}"
            mirrored = sum(_increase(start, end, "mlplat_shadow_pairs_total", endpoint=endpoint, path=path).values())
            if mirrored > 0 and not numbers["requests_per_s"] and elapsed > 0:  # a shadow path: copies, not callers
                numbers["requests_per_s"] = mirrored / elapsed
                source += " (mirrored copies compared)"
            result.endpoints.append(PathUsage(endpoint, path, name, source=source, **numbers))
        if len(paths) > 1 or NO_PATH in seen:
            numbers = _path_usage(start, end, elapsed, endpoint, None)
            result.endpoints.append(PathUsage(endpoint, "*", name, source=f"/metrics of {url}", **numbers))

    readings = _gpu_readings(gpu_start)
    later = _gpu_readings(gpu_end)
    if gpu_problem is not None and (detect().gpus or any(r.inputs.get("accelerator") != "cpu" for r in pools)):
        result.notes.append(f"GPU utilisation unavailable: {gpu_problem} (install nvidia-ml-py for NVML)")
    for record in pools:
        parts = record.address.split(".")
        accelerator = record.inputs.get("accelerator")
        if accelerator == "cpu":
            result.pools.append(PoolUsage(parts[0], parts[-1], name, nodes=1, gpus=0, source="this host (cpu pool)"))
            continue
        devices = [int(d) for d in str(record.outputs.get("devices") or "").split(",") if d.strip().isdigit()]
        result.pools.append(_pool_row(parts[0], parts[-1], name, devices, readings, later))
    if not pools and readings:
        result.pools.append(_pool_row("host", "gpus", name, sorted(readings), readings, later))
    return result


def _pool_row(component: str, pool: str, target: str, devices: list[int],
              start: dict[int, tuple[float, float, float]], end: dict[int, tuple[float, float, float]]) -> PoolUsage:
    row = PoolUsage(component, pool, target, nodes=1, gpus=len(devices), source="this host")
    seen = [(start.get(d), end.get(d)) for d in devices]
    utils = [r[0] for pair in seen for r in pair if r is not None and not math.isnan(r[0])]
    latest = [e or s for s, e in seen if (e or s) is not None]
    if utils:
        row.gpu_util_percent = sum(utils) / len(utils)
        row.source = "this host (NVML)"
    if latest and all(not math.isnan(r[1]) and not math.isnan(r[2]) for r in latest):
        row.gpu_memory_used_mb = sum(r[1] for r in latest)
        row.gpu_memory_total_mb = sum(r[1] + r[2] for r in latest)
    return row
