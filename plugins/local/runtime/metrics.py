"""Prometheus text exposition (format 0.0.4) for the runtime servers, stdlib only (they must start fast).

    registry = Registry()
    requests = registry.counter("mlplat_requests_total", "Requests answered", ("endpoint", "path", "code"))
    requests.inc(endpoint="iris", path="production", code="200")
    latency = registry.histogram("mlplat_request_duration_seconds", "Upstream round trip", ("endpoint", "path"))
    latency.observe(0.003, endpoint="iris", path="production")
    body = registry.render()  # text/plain; version=0.0.4

Names every server exposes (`GET /metrics`):
- router / front door: `mlplat_requests_total{endpoint,path,code}`, `mlplat_request_errors_total{endpoint,path}`,
  `mlplat_request_duration_seconds{endpoint,path}` (histogram), `mlplat_upstream_up{endpoint,path}`,
  `mlplat_captured_rows_total{endpoint}`, `mlplat_capture_dropped_total{endpoint}`,
  `mlplat_shadow_pairs_total{endpoint,path}`, `mlplat_shadow_instances_total{endpoint,path}`,
  `mlplat_shadow_agreements_total{endpoint,path}`, `mlplat_shadow_latency_delta_seconds{endpoint,path}` (summary),
  `mlplat_drift_score{endpoint,feature,metric}` (the last `mlplat monitor` run).
- model server: `mlplat_model_requests_total{model,code}`, `mlplat_model_request_duration_seconds{model}`,
  `mlplat_model_instances_total{model}`.
- both: `process_cpu_seconds_total`, `process_resident_memory_bytes`, `process_start_time_seconds` (Prometheus'
  standard process names), `mlplat_gpu_available` (1 when NVML initialised), and per GPU with NVML the DCGM
  exporter's names and labels: `DCGM_FI_DEV_GPU_UTIL`, `DCGM_FI_DEV_FB_USED`, `DCGM_FI_DEV_FB_FREE` (MiB)
  `{gpu="0",UUID="GPU-...",modelName="NVIDIA H100 80GB HBM3",Hostname="..."}`.
"""

from __future__ import annotations

import bisect
import math
import os
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
#: seconds; Prometheus' client default buckets, extended to 30 s (an upstream timeout)
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(names: tuple[str, ...], values: tuple[str, ...], extra: str = "") -> str:
    parts = [f'{n}="{_escape(v)}"' for n, v in zip(names, values, strict=True)]
    if extra:
        parts.append(extra)
    return "{" + ",".join(parts) + "}" if parts else ""


def _number(value: float) -> str:
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


class _Metric:
    kind = ""

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        self.name, self.help, self.labelnames = name, help, tuple(labels)
        self._lock = threading.Lock()

    def _key(self, labels: dict[str, Any]) -> tuple[str, ...]:
        if set(labels) != set(self.labelnames):
            raise ValueError(f"{self.name} takes labels {self.labelnames}, got {tuple(labels)}")
        return tuple(str(labels[n]) for n in self.labelnames)

    def header(self) -> list[str]:
        return [f"# HELP {self.name} {self.help}", f"# TYPE {self.name} {self.kind}"]

    def lines(self) -> list[str]:
        raise NotImplementedError


class Counter(_Metric):
    kind = "counter"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], float] = {}

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = self._values.get(key, 0.0) + amount

    def value(self, **labels: Any) -> float:
        with self._lock:
            return self._values.get(self._key(labels), 0.0)

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted(self._values.items())
        return [f"{self.name}{_labels(self.labelnames, k)} {_number(v)}" for k, v in items]


class Gauge(Counter):
    kind = "gauge"

    def set(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            self._values[key] = float(value)

    def clear(self) -> None:
        with self._lock:
            self._values.clear()


class Histogram(_Metric):
    kind = "histogram"

    def __init__(self, name: str, help: str, labels: Iterable[str] = (),
                 buckets: tuple[float, ...] = LATENCY_BUCKETS) -> None:
        super().__init__(name, help, labels)
        self.buckets = tuple(sorted(buckets))
        self._values: dict[tuple[str, ...], list[float]] = {}  # per bucket counts (+Inf last), then sum, count

    def observe(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        index = bisect.bisect_left(self.buckets, value)
        with self._lock:
            row = self._values.get(key)
            if row is None:
                row = self._values[key] = [0.0] * (len(self.buckets) + 3)
            row[index] += 1
            row[-2] += value
            row[-1] += 1

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._values.items())
        out = []
        for key, row in items:
            running = 0.0
            for bound, count in zip((*self.buckets, math.inf), row, strict=False):
                running += count
                le = 'le="' + _number(bound) + '"'
                out.append(f"{self.name}_bucket{_labels(self.labelnames, key, le)} {_number(running)}")
            out.append(f"{self.name}_sum{_labels(self.labelnames, key)} {_number(row[-2])}")
            out.append(f"{self.name}_count{_labels(self.labelnames, key)} {_number(row[-1])}")
        return out


class Summary(_Metric):
    """Sum and count only (no quantiles), e.g. a mean latency delta."""

    kind = "summary"

    def __init__(self, name: str, help: str, labels: Iterable[str] = ()) -> None:
        super().__init__(name, help, labels)
        self._values: dict[tuple[str, ...], list[float]] = {}

    def observe(self, value: float, **labels: Any) -> None:
        key = self._key(labels)
        with self._lock:
            row = self._values.setdefault(key, [0.0, 0.0])
            row[0] += value
            row[1] += 1

    def lines(self) -> list[str]:
        with self._lock:
            items = sorted((k, list(v)) for k, v in self._values.items())
        return [line for key, (total, count) in items for line in (
            f"{self.name}_sum{_labels(self.labelnames, key)} {_number(total)}",
            f"{self.name}_count{_labels(self.labelnames, key)} {_number(count)}")]


class Registry:
    """Metrics of one process; `collectors` add lines computed at scrape time (process, GPU, drift scores)."""

    def __init__(self) -> None:
        self._metrics: list[_Metric] = []
        self._collectors: list[Callable[[], list[str]]] = []

    def _add(self, metric: Any) -> Any:
        self._metrics.append(metric)
        return metric

    def counter(self, name: str, help: str, labels: Iterable[str] = ()) -> Counter:
        return self._add(Counter(name, help, labels))

    def gauge(self, name: str, help: str, labels: Iterable[str] = ()) -> Gauge:
        return self._add(Gauge(name, help, labels))

    def histogram(self, name: str, help: str, labels: Iterable[str] = (),
                  buckets: tuple[float, ...] = LATENCY_BUCKETS) -> Histogram:
        return self._add(Histogram(name, help, labels, buckets))

    def summary(self, name: str, help: str, labels: Iterable[str] = ()) -> Summary:
        return self._add(Summary(name, help, labels))

    def collector(self, collect: Callable[[], list[str]]) -> None:
        self._collectors.append(collect)

    def render(self) -> bytes:
        lines: list[str] = []
        for metric in self._metrics:
            lines += metric.header()
            lines += metric.lines()
        for collect in self._collectors:
            try:
                lines += collect()
            except Exception as exc:  # a collector must never break a scrape
                lines.append(f"# collector {getattr(collect, '__name__', '?')} failed: {type(exc).__name__}")
        return ("\n".join(lines) + "\n").encode()


# ---------------------------------------------------------------------------------------------------------
# Process and GPU collectors
# ---------------------------------------------------------------------------------------------------------

_STARTED = time.time()


def process_lines() -> list[str]:
    """CPU seconds and resident memory of this process (from os.times and /proc, no psutil)."""
    times = os.times()
    lines = ["# HELP process_cpu_seconds_total Total user and system CPU time spent in seconds.",
             "# TYPE process_cpu_seconds_total counter",
             f"process_cpu_seconds_total {_number(times.user + times.system)}",
             "# HELP process_start_time_seconds Start time of the process since unix epoch in seconds.",
             "# TYPE process_start_time_seconds gauge",
             f"process_start_time_seconds {_number(_STARTED)}"]
    try:
        with open(f"/proc/{os.getpid()}/statm") as fh:
            rss_pages = int(fh.read().split()[1])
        lines += ["# HELP process_resident_memory_bytes Resident memory size in bytes.",
                  "# TYPE process_resident_memory_bytes gauge",
                  f"process_resident_memory_bytes {rss_pages * os.sysconf('SC_PAGE_SIZE')}"]
    except (OSError, ValueError, IndexError):
        pass
    return lines


class Gpus:
    """NVML, initialised once on first scrape (pynvml from nvidia-ml-py, when installed and a driver answers).
    Anything failing — no package, no driver, no GPU, a call that errors — gives `mlplat_gpu_available 0`."""

    def __init__(self) -> None:
        self._nvml: Any = None
        self._tried = False
        self._lock = threading.Lock()
        self.error: str | None = None

    def _init(self) -> Any:
        with self._lock:
            if not self._tried:
                self._tried = True
                try:
                    import pynvml

                    pynvml.nvmlInit()
                    self._nvml = pynvml
                except Exception as exc:  # ImportError, NVMLError (no driver / library)
                    self.error = f"{type(exc).__name__}: {exc}"
            return self._nvml

    def lines(self) -> list[str]:
        nvml = self._init()
        out = ["# HELP mlplat_gpu_available 1 when NVML initialised and GPU metrics follow, else 0.",
               "# TYPE mlplat_gpu_available gauge"]
        if nvml is None:
            return [*out, "mlplat_gpu_available 0"]
        rows: list[tuple[str, str, float]] = []
        try:
            host = socket.gethostname()
            for index in range(nvml.nvmlDeviceGetCount()):
                handle = nvml.nvmlDeviceGetHandleByIndex(index)
                name, uuid = nvml.nvmlDeviceGetName(handle), nvml.nvmlDeviceGetUUID(handle)
                name = name.decode() if isinstance(name, bytes) else name
                uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
                labels = (f'gpu="{index}",UUID="{_escape(uuid)}",modelName="{_escape(name)}",'
                          f'Hostname="{_escape(host)}"')
                util = nvml.nvmlDeviceGetUtilizationRates(handle)
                memory = nvml.nvmlDeviceGetMemoryInfo(handle)
                rows += [("DCGM_FI_DEV_GPU_UTIL", labels, float(util.gpu)),
                         ("DCGM_FI_DEV_FB_USED", labels, memory.used / 2**20),
                         ("DCGM_FI_DEV_FB_FREE", labels, memory.free / 2**20)]
        except Exception as exc:  # a GPU fallen off the bus, a driver reset: report no GPU metrics, never crash
            self.error = f"{type(exc).__name__}: {exc}"
            return [*out, "mlplat_gpu_available 0"]
        out.append("mlplat_gpu_available 1")
        helps = {"DCGM_FI_DEV_GPU_UTIL": "GPU utilization (in %).",
                 "DCGM_FI_DEV_FB_USED": "Framebuffer memory used (in MiB).",
                 "DCGM_FI_DEV_FB_FREE": "Framebuffer memory free (in MiB)."}
        for name, help in helps.items():
            out += [f"# HELP {name} {help}", f"# TYPE {name} gauge"]
            out += [f"{n}{{{labels}}} {_number(v)}" for n, labels, v in rows if n == name]
        return out


def parse(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """The samples of an exposition (name, sorted labels) → value: what `mlplat top` reads from /metrics. Handles
    what `Registry.render` writes (no timestamps, no escaped quotes inside label values beyond \\" and \\\\)."""
    import re

    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    pattern = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        name, _, rest = head.partition("{")
        labels = tuple(sorted((k, v.replace('\\"', '"').replace("\\n", "\n").replace("\\\\", "\\"))
                              for k, v in pattern.findall(rest)))
        try:
            samples[(name, labels)] = float(value)
        except ValueError:
            continue
    return samples
