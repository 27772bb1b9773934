"""Long-running cloud operations, end to end on the sim target: a checkpointed operation is resumed after a
crash (never issued twice), Ctrl-C stops an apply within 2 s leaving it resumable, per-target `timeouts:` bound
a wait, throttled reads no longer fail a preview, and a kind's secret outputs need a state key up front and are
sealed."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from provisioner.api import Stack
from provisioner.errors import SpecError
from provisioner.events import Event

from conftest import run_mlplat

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: longops}}
target: sim
targets:
  sim: {{store: cloud, tagged_ids: true, {settings}}}
storage:
  - {{name: a, size_gb: 10}}
  - {{name: b, size_gb: 20}}
  - {{name: c, size_gb: 30}}
"""
ADDRESSES = {"a.filesystem.main", "b.filesystem.main", "c.filesystem.main"}


def write_stack(directory: Path, settings: str) -> Path:
    stack = directory / "stack.yaml"
    stack.write_text(STACK.format(settings=settings))
    return stack


def log_lines(directory: Path, name: str) -> list[str]:
    path = directory / "cloud" / name
    return path.read_text().splitlines() if path.is_file() else []


def assert_converged(directory: Path, stack: Path) -> None:
    objects = [json.loads(p.read_text()) for p in (directory / "cloud" / "objects").glob("*.json")]
    assert Counter(o["address"] for o in objects) == dict.fromkeys(ADDRESSES, 1)
    operations = Counter(line.split()[1] for line in log_lines(directory, "operations.log"))
    assert operations == dict.fromkeys(ADDRESSES, 1), f"an operation was issued twice: {operations}"
    api = Stack(stack)
    try:
        assert {r.id for r in api.state.resources().values()} == {o["id"] for o in objects}
        assert not api.state.pending()
        assert not api.plan().has_changes
    finally:
        api.close()


def test_a_crash_mid_wait_is_resumed_by_waiting_on_the_checkpointed_operation(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "operation_polls: 5, poll_interval_ms: 5")

    crashed = run_mlplat("apply", "--yes", "--parallelism", "1", "-f", str(stack), cwd=tmp_path, check=False,
                         env={"MLPLAT_CRASH_AT": "poll:3"})
    assert crashed.returncode == -signal.SIGKILL, crashed.stderr
    assert len(log_lines(tmp_path, "operations.log")) == 1  # issued, polled 3 times of 5, then killed

    resumed = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path)

    assert "finished" in resumed.stdout + resumed.stderr or "adopted" in resumed.stdout + resumed.stderr
    assert_converged(tmp_path, stack)


def test_ctrl_c_stops_within_two_seconds_and_the_next_apply_resumes(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "operation_polls: 2000, poll_interval_ms: 10")  # each create: ~20 s
    env = {**os.environ, "NO_COLOR": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "provisioner.cli", "apply", "--yes", "-f", str(stack)],
                            cwd=tmp_path, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(log_lines(tmp_path, "operations.log")) < 3 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(log_lines(tmp_path, "operations.log")) == 3, "the creates did not start"
        proc.send_signal(signal.SIGINT)
        sent = time.monotonic()
        _, err = proc.communicate(timeout=10)
        took = time.monotonic() - sent
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert took < 2.0, f"exited {took:.1f}s after Ctrl-C"
    assert "interrupted" in err.lower() and "Traceback" not in err
    api = Stack(stack)
    try:
        pending = api.state.pending()
        assert len(pending) == 3 and all(e.operation for e in pending)  # in flight, journalled, resumable
    finally:
        api.close()

    write_stack(tmp_path, "operation_polls: 2000, poll_interval_ms: 0")  # let the resumed waits finish fast
    run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, timeout=120)

    assert_converged(tmp_path, stack)


def test_a_wait_longer_than_the_targets_timeout_fails_naming_the_resource(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "operation_polls: 1000, poll_interval_ms: 10, timeouts: {create: 0.3}")

    result = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False)

    assert result.returncode == 1
    assert "a.filesystem.main" in result.stderr and "not done after" in result.stderr
    assert "Traceback" not in result.stderr


def test_per_kind_timeout_wins_over_the_targets(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "timeouts: {create: 5m, sim.filesystem: {create: 90s}}")
    api = Stack(stack)
    try:
        assert api.timeout_for("sim", "sim.filesystem", "create") == 90
        assert api.timeout_for("sim", "sim.cluster", "create") == 300
        assert api.timeout_for("sim", "sim.cluster", "delete") is None
    finally:
        api.close()


def test_a_bad_timeout_is_a_located_stack_error(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "timeouts: {create: soon}")

    with pytest.raises(SpecError) as err:
        Stack(stack).validate()

    assert f"{stack}:5:" in str(err.value) and "not a duration" in str(err.value)


def test_throttled_reads_do_not_fail_a_preview(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, "throttle_reads: 2")
    run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path)
    events: list[Event] = []
    api = Stack(stack, listeners=[events.append])

    try:
        plan = api.plan()  # each object's first two reads are throttled
    finally:
        api.close()

    assert not plan.has_changes
    retried = Counter(e.address for e in events if e.kind == "step-retry" and e.action == "read")
    assert retried == dict.fromkeys(ADDRESSES, 2)


SERVING_STACK = """\
apiVersion: mlplat/v1
metadata: {name: keyed}
target: sim
targets:
  sim: {store: cloud, endpoint_keys: true}
serving:
  - name: iris
    paths:
      production: {model: "iris:1"}
"""


def test_a_kind_with_secret_outputs_needs_a_state_key_before_any_cloud_call(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(SERVING_STACK)

    refused = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False,
                         env={"MLPLAT_STATE_PASSPHRASE": ""})

    assert refused.returncode == 1 and "MLPLAT_STATE_PASSPHRASE" in refused.stderr
    assert not list((tmp_path / "cloud").glob("objects/*.json"))  # refused before anything was created


def test_secret_outputs_are_sealed_in_the_state(tmp_path: Path) -> None:
    stack = tmp_path / "stack.yaml"
    stack.write_text(SERVING_STACK)
    env = {"MLPLAT_STATE_PASSPHRASE": "a passphrase for the tests"}

    run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, env=env)

    (key_object,) = [json.loads(p.read_text()) for p in (tmp_path / "cloud" / "objects").glob("*.json")
                     if json.loads(p.read_text())["kind"] == "sim.endpoint_key"]
    key = key_object["key"].encode()
    state_bytes = b"".join(p.read_bytes() for p in (tmp_path / ".mlplat").rglob("*") if p.is_file())
    assert key not in state_bytes and b"$sealed" in state_bytes
    shown = run_mlplat("state", "show", "iris.endpoint_key.main", "-f", str(stack), cwd=tmp_path, env=env).stdout
    assert key.decode() not in shown and "(sensitive)" in shown
    assert "no changes" in run_mlplat("preview", "-f", str(stack), cwd=tmp_path, env=env).stdout.lower()
