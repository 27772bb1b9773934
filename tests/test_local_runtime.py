"""The local target's runtime: real model-server and router processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import http.client
import importlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "stacks" / "models"
MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
ROUTER = "mlplat_plugins.local.runtime.router"
# One typical flower per class, in feature order (sepal length/width, petal length/width).
SETOSA, VERSICOLOR, VIRGINICA = [5.0, 3.4, 1.5, 0.2], [6.1, 2.8, 4.3, 1.3], [6.7, 3.1, 5.6, 2.4]


@pytest.fixture(scope="module")
def runtime() -> SimpleNamespace:
    """The runtime modules (installed as `mlplat_plugins`, so child processes import them too)."""
    return SimpleNamespace(
        processes=importlib.import_module("mlplat_plugins.local.runtime.processes"),
        model=importlib.import_module("mlplat_plugins.local.runtime.model"),
        router=importlib.import_module("mlplat_plugins.local.runtime.router"),
        env={},
    )


class Launcher:
    """Starts runtime processes for one test and stops every one of them afterwards."""

    def __init__(self, rt: SimpleNamespace, workdir: Path) -> None:
        self.rt, self.workdir, self.pids = rt, workdir, []

    def _spawn(self, module: str, name: str, args: list[str]) -> Any:
        runtime_file = self.workdir / f"{name}.runtime.json"
        info = self.rt.processes.spawn(
            module,
            [*args, "--runtime-file", str(runtime_file), "--quiet"],
            runtime_file=runtime_file,
            log_file=self.workdir / f"{name}.log",
            env=self.rt.env,
        )
        self.pids.append(info.pid)
        return info

    def model(self, artifact: str, name: str) -> Any:
        return self._spawn(MODEL_SERVER, name, ["--artifact", str(MODELS / artifact)])

    def router(self, config: dict[str, Any], name: str = "router") -> tuple[Any, Path]:
        config_file = self.workdir / f"{name}.config.json"
        self.rt.processes.write_json_atomic(config_file, config)
        return self._spawn(ROUTER, name, ["--config", str(config_file)]), config_file

    def stop_all(self) -> None:
        for pid in reversed(self.pids):
            self.rt.processes.stop(pid)


@pytest.fixture
def launch(runtime: SimpleNamespace, tmp_path: Path) -> Iterator[Launcher]:
    launcher = Launcher(runtime, tmp_path)
    try:
        yield launcher
    finally:
        launcher.stop_all()


class Client:
    """One keep-alive HTTP connection."""

    def __init__(self, info: Any) -> None:
        self.conn = http.client.HTTPConnection(info.host, info.port, timeout=10)

    def call(self, method: str, path: str, body: Any = None) -> tuple[int, dict[str, str], Any]:
        raw = body if isinstance(body, (str, bytes)) or body is None else json.dumps(body)
        self.conn.request(method, path, body=raw, headers={"Content-Type": "application/json"})
        resp = self.conn.getresponse()
        data = resp.read()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, json.loads(data) if data else None

    def predict(self, instances: list[Any], path: str = "/invocations") -> tuple[int, dict[str, str], Any]:
        return self.call("POST", path, {"instances": instances})

    def close(self) -> None:
        self.conn.close()


def get_json(info: Any, path: str) -> Any:
    client = Client(info)
    try:
        status, _, payload = client.call("GET", path)
        assert status == 200, payload
        return payload
    finally:
        client.close()


def free_port() -> int:
    """A port nothing listens on (for unreachable upstreams)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def split_config(production: Any, experimental: Any, weights: tuple[float, float], **extra: Any) -> dict:
    return {
        "endpoint": "iris",
        "mode": "split",
        "routes": [
            {"path": "production", "url": production.url, "weight": weights[0]},
            {"path": "experimental", "url": experimental.url, "weight": weights[1]},
        ],
        **extra,
    }


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


# --- model format ---------------------------------------------------------------------------------------


def test_models_predict_sensibly(runtime: SimpleNamespace) -> None:
    v1 = runtime.model.load(MODELS / "iris-v1.json")
    v2 = runtime.model.load(MODELS / "iris-v2.json")
    assert (v1.model_id, v2.model_id) == ("iris:1", "iris:2")
    assert [p["label"] for p in v2.predict([SETOSA, VERSICOLOR, VIRGINICA])] == [
        "setosa",
        "versicolor",
        "virginica",
    ]
    assert v1.predict([SETOSA])[0]["label"] == "setosa"
    for prediction in v1.predict([SETOSA, VIRGINICA]) + v2.predict([VERSICOLOR]):
        probs = prediction["probabilities"]
        assert set(probs) == {"setosa", "versicolor", "virginica"}
        assert sum(probs.values()) == pytest.approx(1.0, abs=1e-5)
        assert prediction["label"] == max(probs, key=probs.get)
    # v2 (all features, trained longer) is more confident on a clear virginica than v1 (sepal only)
    assert v2.predict([VIRGINICA])[0]["probabilities"]["virginica"] > v1.predict([VIRGINICA])[0][
        "probabilities"
    ].get("virginica", 0)
    named = dict(zip(v2.features, VIRGINICA, strict=True))
    assert v2.predict([named]) == v2.predict([VIRGINICA])
    for path in MODELS.glob("iris-v*.json"):
        assert path.stat().st_size < 2048


def test_model_validation_errors(runtime: SimpleNamespace, tmp_path: Path) -> None:
    model = runtime.model
    good = json.loads((MODELS / "iris-v2.json").read_text())
    cases = {
        "unsupported format": {**good, "format": "onnx"},
        "3 rows": {**good, "weights": good["weights"][:2]},
        "'bias' must have 3 entries": {**good, "bias": [0.0]},
        "finite numbers": {**good, "bias": [0.0, "x", 1.0]},
        "'classes' has duplicate": {**good, "classes": ["a", "a", "b"]},
    }
    for message, doc in cases.items():
        path = tmp_path / "bad.json"
        path.write_text(json.dumps(doc))
        with pytest.raises(ValueError, match=message):
            model.load(path)
    path.write_text('{"format": NaN}')
    with pytest.raises(ValueError, match="invalid model artifact"):
        model.load(path)
    loaded = model.load(MODELS / "iris-v2.json")
    with pytest.raises(ValueError, match="expected 4 values"):
        loaded.predict([[1.0, 2.0]])
    with pytest.raises(ValueError, match="finite numbers"):
        loaded.predict([[1.0, 2.0, "3", 4.0]])
    with pytest.raises(ValueError, match="missing feature"):
        loaded.predict([{"sepal_length": 1.0}])


# --- model server ---------------------------------------------------------------------------------------


def test_model_server_predicts_and_reports_health(launch: Launcher) -> None:
    info = launch.model("iris-v2.json", "v2")
    assert info.meta["kind"] == "model_server" and info.meta["model_id"] == "iris:2"
    assert get_json(info, "/-/healthz") == {"status": "ok", "model_id": "iris:2", "pid": info.pid}
    client = Client(info)
    for path in ("/invocations", "/v1/predict"):
        status, headers, payload = client.predict([SETOSA, VERSICOLOR, VIRGINICA], path)
        assert status == 200
        assert headers["x-mlplat-model"] == "iris:2"
        assert headers["content-type"] == "application/json"
        assert payload["model_id"] == "iris:2"
        assert [p["label"] for p in payload["predictions"]] == ["setosa", "versicolor", "virginica"]
    client.close()
    stats = get_json(info, "/-/stats")
    assert (stats["requests"], stats["instances"], stats["errors"]) == (2, 6, 0)


def test_model_server_rejects_bad_input(launch: Launcher) -> None:
    info = launch.model("iris-v1.json", "v1")
    client = Client(info)  # one connection: client errors must not break keep-alive
    for body, message in [
        ("{not json", "invalid JSON"),
        ({"rows": []}, "instances"),
        ([1, 2], "instances"),
        ({"instances": [[1.0, 2.0]]}, "expected 4 values"),
        ({"instances": [["a", 1, 2, 3]]}, "finite numbers"),
        ({"instances": "nope"}, "must be a list"),
        ('{"instances": [[NaN, 1, 2, 3]]}', "invalid JSON"),
    ]:
        status, headers, payload = client.call("POST", "/invocations", body)
        assert status == 400, (body, payload)
        assert message in payload["error"]
        assert headers["x-mlplat-model"] == "iris:1"
    assert client.call("GET", "/invocations")[0] == 405
    assert client.call("GET", "/nope")[0] == 404
    assert client.call("POST", "/nope", {"instances": [SETOSA]})[0] == 404  # unread body: no desync
    status, _, payload = client.predict([SETOSA])
    assert status == 200 and payload["predictions"][0]["label"] == "setosa"
    client.close()
    assert get_json(info, "/-/stats")["errors"] == 7


def test_spawn_failure_reports_log_tail(runtime: SimpleNamespace, tmp_path: Path) -> None:
    bad = tmp_path / "broken.json"
    bad.write_text('{"format": "mlplat-linear/v1"}')
    runtime_file = tmp_path / "broken.runtime.json"
    with pytest.raises(RuntimeError, match="invalid model artifact") as excinfo:
        runtime.processes.spawn(
            MODEL_SERVER,
            ["--artifact", str(bad), "--runtime-file", str(runtime_file)],
            runtime_file=runtime_file,
            log_file=tmp_path / "broken.log",
            env=runtime.env,
        )
    assert "exited with code 2" in str(excinfo.value)
    assert not runtime_file.exists()


# --- process lifecycle ----------------------------------------------------------------------------------


def test_processes_outlive_their_parent_and_stop(runtime: SimpleNamespace, tmp_path: Path) -> None:
    """A short-lived parent (like the CLI) spawns a server and exits; we find it again and stop it."""
    processes = runtime.processes
    runtime_file = tmp_path / "detached.runtime.json"
    script = (
        "import sys; from mlplat_plugins.local.runtime import processes as p; "
        f"p.spawn({MODEL_SERVER!r}, ['--artifact', sys.argv[1], '--runtime-file', sys.argv[2]], "
        "runtime_file=sys.argv[2], log_file=sys.argv[3])"
    )
    argv = [str(MODELS / "iris-v1.json"), str(runtime_file), str(tmp_path / "detached.log")]
    subprocess.run([sys.executable, "-c", script, *argv], env={**os.environ, **runtime.env}, check=True)
    info = processes.find_running(runtime_file)
    assert info is not None, (tmp_path / "detached.log").read_text()
    try:
        assert os.getsid(info.pid) == info.pid  # own session: a terminal's Ctrl-C / hangup won't reach it
        assert processes.health(info.host, info.port)["model_id"] == "iris:1"
    finally:
        processes.stop(info.pid)
    assert not processes.is_alive(info.pid)
    assert not runtime_file.exists()  # removed by the server's clean shutdown
    assert processes.health(info.host, info.port, timeout=0.5) is None
    assert processes.find_running(runtime_file) is None
    processes.stop(info.pid)  # already gone: no error


def test_stale_runtime_file_is_not_running(runtime: SimpleNamespace, tmp_path: Path) -> None:
    processes = runtime.processes
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / "stale.json"
    processes.write_json_atomic(
        stale, {"pid": dead.pid, "port": free_port(), "host": "127.0.0.1", "started": 1}
    )
    assert processes.read_runtime(stale).pid == dead.pid
    assert processes.find_running(stale) is None
    stale.write_text("{garbage")
    assert processes.read_runtime(stale) is None
    with pytest.raises(ValueError):
        processes.stop(0)


# --- router ---------------------------------------------------------------------------------------------


def test_router_config_validation(runtime: SimpleNamespace, tmp_path: Path) -> None:
    parse = runtime.router.parse_config
    prod = {"path": "production", "url": "http://127.0.0.1:8001", "weight": 100}
    exp = {"path": "experimental", "url": "http://127.0.0.1:8002/", "weight": 0}
    config = parse({"endpoint": "iris", "mode": "shadow", "routes": [prod, exp]})
    assert config["mirror_percent"] == 100 and config["routes"][1]["url"] == "http://127.0.0.1:8002"
    for message, doc in {
        "'endpoint'": {"mode": "split", "routes": [prod]},
        "'mode'": {"endpoint": "iris", "mode": "canary", "routes": [prod]},
        "non-empty list": {"endpoint": "iris", "routes": []},
        "http://host:port": {"endpoint": "iris", "routes": [{**prod, "url": "ftp://x"}]},
        "weight > 0": {"endpoint": "iris", "routes": [exp]},
        "unique": {"endpoint": "iris", "routes": [prod, {**exp, "path": "production"}]},
        "weight 0 to mirror": {"endpoint": "iris", "mode": "shadow", "routes": [prod]},
        "'mirror_percent'": {"endpoint": "iris", "routes": [prod], "mirror_percent": 150},
        "weight must be": {"endpoint": "iris", "routes": [{**prod, "weight": -1}]},
    }.items():
        with pytest.raises(ValueError, match=message):
            parse(doc)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"endpoint": "iris", "routes": []}))
    with pytest.raises(RuntimeError, match="invalid router config"):
        runtime.processes.spawn(
            ROUTER,
            ["--config", str(bad), "--runtime-file", str(tmp_path / "r.json")],
            runtime_file=tmp_path / "r.json",
            log_file=tmp_path / "r.log",
            env=runtime.env,
        )


def test_router_splits_traffic_by_weight(launch: Launcher) -> None:
    production, experimental = launch.model("iris-v1.json", "prod"), launch.model("iris-v2.json", "exp")
    router, _ = launch.router(split_config(production, experimental, (80, 20)))
    assert get_json(router, "/-/healthz")["config_version"] == 1
    client, paths, n = Client(router), Counter(), 1000
    for _ in range(n):
        status, headers, payload = client.predict([VIRGINICA])
        assert status == 200
        path = headers["x-mlplat-path"]
        paths[path] += 1
        assert headers["x-mlplat-model"] == {"production": "iris:1", "experimental": "iris:2"}[path]
        assert payload["model_id"] == headers["x-mlplat-model"]
    client.close()
    assert set(paths) == {"production", "experimental"}
    assert abs(paths["production"] / n - 0.80) <= 0.05
    # the servers saw exactly the requests the router says it sent them
    assert get_json(production, "/-/stats")["requests"] == paths["production"]
    assert get_json(experimental, "/-/stats")["requests"] == paths["experimental"]
    counts = get_json(router, "/-/stats")["counts"]
    assert counts["requests.production"] == paths["production"]


def test_router_shadow_mirrors_to_experimental(launch: Launcher) -> None:
    production, experimental = launch.model("iris-v1.json", "prod"), launch.model("iris-v2.json", "exp")
    config = split_config(production, experimental, (100, 0), mirror_percent=100)
    router, _ = launch.router({**config, "mode": "shadow"})
    client, n = Client(router), 300
    for _ in range(n):
        status, headers, payload = client.predict([SETOSA])
        assert status == 200
        assert headers["x-mlplat-path"] == "production"
        assert payload["model_id"] == "iris:1"
    client.close()

    def mirrored() -> int:
        return get_json(router, "/-/stats")["counts"].get("mirror_sent.experimental", 0)

    def accounted() -> int:  # the copy is queued after the caller has its answer, so the last may lag
        counts = get_json(router, "/-/stats")["counts"]
        return counts.get("mirror_queued.experimental", 0) + counts.get("mirror_dropped.experimental", 0)

    wait_for(lambda: accounted() == n)
    queued = get_json(router, "/-/stats")["counts"].get("mirror_queued.experimental", 0)
    assert queued >= 0.9 * n
    wait_for(lambda: mirrored() == queued)
    assert get_json(experimental, "/-/stats")["requests"] == queued
    assert get_json(production, "/-/stats")["requests"] == n


def test_router_shadow_ignores_mirror_failures(launch: Launcher) -> None:
    production = launch.model("iris-v1.json", "prod")
    dead = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")
    router, _ = launch.router({**split_config(production, dead, (100, 0)), "mode": "shadow"})
    client = Client(router)
    for _ in range(50):
        status, headers, _ = client.predict([SETOSA])
        assert (status, headers["x-mlplat-path"]) == (200, "production")
    client.close()
    wait_for(lambda: get_json(router, "/-/stats")["counts"].get("mirror_errors.experimental", 0) > 0)


def test_router_reports_unreachable_upstream(launch: Launcher) -> None:
    production = launch.model("iris-v1.json", "prod")
    dead = SimpleNamespace(url=f"http://127.0.0.1:{free_port()}")
    router, _ = launch.router(split_config(dead, production, (100, 0)))
    client = Client(router)
    status, headers, payload = client.predict([SETOSA])
    assert status == 502
    assert headers["x-mlplat-path"] == "production"
    assert payload["path"] == "production" and "production" in payload["error"]
    assert client.call("GET", "/-/nope")[0] == 404
    client.close()


def test_router_reload_changes_split_without_downtime(runtime: SimpleNamespace, launch: Launcher) -> None:
    processes = runtime.processes
    production, experimental = launch.model("iris-v1.json", "prod"), launch.model("iris-v2.json", "exp")
    router, config_file = launch.router(split_config(production, experimental, (80, 20)))

    stop, failures, sent = threading.Event(), [], Counter()

    def background() -> None:
        client = Client(router)
        while not stop.is_set():
            try:
                status, _, payload = client.predict([VERSICOLOR])
                if status != 200:
                    failures.append((status, payload))
                sent["ok"] += 1
            except Exception as exc:  # any failure is what the test looks for
                failures.append(repr(exc))
                client.close()
                client = Client(router)
        client.close()

    thread = threading.Thread(target=background, daemon=True)
    thread.start()
    try:
        wait_for(lambda: sent["ok"] > 50)
        processes.write_json_atomic(config_file, split_config(production, experimental, (50, 50)))
        processes.reload(router.pid)
        wait_for(lambda: get_json(router, "/-/healthz")["config_version"] == 2)
        assert [r["weight"] for r in get_json(router, "/-/config")["routes"]] == [50, 50]

        client, paths, n = Client(router), Counter(), 2000
        for _ in range(n):
            status, headers, _ = client.predict([VERSICOLOR])
            assert status == 200
            paths[headers["x-mlplat-path"]] += 1
        client.close()
        assert abs(paths["production"] / n - 0.50) <= 0.05

        # a broken config is rejected and the running one kept
        config_file.write_text('{"endpoint": "iris", "mode": "split", "routes": []}')
        processes.reload(router.pid)
        wait_for(lambda: "last_reload_error" in get_json(router, "/-/healthz"))
        health = get_json(router, "/-/healthz")
        assert health["config_version"] == 2 and "routes" in health["last_reload_error"]
        before = sent["ok"]
        wait_for(lambda: sent["ok"] > before + 50)
    finally:
        stop.set()
        thread.join(10)
    assert failures == []
    assert processes.is_alive(router.pid)


def test_stop_ends_every_process(runtime: SimpleNamespace, launch: Launcher, tmp_path: Path) -> None:
    processes = runtime.processes
    production, experimental = launch.model("iris-v1.json", "prod"), launch.model("iris-v2.json", "exp")
    router, _ = launch.router(split_config(production, experimental, (50, 50)))
    for info in (router, production, experimental):
        assert processes.is_alive(info.pid)
        processes.stop(info.pid)
        assert not processes.is_alive(info.pid)
        assert processes.health(info.host, info.port, timeout=0.5) is None
    assert not list(tmp_path.glob("*.runtime.json"))
