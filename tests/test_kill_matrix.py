"""The kill matrix: a 50-resource stack, `kill -9` at every step boundary of apply, then apply again.

Every crash point (50 steps x {pending, before-done, done} = 150) must converge to exactly the 50 resources:
the simulated cloud mints a new id on every create (as most cloud APIs do), so a create repeated by mistake
would leave a duplicate, and a create forgotten would leave an orphan. Run on sqlite and on a real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import signal
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from provisioner.api import Stack

from conftest import run_mlplat

RESOURCES = 50
PHASES = ("pending", "before-done", "done")


def stack_text(name: str) -> str:
    """cluster + 9 pools (10), 10 volumes (10), registry + 10 models (11), 4 two-path + 1 one-path endpoints (19)."""
    pools = "\n".join(f"      - {{name: p{i}, accelerator: l4, gpus_per_node: 1}}" for i in range(9))
    volumes = "\n".join(f"  - {{name: vol{i}, size_gb: {10 + i}}}" for i in range(10))
    models = "\n".join(f'    - {{name: m{i}, version: "1", artifact: m.json}}' for i in range(10))
    endpoints = "\n".join(
        f"  - name: ep{i}\n    paths:\n      production: {{model: \"m{2 * i}:1\", weight: 90}}\n"
        f"      experimental: {{model: \"m{2 * i + 1}:1\", weight: 10}}" for i in range(4))
    return f"""\
apiVersion: mlplat/v1
metadata: {{name: {name}}}
target: sim
targets:
  sim: {{store: cloud, tagged_ids: true}}
clusters:
  - name: train
    gpu_pools:
{pools}
storage:
{volumes}
registry:
  name: models
  models:
{models}
serving:
{endpoints}
  - name: solo
    paths:
      production: {{model: "m9:1"}}
"""


def converged(directory: Path, stack: Path, state_url: str | None) -> list[str]:
    """What is wrong with this directory's cloud and state after the resumed apply (empty: all good)."""
    problems = []
    objects = [json.loads(p.read_text()) for p in (directory / "cloud" / "objects").glob("*.json")]
    per_address = Counter(o["address"] for o in objects)
    # each create mints a new object and nothing is deleted here, so the objects are the creates; the log
    # (appended after each object is written, so a kill may lose its last lines) must not name an address twice
    if len(objects) != RESOURCES or len(per_address) != RESOURCES:
        problems.append(f"{len(objects)} objects for {len(per_address)} addresses: "
                        f"{[a for a, n in per_address.items() if n > 1]} duplicated")
    logged = Counter(line.split()[1] for line in (directory / "cloud" / "creates.log").read_text().splitlines())
    if any(n > 1 for n in logged.values()):
        problems.append(f"created twice: {[a for a, n in logged.items() if n > 1]}")
    stack_api = Stack(stack, state_url=state_url)
    recorded = {r.id: r.address for r in stack_api.state.resources().values()}
    if recorded != {o["id"]: o["address"] for o in objects}:
        problems.append(f"state and cloud differ: {len(recorded)} recorded, {len(objects)} objects")
    if stack_api.state.pending():
        problems.append(f"{len(stack_api.state.pending())} journal entries still pending")
    changes = [c for c in stack_api.plan().changes if c.action != "noop"]
    if changes:
        problems.append(f"the next plan is not a no-op: {[(c.address, c.action) for c in changes][:5]}")
    stack_api.state.close()
    return problems


def crash_and_resume(base: Path, phase: str, step: int, state_url_for: Any) -> tuple[str, list[str]]:
    point = f"{phase}:{step}"
    directory = base / f"{phase}-{step}"
    directory.mkdir()
    (directory / "m.json").write_text("{}")
    name = f"kill-{phase.replace('-', '')}-{step}"
    stack = directory / "stack.yaml"
    stack.write_text(stack_text(name))
    url = state_url_for(name, directory)
    state_args = ["--state", url] if url else []
    crashed = run_mlplat("apply", "--yes", "-f", str(stack), *state_args, cwd=directory, check=False,
                         env={"MLPLAT_CRASH_AT": point})
    if crashed.returncode != -signal.SIGKILL:
        return point, [f"the crash point was not reached (exit {crashed.returncode}): {crashed.stderr[-300:]}"]
    resumed = run_mlplat("apply", "--yes", "-f", str(stack), *state_args, cwd=directory, check=False)
    if resumed.returncode != 0:
        return point, [f"resumed apply failed: {resumed.stderr[-500:]}"]
    return point, converged(directory, stack, url)


def run_matrix(base: Path, state_url_for: Any) -> None:
    points = [(phase, step) for step in range(1, RESOURCES + 1) for phase in PHASES]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda p: crash_and_resume(base, p[0], p[1], state_url_for), points))
    failed = {point: problems for point, problems in results if problems}
    report = os.environ.get("MLPLAT_KILL_MATRIX_REPORT")
    if report:
        with open(report, "a") as fh:
            fh.write(json.dumps({"crash_points": len(results), "converged": len(results) - len(failed),
                                 "state": state_url_for("x", base) or "sqlite"}) + "\n")
    assert not failed, f"{len(failed)} of {len(results)} crash points did not converge: {failed}"


@pytest.mark.slow
def test_kill_matrix_on_sqlite(tmp_path: Path) -> None:
    run_matrix(tmp_path, lambda name, directory: None)  # the default: .mlplat/<stack>.db beside the stack


@pytest.mark.slow
def test_kill_matrix_on_postgres(tmp_path: Path, postgres_server: Any) -> None:
    url = postgres_server.url("killmatrix")  # one database, one stack per crash point
    os.environ.update(postgres_server.env())
    run_matrix(tmp_path, lambda name, directory: url)
