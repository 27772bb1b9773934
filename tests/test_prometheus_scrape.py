"""A real Prometheus server scrapes a router's /metrics (with the endpoint's API key) and its query API shows the
counts the test sent. Needs the `prometheus` binary (Debian package; CI installs it): without it this fails."""

from __future__ import annotations

import hashlib
import http.client
import json
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_server import PrometheusMissing, PrometheusServer

from mlplat_plugins.local.runtime import processes

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "stacks" / "models"
MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
ROUTER = "mlplat_plugins.local.runtime.router"
KEY = "scrape-key-0123456789abcdef0123456789"


@pytest.fixture
def router(tmp_path: Path) -> Iterator[processes.ProcessInfo]:
    """A router (auth: key) in front of two model servers."""
    pids: list[int] = []

    def spawn(module: str, name: str, args: list[str]) -> processes.ProcessInfo:
        runtime_file = tmp_path / f"{name}.runtime.json"
        info = processes.spawn(module, [*args, "--runtime-file", str(runtime_file), "--quiet"],
                               runtime_file=runtime_file, log_file=tmp_path / f"{name}.log")
        pids.append(info.pid)
        return info

    try:
        prod = spawn(MODEL_SERVER, "prod", ["--artifact", str(MODELS / "iris-v1.json")])
        exp = spawn(MODEL_SERVER, "exp", ["--artifact", str(MODELS / "iris-v2.json")])
        config = {"endpoint": "iris", "mode": "split", "key_sha256": hashlib.sha256(KEY.encode()).hexdigest(),
                  "routes": [{"path": "production", "url": prod.url, "weight": 60, "internal": True},
                             {"path": "experimental", "url": exp.url, "weight": 40, "internal": True}]}
        processes.write_json_atomic(tmp_path / "router.json", config)
        yield spawn(ROUTER, "router", ["--config", str(tmp_path / "router.json")])
    finally:
        for pid in reversed(pids):
            processes.stop(pid)


def send(router: processes.ProcessInfo, n: int) -> Counter[str]:
    conn = http.client.HTTPConnection(router.host, router.port, timeout=10)
    paths: Counter[str] = Counter()
    try:
        for _ in range(n):
            conn.request("POST", "/invocations", body=json.dumps({"instances": [[6.7, 3.1, 5.6, 2.4]]}),
                         headers={"Content-Type": "application/json", "X-Api-Key": KEY})
            resp = conn.getresponse()
            resp.read()
            assert resp.status == 200
            paths[resp.getheader("X-Mlplat-Path")] += 1
    finally:
        conn.close()
    return paths


def by_path(prom: PrometheusServer) -> dict[str, float]:
    return {r["metric"]["path"]: float(r["value"][1])
            for r in prom.query('sum by (path) (mlplat_requests_total{endpoint="iris",code="200"})')}


def poll(prom: PrometheusServer, want: dict[str, float], timeout: float = 20.0) -> dict[str, float]:
    """What Prometheus has for mlplat_requests_total per path, once it is `want` (or at `timeout`)."""
    deadline, seen = time.monotonic() + timeout, {}
    while time.monotonic() < deadline:
        seen = by_path(prom)
        if seen == want:
            break
        time.sleep(0.25)
    return seen


def test_prometheus_scrapes_the_router_and_sees_every_request(router: processes.ProcessInfo, tmp_path: Path) -> None:
    first = send(router, 150)
    try:
        prom = PrometheusServer(tmp_path / "prometheus", [f"{router.host}:{router.port}"], scrape_interval="1s",
                                bearer_token=KEY)
    except PrometheusMissing as exc:
        pytest.fail(str(exc))
    with prom:
        seen = poll(prom, {path: float(n) for path, n in first.items()})
        assert seen == first, f"Prometheus has {seen}, the router answered {dict(first)}\n{prom.log_tail()}"
        targets = prom.api("targets")["activeTargets"]
        assert [(t["health"], t["lastError"]) for t in targets] == [("up", "")]  # scraped with the key
        assert [float(r["value"][1]) for r in prom.query('up{job="mlplat"}')] == [1.0]
        # the counter keeps counting across scrapes
        second = send(router, 100)
        total = first + second
        seen = poll(prom, {path: float(n) for path, n in total.items()})
        assert seen == total, f"Prometheus has {seen}, the router answered {dict(total)}"
        up = {r["metric"]["path"]: float(r["value"][1]) for r in prom.query("mlplat_upstream_up")}
        assert up == {"production": 1.0, "experimental": 1.0}
        count = prom.query('sum(mlplat_request_duration_seconds_count{endpoint="iris"})')
        assert float(count[0]["value"][1]) == 250
