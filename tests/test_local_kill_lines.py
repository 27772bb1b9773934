"""`kill -9` after every progress line of the quickstart's apply and of its destroy, then the processes held
against the state: after the resumed apply exactly the servers the state records run (no twin, no orphan) and
the outputs answer; after a destroy nothing runs and nothing of mlplat's is left beside the stack file.

Unlike the journal's crash points (tests/test_crash_recovery.py) these kills land wherever the apply happens to
be when the line is read: inside a spawn, between a marker and its process, in the middle of a router reload.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from provisioner.api import Stack

from conftest import STACKS, run_mlplat
from local_processes import kill_all, servers_under

ENV = {**os.environ, "NO_COLOR": "1", "COLUMNS": "200"}


def killed_after_line(args: list[str], cwd: Path, line: int) -> list[str]:
    """Run mlplat and SIGKILL it as soon as its `line`-th progress line (stderr) is read; the lines read."""
    proc = subprocess.Popen([sys.executable, "-m", "provisioner.cli", *args], cwd=cwd, env=ENV, text=True,
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    seen = []
    for text in proc.stderr:
        seen.append(text.rstrip("\n"))
        if len(seen) == line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.stderr.close()
    proc.wait(timeout=60)
    return seen


def fresh_copy(base: Path, name: str) -> Path:
    directory = base / name
    directory.mkdir()
    shutil.copy(STACKS / "quickstart.yaml", directory / "quickstart.yaml")
    shutil.copytree(STACKS / "models", directory / "models")
    return directory / "quickstart.yaml"


def recorded(stack: Path) -> tuple[dict[int, str], int]:
    """pid -> address of the processes the state records, and how many journal entries are pending."""
    api = Stack(stack)
    try:
        records = api.state.resources().values()
        pids = {r.outputs["pid"]: r.address for r in records if r.kind in ("local.model_server", "local.router")}
        return pids, len(api.state.pending())
    finally:
        api.close()


def check_applied(stack: Path) -> list[str]:
    """After a complete apply: the processes running are exactly those the state records, and serve."""
    problems = []
    running = servers_under(stack.parent)
    pids, pending = recorded(stack)
    if set(running) != set(pids) or len(pids) != 3:
        problems.append(f"running {sorted(running.values())} but the state records {sorted(pids.values())}")
    if pending:
        problems.append(f"{pending} journal entries still pending")
    url = run_mlplat("output", "iris.url", "-f", str(stack), cwd=stack.parent, check=False).stdout.strip()
    try:
        request = urllib.request.Request(url + "/invocations", method="POST",
                                         data=b'{"instances": [[5.1, 3.5, 1.4, 0.2]]}')
        with urllib.request.urlopen(request, timeout=10) as resp:
            json.loads(resp.read())
    except (OSError, ValueError) as err:
        problems.append(f"the endpoint {url!r} does not answer: {err}")
    preview = run_mlplat("preview", "-f", str(stack), "--detailed-exitcode", cwd=stack.parent, check=False)
    if preview.returncode != 0:
        problems.append(f"the next preview is not a no-op: {preview.stdout[-400:]}{preview.stderr[-400:]}")
    return problems


def check_destroyed(stack: Path) -> list[str]:
    """After a complete destroy: no process, and nothing of mlplat's beside the stack file."""
    problems = []
    running = servers_under(stack.parent)
    if running:
        problems.append(f"destroy exited 0 while these still run: {sorted(running.values())}")
    left = sorted(str(p.relative_to(stack.parent)) for p in stack.parent.rglob("*") if "models" not in p.parts)
    if left != ["quickstart.yaml"]:
        problems.append(f"destroy left {left}")
    return problems


def attempt(args: list[str], stack: Path) -> list[str]:
    proc = run_mlplat(*args, "-f", str(stack), "--yes", cwd=stack.parent, check=False)
    return [] if proc.returncode == 0 else [f"mlplat {args[0]} failed: {proc.stderr[-600:]}"]


def apply_killed_at(base: Path, line: int) -> list[str]:
    """Killed apply, then (a) apply again: converged; (b) killed apply, then destroy straight away: nothing left."""
    problems = []
    stack = fresh_copy(base, f"apply-{line}")
    try:
        killed_after_line(["apply", "-f", str(stack), "--yes"], stack.parent, line)
        problems += attempt(["apply"], stack) or check_applied(stack)
        problems += attempt(["destroy"], stack) or check_destroyed(stack)
        killed_after_line(["apply", "-f", str(stack), "--yes"], stack.parent, line)
        problems += attempt(["destroy"], stack) or check_destroyed(stack)
    finally:
        kill_all(stack.parent)
    return [f"apply killed after line {line}: {p}" for p in problems]


def destroy_killed_at(base: Path, line: int) -> list[str]:
    problems = []
    stack = fresh_copy(base, f"destroy-{line}")
    try:
        problems += attempt(["apply"], stack)
        killed_after_line(["destroy", "-f", str(stack), "--yes"], stack.parent, line)
        problems += attempt(["destroy"], stack) or check_destroyed(stack)
    finally:
        kill_all(stack.parent)
    return [f"destroy killed after line {line}: {p}" for p in problems]


def progress_lines(base: Path) -> tuple[int, int]:
    """How many progress lines a whole apply and a whole destroy of the quickstart print."""
    stack = fresh_copy(base, "reference")
    try:
        applied = run_mlplat("apply", "-f", str(stack), "--yes", cwd=stack.parent).stderr.splitlines()
        destroyed = run_mlplat("destroy", "-f", str(stack), "--yes", cwd=stack.parent).stderr.splitlines()
    finally:
        kill_all(stack.parent)
    return len(applied), len(destroyed)


@pytest.mark.slow
def test_kill_after_every_progress_line_of_apply_and_destroy(tmp_path: Path) -> None:
    apply_lines, destroy_lines = progress_lines(tmp_path)
    assert apply_lines >= 18 and destroy_lines >= 18  # a start and a done line per step of the 9 resources
    jobs = [(apply_killed_at, n) for n in range(1, apply_lines + 1)]
    jobs += [(destroy_killed_at, n) for n in range(1, destroy_lines + 1)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(lambda job: job[0](tmp_path, job[1]), jobs))
    problems = [p for result in results for p in result]
    assert not problems, f"{len(problems)} problem(s) in {len(jobs)} kill points:\n" + "\n".join(problems)
