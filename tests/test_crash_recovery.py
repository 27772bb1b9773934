"""A crash anywhere in apply is recoverable: the apply process is killed with SIGKILL between journal records
(MLPLAT_CRASH_AT=<phase>:<n>), then apply runs again and must converge with no duplicate and no orphan."""

from __future__ import annotations

import json
import signal
from collections import Counter
from pathlib import Path

import pytest

from mlplat_plugins.local.runtime.processes import find_running

from conftest import run_mlplat

SIM_STACK = """\
apiVersion: mlplat/v1
metadata: {name: crashy}
target: sim
targets:
  sim: {store: cloud}
clusters:
  - name: train
    gpu_pools:
      - {name: a, accelerator: h100, gpus_per_node: 8, nodes: {min: 0, max: 4}}
      - {name: b, accelerator: l4, gpus_per_node: 1}
storage:
  - {name: shared, size_gb: 100}
registry:
  name: models
  models:
    - {name: iris, version: "1", artifact: m1.json}
    - {name: iris, version: "2", artifact: m2.json}
serving:
  - name: iris
    paths:
      production: {model: "iris:1", weight: 90}
      experimental: {model: "iris:2", weight: 10}
"""
SIM_RESOURCES = 11  # cluster + 2 pools + filesystem + registry + 2 models + 2 path models + config + endpoint


def sim_stack(tmp_path: Path) -> Path:
    stack = tmp_path / "stack.yaml"
    stack.write_text(SIM_STACK)
    return stack


def cloud_objects(tmp_path: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (tmp_path / "cloud" / "objects").glob("*.json")]


def assert_converged(tmp_path: Path, stack: Path) -> None:
    objects = cloud_objects(tmp_path)
    addresses = Counter(o["address"] for o in objects)
    assert len(objects) == SIM_RESOURCES, addresses
    assert all(n == 1 for n in addresses.values()), f"duplicates: {addresses}"
    creates = Counter(line.split()[1] for line in (tmp_path / "cloud" / "creates.log").read_text().splitlines())
    assert all(n == 1 for n in creates.values()), f"created twice: {creates}"
    state = json.loads(run_mlplat("state", "list", "--json", "-f", str(stack), cwd=tmp_path).stdout)
    recorded = {r["id"]: r["address"] for r in state["resources"]}
    assert recorded == {o["id"]: o["address"] for o in objects}  # no orphan, nothing recorded that is not there
    preview = run_mlplat("preview", "-f", str(stack), "--detailed-exitcode", cwd=tmp_path, check=False)
    assert preview.returncode == 0, preview.stdout + preview.stderr


@pytest.mark.parametrize("phase", ["pending", "before-done", "done"])
@pytest.mark.parametrize("step", [1, 6, SIM_RESOURCES])
def test_apply_killed_between_journal_records_resumes_without_duplicates(tmp_path: Path, phase: str,
                                                                         step: int) -> None:
    (tmp_path / "m1.json").write_text("{}")
    (tmp_path / "m2.json").write_text('{"v": 2}')
    stack = sim_stack(tmp_path)
    crashed = run_mlplat("apply", "-f", str(stack), "--yes", cwd=tmp_path, check=False,
                         env={"MLPLAT_CRASH_AT": f"{phase}:{step}"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    resumed = run_mlplat("apply", "-f", str(stack), "--yes", cwd=tmp_path)
    if phase != "done":
        assert "recovered" in resumed.stderr
    assert_converged(tmp_path, stack)


def test_interrupted_destroy_finishes_on_the_next_run(tmp_path: Path) -> None:
    (tmp_path / "m1.json").write_text("{}")
    (tmp_path / "m2.json").write_text("{}")
    stack = sim_stack(tmp_path)
    run_mlplat("apply", "-f", str(stack), "--yes", cwd=tmp_path)
    crashed = run_mlplat("destroy", "-f", str(stack), "--yes", cwd=tmp_path, check=False,
                         env={"MLPLAT_CRASH_AT": "before-done:4"})
    assert crashed.returncode == -signal.SIGKILL
    run_mlplat("destroy", "-f", str(stack), "--yes", cwd=tmp_path)
    assert cloud_objects(tmp_path) == []
    assert run_mlplat("state", "list", "-f", str(stack), cwd=tmp_path).stdout.strip() == ""


@pytest.mark.parametrize("step", range(1, 10))
def test_local_apply_killed_after_any_step_converges_without_twin_processes(quickstart_dir: Path,
                                                                           step: int) -> None:
    """Every step of the quickstart (9 resources) in turn: killed after the work, before the journal's done
    record. Servers started before the kill must be found again, not started twice."""
    stack = quickstart_dir / "quickstart.yaml"
    try:
        crashed = run_mlplat("apply", "-f", str(stack), "--yes", "--parallelism", "1", cwd=quickstart_dir,
                             check=False, env={"MLPLAT_CRASH_AT": f"before-done:{step}"})
        assert crashed.returncode == -signal.SIGKILL, crashed.stderr
        run_mlplat("apply", "-f", str(stack), "--yes", cwd=quickstart_dir)
        serving = quickstart_dir / ".mlplat" / "quickstart" / "local" / "serving" / "iris"
        running = [d.name for d in serving.iterdir() if find_running(d / "runtime.json")]
        assert len(running) == 3, running  # production, experimental, router: one of each
        assert run_mlplat("preview", "-f", str(stack), "--detailed-exitcode", cwd=quickstart_dir,
                          check=False).returncode == 0
    finally:
        run_mlplat("destroy", "-f", str(stack), "--yes", cwd=quickstart_dir, check=False)
