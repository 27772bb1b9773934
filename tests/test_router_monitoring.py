"""The router's monitoring (issue 13): request capture to JSONL, shadow comparison, health of its own model servers
(failover without a failed request, 503 when none is live) and GET /metrics. Real router and model-server
processes, real HTTP on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from mlplat_plugins.local.runtime import metrics, processes
from mlplat_plugins.local.runtime import model as model_format
from mlplat_plugins.local.runtime.router import ConfigError, parse_config
from provisioner.monitoring import CAPTURE_PREFIX, SCORES_FILE, SHADOW_PREFIX

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "stacks" / "models"
MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
ROUTER = "mlplat_plugins.local.runtime.router"
SETOSA, VERSICOLOR, VIRGINICA = [5.0, 3.4, 1.5, 0.2], [6.1, 2.8, 4.3, 1.3], [6.7, 3.1, 5.6, 2.4]
ROW_KEYS = {"ts", "id", "endpoint", "path", "status", "latency_ms", "request", "response"}
PAIR_KEYS = {"ts", "id", "endpoint", "primary", "shadow", "primary_status", "shadow_status", "primary_ms",
             "shadow_ms", "instances", "agreements"}


# -- helpers ----------------------------------------------------------------------------------------------------


class Procs:
    """Runtime processes of one test, all stopped afterwards."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.pids = workdir, []

    def _spawn(self, module: str, name: str, args: list[str]) -> processes.ProcessInfo:
        runtime_file = self.workdir / f"{name}.runtime.json"
        info = processes.spawn(module, [*args, "--runtime-file", str(runtime_file), "--quiet"],
                               runtime_file=runtime_file, log_file=self.workdir / f"{name}.log")
        self.pids.append(info.pid)
        return info

    def model(self, artifact: Path, name: str, port: int | None = None) -> processes.ProcessInfo:
        return self._spawn(MODEL_SERVER, name, ["--artifact", str(artifact), *(["--port", str(port)] if port else [])])

    def router(self, config: dict[str, Any], name: str = "router") -> tuple[processes.ProcessInfo, Path]:
        config_file = self.workdir / f"{name}.config.json"
        processes.write_json_atomic(config_file, config)
        return self._spawn(ROUTER, name, ["--config", str(config_file)]), config_file

    def stop_all(self) -> None:
        for pid in reversed(self.pids):
            processes.stop(pid)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Procs]:
    started = Procs(tmp_path)
    try:
        yield started
    finally:
        started.stop_all()


class Client:
    """One keep-alive connection."""

    def __init__(self, info: processes.ProcessInfo, key: str | None = None) -> None:
        self.conn = http.client.HTTPConnection(info.host, info.port, timeout=10)
        self.auth = {"Authorization": f"Bearer {key}"} if key else {}

    def call(self, method: str, path: str, body: Any = None, headers: dict[str, str] | None = None
             ) -> tuple[int, dict[str, str], bytes]:
        raw = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        self.conn.request(method, path, body=raw, headers={"Content-Type": "application/json", **self.auth,
                                                             **(headers or {})})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, data

    def predict(self, doc: Any) -> tuple[int, dict[str, str], Any]:
        status, headers, data = self.call("POST", "/invocations", doc)
        return status, headers, json.loads(data)

    def close(self) -> None:
        self.conn.close()


def get_json(info: processes.ProcessInfo, path: str, key: str | None = None) -> Any:
    client = Client(info, key)
    try:
        status, _, data = client.call("GET", path)
        assert status == 200, data
        return json.loads(data)
    finally:
        client.close()


def scrape(info: processes.ProcessInfo, key: str | None = None) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """/metrics parsed by prometheus_client: (sample name, sorted labels) -> value."""
    client = Client(info, key)
    try:
        status, headers, data = client.call("GET", "/metrics")
    finally:
        client.close()
    assert status == 200, data
    assert headers["content-type"] == metrics.CONTENT_TYPE
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(data.decode()) for s in family.samples}


def wait_for(predicate: Callable[[], Any], timeout: float = 10.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        assert time.monotonic() < deadline, f"{what} not reached within {timeout:g} s"
        time.sleep(0.02)


def rows(directory: Path, prefix: str = CAPTURE_PREFIX) -> list[dict[str, Any]]:
    found = []
    for file in sorted(directory.glob(f"{prefix}*.jsonl")):
        found += [json.loads(line) for line in file.read_text().splitlines()]
    return found


def rows_when(count: int, directory: Path, prefix: str = CAPTURE_PREFIX, timeout: float = 3.0) -> list[dict[str, Any]]:
    """The rows once there are `count` (the writer writes within 0.2 s), or what there is after `timeout`, for the
    caller to compare; then 0.3 s more, so that a row too many shows as well."""
    deadline = time.monotonic() + timeout
    while len(rows(directory, prefix)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.3)
    return rows(directory, prefix)


def route(path: str, info: processes.ProcessInfo, weight: float) -> dict[str, Any]:
    return {"path": path, "url": info.url, "weight": weight, "internal": True}


def capture(directory: Path, percent: int, request: bool = True, response: bool = True) -> dict[str, Any]:
    return {"dir": str(directory), "sample_percent": percent, "request": request, "response": response}


def linear(tmp_path: Path, name: str, version: str, bias: list[float], base: str = "iris-v1.json") -> Path:
    """A model artifact: iris-v1's features and classes, `bias` added to its own (or all-zero weights)."""
    doc = json.loads((MODELS / base).read_text())
    doc["version"] = version
    if bias:
        doc["weights"] = [[0.0] * 4 for _ in doc["classes"]]
        doc["bias"] = bias
    path = tmp_path / f"{name}.json"
    path.write_text(json.dumps(doc))
    return path


# -- config -----------------------------------------------------------------------------------------------------


def test_capture_and_compare_shadow_config_is_checked_and_shown_only_when_set() -> None:
    prod = {"path": "production", "url": "http://127.0.0.1:8001", "weight": 100}
    base = {"endpoint": "iris", "routes": [prod]}
    plain = parse_config(base)
    assert "capture" not in plain and "compare_shadow" not in plain  # endpoints without monitoring: no change
    assert parse_config({**base, "capture": None, "compare_shadow": False}) == plain
    good = {"dir": "/tmp/c", "sample_percent": 20, "request": True, "response": False}
    config = parse_config({**base, "capture": good, "compare_shadow": True})
    assert config["capture"] == good and config["compare_shadow"] is True
    assert parse_config({**base, "capture": {"dir": "/tmp/c", "sample_percent": 5}})["capture"] == {
        "dir": "/tmp/c", "sample_percent": 5, "request": True, "response": True}
    for message, value in {
        "'capture' must be an object": "/tmp/c",
        "unknown keys destination": {**good, "destination": "s3://b"},
        "capture.dir' must be an absolute path": {**good, "dir": "relative/dir"},
        "sample_percent' must be a whole number from 1 to 100, got 0": {**good, "sample_percent": 0},
        "got 101": {**good, "sample_percent": 101},
        "got 20.5": {**good, "sample_percent": 20.5},
        "got True": {**good, "sample_percent": True},
        "capture.request' must be true or false": {**good, "request": "yes"},
        "keep the request, the response or both": {**good, "request": False, "response": False},
    }.items():
        with pytest.raises(ConfigError, match=message):
            parse_config({**base, "capture": value})
    with pytest.raises(ConfigError, match="'compare_shadow' must be true or false"):
        parse_config({**base, "compare_shadow": "yes"})


# -- capture ----------------------------------------------------------------------------------------------------


def test_capture_keeps_exactly_the_sampled_percent_with_the_contract_shape(procs: Procs, tmp_path: Path) -> None:
    production = procs.model(MODELS / "iris-v1.json", "prod")
    experimental = procs.model(MODELS / "iris-v2.json", "exp")
    capture_dir = tmp_path / "capture" / "iris"  # not there yet: the router makes it
    router, _ = procs.router({"endpoint": "iris", "mode": "split",
                              "routes": [route("production", production, 50), route("experimental", experimental, 50)],
                              "capture": capture(capture_dir, 20)})
    assert get_json(router, "/-/config")["capture"] == capture(capture_dir, 20)
    flowers = [SETOSA, VERSICOLOR, VIRGINICA]
    n, served, began = 5000, {}, time.time()
    client = Client(router)
    for i in range(n):  # one client: request i is the router's (i+1)th, so every 5th is kept
        status, headers, payload = client.predict({"instances": [flowers[i % 3]], "seq": i})
        assert status == 200
        served[i] = (headers["x-mlplat-path"], payload)
    client.close()
    captured = rows_when(1000, capture_dir)
    assert len(captured) == 1000  # exactly 20 %: error diffusion, not chance
    assert sorted(r["request"]["seq"] for r in captured) == list(range(4, n, 5))  # evenly spread
    assert len({r["id"] for r in captured}) == 1000
    for row in captured:
        assert set(row) == ROW_KEYS
        seq = row["request"]["seq"]
        path, payload = served[seq]
        assert (row["endpoint"], row["path"], row["status"]) == ("iris", path, 200)
        assert row["request"] == {"instances": [flowers[seq % 3]], "seq": seq}
        assert row["response"] == payload
        assert began - 1 <= row["ts"] <= time.time() and 0 < row["latency_ms"] < 10_000
    hours = {time.strftime("%Y%m%d-%H", time.gmtime(r["ts"])) for r in captured}
    assert sorted(p.name for p in capture_dir.glob("*.jsonl")) == sorted(f"capture-{h}.jsonl" for h in hours)
    assert Counter(r["path"] for r in captured).keys() == {"production", "experimental"}
    samples = scrape(router)
    assert samples[("mlplat_captured_rows_total", (("endpoint", "iris"),))] == 1000
    assert samples[("mlplat_capture_dropped_total", (("endpoint", "iris"),))] == 0


def test_capture_request_only_then_response_only_after_reload(procs: Procs, tmp_path: Path) -> None:
    production = procs.model(MODELS / "iris-v2.json", "prod")
    capture_dir = tmp_path / "capture"
    config = {"endpoint": "iris", "routes": [route("production", production, 100)],
              "capture": capture(capture_dir, 100, request=True, response=False)}
    router, config_file = procs.router(config)
    client = Client(router)
    for i in range(10):
        assert client.predict({"instances": [VIRGINICA], "seq": i})[0] == 200
    status, _, _ = client.call("POST", "/invocations", b"not json \xff at all")  # the model server says 400
    assert status == 400
    first = rows_when(11, capture_dir)
    assert len(first) == 11
    assert all(set(r) == ROW_KEYS - {"response"} for r in first)
    assert [r["request"].get("seq") for r in first[:10]] == list(range(10))
    assert first[10]["status"] == 400 and first[10]["request"] == {"text": "not json \ufffd at all"}
    # not captured: the router's own paths
    for path in ("/-/healthz", "/-/stats", "/-/config", "/metrics"):
        assert client.call("GET", path)[0] == 200

    processes.write_json_atomic(config_file, {**config, "capture": capture(capture_dir, 100, False, True)})
    processes.reload(router.pid)
    wait_for(lambda: get_json(router, "/-/healthz")["config_version"] == 2)
    assert get_json(router, "/-/config")["capture"] == capture(capture_dir, 100, False, True)
    for i in range(10):
        assert client.predict({"instances": [SETOSA], "seq": i})[0] == 200
    client.close()
    later = rows_when(21, capture_dir)[11:]
    assert len(later) == 10
    assert all(set(r) == ROW_KEYS - {"request"} for r in later)
    assert all(r["response"]["predictions"][0]["label"] == "setosa" for r in later)
    # a big non-JSON body keeps its first 64 KiB
    processes.write_json_atomic(config_file, {**config, "capture": capture(capture_dir, 100)})
    processes.reload(router.pid)
    wait_for(lambda: get_json(router, "/-/healthz")["config_version"] == 3)
    client = Client(router)
    assert client.call("POST", "/invocations", b"x" * 200_000)[0] == 400
    client.close()
    everything = rows_when(22, capture_dir)
    assert len(everything) == 22  # the internal GETs above made no rows
    assert everything[21]["request"] == {"text": "x" * 65536} and "error" in everything[21]["response"]


def test_rows_that_cannot_be_written_are_counted_as_dropped(procs: Procs, tmp_path: Path) -> None:
    production = procs.model(MODELS / "iris-v1.json", "prod")
    blocker = tmp_path / "not-a-directory"
    blocker.write_text("")
    router, _ = procs.router({"endpoint": "iris", "routes": [route("production", production, 100)],
                              "capture": capture(blocker / "capture", 100)})
    client = Client(router)
    for _ in range(5):
        assert client.predict({"instances": [SETOSA]})[0] == 200  # the caller never sees the disk's trouble
    client.close()
    dropped = ("mlplat_capture_dropped_total", (("endpoint", "iris"),))
    wait_for(lambda: scrape(router)[dropped] == 5, 3, "5 rows dropped")
    assert scrape(router)[("mlplat_captured_rows_total", (("endpoint", "iris"),))] == 0
    log = (tmp_path / "router.log").read_text()
    assert log.count("cannot write") == 1 and "not-a-directory" in log  # once a minute at most


# -- shadow comparison ------------------------------------------------------------------------------------------


def test_shadow_pairs_compare_the_mirrored_answers(procs: Procs, tmp_path: Path) -> None:
    v1 = MODELS / "iris-v1.json"
    twin = linear(tmp_path, "twin", "1-twin", [], "iris-v1.json")  # iris-v1's weights: agrees on everything
    always = linear(tmp_path, "always", "virginica", [0.0, 0.0, 5.0])  # says virginica whatever it is shown
    production = procs.model(v1, "prod")
    same, other = procs.model(twin, "same"), procs.model(always, "other")
    capture_dir = tmp_path / "capture"
    config = {"endpoint": "iris", "mode": "shadow", "mirror_percent": 100, "compare_shadow": True,
              "routes": [route("production", production, 100), route("same", same, 0), route("other", other, 0)],
              "capture": capture(capture_dir, 10)}
    router, config_file = procs.router(config)
    assert get_json(router, "/-/config")["compare_shadow"] is True
    flowers = [SETOSA, VERSICOLOR, VIRGINICA, [5.9, 3.0, 5.1, 1.8], [5.5, 2.4, 3.8, 1.1]]
    v1_model = model_format.load(v1)
    n, expected_agree = 120, 0  # 120 requests x 2 copies: below the mirror queue's 256, so none is dropped
    client = Client(router)
    for i in range(n):
        instances = [flowers[i % 5], flowers[(i + 2) % 5]]
        status, headers, _ = client.predict({"instances": instances})
        assert (status, headers["x-mlplat-path"]) == (200, "production")
        expected_agree += sum(p["label"] == "virginica" for p in v1_model.predict(instances))
    client.close()
    assert 0 < expected_agree < 2 * n  # the check below can tell agreeing from not

    pairs = rows_when(2 * n, capture_dir, SHADOW_PREFIX, timeout=10)
    assert len(pairs) == 2 * n
    by_shadow: dict[str, list[dict[str, Any]]] = {"same": [], "other": []}
    for pair in pairs:
        assert set(pair) == PAIR_KEYS
        assert (pair["endpoint"], pair["primary"], pair["primary_status"], pair["shadow_status"]) == (
            "iris", "production", 200, 200)
        assert pair["primary_ms"] > 0 and pair["shadow_ms"] > 0 and pair["instances"] == 2
        by_shadow[pair["shadow"]].append(pair)
    assert len(by_shadow["same"]) == len(by_shadow["other"]) == n
    assert sum(p["agreements"] for p in by_shadow["same"]) == 2 * n
    assert sum(p["agreements"] for p in by_shadow["other"]) == expected_agree
    # a captured request and its pairs share the id
    captured = rows(capture_dir)
    assert len(captured) == n // 10
    pair_ids = Counter(p["id"] for p in pairs)
    assert all(pair_ids[row["id"]] == 2 for row in captured)

    samples = scrape(router)
    for path, agreements in (("same", 2 * n), ("other", expected_agree)):
        labels = (("endpoint", "iris"), ("path", path))
        assert samples[("mlplat_shadow_pairs_total", labels)] == n
        assert samples[("mlplat_shadow_instances_total", labels)] == 2 * n
        assert samples[("mlplat_shadow_agreements_total", labels)] == agreements
        assert samples[("mlplat_shadow_latency_delta_seconds_count", labels)] == n
        assert abs(samples[("mlplat_shadow_latency_delta_seconds_sum", labels)]) < n  # seconds; loopback: small

    # without capture, pairs are still counted, but no row has a place to go
    processes.write_json_atomic(config_file, {k: v for k, v in config.items() if k != "capture"})
    processes.reload(router.pid)
    wait_for(lambda: get_json(router, "/-/healthz")["config_version"] == 2)
    assert "capture" not in get_json(router, "/-/config")
    client = Client(router)
    for _ in range(10):
        assert client.predict({"instances": [SETOSA]})[0] == 200
    client.close()
    labels = (("endpoint", "iris"), ("path", "same"))
    wait_for(lambda: scrape(router)[("mlplat_shadow_pairs_total", labels)] == n + 10, 5, "10 more pairs")
    assert len(rows_when(2 * n + 1, capture_dir, SHADOW_PREFIX, timeout=0.3)) == 2 * n


# -- health: failover, 503, recovery ----------------------------------------------------------------------------


class Load:
    """Client threads sending predictions until stopped; every failure is kept."""

    def __init__(self, router: processes.ProcessInfo, threads: int = 3) -> None:
        self.router, self.stop = router, threading.Event()
        self.ok: Counter[str] = Counter()
        self.failures: list[Any] = []
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        client = Client(self.router)
        while not self.stop.is_set():
            try:
                status, headers, payload = client.predict({"instances": [VERSICOLOR]})
            except Exception as exc:  # what the test counts
                self.failures.append(repr(exc))
                client.close()
                client = Client(self.router)
                continue
            if status == 200:
                self.ok[headers["x-mlplat-path"]] += 1
            else:
                self.failures.append((status, payload))
        client.close()

    def total(self) -> int:
        return sum(self.ok.values())

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


def test_a_killed_model_server_costs_no_request_and_comes_back(procs: Procs, tmp_path: Path) -> None:
    production = procs.model(MODELS / "iris-v1.json", "prod")
    experimental = procs.model(MODELS / "iris-v2.json", "exp")
    config = {"endpoint": "iris", "mode": "split",
              "routes": [route("production", production, 50), route("experimental", experimental, 50)]}
    router, config_file = procs.router(config)
    health = lambda: get_json(router, "/-/stats")["health"]  # noqa: E731
    wait_for(lambda: set(health()) == {"production", "experimental"})
    assert all(h["up"] and h["downs"] == 0 for h in health().values())

    load = Load(router)
    try:
        wait_for(lambda: load.ok["production"] > 100 and load.ok["experimental"] > 100, 20, "load on both paths")
        os.kill(production.pid, signal.SIGKILL)
        killed = time.monotonic()
        wait_for(lambda: not health()["production"]["up"], 2, "production marked down")
        marked_down_s = time.monotonic() - killed
        before = load.ok.copy()
        wait_for(lambda: load.ok["experimental"] > before["experimental"] + 300, 20, "300 more on experimental")
        assert load.ok["production"] == before["production"]  # nothing goes to a route marked down
    finally:
        load.finish()
    assert load.failures == []  # the requests in flight when it died were retried on experimental
    print(f"production marked down {marked_down_s * 1000:.0f} ms after its kill")
    assert marked_down_s < 1.0, marked_down_s  # ~0: the first failed request marks it
    stats = get_json(router, "/-/stats")
    assert stats["health"]["production"]["downs"] == 1 and stats["health"]["experimental"]["up"]
    assert stats["counts"].get("retried.production", 0) == stats["counts"].get("errors.production", 0)

    # every primary down: 503 with a clear body, Retry-After
    os.kill(experimental.pid, signal.SIGKILL)
    killed = time.monotonic()
    wait_for(lambda: not health()["experimental"]["up"], 2, "experimental marked down by its health check")
    print(f"experimental marked down {(time.monotonic() - killed) * 1000:.0f} ms after its kill (no load)")
    assert time.monotonic() - killed < 1.0  # checked every 0.25 s
    client = Client(router)
    status, headers, payload = client.predict({"instances": [SETOSA]})
    assert status == 503 and headers["retry-after"] == "1"
    assert payload["error"] == ("no live path for endpoint 'iris': production and experimental are down (their "
                                "model servers are restarting or stopped)")
    assert {path: h["up"] for path, h in payload["paths"].items()} == {"production": False, "experimental": False}
    processes.write_json_atomic(config_file, {**config, "routes": [route("production", production, 100),
                                                                  route("experimental", experimental, 0)]})
    processes.reload(router.pid)
    wait_for(lambda: get_json(router, "/-/healthz")["config_version"] == 2)
    status, _, payload = client.predict({"instances": [SETOSA]})
    assert status == 503 and payload["error"] == ("no live path for endpoint 'iris': production is down (its "
                                                  "model server is restarting or stopped)")
    assert list(payload["paths"]) == ["production"]

    # a model server started again on the same port: up within a check or two, serving at once
    procs.model(MODELS / "iris-v1.json", "prod-again", port=production.port)
    started = time.monotonic()
    wait_for(lambda: health()["production"]["up"], 2, "production up again")
    print(f"production up {(time.monotonic() - started) * 1000:.0f} ms after its new server answered")
    assert time.monotonic() - started < 1.0
    status, headers, payload = client.predict({"instances": [SETOSA]})
    assert (status, headers["x-mlplat-path"], payload["predictions"][0]["label"]) == (200, "production", "setosa")
    client.close()
    samples = scrape(router)
    assert samples[("mlplat_upstream_up", (("endpoint", "iris"), ("path", "production")))] == 1
    assert samples[("mlplat_upstream_up", (("endpoint", "iris"), ("path", "experimental")))] == 0
    assert samples[("mlplat_requests_total", (("code", "503"), ("endpoint", "iris"), ("path", "-")))] == 2
    assert samples[("mlplat_request_errors_total", (("endpoint", "iris"), ("path", "-")))] == 2
    assert samples[("mlplat_request_errors_total", (("endpoint", "iris"), ("path", "production")))] == stats[
        "counts"]["errors.production"]  # the attempts that failed when it died, each retried
    log = (tmp_path / "router.log").read_text()
    assert log.count("route 'production' (") == 2 and "route 'production' (http" in log  # down, then up
    assert f"route 'production' ({production.url}) is up" in log
    assert f"route 'experimental' ({experimental.url}) is down: health check failed" in log


def test_routes_that_are_not_internal_are_not_health_checked(procs: Procs) -> None:
    production = procs.model(MODELS / "iris-v1.json", "prod")
    dead = f"http://127.0.0.1:{_free_port()}"
    router, _ = procs.router({"endpoint": "iris", "routes": [
        {"path": "production", "url": production.url, "weight": 50},
        {"path": "gone", "url": dead, "weight": 50}]})
    client, codes = Client(router), Counter()
    for _ in range(60):
        status, headers, _ = client.call("POST", "/invocations", {"instances": [SETOSA]})
        codes[(status, headers["x-mlplat-path"])] += 1
    client.close()
    # as before monitoring: a front door's upstream is never marked down nor retried, its failures are 502s
    assert set(codes) == {(200, "production"), (502, "gone")}
    stats = get_json(router, "/-/stats")
    assert stats["health"] == {} and stats["routes"]["gone"]["errors"] == codes[(502, "gone")]
    assert "retried.gone" not in stats["counts"]


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- /metrics ---------------------------------------------------------------------------------------------------


def test_metrics_count_what_was_sent_and_show_drift_scores(procs: Procs, tmp_path: Path) -> None:
    key = "k" * 40
    production = procs.model(MODELS / "iris-v1.json", "prod")
    experimental = procs.model(MODELS / "iris-v2.json", "exp")
    capture_dir = tmp_path / "capture"
    router, _ = procs.router({"endpoint": "iris", "mode": "split",
                              "key_sha256": hashlib.sha256(key.encode()).hexdigest(),
                              "routes": [route("production", production, 70), route("experimental", experimental, 30)],
                              "capture": capture(capture_dir, 100)})
    client, sent = Client(router, key), Counter()
    for i in range(300):
        body = {"instances": [[1.0, 2.0]]} if i % 15 == 0 else {"instances": [VIRGINICA]}  # 20 are 400s
        status, headers, _ = client.predict(body)
        sent[(headers["x-mlplat-path"], str(status))] += 1
    client.close()
    assert sent[("production", "400")] + sent[("experimental", "400")] == 20

    anonymous = Client(router)
    assert anonymous.call("GET", "/metrics")[0] == 401  # the endpoint's key, as for every path but healthz
    anonymous.close()
    wait_for(lambda: scrape(router, key)[("mlplat_captured_rows_total", (("endpoint", "iris"),))] == 300, 3,
             "300 rows written")
    samples = scrape(router, key)

    def value(name: str, **labels: str) -> float:
        return samples[(name, tuple(sorted({"endpoint": "iris", **labels}.items())))]

    requests = {(dict(labels)["path"], dict(labels)["code"]): v for (name, labels), v in samples.items()
                if name == "mlplat_requests_total"}
    assert requests == sent
    for path in ("production", "experimental"):
        routed = sent[(path, "200")] + sent[(path, "400")]
        assert value("mlplat_request_errors_total", path=path) == 0  # a 400 is the client's error
        assert value("mlplat_request_duration_seconds_count", path=path) == routed
        assert value("mlplat_request_duration_seconds_bucket", path=path, le="+Inf") == routed
        assert 0 < value("mlplat_request_duration_seconds_sum", path=path) < routed
        assert value("mlplat_upstream_up", path=path) == 1
    assert value("mlplat_capture_dropped_total") == 0
    assert samples[("process_cpu_seconds_total", ())] > 0
    assert samples[("process_resident_memory_bytes", ())] > 1_000_000
    assert samples[("mlplat_gpu_available", ())] in (0, 1)  # 0 on a machine without NVML: never a failed scrape
    if samples[("mlplat_gpu_available", ())] == 1:  # NVML: the DCGM exporter's names and labels, per GPU
        gpus = [dict(labels) for name, labels in samples if name == "DCGM_FI_DEV_FB_FREE"]
        assert gpus and all({"gpu", "UUID", "modelName", "Hostname"} == set(g) for g in gpus), gpus
        for name in ("DCGM_FI_DEV_GPU_UTIL", "DCGM_FI_DEV_FB_USED"):
            assert sum(n == name for n, _ in samples) == len(gpus)
    assert not any(name == "mlplat_drift_score" for name, _ in samples)

    scores = {"ts": time.time(), "scores": [{"feature": "petal_length", "metric": "psi", "value": 0.42},
                                            {"feature": 'odd "name"', "metric": "ks", "value": 0.1}]}
    processes.write_json_atomic(capture_dir / SCORES_FILE, scores)
    samples = scrape(router, key)
    assert value("mlplat_drift_score", feature="petal_length", metric="psi") == 0.42
    assert value("mlplat_drift_score", feature='odd "name"', metric="ks") == 0.1
    for malformed in ("{not json", json.dumps({"scores": [{"feature": "x", "metric": "psi", "value": "high"}]}),
                      json.dumps([1, 2])):
        (capture_dir / SCORES_FILE).write_text(malformed)
        samples = scrape(router, key)
        assert not any(name == "mlplat_drift_score" for name, _ in samples)
        assert value("mlplat_captured_rows_total") == 300  # the rest of the scrape is there
