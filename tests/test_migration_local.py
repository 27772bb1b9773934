"""Moving a serving endpoint between two local targets through its front door: real processes, real HTTP on
127.0.0.1, eight client threads sending requests the whole time, every failure counted."""

from __future__ import annotations

import json
import shutil
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from front_door_load import Load, invocation
from json_lines import summary_of

from conftest import STACKS, run_mlplat
from local_processes import servers_under

STACK = """\
# two local targets; the endpoint moves between them behind a front door on `local`
apiVersion: mlplat/v1
metadata: {name: moving}
target: local
targets:
  local2: {type: local, root: second}

registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: models/iris-v1.json}
    - {name: iris, version: "2", artifact: models/iris-v2.json}

serving:
  - name: iris
    front_door: local   # the stable URL
    migration: {steps: [10, 50, 100], window_s: 1.5}
    paths:
      production: {model: "iris:1", weight: 80}
      experimental: {model: "iris:2", weight: 20}
"""


def mlplat(stack: Path, *args: str, **kw: object) -> str:
    return run_mlplat(*args, "-f", str(stack), cwd=stack.parent, **kw).stdout  # type: ignore[arg-type]


def state_json(stack: Path) -> dict[str, dict]:
    listing = json.loads(mlplat(stack, "state", "list", "--json"))
    return {r["address"]: r for r in listing["resources"]}


@pytest.fixture
def moving(tmp_path: Path) -> Iterator[Path]:
    shutil.copytree(STACKS / "models", tmp_path / "models")
    stack = tmp_path / "moving.yaml"
    stack.write_text(STACK)
    mlplat(stack, "apply", "--yes")
    try:
        yield stack
    finally:
        run_mlplat("destroy", "-f", str(stack), "--yes", cwd=tmp_path, check=False)
        assert not servers_under(tmp_path), "destroy left server processes"


def source_servers(stack: Path) -> dict[int, str]:
    return servers_under(stack.parent / ".mlplat" / "moving" / "local" / "serving")


def test_move_between_local_targets_fails_no_request(moving: Path) -> None:
    url = mlplat(moving, "output", "iris.url").strip()
    assert source_servers(moving), "the endpoint serves from the first local target"
    with Load(url) as load:
        time.sleep(1.0)
        out = mlplat(moving, "migrate", "iris", "--to", "local2", "--yes", "--json")
        time.sleep(1.0)
    report = summary_of(out)
    print(f"\n[local → local2] failed requests: {len(load.failures)} of {len(load.served) + len(load.failures)}; "
          f"served per route: {dict(load.routes())}; phases: {report['migrations']['iris']}")
    assert load.failures == [], f"{len(load.failures)} failed requests: {load.failures[:5]}"
    seen = load.routes()
    assert seen["local"] > 0 and seen["local2"] > 0, seen
    assert load.last(50) == Counter({"local2": 50}), "after the move every request reaches the new target"
    assert set(report["migrations"]["iris"]) == {"provision", "transfer", "health-check", "shift", "teardown"}
    assert mlplat(moving, "output", "iris.url").strip() == url, "the front door's URL survives the move"
    assert source_servers(moving) == {}, "the source's processes are gone"
    text = moving.read_text()
    assert "    target: local2\n" in text and "# the stable URL" in text, "the stack file says where it is now"
    addresses = state_json(moving)
    assert not [a for a in addresses if "~" in a or a.startswith("_migration")]
    assert {addresses[a]["target"] for a in addresses if a.startswith("iris.") and ".front_door." not in a} \
        == {"local2"}
    assert "No changes" in mlplat(moving, "preview")


def test_failing_health_gate_returns_all_traffic_to_the_source(moving: Path) -> None:
    url = mlplat(moving, "output", "iris.url").strip()
    failing = {"MLPLAT_FAIL_UNDER": str(moving.parent / "second")}  # the destination's servers answer 500
    with Load(url) as load:
        time.sleep(0.5)
        proc = run_mlplat("migrate", "iris", "--to", "local2", "--yes", "-f", str(moving), cwd=moving.parent,
                          env=failing, check=False)
        before = len(load.served)
        time.sleep(1.5)
        after = load.served[before:]
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "the health gate failed at 10 % on local2" in proc.stderr, proc.stderr
    assert "all traffic is back on local" in proc.stderr, proc.stderr
    assert after and {name for _, name in after} == {"local"}, "once the gate failed, only the source serves"
    assert all("local2" in f for f in load.failures), load.failures  # only the destination failed requests
    assert source_servers(moving), "the source still runs"
    out = mlplat(moving, "migrate", "iris", "--rollback", "--yes")
    assert "roll back" in out
    assert "target:" not in moving.read_text().split("serving:")[1], "the file is as it was"
    assert not servers_under(moving.parent / "second"), "what was made on the destination is gone"
    assert not [a for a in state_json(moving) if "~" in a or a.startswith("_migration")]
    assert "No changes" in mlplat(moving, "preview")


def test_keep_source_then_rollback_restores_the_source_outputs(moving: Path) -> None:
    direct = mlplat(moving, "output", "iris.direct_url").strip()
    mlplat(moving, "migrate", "iris", "--to", "local2", "--keep-source", "--yes")
    assert source_servers(moving), "--keep-source keeps the source running"
    assert mlplat(moving, "output", "iris.direct_url").strip() != direct
    held = [a for a in state_json(moving) if "~" in a]
    assert held and all(a.endswith("~local") for a in held)
    assert "moved local → local2" in mlplat(moving, "preview")
    mlplat(moving, "migrate", "iris", "--rollback", "--yes")
    assert mlplat(moving, "output", "iris.direct_url").strip() == direct, "the source's outputs are back"
    assert not servers_under(moving.parent / "second")
    assert "No changes" in mlplat(moving, "preview")


@pytest.mark.parametrize("crash_at", ["migrate-hold:1", "pending:2", "migrate-provisioned:1", "migrate-shift:2",
                                      "migrate-teardown:1"])
def test_a_killed_migration_resumes_and_converges(moving: Path, crash_at: str) -> None:
    url = mlplat(moving, "output", "iris.url").strip()
    killed = run_mlplat("migrate", "iris", "--to", "local2", "--yes", "-f", str(moving), cwd=moving.parent,
                        env={"MLPLAT_CRASH_AT": crash_at}, check=False)
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert "target: local2" in moving.read_text(), "the move is declared in the file before anything runs"
    mlplat(moving, "apply", "--yes")
    assert source_servers(moving) == {}
    addresses = state_json(moving)
    assert not [a for a in addresses if "~" in a or a.startswith("_migration")]
    assert {addresses[a]["target"] for a in addresses if a.startswith("iris.") and ".front_door." not in a} \
        == {"local2"}
    with urllib.request.urlopen(invocation(url), timeout=10) as resp:
        assert resp.headers["X-Mlplat-Path"] == "local2"
    assert "No changes" in mlplat(moving, "preview")
