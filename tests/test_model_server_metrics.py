"""The model server's /metrics: Prometheus text a real Prometheus parser reads, counting what was sent to it."""

from __future__ import annotations

import http.client
import json
import math
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlplat_plugins.local.runtime import processes

from conftest import require_module

parser = require_module("prometheus_client.parser", "the test extra installs prometheus_client")

REPO = Path(__file__).resolve().parents[1]
ARTIFACT = REPO / "stacks" / "models" / "iris-v1.json"
SUPERVISOR = "mlplat_plugins.local.runtime.supervisor"
MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
TOKEN = "metrics-test-internal-token-" + "x" * 20
INTERNAL = {"X-Mlplat-Internal": TOKEN}
IRIS = {"instances": [[5.0, 3.4, 1.5, 0.2], [6.7, 3.1, 5.6, 2.4]]}


@pytest.fixture(params=[SUPERVISOR, MODEL_SERVER], ids=["supervised", "alone"])
def server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[processes.ProcessInfo]:
    """A model server holding an internal token, as the local target runs it (supervised) and on its own."""
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    runtime_file = tmp_path / "runtime.json"
    info = processes.spawn(
        request.param,
        ["--artifact", str(ARTIFACT), "--runtime-file", str(runtime_file), "--internal-token-file", str(token_file),
         "--model-id", "iris:1", "--quiet"],
        runtime_file=runtime_file, log_file=tmp_path / "server.log", timeout=20,
    )
    try:
        yield info
    finally:
        processes.stop(info.pid)


def call(info: processes.ProcessInfo, method: str, path: str, body: Any = None,
         headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection(info.host, info.port, timeout=10)
    try:
        raw = None if body is None else body if isinstance(body, bytes) else json.dumps(body).encode()
        conn.request(method, path, body=raw, headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def scrape(info: processes.ProcessInfo) -> dict[str, Any]:
    """name -> family, parsed by prometheus_client (which names a counter's family without its `_total`)."""
    status, headers, body = call(info, "GET", "/metrics", headers=INTERNAL)
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain; version=0.0.4")
    families = {}
    for family in parser.text_string_to_metric_families(body.decode()):
        families[family.name + ("_total" if family.type == "counter" else "")] = family
    return families


def samples(family: Any, name: str | None = None) -> dict[tuple[tuple[str, str], ...], float]:
    return {tuple(sorted(s.labels.items())): s.value for s in family.samples if name is None or s.name == name}


def test_metrics_count_the_requests_sent(server: processes.ProcessInfo) -> None:
    before = scrape(server)
    assert "mlplat_model_requests_total" not in before or not before["mlplat_model_requests_total"].samples
    sent = {"200": 0, "400": 0, "403": 0, "405": 0}
    for _ in range(3):
        assert call(server, "POST", "/invocations", IRIS, INTERNAL)[0] == 200
        sent["200"] += 1
    assert call(server, "POST", "/v1/predict", {"instances": [[1.0, 2.0, 3.0, 4.0]]}, INTERNAL)[0] == 200
    sent["200"] += 1
    for bad in (b"not json", {"instances": [[1.0]]}):  # bad JSON, wrong shape
        assert call(server, "POST", "/invocations", bad, INTERNAL)[0] == 400
        sent["400"] += 1
    assert call(server, "POST", "/invocations", IRIS)[0] == 403  # no token
    sent["403"] += 1
    assert call(server, "GET", "/invocations", headers=INTERNAL)[0] == 405
    sent["405"] += 1
    assert call(server, "GET", "/-/healthz")[0] == 200  # not a prediction: not counted
    assert call(server, "GET", "/-/stats", headers=INTERNAL)[0] == 200  # kept beside /metrics

    families = scrape(server)
    requests = families["mlplat_model_requests_total"]
    assert requests.type == "counter"
    assert samples(requests, "mlplat_model_requests_total") == {
        (("code", code), ("model", "iris:1")): float(n) for code, n in sent.items()}
    instances = families["mlplat_model_instances_total"]
    assert samples(instances, "mlplat_model_instances_total") == {(("model", "iris:1"),): 3 * 2 + 1.0}

    duration = families["mlplat_model_request_duration_seconds"]
    assert duration.type == "histogram"
    total = sum(sent.values())
    assert samples(duration, "mlplat_model_request_duration_seconds_count") == {(("model", "iris:1"),): total}
    seconds = samples(duration, "mlplat_model_request_duration_seconds_sum")[(("model", "iris:1"),)]
    assert 0 < seconds < 10
    buckets = sorted((float(s.labels["le"]), s.value) for s in duration.samples if s.name.endswith("_bucket"))
    assert buckets[-1] == (math.inf, total)
    assert [count for _, count in buckets] == sorted(count for _, count in buckets)  # cumulative

    assert samples(families["mlplat_gpu_available"]) == {(): 0.0}  # no GPU (nor NVML) on this machine
    assert families["process_cpu_seconds_total"].samples[0].value > 0
    assert families["process_resident_memory_bytes"].samples[0].value > 1_000_000
    assert families["process_start_time_seconds"].samples[0].value > 1_600_000_000
    stats = json.loads(call(server, "GET", "/-/stats", headers=INTERNAL)[2])
    assert stats["requests"] == sent["200"] + sent["400"]  # /-/stats counts as before: predictions it read


def test_metrics_need_the_internal_token(server: processes.ProcessInfo) -> None:
    status, _, body = call(server, "GET", "/metrics")
    assert status == 403 and b"mlplat_" not in body
    status, _, _ = call(server, "GET", "/metrics", headers={"X-Mlplat-Internal": "guess" * 10})
    assert status == 403
    assert call(server, "POST", "/metrics", b"", INTERNAL)[0] == 405
    assert "mlplat_model_requests_total" in scrape(server)  # declared (HELP/TYPE) even before any request
