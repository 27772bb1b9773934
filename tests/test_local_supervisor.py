"""Supervised model servers (runtime/supervisor.py): a server that dies is restarted on the same port with backoff,
and the provisioner does not notice. Real processes, real HTTP on 127.0.0.1."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from mlplat_plugins.local.runtime import processes
from mlplat_plugins.local.runtime.supervisor import Backoff
from provisioner.pids import pid_alive

from local_processes import processes_naming

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO / "stacks" / "models"
SUPERVISOR = "mlplat_plugins.local.runtime.supervisor"
IRIS = {"instances": [[5.0, 3.4, 1.5, 0.2], [6.7, 3.1, 5.6, 2.4]]}


class Supervised:
    """Supervisors started by one test; each is stopped afterwards, and any server left behind killed."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.started: list[tuple[int, Path]] = []

    def spawn(self, name: str = "iris", extra: list[str] | None = None, env: dict[str, str] | None = None,
              artifact: Path = MODELS / "iris-v1.json") -> processes.ProcessInfo:
        runtime_file = self.workdir / name / "runtime.json"
        info = processes.spawn(
            SUPERVISOR,
            ["--artifact", str(artifact), "--runtime-file", str(runtime_file), "--quiet", *(extra or [])],
            runtime_file=runtime_file, log_file=self.log(name), env=env, timeout=20,
        )
        self.started.append((info.pid, runtime_file))
        return info

    def log(self, name: str = "iris") -> Path:
        return self.workdir / name / "server.log"

    def cleanup(self) -> None:
        for pid, _ in self.started:
            processes.stop(pid)
        for server in servers_of(self.workdir):  # a server outliving its supervisor is a bug the test reports
            os.kill(server, signal.SIGKILL)


def servers_of(directory: Path, flag: str = "--supervisor-runtime-file") -> list[int]:
    """Live model-server processes run by a supervisor whose runtime file lies under `directory` (with
    `flag="--runtime-file"`: the supervisors themselves)."""
    return sorted(processes_naming(directory, flag))


@pytest.fixture
def supervised(tmp_path: Path) -> Iterator[Supervised]:
    sup = Supervised(tmp_path)
    try:
        yield sup
    finally:
        sup.cleanup()


def healthz(info: processes.ProcessInfo, timeout: float = 5.0) -> dict[str, Any]:
    status = processes.health(info.host, info.port, timeout=timeout)
    assert status is not None, f"no healthz from {info.url}"
    return status


def post(info: processes.ProcessInfo, body: Any = IRIS, headers: dict[str, str] | None = None,
         path: str = "/invocations", timeout: float = 10.0) -> tuple[int, Any]:
    conn = http.client.HTTPConnection(info.host, info.port, timeout=timeout)
    try:
        conn.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json",
                                                                   **(headers or {})})
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read())
    finally:
        conn.close()


def wait_for(predicate: Any, timeout: float, what: str) -> float:
    """Poll until `predicate()` is true; the seconds it took. Fails the test after `timeout`."""
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.01)
    return time.monotonic() - start


def refuses(host: str, port: int) -> bool:
    """Whether a connection to (host, port) is refused. Just after its last holder exits, the kernel may still
    complete a handshake on the closing listener (then reset it): that counts as not refused yet."""
    try:
        socket.create_connection((host, port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


def restarted(info: processes.ProcessInfo, old_server: int) -> Any:
    def check() -> bool:
        status = processes.health(info.host, info.port, timeout=0.5)
        return status is not None and status.get("server_pid") not in (None, old_server)
    return check


def kill_server(info: processes.ProcessInfo) -> tuple[int, float]:
    """SIGKILL the supervised server (not the supervisor); its pid and the monotonic time it was gone."""
    server = healthz(info)["server_pid"]
    os.kill(server, signal.SIGKILL)
    wait_for(lambda: not pid_alive(server), 2.0, f"server pid {server} gone after SIGKILL")
    return server, time.monotonic()


# -- restart -----------------------------------------------------------------------------------------------------
def test_a_killed_server_comes_back_on_the_same_port_and_requests_sent_meanwhile_succeed(
        supervised: Supervised) -> None:
    info = supervised.spawn()
    before = healthz(info)
    assert before["pid"] == info.pid and before["server_pid"] != info.pid and before["restarts"] == 0
    assert info.meta == {"kind": "model_server", "model_id": "iris:1",
                         "artifact": str((MODELS / "iris-v1.json").resolve())}

    server, gone_at = kill_server(info)
    results: list[tuple[float, int, Any]] = []

    def send() -> None:
        sent = time.monotonic()
        status, body = post(info)
        results.append((sent, status, body))

    senders = [threading.Thread(target=send) for _ in range(5)]
    for sender in senders:
        sender.start()
    took = wait_for(restarted(info, server), 5.0, "the server restarted")
    for sender in senders:
        sender.join(15)
    back_after = time.monotonic() - gone_at
    assert back_after < 1.5, f"restarted {back_after:.2f}s after the kill"

    after = healthz(info)
    assert after["pid"] == info.pid == before["pid"]  # what the runtime file and the state name: unchanged
    assert after["restarts"] == 1 and after["server_pid"] != server
    assert processes.read_runtime(info_file(supervised)).port == info.port  # the same port, the same file
    assert processes.find_running(info_file(supervised)) is not None
    # every request was sent while no server ran (before the first restart could be due: 0.1 s backoff) ...
    assert len(results) == 5 and all(sent - gone_at < 0.1 for sent, _, _ in results), results
    # ... waited in the backlog, and was answered by the new server
    assert [status for _, status, _ in results] == [200] * 5, results
    assert all([p["label"] for p in body["predictions"]] == ["setosa", "virginica"] for _, _, body in results)
    stats = json.loads(get(info, "/-/stats"))
    assert stats["requests"] == 5
    log = supervised.log().read_text()
    assert re.search(rf"model server \(pid {server}\) exited \(killed by SIGKILL\) after [\d.]+s; restart 1 in 0.1s",
                     log), log
    assert f"model server restarted (pid {after['server_pid']}, restart 1)" in log
    print(f"restart after SIGKILL: healthy again {back_after:.3f}s after the kill (polled {took:.3f}s)")


def info_file(supervised: Supervised, name: str = "iris") -> Path:
    return supervised.workdir / name / "runtime.json"


def get(info: processes.ProcessInfo, path: str, headers: dict[str, str] | None = None) -> bytes:
    conn = http.client.HTTPConnection(info.host, info.port, timeout=10)
    try:
        conn.request("GET", path, headers=headers or {})
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, (resp.status, body)
        return body
    finally:
        conn.close()


LOG_LINE = re.compile(r"^(\S+) supervisor\[[^\]]*\] (.*)$")


def supervisor_events(log: Path) -> list[tuple[datetime, str]]:
    events = []
    for line in log.read_text().splitlines():
        match = LOG_LINE.match(line)
        if match:
            events.append((datetime.fromisoformat(match[1]), match[2]))
    return events


def test_repeated_crashes_back_off(supervised: Supervised) -> None:
    info = supervised.spawn()
    recovered = []
    for _ in range(4):
        server, gone_at = kill_server(info)
        wait_for(restarted(info, server), 10.0, "the server restarted")
        recovered.append(time.monotonic() - gone_at)
    assert healthz(info)["restarts"] == 4
    # the delays logged double, and the log's timestamps show them: each restart follows its exit by at least it
    events = supervisor_events(supervised.log())
    exits = [(at, float(m[1])) for at, text in events if (m := re.search(r"restart \d+ in ([\d.]+)s$", text))]
    restarts = [at for at, text in events if text.startswith("model server restarted")]
    assert [delay for _, delay in exits] == [0.1, 0.2, 0.4, 0.8], events
    gaps = [(back - gone).total_seconds() for (gone, _), back in zip(exits, restarts, strict=True)]
    assert all(gap >= delay - 0.002 for gap, (_, delay) in zip(gaps, exits, strict=True)), gaps
    assert gaps == sorted(gaps), gaps
    assert recovered[3] > recovered[0] + 0.5, recovered  # measured from outside too
    assert healthz(info)["pid"] == info.pid


def test_backoff_doubles_to_five_seconds_and_starts_over_after_thirty_seconds_of_service() -> None:
    backoff = Backoff()
    assert [backoff.delay(0.2) for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    assert backoff.delay(29.0) == 5.0
    assert backoff.delay(30.0) == 0.1  # the server had been healthy 30 s: a new crash is a new series
    assert backoff.delay(1.0) == 0.2


# -- signals -----------------------------------------------------------------------------------------------------
def test_sigterm_stops_server_and_supervisor_and_removes_the_runtime_file(supervised: Supervised) -> None:
    info = supervised.spawn()
    server = healthz(info)["server_pid"]
    os.kill(info.pid, signal.SIGTERM)
    _, status = os.waitpid(info.pid, 0)  # spawn's child: ours to reap
    assert os.waitstatus_to_exitcode(status) == 0
    wait_for(lambda: not pid_alive(server), 2.0, "the server stopped with its supervisor")
    assert not info_file(supervised).exists()
    wait_for(lambda: refuses(info.host, info.port), 0.5, "the port refused connections")
    log = supervised.log().read_text()
    assert "received SIGTERM, stopping" in log and f"model server (pid {server}) stopped (exit code 0)" in log


def test_a_sigkilled_supervisor_takes_its_server_down(supervised: Supervised) -> None:
    info = supervised.spawn()
    server = healthz(info)["server_pid"]
    os.kill(info.pid, signal.SIGKILL)
    took = wait_for(lambda: not pid_alive(server), 1.5, "the server exited after its supervisor's SIGKILL")
    assert took < 1.0, took
    assert servers_of(supervised.workdir) == []
    assert processes.find_running(info_file(supervised)) is None  # what apply sees: gone, to be created again
    wait_for(lambda: refuses(info.host, info.port), 0.5, "the port refused connections")


def test_sighup_is_forwarded_and_the_server_keeps_serving(supervised: Supervised) -> None:
    info = supervised.spawn()
    server = healthz(info)["server_pid"]
    processes.reload(info.pid)
    time.sleep(0.3)
    after = healthz(info)
    assert after["server_pid"] == server and after["restarts"] == 0  # forwarded, not fatal
    assert post(info)[0] == 200


# -- startup and options -----------------------------------------------------------------------------------------
def test_a_bad_artifact_fails_the_spawn_with_the_log_tail(supervised: Supervised, tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": "not-a-model"}')
    with pytest.raises(RuntimeError) as err:
        supervised.spawn("bad", artifact=bad)
    message = str(err.value)
    assert f"{SUPERVISOR} exited with code 2 during startup" in message, message
    assert "model_server: " in message and str(bad) in message  # the server's own error, from the log tail
    assert "exited during startup (exit code 2); giving up" in message
    assert servers_of(tmp_path) == [] and not info_file(supervised, "bad").exists()


def test_the_internal_token_and_the_failure_hook_reach_the_server(supervised: Supervised, tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token = "t" * 40
    token_file.write_text(token)
    info = supervised.spawn("guarded", ["--internal-token-file", str(token_file), "--model-id", "named:7"])
    assert healthz(info)["model_id"] == "named:7"  # healthz needs no token
    assert post(info)[0] == 403
    status, body = post(info, headers={"X-Mlplat-Internal": token})
    assert status == 200 and body["model_id"] == "named:7"
    assert processes.read_runtime(info_file(supervised, "guarded")).meta["model_id"] == "named:7"
    failing = supervised.spawn("failing", env={"MLPLAT_FAIL_UNDER": str(tmp_path / "failing")})
    assert post(failing)[0] == 500  # its runtime file (the supervisor's) lies under MLPLAT_FAIL_UNDER
    server, _ = kill_server(failing)
    wait_for(restarted(failing, server), 5.0, "the failing server restarted")
    assert post(failing)[0] == 500  # and so does the restarted one's


# -- end to end: the provisioner does not notice a healed server -------------------------------------------------
STACK = """\
apiVersion: mlplat/v1
metadata: {name: healing}
target: local
registry:
  name: models
  models: [{name: iris, version: "1", artifact: models/iris-v1.json}]
serving:
  - name: iris
    paths:
      production: {model: "iris:1"}
"""


def test_a_healed_model_server_leaves_the_next_plan_a_no_op(tmp_path: Path) -> None:
    from provisioner.api import Stack

    (tmp_path / "models").mkdir()
    shutil.copy(MODELS / "iris-v1.json", tmp_path / "models" / "iris-v1.json")
    (tmp_path / "stack.yaml").write_text(STACK)
    stack = Stack(tmp_path / "stack.yaml")
    try:
        stack.apply(stack.plan())
        record = stack.state.resources()["iris.model_server.production"]
        url = stack.outputs()["iris.url"]
        info = processes.ProcessInfo(record.outputs["pid"], record.outputs["port"], "127.0.0.1", 0.0)
        assert healthz(info)["pid"] == record.outputs["pid"]
        server, _ = kill_server(info)
        wait_for(restarted(info, server), 5.0, "the model server restarted")
        plan = stack.plan()
        assert not plan.has_changes, [(c.address, c.action, c.drift) for c in plan.changes if c.action != "noop"]
        assert stack.state.resources()["iris.model_server.production"].outputs == record.outputs
        status, body = post_url(url)
        assert status == 200 and body["model_id"] == "iris:1"
    finally:
        try:
            stack.apply(stack.plan(destroy=True))
        finally:
            stack.close()
            kill_everything_under(tmp_path)
    assert servers_of(tmp_path) == []


def kill_everything_under(directory: Path) -> None:
    """Test cleanup: supervisors, then servers, that a failed test left running."""
    for pid in servers_of(directory, "--runtime-file") + servers_of(directory):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def post_url(url: str) -> tuple[int, Any]:
    import urllib.error
    import urllib.request

    request = urllib.request.Request(url + "/invocations", data=json.dumps(IRIS).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read() or b"null")


def test_a_hung_server_is_replaced_not_doubled(tmp_path: Path) -> None:
    """A supervisor alive whose server answers nothing (here: stopped) shows as gone; apply stops it before it
    starts the new one in the same run directory, so one supervisor serves the path afterwards."""
    from provisioner.api import Stack

    (tmp_path / "models").mkdir()
    shutil.copy(MODELS / "iris-v1.json", tmp_path / "models" / "iris-v1.json")
    (tmp_path / "stack.yaml").write_text(STACK)
    stack = Stack(tmp_path / "stack.yaml")
    hung = None
    try:
        stack.apply(stack.plan())
        record = stack.state.resources()["iris.model_server.production"]
        info = processes.ProcessInfo(record.outputs["pid"], record.outputs["port"], "127.0.0.1", 0.0)
        hung = healthz(info)["server_pid"]
        os.kill(hung, signal.SIGSTOP)
        plan = stack.plan()
        change = next(c for c in plan.changes if c.address == "iris.model_server.production")
        assert change.action == "create" and change.drift == {"$gone": True}
        stack.apply(plan)
        assert not pid_alive(record.outputs["pid"]) and not pid_alive(hung)  # stopped, then killed with it
        again = stack.state.resources()["iris.model_server.production"]
        assert again.id == record.id and again.outputs["pid"] != record.outputs["pid"]  # the same run directory
        assert len(servers_of(tmp_path)) == 1
        assert not stack.plan().has_changes
        assert post_url(stack.outputs()["iris.url"])[0] == 200
    finally:
        if hung is not None and pid_alive(hung):
            os.kill(hung, signal.SIGKILL)
        try:
            stack.apply(stack.plan(destroy=True))
        finally:
            stack.close()
            kill_everything_under(tmp_path)
