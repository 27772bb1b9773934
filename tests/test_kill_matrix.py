"""The kill matrices: `kill -9` at every journal boundary of an apply, then apply again.

The first applies a 50-resource stack from nothing (creates only): every crash point (50 steps x {pending,
before-done, done} = 150) must converge to exactly the 50 resources. The second changes a converged stack so
that its apply updates in place, replaces both ways (destroy-before-create and create-before-destroy), deletes
and creates; every crash point of that apply must converge to what the state records, with every replaced or
removed object gone and no deposed object forgotten. The simulated cloud mints a new id on every create (as
most cloud APIs do), so a create repeated by mistake leaves a duplicate, and an object forgotten is an orphan.
Both run on sqlite and on a real PostgreSQL.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from provisioner.api import Stack
from provisioner.apply import build_steps
from provisioner.state import StateMeta, open_state

from conftest import run_mlplat

RESOURCES = 50
PHASES = ("pending", "before-done", "done")


def sim_stack(name: str, pools: str, volumes: str, models: str, serving: str) -> str:
    """A stack on the sim target (a new id per create), from its YAML list items."""
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
{serving}"""


def stack_text(name: str) -> str:
    """cluster + 9 pools (10), 10 volumes (10), registry + 10 models (11), 4 two-path + 1 one-path endpoints (19)."""
    pools = "\n".join(f"      - {{name: p{i}, accelerator: l4, gpus_per_node: 1}}" for i in range(9))
    volumes = "\n".join(f"  - {{name: vol{i}, size_gb: {10 + i}}}" for i in range(10))
    models = "\n".join(f'    - {{name: m{i}, version: "1", artifact: m.json}}' for i in range(10))
    endpoints = "\n".join(
        f"  - name: ep{i}\n    paths:\n      production: {{model: \"m{2 * i}:1\", weight: 90}}\n"
        f"      experimental: {{model: \"m{2 * i + 1}:1\", weight: 10}}" for i in range(4))
    solo = '  - name: solo\n    paths:\n      production: {model: "m9:1"}\n'
    return sim_stack(name, pools, volumes, models, f"{endpoints}\n{solo}")


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


def kill_and_rerun(point: str, directory: Path, stack: Path, state_args: list[str]) -> list[str]:
    """`mlplat apply` killed (SIGKILL) at `point`, then the same apply again: what went wrong, [] if both did
    as they should."""
    crashed = run_mlplat("apply", "--yes", "-f", str(stack), *state_args, cwd=directory, check=False,
                         env={"MLPLAT_CRASH_AT": point})
    if crashed.returncode != -signal.SIGKILL:
        return [f"the crash point was not reached (exit {crashed.returncode}): {crashed.stderr[-300:]}"]
    resumed = run_mlplat("apply", "--yes", "-f", str(stack), *state_args, cwd=directory, check=False)
    if resumed.returncode != 0:
        return [f"resumed apply failed: {resumed.stderr[-500:]}"]
    return []


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
    failed = kill_and_rerun(point, directory, stack, state_args)
    if failed:
        return point, failed
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


# -- the change matrix: crashes during updates, replaces (both orders), deletes and creates --------------------

CHANGE_STACK = "kill-change"  # the base apply's stack (and, on sqlite, every crash point's: each has its own copy)


def change_stack_text(name: str, *, changed: bool) -> str:
    """The base stack (28 resources), or the change applied on top of it.

    The change: pool p0 gains a GPU and p1 grows (updates), p2 goes (delete); vol0 grows (update), vol1 goes
    and vol2 comes (delete, create); the registry gains m6:1 and m3:2 and drops m3:1 (creates, delete). ep0's
    production path moves to m6:1 and ep1's experimental path to m3:2 (their sim.model replaced destroy-first,
    and so their configs, which point at a model replaced destroy-first); ep2 gains an experimental path and
    ep3 loses one (a model created / deleted, their configs replaced create-before-destroy); every endpoint
    whose config or weights change is updated in place.
    """
    pools = [("p0", 2 if changed else 1, 2), ("p1", 1, 4 if changed else 2)] + ([] if changed else [("p2", 1, 1)])
    volumes = [("vol0", 20 if changed else 10), ("vol2", 12) if changed else ("vol1", 11)]
    refs = ["m0:1", "m1:1", "m2:1", "m4:1", "m5:1", *(["m3:2", "m6:1"] if changed else ["m3:1"])]

    def endpoint(name: str, production: str, experimental: str | None = None, weights: tuple[int, int] = (90, 10)
                 ) -> str:
        if experimental is None:
            return f"  - name: {name}\n    paths:\n      production: {{model: \"{production}\"}}\n"
        return (f"  - name: {name}\n    paths:\n      production: {{model: \"{production}\", weight: {weights[0]}}}\n"
                f"      experimental: {{model: \"{experimental}\", weight: {weights[1]}}}\n")

    serving = (endpoint("ep0", "m6:1" if changed else "m0:1", "m1:1")
               + endpoint("ep1", "m2:1", "m3:2" if changed else "m3:1", (80, 20) if changed else (90, 10))
               + (endpoint("ep2", "m4:1", "m5:1", (80, 20)) if changed else endpoint("ep2", "m4:1"))
               + (endpoint("ep3", "m5:1") if changed else endpoint("ep3", "m5:1", "m1:1", (70, 30))))
    pool_lines = "\n".join(f"      - {{name: {n}, accelerator: l4, gpus_per_node: {gpus}, "
                           f"nodes: {{min: 1, max: {top}}}}}" for n, gpus, top in pools)
    volume_lines = "\n".join(f"  - {{name: {n}, size_gb: {size}}}" for n, size in volumes)
    model_lines = "\n".join(f'    - {{name: {r.split(":")[0]}, version: "{r.split(":")[1]}", artifact: m.json}}'
                            for r in refs)
    return sim_stack(name, pool_lines, volume_lines, model_lines, serving)


@dataclass
class ChangeScenario:
    base: Path  # a converged apply of the base stack: its sqlite state (.mlplat) and its cloud store
    steps: int  # steps of the change's apply, each one journal entry: crash points = steps x PHASES
    ops: dict[str, int]  # the change's steps by kind, for the record
    doomed: dict[str, str]  # base object id -> address: what the change replaces or removes (must be gone)
    kept: dict[str, str]  # address -> base object id: what it updates in place or leaves alone (same id after)
    base_creates: int  # lines in the base's creates.log


def store_objects(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(p.read_text()) for p in (directory / "cloud" / "objects").glob("*.json")]


def change_scenario(root: Path) -> ChangeScenario:
    """Apply the base stack once, plan the change against it, and apply the change once uncrashed (a reference:
    the checks must hold for it, and it must journal exactly one entry per planned step)."""
    base = root / "base"
    base.mkdir()
    (base / "m.json").write_text("{}")
    (base / "stack.yaml").write_text(change_stack_text(CHANGE_STACK, changed=False))
    run_mlplat("apply", "--yes", "-f", "stack.yaml", cwd=base)
    reference = root / "reference"
    shutil.copytree(base, reference)
    (reference / "stack.yaml").write_text(change_stack_text(CHANGE_STACK, changed=True))
    stack_api = Stack(reference / "stack.yaml")
    try:
        records = stack_api.state.resources()
        base_journal = len([e for e in stack_api.state.journal() if e.op != "run"])
        plan = stack_api.plan()
    finally:
        stack_api.close()
    steps = build_steps(plan)
    ops = Counter(step.op for step in steps.values())
    by_change = Counter(c.action if c.action != "replace" else
                        "replace create-before-destroy" if c.create_before_destroy else "replace destroy-before-create"
                        for c in plan.changes)
    # the mix this matrix exists for (a change of the planner that loses one must be noticed, not skipped over)
    for action in ("update", "replace destroy-before-create", "replace create-before-destroy", "delete", "create"):
        assert by_change[action] >= 2, f"the change plans {by_change[action]} {action}(s), not at least 2: {by_change}"
    assert all(not c.deposed for c in plan.changes) and all(not r.deposed for r in records.values())
    scenario = ChangeScenario(
        base, len(steps), {**{f"step {op}": n for op, n in sorted(ops.items())},
                           **{f"change {a}": n for a, n in sorted(by_change.items()) if a != "noop"}},
        {records[c.address].id: c.address for c in plan.changes if c.action in ("replace", "delete")},
        {c.address: records[c.address].id for c in plan.changes if c.action in ("update", "noop")},
        len((base / "cloud" / "creates.log").read_text().splitlines()))
    run_mlplat("apply", "--yes", "-f", "stack.yaml", cwd=reference)
    stack_api = Stack(reference / "stack.yaml")
    try:
        journalled = len([e for e in stack_api.state.journal() if e.op != "run"]) - base_journal
    finally:
        stack_api.close()
    assert journalled == scenario.steps, \
        f"the change's apply journalled {journalled} entries for {scenario.steps} planned steps"
    problems = converged_after_change(reference, reference / "stack.yaml", None, scenario)
    assert not problems, f"the uncrashed change does not pass the checks: {problems}"
    return scenario


def converged_after_change(directory: Path, stack: Path, state_url: str | None, scenario: ChangeScenario) -> list[str]:
    """What is wrong with this directory's cloud and state after the change's apply was resumed (empty: all good)."""
    problems = []
    objects = {o["id"]: o["address"] for o in store_objects(directory)}
    duplicated = sorted(a for a, n in Counter(objects.values()).items() if n > 1)
    if duplicated:
        problems.append(f"more than one object for {duplicated}")
    # the change's creates (after the base's lines; a kill may lose the last line): one per address at most
    logged = Counter(line.split()[1] for line in
                     (directory / "cloud" / "creates.log").read_text().splitlines()[scenario.base_creates:])
    if any(n > 1 for n in logged.values()):
        problems.append(f"created twice by the change: {sorted(a for a, n in logged.items() if n > 1)}")
    gone = {i: a for i, a in scenario.doomed.items() if i in objects}
    if gone:
        problems.append(f"replaced or removed objects still exist: {gone}")
    stack_api = Stack(stack, state_url=state_url)
    try:
        records = stack_api.state.resources()
        deposed = {d: r.address for r in records.values() for d in r.deposed}
        if deposed:
            problems.append(f"deposed objects still recorded: {deposed}")
        recorded = {r.id: r.address for r in records.values()} | {d: a for d, a in deposed.items() if d in objects}
        if recorded != objects:
            orphans = {i: a for i, a in objects.items() if recorded.get(i) != a}
            missing = {i: a for i, a in recorded.items() if objects.get(i) != a}
            problems.append(f"state and cloud differ: objects no record names {orphans}; "
                            f"records whose object is not there {missing}")
        moved = {a: [i, records[a].id if a in records else None] for a, i in scenario.kept.items()
                 if a not in records or records[a].id != i}
        if moved:
            problems.append(f"objects the change keeps (updated in place or untouched) were replaced "
                            f"([before, after]): {moved}")
        pending = stack_api.state.pending()
        if pending:
            problems.append(f"journal entries still pending: {[(e.op, e.record.address) for e in pending]}")
        plan = stack_api.plan()
        changes = [(c.address, c.action, c.deposed) for c in plan.changes if c.action != "noop" or c.deposed]
        if changes:
            problems.append(f"the next plan is not a no-op: {changes[:8]}")
    finally:
        stack_api.close()
    return problems


#: (crash point label, copied directory) -> (stack name, state URL or None for the sqlite beside the stack)
Seed = Callable[[str, Path], tuple[str, str | None]]


def crash_change_and_resume(root: Path, scenario: ChangeScenario, phase: str, step: int,
                            seed: Seed) -> tuple[str, list[str]]:
    point = f"{phase}:{step}"
    directory = root / f"change-{phase}-{step}"
    shutil.copytree(scenario.base, directory)
    name, url = seed(f"{phase.replace('-', '')}-{step}", directory)
    stack = directory / "stack.yaml"
    stack.write_text(change_stack_text(name, changed=True))
    state_args = ["--state", url] if url else []
    failed = kill_and_rerun(point, directory, stack, state_args)
    if failed:
        return point, failed
    return point, converged_after_change(directory, stack, url, scenario)


def run_change_matrix(root: Path, seed: Seed, backend: str) -> None:
    scenario = change_scenario(root)
    points = [(phase, step) for step in range(1, scenario.steps + 1) for phase in PHASES]
    with ThreadPoolExecutor(max_workers=max(2, os.cpu_count() or 2)) as pool:
        results = list(pool.map(lambda p: crash_change_and_resume(root, scenario, p[0], p[1], seed), points))
    failed = {point: problems for point, problems in results if problems}
    report = os.environ.get("MLPLAT_KILL_MATRIX_REPORT")
    if report:
        with open(report, "a") as fh:
            fh.write(json.dumps({"matrix": "change", "steps": scenario.ops, "crash_points": len(results),
                                 "converged": len(results) - len(failed), "state": backend}) + "\n")
    assert not failed, (f"{len(failed)} of {len(results)} crash points of the change ({scenario.ops}) did not "
                        f"converge: {failed}")


@pytest.mark.slow
def test_change_kill_matrix_on_sqlite(tmp_path: Path) -> None:
    # each crash point copies the base directory: its .mlplat/kill-change.db and its cloud store
    run_change_matrix(tmp_path, lambda label, directory: (CHANGE_STACK, None), "sqlite")


@pytest.mark.slow
def test_change_kill_matrix_on_postgres(tmp_path: Path, postgres_server: Any) -> None:
    url = postgres_server.url("killchange")  # one database, one stack per crash point
    os.environ.update(postgres_server.env())

    def seed(label: str, directory: Path) -> tuple[str, str | None]:
        """The base state (applied once, on sqlite) copied into this crash point's own stack in PostgreSQL."""
        name = f"change-{label}"
        source = open_state(CHANGE_STACK, directory)
        destination = open_state(name, directory, url=url)
        try:
            destination.codec = source.codec  # the copy keeps the source's lineage, and the key is salted with it
            meta = source.meta()
            destination.import_state(StateMeta(meta.lineage, meta.serial, name), list(source.resources().values()),
                                     [], source.get_outputs())
        finally:
            source.close()
            destination.close()
        return name, url

    run_change_matrix(tmp_path, seed, "postgres")
