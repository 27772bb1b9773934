"""`mlplat monitor` on the local target: the capture directory a router writes, drift scores against a baseline,
shadow agreement, alerts to a webhook (a receiver thread on 127.0.0.1) and to a plain SMTP relay (a tiny one on
127.0.0.1), and the scores published for the router's /metrics.

The end-to-end tests apply real stacks (real model servers and routers), send seeded requests through the router
and run the real `mlplat monitor` command."""

from __future__ import annotations

import json
import random
import shutil
import socketserver
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from mlplat_plugins.local.monitoring import LocalMonitorSource
from provisioner.api import Stack
from provisioner.monitoring import SCORES_FILE
from provisioner.monitoring.alerts import Alert, deliver
from provisioner.monitoring.run import EndpointReport, check
from provisioner.spec.model import Serving

from conftest import STACKS, run_mlplat
from local_processes import kill_all

FEATURES = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
#: iris-like per-feature mean and standard deviation
IRIS = {"sepal_length": (5.84, 0.83), "sepal_width": (3.06, 0.44), "petal_length": (3.76, 1.77),
        "petal_width": (1.20, 0.76)}


def draw(rng: random.Random, n: int, shift: dict[str, float] | None = None) -> list[list[float]]:
    """`n` iris-like rows (features in model order), each feature + its `shift`."""
    shift = shift or {}
    return [[round(max(0.1, rng.gauss(*IRIS[f]) + shift.get(f, 0.0)), 2) for f in FEATURES] for _ in range(n)]


def write_baseline(path: Path, seed: int = 7, n: int = 500) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = draw(random.Random(seed), n)
    path.write_text(",".join(FEATURES) + "\n" + "".join(",".join(str(v) for v in row) + "\n" for row in rows))


# -- a webhook receiver and an SMTP relay on 127.0.0.1 -----------------------------------------------------------
@dataclass
class Receiver:
    url: str
    posts: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    """An HTTP server recording each POST's JSON body; answers `receiver.status`."""
    state = Receiver("")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            state.posts.append({"path": self.path, "content_type": self.headers.get("Content-Type"),
                                "body": json.loads(body)})
            self.send_response(state.status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


@dataclass
class Relay:
    address: str
    mails: list[dict[str, Any]] = field(default_factory=list)


@pytest.fixture
def smtp_relay() -> Iterator[Relay]:
    """The SMTP a plain relay speaks (no TLS, no AUTH), recording each accepted mail; refuses @nowhere.invalid."""
    relay = Relay("")

    class Handler(socketserver.StreamRequestHandler):
        def handle(self) -> None:
            def say(line: str) -> None:
                self.wfile.write(line.encode() + b"\r\n")

            say("220 relay ready")
            mail: dict[str, Any] = {"to": [], "data": ""}
            while True:
                line = self.rfile.readline().decode(errors="replace").rstrip("\r\n")
                verb = line.split(" ", 1)[0].upper()
                if verb in ("EHLO", "HELO"):
                    say("250 relay")
                elif verb == "MAIL":
                    mail = {"from": line[10:], "to": [], "data": ""}
                    say("250 ok")
                elif verb == "RCPT":
                    if "nowhere.invalid" in line:
                        say("550 no such user")
                    else:
                        mail["to"].append(line[8:])
                        say("250 ok")
                elif verb == "DATA":
                    say("354 go ahead")
                    data = []
                    while (chunk := self.rfile.readline().decode(errors="replace")) not in (".\r\n", ""):
                        data.append(chunk)
                    mail["data"] = "".join(data)
                    relay.mails.append(mail)
                    say("250 queued")
                elif verb == "QUIT" or not line:
                    say("221 bye")
                    return
                else:
                    say("250 ok")

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    relay.address = f"127.0.0.1:{server.server_address[1]}"
    try:
        yield relay
    finally:
        server.shutdown()
        server.server_close()


# -- the capture directory, read directly ------------------------------------------------------------------------
def hour_file(directory: Path, prefix: str, ts: float) -> Path:
    return directory / f"{prefix}{time.strftime('%Y%m%d-%H', time.gmtime(ts))}.jsonl"


def test_source_reads_hourly_files_oldest_first_skips_partial_lines_and_keeps_the_window(tmp_path: Path) -> None:
    now = time.time()
    old, recent = now - 3 * 3600, now - 60
    hour_file(tmp_path, "capture-", old).write_text(json.dumps({"ts": old, "id": "old"}) + "\n")
    hour_file(tmp_path, "capture-", recent).write_text(
        json.dumps({"ts": recent + 1, "id": "b"}) + "\n" + json.dumps({"ts": recent, "id": "a"}) + "\n"
        + '{"ts": ' + str(recent + 2) + ', "id": "half-writ')  # the router is appending this line
    hour_file(tmp_path, "shadow-", recent).write_text(json.dumps({"ts": recent, "instances": 1}) + "\n[1]\n")
    source = LocalMonitorSource(tmp_path)
    assert [r["id"] for r in source.rows()] == ["old", "a", "b"]
    assert [r["id"] for r in source.rows(since=now - 3600)] == ["a", "b"]
    assert [p["instances"] for p in source.shadow_pairs()] == [1]  # a line that is not an object is skipped
    assert list(LocalMonitorSource(tmp_path / "missing").rows()) == []
    source.publish_scores({"ts": now, "scores": [{"feature": "f", "metric": "psi", "value": 0.5}]})
    assert json.loads((tmp_path / SCORES_FILE).read_text())["scores"][0]["value"] == 0.5
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []  # no temp file left


def serving(monitoring: dict[str, Any], shadow: bool = False) -> Serving:
    paths: dict[str, Any] = {"production": {"model": "iris:2"}}
    if shadow:
        paths["experimental"] = {"model": "iris:1", "mode": "shadow"}
    return Serving.model_validate({"name": "iris", "paths": paths, "monitoring": monitoring})


def test_drift_from_fed_capture_files_alerts_the_drifted_feature_only(tmp_path: Path, receiver: Receiver) -> None:
    """The monitor run's arithmetic and alerting on capture files written by hand (no router involved)."""
    write_baseline(tmp_path / "baseline.csv")
    capture = tmp_path / "capture"
    capture.mkdir()
    rng, now = random.Random(11), time.time()
    rows = [{"ts": now - 10, "status": 200, "request": {"instances": draw(rng, 5)}} for _ in range(80)]
    hour_file(capture, "capture-", now - 10).write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = {"capture": {"sample_percent": 100},
              "drift": {"baseline": "baseline.csv", "threshold": 0.2, "min_rows": 100},
              "alerts": {"webhook": receiver.url}}
    report = EndpointReport("iris", "local")
    check(tmp_path, serving(config), LocalMonitorSource(capture), report, since=now - 3600, now=now)
    assert report.rows == 80 and [f.rows for f in report.features] == [400] * 4
    assert all(f.score is not None and f.score < 0.1 for f in report.features), report.features
    assert report.alerts == []
    published = json.loads((capture / SCORES_FILE).read_text())
    assert published["ts"] == now and [s["feature"] for s in published["scores"]] == FEATURES

    shifted = [{"ts": now - 5, "status": 200, "request": {"instances": draw(rng, 5, {"petal_length": 3.0})}}
               for _ in range(80)]
    with hour_file(capture, "capture-", now - 5).open("a") as fh:
        fh.write("".join(json.dumps(r) + "\n" for r in shifted))
    report = EndpointReport("iris", "local")
    check(tmp_path, serving(config), LocalMonitorSource(capture), report, since=now - 3600, now=now)
    scores = {f.feature: f for f in report.features}
    assert scores["petal_length"].status == "drift" and scores["petal_length"].score > 0.2
    assert all(scores[f].status == "ok" for f in FEATURES if f != "petal_length")
    [alert] = report.alerts
    assert alert.details["feature"] == "petal_length" and alert.details["threshold"] == 0.2
    deliveries = deliver(report.alerts, stack="watched", webhook=receiver.url, emails=[], smtp=None)
    assert [d.ok for d in deliveries] == [True]
    [post] = receiver.posts
    assert post["path"] == "/hook" and post["content_type"] == "application/json"
    assert post["body"] == {"stack": "watched", "endpoint": "iris", "kind": "drift", "feature": "petal_length",
                            "metric": "psi", "value": scores["petal_length"].score, "threshold": 0.2, "ts": now,
                            "message": alert.message}


def test_failed_webhooks_are_reported_never_raised(receiver: Receiver) -> None:
    alert = Alert("iris", "drift", "iris: feature x drifted", 1.0, {"feature": "x"})
    receiver.status = 500
    [delivery] = deliver([alert], stack="s", webhook=receiver.url, emails=[], smtp=None)
    assert not delivery.ok and delivery.error.startswith("HTTP 500") and len(receiver.posts) == 1
    closed = receiver.url.replace(receiver.url.split(":")[2].split("/")[0], "1")  # port 1: refused
    [delivery] = deliver([alert], stack="s", webhook=closed, emails=[], smtp=None)
    assert not delivery.ok and "refused" in delivery.error.lower()
    [delivery] = deliver([alert], stack="s", webhook=None, emails=["ops@example.com"], smtp=None,
                         smtp_setting="targets.local.smtp")
    assert not delivery.ok and "set targets.local.smtp" in delivery.error


def test_a_secret_webhook_url_is_masked_in_deliveries(receiver: Receiver) -> None:
    from provisioner.secrets import Secret

    url = Secret(receiver.url + "?token=abcdef0123456789")
    [delivery] = deliver([Alert("iris", "drift", "m", 1.0)], stack="s", webhook=url, emails=[], smtp=None)
    assert delivery.ok and delivery.to == "(sensitive)"
    assert receiver.posts[0]["path"] == "/hook?token=abcdef0123456789"


def test_email_alerts_go_through_a_plain_smtp_relay(smtp_relay: Relay) -> None:
    alert = Alert("iris", "shadow", "iris: shadow experimental agrees on 50.0%", 2.0, {"agreement": 0.5})
    [delivery] = deliver([alert], stack="watched", webhook=None, emails=["ops@example.com", "ml@example.com"],
                         smtp=smtp_relay.address)
    assert delivery.ok, delivery.error
    [mail] = smtp_relay.mails
    assert mail["to"] == ["<ops@example.com>", "<ml@example.com>"]
    assert "Subject: [mlplat] watched/iris: shadow alert" in mail["data"]
    assert "agrees on 50.0%" in mail["data"] and '"agreement": 0.5' in mail["data"]
    [refused] = deliver([alert], stack="watched", webhook=None, emails=["x@nowhere.invalid"],
                        smtp=smtp_relay.address)
    assert not refused.ok and "x@nowhere.invalid" in refused.error
    [down] = deliver([alert], stack="watched", webhook=None, emails=["ops@example.com"], smtp="127.0.0.1:1")
    assert not down.ok and down.error


# -- the command's user errors ------------------------------------------------------------------------------------
def test_monitor_without_a_stack_or_without_monitoring_is_a_clean_error(tmp_path: Path) -> None:
    missing = run_mlplat("monitor", "-f", "nope.yaml", "--once", cwd=tmp_path, check=False)
    assert missing.returncode == 1 and "nope.yaml" in missing.stderr and "Traceback" not in missing.stderr
    (tmp_path / "s.yaml").write_text("apiVersion: mlplat/v1\nmetadata: {name: plain}\n"
                                     "storage: [{name: data, kind: nas, size_gb: 1}]\n")
    plain = run_mlplat("monitor", "-f", "s.yaml", "--once", "--json", cwd=tmp_path, check=False)
    assert plain.returncode == 1 and "Traceback" not in plain.stderr
    assert "declares no monitoring" in plain.stderr and json.loads(plain.stdout)["error"].startswith("stack 'plain'")


# -- end to end through a router ---------------------------------------------------------------------------------
STACK = """\
apiVersion: mlplat/v1
metadata: {{name: {name}}}
target: local{targets}
registry:
  name: models
  models:
    - {{name: iris, version: "1", artifact: models/iris-v1.json}}
    - {{name: iris, version: "2", artifact: models/iris-v2.json}}
serving:
  - name: iris
    paths:
{paths}
    monitoring:
{monitoring}
"""


@pytest.fixture
def no_host_gpus(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLAT_LOCAL_GPUS", "")


def make_stack(tmp_path: Path, name: str, paths: str, monitoring: str, smtp: str | None = None) -> Path:
    shutil.copytree(STACKS / "models", tmp_path / "models")
    path = tmp_path / "stack.yaml"
    targets = f"\ntargets:\n  local: {{smtp: \"{smtp}\"}}" if smtp else ""
    path.write_text(STACK.format(name=name, paths=paths, monitoring=monitoring, targets=targets))
    return path


@pytest.fixture
def applied(tmp_path: Path, no_host_gpus: None) -> Iterator[list[Path]]:
    """Stack files the test applied: destroyed afterwards, whatever they left running killed."""
    stacks: list[Path] = []
    yield stacks
    try:
        for path in stacks:
            stack = Stack(path)
            try:
                stack.apply(stack.plan(destroy=True))
            finally:
                stack.close()
    finally:
        kill_all(tmp_path)


def apply(path: Path) -> dict[str, Any]:
    """Apply the stack; its outputs, and the capture directory of the endpoint iris."""
    stack = Stack(path)
    try:
        result = stack.apply(stack.plan())
        assert not getattr(result, "failed", None), result
        outputs = stack.outputs()
        outputs["capture_dir"] = Path(stack.state.resources()["iris.monitor.main"].outputs["capture_dir"])
        return outputs
    finally:
        stack.close()


def predict(url: str, instances: list[list[float]], api_key: str | None = None) -> dict[str, Any]:
    headers = {"Content-Type": "application/json", **({"X-Api-Key": api_key} if api_key else {})}
    request = urllib.request.Request(url + "/invocations", data=json.dumps({"instances": instances}).encode(),
                                     headers=headers, method="POST")
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def wait_for_lines(directory: Path, prefix: str, count: int, timeout: float = 20.0) -> list[dict[str, Any]]:
    """The objects of the capture files once they hold `count` (the router writes them asynchronously)."""
    deadline = time.monotonic() + timeout
    while True:
        items = list(LocalMonitorSource(directory)._read(prefix, None))
        if len(items) >= count or time.monotonic() > deadline:
            return items
        time.sleep(0.1)


def monitor_json(path: Path, env: dict[str, str]) -> tuple[dict[str, Any], str]:
    proc = run_mlplat("monitor", "-f", str(path), "--once", "--json", cwd=path.parent, env=env)
    return json.loads(proc.stdout), proc.stdout + proc.stderr


@pytest.mark.slow
def test_drift_end_to_end_through_the_router(tmp_path: Path, receiver: Receiver, smtp_relay: Relay,
                                             applied: list[Path], monkeypatch: pytest.MonkeyPatch) -> None:
    write_baseline(tmp_path / "data" / "iris-baseline.csv")
    # the webhook URL is a secret (it could hold a token): the state keeps it encrypted, output masks it
    env = {"MONITOR_HOOK": receiver.url, "MLPLAT_LOCAL_GPUS": "", "MLPLAT_STATE_PASSPHRASE": "monitor-test-pass"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    path = make_stack(tmp_path, "watched", '      production: {model: "iris:2"}', """\
      capture: {sample_percent: 100}
      drift: {baseline: data/iris-baseline.csv, metric: psi, threshold: 0.2, min_rows: 100}
      alerts: {webhook: "${secret:MONITOR_HOOK}", emails: [ops@example.com]}""", smtp=smtp_relay.address)
    applied.append(path)
    outputs = apply(path)
    url, capture = outputs["iris.url"], outputs["capture_dir"]
    # PSI of two samples of one distribution (400 vs 500 rows, 10 bins) is noise of about 0.04-0.12: the seed is
    # one whose noise stays well under 0.1 (max 0.048 here; the shifted feature scores about 0.58)
    rng = random.Random(21)

    for _ in range(80):  # 400 rows drawn like the baseline, 5 per request
        assert len(predict(url, draw(rng, 5))["predictions"]) == 5
    rows = wait_for_lines(capture, "capture-", 80)
    assert len(rows) == 80 and all(r["endpoint"] == "iris" and r["status"] == 200 for r in rows)
    report, text = monitor_json(path, env)
    [endpoint] = report["endpoints"]
    assert endpoint["error"] is None and endpoint["rows"] == 80
    assert {f["feature"]: f["rows"] for f in endpoint["features"]} == dict.fromkeys(FEATURES, 400)
    assert all(f["score"] < 0.1 and f["status"] == "ok" for f in endpoint["features"]), endpoint["features"]
    assert endpoint["alerts"] == [] and receiver.posts == [] and smtp_relay.mails == []

    for _ in range(80):  # 400 more with petal_length shifted by 3 (about 1.7 standard deviations)
        predict(url, draw(rng, 5, {"petal_length": 3.0}))
    assert len(wait_for_lines(capture, "capture-", 160)) == 160
    report, text = monitor_json(path, env)
    [endpoint] = report["endpoints"]
    scores = {f["feature"]: f for f in endpoint["features"]}
    assert scores["petal_length"]["score"] > 0.2 and scores["petal_length"]["status"] == "drift"
    assert all(scores[f]["status"] == "ok" for f in FEATURES if f != "petal_length"), scores
    assert [a["details"]["feature"] for a in endpoint["alerts"]] == ["petal_length"]
    assert [(d["channel"], d["to"], d["ok"]) for d in endpoint["deliveries"]] == [
        ("webhook", "(sensitive)", True), ("email", "ops@example.com", True)]
    [mail] = smtp_relay.mails  # through targets.local.smtp
    assert mail["to"] == ["<ops@example.com>"] and "feature petal_length drifted" in mail["data"]
    [post] = receiver.posts
    assert post["body"]["kind"] == "drift" and post["body"]["feature"] == "petal_length"
    assert post["body"]["stack"] == "watched" and post["body"]["value"] == scores["petal_length"]["score"]
    assert receiver.url not in text and str(receiver.url.split(":")[2].split("/")[0]) not in text

    published = json.loads((capture / SCORES_FILE).read_text())
    assert {s["feature"]: s["value"] for s in published["scores"]} == {f: scores[f]["score"] for f in FEATURES}
    with urllib.request.urlopen(url + "/metrics", timeout=5) as response:
        exposition = response.read().decode()
    assert 'mlplat_drift_score{endpoint="iris",feature="petal_length",metric="psi"}' in exposition

    table = run_mlplat("monitor", "-f", str(path), "--once", cwd=tmp_path, env=env).stdout
    assert "petal_length" in table and "drift" in table and "webhook → (sensitive): sent" in table
    assert len(receiver.posts) == 2  # the table run alerted again (every run that finds drift does)


@pytest.mark.slow
def test_shadow_comparison_end_to_end(tmp_path: Path, receiver: Receiver, applied: list[Path]) -> None:
    from mlplat_plugins.local.runtime.model import from_dict

    path = make_stack(tmp_path, "shadowed", """\
      production: {model: "iris:2"}
      experimental: {model: "iris:1", mode: shadow}""", f"""\
      capture: {{sample_percent: 100}}
      shadow_comparison: {{min_agreement: 0.95, min_pairs: 20}}
      alerts: {{webhook: "{receiver.url}"}}""")
    applied.append(path)
    outputs = apply(path)
    url, capture = outputs["iris.url"], outputs["capture_dir"]
    rng = random.Random(99)
    sent = [draw(rng, 1) for _ in range(40)]
    for instances in sent:
        predict(url, instances)
    pairs = wait_for_lines(capture, "shadow-", 40)
    assert len(pairs) == 40 and all(p["primary"] == "production" and p["shadow"] == "experimental" for p in pairs)

    v1, v2 = (from_dict(json.loads((tmp_path / "models" / f"iris-v{v}.json").read_text())) for v in (1, 2))
    agreeing = sum(v1.predict(i)[0]["label"] == v2.predict(i)[0]["label"] for i in sent)
    assert 0 < agreeing < 40  # the two models disagree on some rows (else this test proves nothing)

    report, _ = monitor_json(path, {"MLPLAT_LOCAL_GPUS": ""})
    [endpoint] = report["endpoints"]
    [shadow] = endpoint["shadow"]
    assert (shadow["pairs"], shadow["instances"], shadow["agreements"]) == (40, 40, agreeing)
    assert shadow["agreement"] == pytest.approx(agreeing / 40) and shadow["status"] == "low agreement"
    assert shadow["latency_delta_ms"] is not None
    [alert] = endpoint["alerts"]
    assert alert["kind"] == "shadow" and alert["details"]["agreement"] == pytest.approx(agreeing / 40)
    [post] = receiver.posts
    assert post["body"]["kind"] == "shadow" and post["body"]["min_agreement"] == 0.95
    assert post["body"]["primary"] == "production" and post["body"]["shadow"] == "experimental"

    # a settings change updates the monitor's record in place: the captured data stays
    path.write_text(path.read_text().replace("min_pairs: 20", "min_pairs: 41"))
    stack = Stack(path)
    try:
        plan = stack.plan()
        assert {c.address: c.action for c in plan.changes if c.action != "noop"} == {"iris.monitor.main": "update"}
        stack.apply(plan)
    finally:
        stack.close()
    assert len(wait_for_lines(capture, "shadow-", 40)) == 40
    # below min_pairs nothing alerts, whatever the agreement
    report, _ = monitor_json(path, {"MLPLAT_LOCAL_GPUS": ""})
    [shadow] = report["endpoints"][0]["shadow"]
    assert shadow["status"] == "not enough pairs (40/41)" and report["endpoints"][0]["alerts"] == []
    assert len(receiver.posts) == 1

    stack = Stack(path)  # destroy deletes the capture directory, data and all
    try:
        stack.apply(stack.plan(destroy=True))
    finally:
        stack.close()
    assert not capture.exists()


def test_an_endpoint_on_a_target_without_a_monitor_source_is_left_to_its_service(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    shutil.copy(STACKS / "models" / "iris-v1.json", tmp_path / "models" / "iris-v1.json")
    (tmp_path / "stack.yaml").write_text("""\
apiVersion: mlplat/v1
metadata: {name: elsewhere}
target: sim
targets:
  sim: {store: cloud, monitoring: [capture, drift]}
registry:
  name: models
  models: [{name: iris, version: "1", artifact: models/iris-v1.json}]
serving:
  - name: iris
    paths: {production: {model: "iris:1"}}
    monitoring:
      capture: {sample_percent: 10}
      drift: {baseline: models/iris-v1.json}
""")
    report = json.loads(run_mlplat("monitor", "-f", "stack.yaml", "--json", cwd=tmp_path).stdout)
    [endpoint] = report["endpoints"]
    assert endpoint["checked_by"].startswith("the target's own service (target 'sim', sim")
    assert endpoint["features"] == [] and endpoint["error"] is None
    table = run_mlplat("monitor", "-f", "stack.yaml", "--once", cwd=tmp_path).stdout
    assert "iris: checked by the target's own service" in table


def test_monitor_without_once_repeats_on_the_interval_until_interrupted(tmp_path: Path) -> None:
    import os
    import signal
    import subprocess
    import sys

    path = make_stack(tmp_path, "later", '      production: {model: "iris:1"}',
                      "      capture: {sample_percent: 100}")
    env = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200", "MLPLAT_LOCAL_GPUS": ""}
    proc = subprocess.Popen([sys.executable, "-m", "provisioner.cli", "monitor", "-f", str(path), "--interval", "1"],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stdout.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 30
        while "".join(lines).count("mlplat monitor later") < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=10)
        err = proc.stderr.read()
    finally:
        proc.kill()
    reader.join(timeout=5)
    seen = "".join(lines)
    assert seen.count("mlplat monitor later") == 2, seen + err
    assert "no capture directory in the state" in seen and "next check in 1 s" in seen
    assert proc.returncode == 0 and "Traceback" not in err
