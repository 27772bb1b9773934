"""The local front door: the router as a gateway to any http(s) upstream (weights shifted live, per-route stats,
SigV4 signing, upstream API keys, the internal token for internal routes only), the `local.front_door` provider,
the local artifact store and the sweep of artifact copies. Real processes and real HTTP, on 127.0.0.1 only."""

from __future__ import annotations

import hashlib
import http.client
import json
import shutil
import stat
import subprocess
import threading
import time
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlplat_plugins.local.runtime import processes
from mlplat_plugins.local.runtime.router import ConfigError, load_config, parse_config
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.secrets import Secret

from local_processes import kill_all

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "stacks" / "models"
MODEL_SERVER = "mlplat_plugins.local.runtime.model_server"
ROUTER = "mlplat_plugins.local.runtime.router"
IRIS = json.dumps({"instances": [[6.1, 2.8, 4.3, 1.3]]})
UPSTREAM_KEY = "upstream-key-0123456789abcdef"
BUCKETS = ["5", "10", "25", "50", "100", "250", "500", "1000", "2500", "5000", "10000", "inf"]


# -- helpers ----------------------------------------------------------------------------------------------------


class Upstream:
    """A stdlib HTTP server on 127.0.0.1 that records every request and answers `status` with JSON."""

    def __init__(self, name: str, status: int = 200) -> None:
        self.name, self.status, self.seen = name, status, []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no delayed-ACK stall between them

            def _any(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                owner.seen.append({"method": self.command, "path": self.path, "headers": self.headers.items(),
                                   "body": body})
                data = json.dumps({"served_by": owner.name}).encode()
                self.send_response(owner.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.send_header("X-Mlplat-Path", "inner")  # what a router behind the front door would say
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _any

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def header(self, request: dict[str, Any], name: str) -> str | None:
        return next((v for k, v in request["headers"] if k.lower() == name.lower()), None)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class Processes:
    """Runtime processes one test starts; every one is stopped at the end."""

    def __init__(self, workdir: Path) -> None:
        self.workdir, self.pids = workdir, []

    def spawn(self, module: str, name: str, args: list[str], env: dict[str, str] | None = None) -> Any:
        runtime_file = self.workdir / f"{name}.runtime.json"
        info = processes.spawn(module, [*args, "--runtime-file", str(runtime_file), "--quiet"],
                               runtime_file=runtime_file, log_file=self.workdir / f"{name}.log", env=env)
        self.pids.append(info.pid)
        return info

    def model(self, artifact: str, name: str) -> Any:
        return self.spawn(MODEL_SERVER, name, ["--artifact", str(MODELS / artifact)])

    def router(self, config: dict[str, Any], name: str = "door", extra: tuple[str, ...] = (),
               env: dict[str, str] | None = None) -> tuple[Any, Path]:
        config_file = self.workdir / f"{name}.config.json"
        processes.write_json_atomic(config_file, config)
        return self.spawn(ROUTER, name, ["--config", str(config_file), *extra], env), config_file

    def stop_all(self) -> None:
        for pid in reversed(self.pids):
            processes.stop(pid)


@pytest.fixture
def procs(tmp_path: Path) -> Iterator[Processes]:
    launched = Processes(tmp_path)
    try:
        yield launched
    finally:
        launched.stop_all()
        kill_all(tmp_path)  # and whatever a provider under test started there


@pytest.fixture
def upstreams() -> Iterator[list[Upstream]]:
    made: list[Upstream] = []
    try:
        yield made
    finally:
        for upstream in made:
            upstream.close()


def call(info: Any, method: str = "POST", path: str = "/invocations", body: str = IRIS,
         headers: dict[str, str] | None = None) -> tuple[int, list[tuple[str, str]], Any]:
    conn = http.client.HTTPConnection(info.host, info.port, timeout=10)
    try:
        conn.request(method, path, body=body if method != "GET" else None,
                     headers={"Content-Type": "application/json", **(headers or {})})
        resp = conn.getresponse()
        data = resp.read()
        return resp.status, resp.getheaders(), json.loads(data) if data else None
    finally:
        conn.close()


def get_json(info: Any, path: str) -> Any:
    status, _, payload = call(info, "GET", path)
    assert status == 200, payload
    return payload


def header(headers: list[tuple[str, str]], name: str) -> list[str]:
    return [v for k, v in headers if k.lower() == name.lower()]


def wait_for(predicate: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not reached in time"
        time.sleep(0.02)


def reconfigure(info: Any, config_file: Path, config: dict[str, Any]) -> None:
    version = get_json(info, "/-/healthz")["config_version"]
    processes.write_json_atomic(config_file, config)
    processes.reload(info.pid)
    wait_for(lambda: get_json(info, "/-/healthz")["config_version"] == version + 1)


def door(*routes: dict[str, Any]) -> dict[str, Any]:
    return {"endpoint": "iris", "mode": "split", "routes": list(routes)}


def key_file(directory: Path, key: str = UPSTREAM_KEY, mode: int = 0o600) -> Path:
    path = directory / f"key-{mode:o}"
    path.write_text(key + "\n")
    path.chmod(mode)
    return path


class Load:
    """Client threads sending requests until stopped (each at most `limit`), keeping every failure."""

    def __init__(self, info: Any, threads: int = 3, limit: int = 4000) -> None:
        self.info, self.limit = info, limit
        self.stop, self.failures, self.served = threading.Event(), [], Counter()
        self.lock = threading.Lock()
        self.threads = [threading.Thread(target=self._run, daemon=True) for _ in range(threads)]
        for thread in self.threads:
            thread.start()

    def _run(self) -> None:
        conn = http.client.HTTPConnection(self.info.host, self.info.port, timeout=10)
        for _ in range(self.limit):
            if self.stop.is_set():
                break
            try:
                conn.request("POST", "/invocations", body=IRIS, headers={"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                with self.lock:
                    if resp.status != 200:
                        self.failures.append(resp.status)
                    self.served[resp.getheader("X-Mlplat-Path")] += 1
            except Exception as exc:  # any failure is what the test looks for
                with self.lock:
                    self.failures.append(repr(exc))
                conn.close()
                conn = http.client.HTTPConnection(self.info.host, self.info.port, timeout=10)
        conn.close()

    def total(self) -> int:
        with self.lock:
            return sum(self.served.values()) + len(self.failures)

    def progress(self, more: int) -> None:
        before = self.total()
        wait_for(lambda: self.total() >= before + more)

    def finish(self) -> None:
        self.stop.set()
        for thread in self.threads:
            thread.join(15)


# -- the router as a gateway ------------------------------------------------------------------------------------


def test_new_config_keys_are_checked_with_clear_errors(tmp_path: Path) -> None:
    good = {"path": "aws", "url": "https://runtime.sagemaker.us-east-1.amazonaws.com/endpoints/iris/", "weight": 100,
            "sign": {"kind": "sigv4", "service": "sagemaker", "region": "us-east-1"}}
    config = parse_config(door(good))
    assert config["routes"] == [{"path": "aws", "url": good["url"].rstrip("/"), "weight": 100,
                                 "sign": {**good["sign"], "profile": None}}]
    plain = parse_config(door({"path": "a", "url": "http://127.0.0.1:1", "weight": 1}))
    assert plain["routes"] == [{"path": "a", "url": "http://127.0.0.1:1", "weight": 1}]  # no new keys when unset
    for message, route in {
        "http://host:port or https://host": {**good, "url": "ftp://x"},
        "no query, fragment or user": {**good, "url": "https://h/p?x=1"},
        "unknown keys token": {**good, "token": "x"},
        "sign.kind must be 'sigv4'": {**good, "sign": {**good["sign"], "kind": "sigv2"}},
        "sign has unknown keys secret": {**good, "sign": {**good["sign"], "secret": "x"}},
        "sign.service must be a non-empty string": {**good, "sign": {**good["sign"], "service": ""}},
        "sign.region must look like us-east-1": {**good, "sign": {**good["sign"], "region": "US East"}},
        "sign must be an object": {**good, "sign": "sigv4"},
        "internal must be true or false": {**good, "internal": "yes"},
        "loopback upstreams only": {**good, "internal": True},
        "api_key_file must be an absolute path": {**good, "api_key_file": "key.txt"},
    }.items():
        with pytest.raises(ConfigError, match=message):
            parse_config(door(route))
    for mode, message in {0o644: "only its owner can read", 0o600: None}.items():
        path = tmp_path / f"config-{mode:o}.json"
        path.write_text(json.dumps(door({**good, "api_key_file": str(key_file(tmp_path, mode=mode))})))
        if message is None:
            assert load_config(path)["routes"][0]["api_key_file"] == str(tmp_path / "key-600")
        else:
            with pytest.raises(ConfigError, match=message):
                load_config(path)
    path.write_text(json.dumps(door({**good, "api_key_file": str(tmp_path / "missing")})))
    with pytest.raises(ConfigError, match="cannot read the api_key_file"):
        load_config(path)


def test_weights_shift_and_upstreams_come_and_go_live_without_a_failed_request(procs: Processes) -> None:
    a, b = procs.model("iris-v1.json", "a"), procs.model("iris-v2.json", "b")
    route_a, route_b = {"path": "a", "url": a.url, "weight": 100}, {"path": "b", "url": b.url + "/", "weight": 0}
    info, config_file = procs.router(door(route_a))
    load = Load(info)
    try:
        load.progress(60)
        for routes in ([{**route_a, "weight": 50}, {**route_b, "weight": 50}],  # b added
                       [{**route_a, "weight": 0}, {**route_b, "weight": 100}],  # all on b
                       [{**route_b, "weight": 100}]):  # a removed
            reconfigure(info, config_file, door(*routes))
            load.progress(60)
    finally:
        load.finish()
    assert load.failures == []
    assert set(load.served) == {"a", "b"}
    for _ in range(30):  # after the shift every request is b's
        status, headers, payload = call(info)
        assert (status, header(headers, "X-Mlplat-Path"), payload["model_id"]) == (200, ["b"], "iris:2")
    routes = get_json(info, "/-/stats")["routes"]
    assert set(routes) == {"a", "b"}  # a's numbers outlive its route
    assert routes["a"]["requests"] == load.served["a"]
    assert routes["b"]["requests"] == load.served["b"] + 30
    assert get_json(a, "/-/stats")["requests"] == load.served["a"]
    for numbers in routes.values():
        assert numbers["errors"] == 0
        assert list(numbers["latency_ms_buckets"]) == BUCKETS
        assert sum(numbers["latency_ms_buckets"].values()) == numbers["requests"]


def test_route_stats_count_requests_errors_and_latency(procs: Processes, upstreams: list[Upstream]) -> None:
    ok, failing = Upstream("ok"), Upstream("failing", status=503)
    upstreams += [ok, failing]
    dead = f"http://127.0.0.1:{free_port()}"
    routes = [{"path": "ok", "url": ok.url, "weight": 50}, {"path": "failing", "url": failing.url, "weight": 50}]
    info, config_file = procs.router(door(*routes))
    statuses: Counter[tuple[str, int]] = Counter()
    for _ in range(40):
        status, headers, payload = call(info)
        assert header(headers, "X-Mlplat-Path") == [payload["served_by"]]  # the upstream's own one is replaced
        statuses[payload["served_by"], status] += 1
    assert set(statuses) == {("ok", 200), ("failing", 503)}
    reconfigure(info, config_file, door({"path": "dead", "url": dead, "weight": 100}, {**routes[0], "weight": 0}))
    for _ in range(5):
        status, headers, payload = call(info)
        assert (status, header(headers, "X-Mlplat-Path"), payload["path"]) == (502, ["dead"], "dead")
    stats = get_json(info, "/-/stats")["routes"]
    assert {path: (s["requests"], s["errors"]) for path, s in stats.items()} == {
        "ok": (statuses["ok", 200], 0), "failing": (statuses["failing", 503],) * 2, "dead": (5, 5)}
    for numbers in stats.values():
        assert sum(numbers["latency_ms_buckets"].values()) == numbers["requests"]
    assert stats["ok"]["latency_ms_buckets"]["inf"] == 0  # a loopback round trip is well under 10 s


def test_requests_to_a_sigv4_route_are_signed_and_carry_no_client_credentials(
        procs: Processes, upstreams: list[Upstream]) -> None:
    from botocore.auth import SigV4Auth
    from botocore.awsrequest import AWSRequest
    from botocore.credentials import Credentials

    aws = Upstream("sagemaker")
    upstreams.append(aws)
    credentials = Credentials("AKIDFRONTDOORTEST", "secret/key+for+the+test", "session-token-for-the-test")
    env = {"AWS_ACCESS_KEY_ID": credentials.access_key, "AWS_SECRET_ACCESS_KEY": credentials.secret_key,
           "AWS_SESSION_TOKEN": credentials.token, "AWS_CONFIG_FILE": "/nonexistent",
           "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent", "AWS_EC2_METADATA_DISABLED": "true"}
    sign = {"kind": "sigv4", "service": "sagemaker", "region": "eu-west-1", "profile": None}
    info, _ = procs.router(door({"path": "aws", "url": aws.url + "/endpoints/iris", "weight": 100, "sign": sign}),
                           env=env)
    bodies = [IRIS, json.dumps({"instances": [[5.0, 3.4, 1.5, 0.2]]})]
    for body in bodies:
        status, _, payload = call(info, path="/invocations?trace=1", body=body, headers={
            "Authorization": "Bearer client-secret", "X-Api-Key": "client-key", "X-Amz-Date": "19700101T000000Z"})
        assert (status, payload) == (200, {"served_by": "sagemaker"})
    assert len(aws.seen) == 2
    for seen, body in zip(aws.seen, bodies, strict=True):
        assert seen["path"] == "/endpoints/iris/invocations?trace=1" and seen["body"] == body.encode()
        assert aws.header(seen, "X-Api-Key") is None
        assert not any("client-secret" in v or "client-key" in v for _, v in seen["headers"])
        authorization = aws.header(seen, "Authorization")
        date = aws.header(seen, "X-Amz-Date")
        assert date != "19700101T000000Z" and aws.header(seen, "X-Amz-Security-Token") == credentials.token
        algorithm, _, fields = authorization.partition(" ")
        parts = dict(item.strip().split("=", 1) for item in fields.split(","))
        assert algorithm == "AWS4-HMAC-SHA256"
        assert parts["Credential"] == f"{credentials.access_key}/{date[:8]}/eu-west-1/sagemaker/aws4_request"
        signed = parts["SignedHeaders"].split(";")
        assert {"host", "x-amz-date", "x-amz-security-token"} <= set(signed)
        # the signature, recomputed by botocore over exactly what the upstream received
        request = AWSRequest(method=seen["method"], url=aws.url + seen["path"], data=seen["body"],
                             headers={name: aws.header(seen, name) for name in signed})
        request.context["timestamp"] = date
        auth = SigV4Auth(credentials, "sagemaker", "eu-west-1")
        expected = auth.signature(auth.string_to_sign(request, auth.canonical_request(request)), request)
        assert parts["Signature"] == expected


def test_a_sigv4_route_without_credentials_is_a_502_counted_as_an_error(
        procs: Processes, upstreams: list[Upstream], tmp_path: Path) -> None:
    aws = Upstream("sagemaker")
    upstreams.append(aws)
    env = {"AWS_CONFIG_FILE": str(tmp_path / "none"), "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
           "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(tmp_path)}
    sign = {"kind": "sigv4", "service": "sagemaker", "region": "us-east-1"}
    info, _ = procs.router(door({"path": "aws", "url": aws.url, "weight": 100, "sign": sign}), env=env)
    status, _, payload = call(info)
    assert status == 502 and "no AWS credentials found" in payload["error"]
    assert aws.seen == []
    assert get_json(info, "/-/stats")["routes"]["aws"]["errors"] == 1


def test_api_key_file_is_sent_as_x_api_key_and_never_in_the_config(
        procs: Processes, upstreams: list[Upstream], tmp_path: Path) -> None:
    keyed = Upstream("keyed")
    upstreams.append(keyed)
    info, config_file = procs.router(door({"path": "keyed", "url": keyed.url, "weight": 100,
                                           "api_key_file": str(key_file(tmp_path))}))
    status, _, _ = call(info, headers={"X-Api-Key": "client-key"})
    assert status == 200
    assert keyed.header(keyed.seen[0], "X-Api-Key") == UPSTREAM_KEY
    assert UPSTREAM_KEY not in config_file.read_text()
    assert UPSTREAM_KEY not in json.dumps(get_json(info, "/-/config"))


def test_only_internal_routes_get_the_internal_token(
        procs: Processes, upstreams: list[Upstream], tmp_path: Path) -> None:
    own, other = Upstream("own"), Upstream("other")
    upstreams += [own, other]
    token_file = tmp_path / "internal.token"
    token = "t" * 64
    token_file.write_text(token)
    info, _ = procs.router(door({"path": "own", "url": own.url, "weight": 50, "internal": True},
                                {"path": "other", "url": other.url, "weight": 50}),
                           extra=("--internal-token-file", str(token_file)))
    for _ in range(30):
        assert call(info, headers={"X-Mlplat-Internal": "forged"})[0] == 200
    assert own.seen and other.seen
    assert {own.header(s, "X-Mlplat-Internal") for s in own.seen} == {token}
    assert {other.header(s, "X-Mlplat-Internal") for s in other.seen} == {None}


def test_https_upstreams_with_a_path_prefix(procs: Processes, tmp_path: Path) -> None:
    import ssl

    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a test certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                    str(cert), "-days", "1", "-subj", "/CN=127.0.0.1", "-addext", "subjectAltName=IP:127.0.0.1"],
                   check=True, capture_output=True, timeout=60)
    tls = Upstream("tls")
    try:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        tls.server.socket = context.wrap_socket(tls.server.socket, server_side=True)
        url = tls.url.replace("http://", "https://") + "/v1"
        info, _ = procs.router(door({"path": "tls", "url": url, "weight": 100}), env={"SSL_CERT_FILE": str(cert)})
        for _ in range(3):  # kept alive between them
            status, _, payload = call(info, path="/invocations")
            assert (status, payload) == (200, {"served_by": "tls"})
        assert [s["path"] for s in tls.seen] == ["/v1/invocations"] * 3
        untrusted, _ = procs.router(door({"path": "tls", "url": url, "weight": 100}), name="untrusted")
        status, _, payload = call(untrusted)
        assert status == 502 and "CERTIFICATE_VERIFY_FAILED" in payload["error"]
    finally:
        tls.close()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# -- the local.front_door provider ------------------------------------------------------------------------------

ADDRESS = "iris.front_door.local"


def local_target(tmp_path: Path, **settings: Any) -> Any:
    from mlplat_plugins.local.target import LocalSettings, LocalTarget
    from provisioner.target import TargetContext

    return LocalTarget(LocalSettings(root=str(tmp_path / "root"), **settings),
                       TargetContext("fd", "local", tmp_path, tmp_path / "work"))


def step(op: str) -> StepContext:
    return StepContext(address=ADDRESS, op=op)


def upstream(server: Upstream, weight: int, api_key: str | None = None) -> dict[str, Any]:
    return {"name": server.name, "weight": weight, "url": server.url + "/", "sign": None, "api_key": api_key}


def test_front_door_provider_create_update_read_stats_import_delete(
        procs: Processes, upstreams: list[Upstream], tmp_path: Path) -> None:
    local, aws = Upstream("local"), Upstream("aws")
    upstreams += [local, aws]
    target = local_target(tmp_path)
    provider = target.provider("local.front_door")
    run_dir = target.root / "front_doors" / "iris"
    inputs = {"endpoint": "iris", "upstreams": [upstream(local, 100)], "api_key": None, "host": "127.0.0.1",
              "work_dir": str(run_dir)}

    created = provider.create(ADDRESS, inputs, step("create"))
    assert created.id == str(run_dir) and set(created.outputs) == {"url", "pid", "port"}
    assert provider.read(created.id, inputs).inputs == inputs  # no drift right after create
    info = processes.find_running(run_dir / "runtime.json")
    assert info is not None and info.meta["kind"] == "front_door"
    load = Load(info, threads=2)
    try:
        load.progress(30)
        steps = [[upstream(local, 50), upstream(aws, 50, Secret(UPSTREAM_KEY))],  # aws added, with its key
                 [upstream(local, 0), upstream(aws, 100, Secret(UPSTREAM_KEY))],  # all on aws
                 [upstream(aws, 100, Secret(UPSTREAM_KEY))]]  # local removed
        for ups in steps:
            desired = {**inputs, "upstreams": ups}
            assert provider.update(created.id, inputs, desired, step("update")) == created.outputs
            assert provider.read(created.id, desired).inputs == desired
            inputs = desired
            load.progress(30)
    finally:
        load.finish()
    assert load.failures == [] and set(load.served) == {"local", "aws"}

    key = run_dir / "upstream-aws.key"
    assert key.read_text().strip() == UPSTREAM_KEY and stat.S_IMODE(key.stat().st_mode) == 0o600
    assert all(UPSTREAM_KEY not in p.read_text() for p in run_dir.iterdir() if p.is_file() and p != key)
    assert {aws.header(s, "X-Api-Key") for s in aws.seen} == {UPSTREAM_KEY}
    assert {local.header(s, "X-Api-Key") for s in local.seen} == {None}
    assert {s.header(r, "X-Mlplat-Internal") for s in (local, aws) for r in s.seen} == {None}

    stats = provider.stats(created.id, inputs)
    assert stats is not None and set(stats) == {"local", "aws"}
    assert (stats["local"]["requests"], stats["aws"]["requests"]) == (len(local.seen), len(aws.seen))
    assert stats["local"]["errors"] == stats["aws"]["errors"] == 0

    drifted = {**inputs, "upstreams": [upstream(aws, 100, Secret("another-key-0123456789"))]}
    assert provider.read(created.id, drifted).inputs["upstreams"][0]["api_key"] == UPSTREAM_KEY  # shown as is
    without_key = {**inputs, "upstreams": [upstream(aws, 100)]}
    provider.update(created.id, inputs, without_key, step("update"))
    assert not key.exists()  # the router no longer names it
    inputs = without_key

    seen = provider.import_(ADDRESS, created.id, inputs)  # as after `mlplat state rm`
    assert seen is not None and seen.inputs == inputs and seen.outputs == created.outputs

    processes.stop(created.outputs["pid"])  # stopped: read sees it gone, a create brings it back on its port
    assert provider.read(created.id, inputs) is None and provider.stats(created.id, inputs) is None
    again = provider.create(ADDRESS, inputs, step("create"))
    assert again.outputs["port"] == created.outputs["port"] and again.outputs["pid"] != created.outputs["pid"]

    provider.delete(again.id, inputs, step("delete"))
    assert not run_dir.exists() and not processes.is_alive(again.outputs["pid"])
    assert provider.stats(again.id, inputs) is None


def test_front_door_with_the_endpoint_key_and_a_bad_config(procs: Processes, upstreams: list[Upstream],
                                                           tmp_path: Path) -> None:
    local = Upstream("local")
    upstreams.append(local)
    target = local_target(tmp_path)
    provider = target.provider("local.front_door")
    run_dir = target.root / "front_doors" / "iris"
    endpoint_key = Secret("endpoint-key-0123456789abcdef")
    inputs = {"endpoint": "iris", "upstreams": [upstream(local, 100)], "api_key": endpoint_key,
              "host": "127.0.0.1", "work_dir": str(run_dir)}
    with pytest.raises(MlplatError, match="route paths must be unique"):
        provider.create(ADDRESS, {**inputs, "upstreams": [upstream(local, 50)] * 2}, step("create"))
    created = provider.create(ADDRESS, inputs, step("create"))
    info = processes.find_running(run_dir / "runtime.json")
    assert call(info)[0] == 401
    assert call(info, headers={"X-Api-Key": str(endpoint_key)})[0] == 200
    assert local.header(local.seen[0], "X-Api-Key") is None  # the client's key stays at the front door
    assert provider.read(created.id, inputs).inputs == inputs
    assert set(provider.stats(created.id, inputs)) == {"local"}
    assert str(endpoint_key) not in (run_dir / "config.json").read_text()

    assert target.sweep(frozenset()) == [f"{run_dir} ({ADDRESS}, stopped pid {created.outputs['pid']})"]
    assert not run_dir.exists() and not processes.is_alive(created.outputs["pid"])


# -- lowering ---------------------------------------------------------------------------------------------------

STACK = """\
apiVersion: mlplat/v1
metadata: {name: fd}
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: iris-v1.json}
serving:
  - name: iris
    front_door: local
    auth: key
    api_key: ${secret:FRONT_DOOR_TEST_KEY}
    paths: {production: {model: "iris:1"}}
"""


def test_lowering_exports_upstream_and_sha256_and_lowers_a_front_door(tmp_path: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from provisioner.artifacts import sha256_file
    from provisioner.graph import Ref
    from provisioner.spec.loader import loads
    from provisioner.target import LowerContext

    monkeypatch.setenv("FRONT_DOOR_TEST_KEY", "endpoint-key-0123456789abcdef")
    shutil.copyfile(MODELS / "iris-v1.json", tmp_path / "iris-v1.json")
    platform = loads(STACK, tmp_path / "stack.yaml").platform
    target = local_target(tmp_path)
    assert target.capabilities().front_door == "gateway"
    outputs: dict[str, dict[str, Any]] = {}
    ctx = LowerContext(platform, outputs)
    outputs["models"] = target.lower(platform.registry, ctx).outputs
    assert outputs["models"]["sha256.iris:1"] == sha256_file(tmp_path / "iris-v1.json")
    serving = platform.serving[0]
    lowered = target.lower(serving, ctx)
    router = Ref("iris.router.main", "url")
    assert lowered.outputs["upstream"] == {"url": router, "sign": None, "api_key": serving.api_key}

    ups = [{"name": "local", "weight": 100, **lowered.outputs["upstream"]}]
    front = target.lower_front_door(serving, ups, ctx)
    (door_resource,) = front.resources
    assert (door_resource.address, door_resource.kind) == (target.front_door_address("iris"), "local.front_door")
    assert door_resource.inputs == {"endpoint": "iris", "upstreams": ups, "api_key": serving.api_key,
                                    "host": "127.0.0.1", "work_dir": str(target.root / "front_doors" / "iris")}
    assert front.outputs == {"url": Ref("iris.front_door.local", "url")}

    public = local_target(tmp_path, host="0.0.0.0")
    open_serving = serving.model_copy(update={"auth": "none", "api_key": None})
    with pytest.raises(MlplatError, match=r"would listen on 0\.0\.0\.0 without authentication"):
        public.lower_front_door(open_serving, ups, ctx)


# -- the artifact store and the sweep ---------------------------------------------------------------------------


def test_local_artifact_store(tmp_path: Path) -> None:
    store = local_target(tmp_path).artifact_store()
    source = tmp_path / "model.json"
    source.write_text('{"weights": [1, 2, 3]}')
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert store.schemes == frozenset({"file"}) and store.reads("/x") and store.reads("file:///x")
    assert not store.reads("s3://bucket/x")

    uri = store.put(source, "iris/1/model.json", digest)
    assert uri == str(tmp_path / "root" / "artifacts" / "iris" / "1" / "model.json")
    assert Path(uri).read_bytes() == source.read_bytes()
    stamp = Path(uri).stat().st_mtime_ns
    source.write_text("changed since")  # idempotent: the stored copy with that sha256 is kept, not recopied
    assert store.put(source, "iris/1/model.json", digest) == uri and Path(uri).stat().st_mtime_ns == stamp
    with pytest.raises(MlplatError, match=f"has sha256 .*, not the expected {digest}"):
        store.put(source, "iris/2/model.json", digest)
    assert not (tmp_path / "root" / "artifacts" / "iris" / "2").exists()  # nothing left of a failed copy
    for bad in ("../escape", "/abs/key", "iris//model.json", "iris/./x"):
        with pytest.raises(MlplatError, match="not a relative path of plain names"):
            store.put(source, bad, digest)

    assert store.sha256(uri) == digest and store.sha256("file://" + uri) == digest
    assert store.sha256(str(tmp_path / "absent")) is None
    for given in (uri, "file://" + uri):
        dest = tmp_path / "fetched" / "copy.json"
        store.fetch(given, dest)
        assert hashlib.sha256(dest.read_bytes()).hexdigest() == digest
        dest.unlink()
    with pytest.raises(MlplatError, match="is missing"):
        store.fetch(str(tmp_path / "absent"), tmp_path / "x")
    with pytest.raises(MlplatError, match="file paths and file:// URIs"):
        store.fetch("s3://bucket/key", tmp_path / "x")

    with pytest.raises(MlplatError, match="is not in the local artifact store"):
        store.delete(str(source))
    assert source.exists()
    store.delete(uri)
    store.delete(uri)  # already gone: no error
    assert not (tmp_path / "root" / "artifacts" / "iris").exists()
    assert (tmp_path / "root" / "artifacts").is_dir()


def test_sweep_keeps_recorded_artifact_copies_and_removes_the_rest(tmp_path: Path) -> None:
    target = local_target(tmp_path)
    store = target.artifact_store()
    source = tmp_path / "model.json"
    source.write_text("{}")
    digest = hashlib.sha256(b"{}").hexdigest()
    kept = store.put(source, "iris/1/model.json", digest)
    lost = store.put(source, "iris/2/model.json", digest)  # a copy a kill left unrecorded
    half = Path(lost).parent / processes.partial_write_name(Path(lost)).name
    half.write_text("{")
    assert f"{kept} (an artifact copy)" in target.leftovers()

    swept = target.sweep(frozenset({kept}))
    assert swept == [f"{lost} (an artifact copy no record names)"]
    assert Path(kept).read_text() == "{}"
    assert not Path(lost).parent.exists()  # the emptied version folder goes too

    assert target.sweep(frozenset()) == [f"{kept} (an artifact copy no record names)"]
    assert not target.root.exists()  # nothing recorded: the root goes too
