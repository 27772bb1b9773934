"""A model server killed under load: the router takes its path out of rotation, the supervisor restarts it, and
the platform is as declared again — real processes, real HTTP on 127.0.0.1, every failed request counted."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from front_door_load import Load

from conftest import STACKS, run_mlplat
from local_processes import servers_under

STACK = """\
apiVersion: mlplat/v1
metadata: {name: failover}
target: local
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: models/iris-v1.json}
    - {name: iris, version: "2", artifact: models/iris-v2.json}
serving:
  - name: iris
    paths:
      production: {model: "iris:1", weight: 50}
      experimental: {model: "iris:2", weight: 50}
"""


def mlplat(stack: Path, *args: str, **kw: object) -> str:
    return run_mlplat(*args, "-f", str(stack), cwd=stack.parent, **kw).stdout  # type: ignore[arg-type]


def get_json(url: str, timeout: float = 3) -> dict:
    with urllib.request.urlopen(url, timeout=timeout) as resp:
        return json.loads(resp.read())


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(STACKS / "models", tmp_path / "models")
    path = tmp_path / "failover.yaml"
    path.write_text(STACK)
    mlplat(path, "apply", "--yes")
    try:
        yield path
    finally:
        run_mlplat("destroy", "-f", str(path), "--yes", cwd=tmp_path, check=False)
        assert not servers_under(tmp_path), "destroy left server processes"


def record(stack: Path, address: str) -> dict:
    return json.loads(mlplat(stack, "state", "show", address))


def health_of(router_url: str, path: str) -> dict:
    return get_json(router_url + "/-/stats")["health"][path]


def server_pid(url: str) -> int | None:
    """The pid of the server answering at `url`; None while none does (a short timeout: while the supervisor
    restarts it, a request waits in the port's backlog)."""
    try:
        return get_json(url + "/-/healthz", timeout=0.05)["server_pid"]
    except OSError:
        return None


def wait_restarted(url: str, old: int, timeout: float = 10) -> float:
    """Seconds until the supervisor at `url` answers from a server other than `old`."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        pid = server_pid(url)
        if pid is not None and pid != old:
            return time.monotonic() - started
        time.sleep(0.01)
    raise AssertionError(f"the model server at {url} did not come back within {timeout} s")


def test_a_killed_model_server_fails_no_request_and_comes_back(stack: Path) -> None:
    """One kill: the supervisor restarts the server on the same port within a fraction of a second, requests that
    reached it meanwhile wait in the port's backlog (or are retried on the other path) — none fails. Then a crash
    loop, whose backoff outlasts the router's health check: the path is taken out of rotation, its share goes to
    the other path, and it is put back when the server is."""
    url = mlplat(stack, "output", "iris.url").strip()
    server = record(stack, "iris.model_server.production")
    supervisor_url = server["outputs"]["url"]
    child = server_pid(supervisor_url)
    assert child is not None and child != server["outputs"]["pid"], "the recorded pid is the supervisor's"

    with Load(url, threads=6) as load:
        time.sleep(1.0)
        os.kill(child, signal.SIGKILL)
        restart_s = wait_restarted(supervisor_url, child)
        time.sleep(1.0)
        failed_after_one_kill = len(load.failures)

        # a crash loop: each kill as soon as the server is back, so the backoff doubles (0.1 s ... 1.6 s)
        downs_before = health_of(url, "production")["downs"]
        for _ in range(5):
            child = server_pid(supervisor_url)
            assert child is not None
            killed = time.monotonic()
            os.kill(child, signal.SIGKILL)
            down_at = None
            while True:
                if down_at is None and not health_of(url, "production")["up"]:
                    down_at = time.monotonic()
                if server_pid(supervisor_url) not in (None, child):
                    break
                time.sleep(0.01)
        up_at = None
        while up_at is None and time.monotonic() - killed < 10:
            if health_of(url, "production")["up"]:
                up_at = time.monotonic()
            time.sleep(0.01)
        time.sleep(1.0)  # traffic on both paths again
    health = health_of(url, "production")
    during = [route for at, route in load.served if down_at is not None and up_at is not None
              and down_at + 0.1 < at < up_at - 0.1]
    after = [route for at, route in load.served if up_at is not None and at > up_at + 0.2]

    total = len(load.served) + len(load.failures)
    print(f"\n[kill under load] {total} requests, {len(load.failures)} failed; one kill: back in "
          f"{restart_s * 1000:.0f} ms, {failed_after_one_kill} failed; crash loop: out of rotation "
          f"{(down_at - killed) * 1000 if down_at else float('nan'):.0f} ms after the last kill, back "
          f"{(up_at - killed) * 1000 if up_at else float('nan'):.0f} ms after it; served while out: "
          f"{dict(Counter(during))}; served per path: {dict(load.routes())}")
    assert load.failures == [], load.failures[:5]
    assert down_at is not None and health["downs"] > downs_before, "the router never took the path out of rotation"
    assert up_at is not None, "the router never put the path back"
    assert during and set(during) == {"experimental"}, "the other path took the dead path's share"
    assert "production" in after and "experimental" in after
    healed = get_json(supervisor_url + "/-/healthz")
    assert healed["pid"] == server["outputs"]["pid"] and healed["restarts"] == 6

    # the supervisor healed it: nothing to do
    assert "No changes" in mlplat(stack, "preview")
    assert record(stack, "iris.model_server.production")["outputs"] == server["outputs"]
