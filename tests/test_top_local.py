"""`mlplat top` on the local target: per path request rate, error rate and p95 from the routers' /metrics scraped
at both ends of the window, pools from the state; a server that does not answer is a note."""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from mlplat_plugins.local.monitoring import histogram_quantile, usage
from mlplat_plugins.local.runtime.metrics import Registry
from provisioner.api import Stack
from provisioner.state.base import ResourceRecord

from conftest import STACKS, run_mlplat
from local_processes import kill_all

INF = math.inf


# -- histogram_quantile -----------------------------------------------------------------------------------------
def test_histogram_quantile_interpolates_inside_the_bucket_like_prometheus() -> None:
    # rank 0.95 * 100 = 95 falls in (2.5 ms, 5 ms] holding 50..100: 2.5 + 2.5 * (95 - 50) / 50 = 4.75 ms
    assert histogram_quantile(0.95, [(0.001, 0), (0.0025, 50), (0.005, 100), (INF, 100)]) == pytest.approx(0.00475)
    assert histogram_quantile(0.95, [(0.01, 100), (INF, 100)]) == pytest.approx(0.0095)  # first bucket from 0
    assert histogram_quantile(0.95, [(0.1, 10), (INF, 100)]) == 0.1  # in +Inf: the highest finite bound
    assert histogram_quantile(0.95, [(0.1, 0), (INF, 0)]) is None
    assert histogram_quantile(0.95, [(0.1, 5)]) is None  # no +Inf bucket


# -- usage against a metrics server whose counters move -------------------------------------------------------------
class Exposition:
    """A router's /metrics as the runtime renders it; `step()` moves the counters as traffic would."""

    def __init__(self) -> None:
        self.registry = Registry()
        self.requests = self.registry.counter("mlplat_requests_total", "r", ("endpoint", "path", "code"))
        self.errors = self.registry.counter("mlplat_request_errors_total", "e", ("endpoint", "path"))
        self.latency = self.registry.histogram("mlplat_request_duration_seconds", "l", ("endpoint", "path"))
        self.pairs = self.registry.counter("mlplat_shadow_pairs_total", "p", ("endpoint", "path"))
        self.scrapes = 0
        self.key_seen: list[str | None] = []
        self.requests.inc(1000, endpoint="iris", path="production", code="200")  # before the window: not counted
        for _ in range(1000):
            self.latency.observe(5.0, endpoint="iris", path="production")

    def step(self) -> None:
        self.requests.inc(90, endpoint="iris", path="production", code="200")
        self.requests.inc(10, endpoint="iris", path="production", code="502")
        self.errors.inc(10, endpoint="iris", path="production")
        self.pairs.inc(40, endpoint="iris", path="experimental")  # a shadow path: copies compared, no callers
        for i in range(100):  # 50 under 2.5 ms, 50 in (2.5, 5] ms
            self.latency.observe(0.002 if i < 50 else 0.004, endpoint="iris", path="production")


@pytest.fixture
def metrics_server() -> Iterator[tuple[str, Exposition]]:
    exposition = Exposition()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            exposition.key_seen.append(self.headers.get("X-Api-Key"))
            if exposition.scrapes == 1:
                exposition.step()  # the traffic between the two scrapes
            exposition.scrapes += 1
            body = exposition.registry.render()
            self.send_response(200 if self.path == "/metrics" else 404)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", exposition
    finally:
        server.shutdown()
        server.server_close()


def router_record(url: str, api_key: str | None = None, paths: tuple[str, ...] = ("production",)) -> ResourceRecord:
    routes = [{"path": p, "url": "http://127.0.0.1:1", "weight": 100 // len(paths)} for p in paths]
    return ResourceRecord("iris.router.main", "local.router", "local", "/run/iris",
                          {"endpoint": "iris", "routes": routes, "api_key": api_key}, {"url": url})


LOCAL = SimpleNamespace(context=SimpleNamespace(target_name="local"))


def test_rates_error_rate_and_p95_come_from_the_increase_over_the_window(
        metrics_server: tuple[str, Exposition], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLAT_LOCAL_GPUS", "")
    url, exposition = metrics_server
    pool = ResourceRecord("train.gpu_pool.cpu", "local.gpu_pool", "local", "host/train.gpu_pool.cpu",
                          {"accelerator": "cpu", "gpus_per_node": 0}, {"devices": ""})
    started = time.monotonic()
    record = router_record(url, "k" * 20, ("production", "experimental"))
    seen = usage(LOCAL, [record, pool], 0.5)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    row, shadow, whole = seen.endpoints
    assert (row.endpoint, row.path, row.target) == ("iris", "production", "local")
    assert (shadow.path, whole.path) == ("experimental", "*")
    assert 40 / elapsed <= shadow.requests_per_s <= 40 / 0.5 and shadow.source.endswith("(mirrored copies compared)")
    assert (shadow.error_rate, shadow.p95_ms) == (None, None)
    assert (whole.requests_per_s, whole.error_rate, whole.p95_ms) == (row.requests_per_s, row.error_rate, row.p95_ms)
    # 100 requests in the window (the 1000 before it do not count), 10 of them errors
    assert 100 / elapsed <= row.requests_per_s <= 100 / 0.5
    assert row.error_rate == pytest.approx(0.1)
    # 100 observations: rank 95 in (2.5 ms, 5 ms] holding 50..100 → 2.5 + 2.5 * 45 / 50 = 4.75 ms (the 1000
    # observations of 5 s before the window are gone from the increase)
    assert row.p95_ms == pytest.approx(4.75)
    assert exposition.key_seen == ["k" * 20] * 2  # the endpoint's key is sent: /metrics asks for it
    assert [(p.component, p.pool, p.gpus) for p in seen.pools] == [("train", "cpu", 0)]
    assert seen.notes == []


def test_a_router_that_does_not_answer_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLAT_LOCAL_GPUS", "")
    seen = usage(LOCAL, [router_record("http://127.0.0.1:1", paths=("production", "experimental"))],  # type: ignore
                 0.1)
    assert [(e.path, e.requests_per_s) for e in seen.endpoints] == [("production", None), ("experimental", None)]
    [note] = seen.notes
    assert "the router of 'iris' (http://127.0.0.1:1) did not answer /metrics" in note


def test_a_counter_that_went_down_is_a_restarted_router() -> None:
    from mlplat_plugins.local.monitoring import _increase

    start = {("mlplat_requests_total", (("code", "200"), ("endpoint", "e"), ("path", "p"))): 500.0}
    end = {("mlplat_requests_total", (("code", "200"), ("endpoint", "e"), ("path", "p"))): 30.0}
    assert list(_increase(start, end, "mlplat_requests_total", endpoint="e").values()) == [30.0]


def test_gpu_pools_average_their_devices_utilisation_from_dcgm_samples() -> None:
    from mlplat_plugins.local.monitoring import _gpu_readings, _pool_row
    from mlplat_plugins.local.runtime.metrics import parse

    def exposition(util0: float, util1: float) -> str:
        lines = []
        for gpu, util in ((0, util0), (1, util1), (2, 99.0)):
            labels = f'gpu="{gpu}",UUID="GPU-{gpu}",modelName="NVIDIA L4",Hostname="h"'
            lines += [f"DCGM_FI_DEV_GPU_UTIL{{{labels}}} {util}", f"DCGM_FI_DEV_FB_USED{{{labels}}} 1000",
                      f"DCGM_FI_DEV_FB_FREE{{{labels}}} 3000"]
        return "\n".join(lines)

    start, end = _gpu_readings(parse(exposition(10, 30))), _gpu_readings(parse(exposition(50, 70)))
    row = _pool_row("train", "l4", "local", [0, 1], start, end)  # device 2 is another pool's
    assert (row.gpus, row.gpu_util_percent) == (2, pytest.approx(40.0))  # (10 + 30 + 50 + 70) / 4
    assert (row.gpu_memory_used_mb, row.gpu_memory_total_mb) == (2000, 8000)
    assert row.source == "this host (NVML)"


def test_a_gpu_pool_without_nvml_is_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplat_plugins.local.monitoring import _host_gpus

    if _host_gpus()[0] is not None:
        pytest.skip("NVML answers on this machine")
    monkeypatch.setenv("MLPLAT_LOCAL_GPUS", "NVIDIA L4")
    from mlplat_plugins.local.host import detect

    detect.cache_clear()
    try:
        pool = ResourceRecord("train.gpu_pool.l4", "local.gpu_pool", "local", "host/train.gpu_pool.l4",
                              {"accelerator": "l4", "gpus_per_node": 1}, {"devices": "0"})
        seen = usage(LOCAL, [pool], 0.1)  # type: ignore[arg-type]
    finally:
        detect.cache_clear()
    [row] = seen.pools
    assert (row.component, row.pool, row.gpus, row.gpu_util_percent) == ("train", "l4", 1, None)
    [note] = seen.notes
    assert note.startswith("GPU utilisation unavailable: ")


# -- end to end -------------------------------------------------------------------------------------------------
STACK = """\
apiVersion: mlplat/v1
metadata: {name: watched}
target: local
clusters:
  - name: train
    gpu_pools: [{name: cpu, accelerator: cpu, nodes: {min: 1, max: 1}}]
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: models/iris-v1.json}
    - {name: iris, version: "2", artifact: models/iris-v2.json}
serving:
  - name: iris
    auth: key
    api_key: ${secret:IRIS_KEY}
    paths:
      production: {model: "iris:1", weight: 50}
      experimental: {model: "iris:2", weight: 50}
"""
KEY = "top-test-key-0123456789abcdef"
ENV = {"MLPLAT_LOCAL_GPUS": "", "IRIS_KEY": KEY, "MLPLAT_STATE_PASSPHRASE": "top-test-passphrase"}


@pytest.fixture
def applied(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Path, str]]:
    for key, value in ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copytree(STACKS / "models", tmp_path / "models")
    path = tmp_path / "stack.yaml"
    path.write_text(STACK)
    stack = Stack(path)
    try:
        stack.apply(stack.plan())
        url = stack.outputs()["iris.url"]
        yield path, url
        stack.apply(stack.plan(destroy=True))
    finally:
        stack.close()
        kill_all(tmp_path)


def traffic(url: str, stop: threading.Event) -> None:
    body = json.dumps({"instances": [[5.1, 3.5, 1.4, 0.2]]}).encode()
    while not stop.is_set():
        request = urllib.request.Request(url + "/invocations", data=body, method="POST",
                                         headers={"X-Api-Key": KEY, "Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=5) as response:
            response.read()
        time.sleep(0.005)


@pytest.mark.slow
def test_top_shows_each_path_with_its_rate_and_p95_and_the_pools(applied: tuple[Path, str]) -> None:
    path, url = applied
    stop = threading.Event()
    sender = threading.Thread(target=traffic, args=(url, stop), daemon=True)
    sender.start()
    try:
        time.sleep(0.3)
        proc = run_mlplat("top", "-f", str(path), "--once", "--json", "--window", "2", cwd=path.parent, env=ENV)
        table = run_mlplat("top", "-f", str(path), "--once", "--window", "0.5", cwd=path.parent, env=ENV).stdout
    finally:
        stop.set()
        sender.join(timeout=10)
    view = json.loads(proc.stdout)
    rows = {e["path"]: e for e in view["endpoints"] if e["endpoint"] == "iris"}
    assert set(rows) == {"production", "experimental", "*"}, view
    for name in ("production", "experimental"):
        assert rows[name]["requests_per_s"] > 0 and rows[name]["p95_ms"] > 0, rows[name]
        assert rows[name]["error_rate"] == 0.0 and rows[name]["source"].startswith("/metrics of http://127.0.0.1:")
    total = rows["production"]["requests_per_s"] + rows["experimental"]["requests_per_s"]
    assert rows["*"]["requests_per_s"] == pytest.approx(total)
    assert [(p["component"], p["pool"], p["gpus"]) for p in view["pools"]] == [("train", "cpu", 0)]
    assert view["notes"] == [] and KEY not in proc.stdout + proc.stderr
    assert "production" in table and "experimental" in table and " ms " in table and "train" in table


def test_top_without_once_shows_a_view_per_window_until_interrupted(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    (tmp_path / "s.yaml").write_text("apiVersion: mlplat/v1\nmetadata: {name: empty}\n"
                                     "storage: [{name: data, kind: nas, size_gb: 1}]\n")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "MLPLAT_LOCAL_GPUS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "provisioner.cli", "top", "-f", "s.yaml", "--window", "0.5"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2.5)  # the interpreter starts, then a view every 0.5 s
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        proc.kill()
    assert proc.returncode == 0 and "Traceback" not in err
    views = out.count("has nothing in its state")
    assert 1 <= views <= 5, out  # paced by the window, not a busy loop


def test_top_of_a_stack_with_nothing_applied_says_so(tmp_path: Path) -> None:
    (tmp_path / "s.yaml").write_text("apiVersion: mlplat/v1\nmetadata: {name: empty}\n"
                                     "storage: [{name: data, kind: nas, size_gb: 1}]\n")
    view = json.loads(run_mlplat("top", "-f", "s.yaml", "--json", cwd=tmp_path).stdout)
    assert view["endpoints"] == [] and view["pools"] == []
    assert view["notes"] == ["stack 'empty' has nothing in its state: run `mlplat apply` first"]
    missing = run_mlplat("top", "-f", "nope.yaml", "--once", cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "Traceback" not in missing.stderr
