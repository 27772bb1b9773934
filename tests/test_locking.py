"""Two processes, one stack: exactly one applies; the other fails fast naming the holder, or waits with
--lock-timeout; a holder killed with -9 on another host is taken over once its lease expires."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from provisioner.state import open_state

from conftest import run_mlplat

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: {name}}}
target: sim
targets:
  sim: {{store: cloud, latency_ms: {latency}, tagged_ids: true}}
storage:
{volumes}
"""


def write_stack(directory: Path, name: str = "locky", latency: int = 300, volumes: int = 6) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    stack = directory / "stack.yaml"
    stack.write_text(STACK.format(name=name, latency=latency,
                                  volumes="\n".join(f"  - {{name: v{i}}}" for i in range(volumes))))
    return stack


def start_apply(stack: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "provisioner.cli", "apply", "--yes", "-f", str(stack), *extra],
                            cwd=stack.parent, env={**os.environ, "NO_COLOR": "1", **(env or {})}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)


def wait_for_lock(stack: Path, name: str, state_url: str | None = None, timeout: float = 20) -> None:
    state = open_state(name, stack.parent, url=state_url)
    deadline = time.monotonic() + timeout
    while state.read_lock() is None:
        assert time.monotonic() < deadline, "the first apply never took the lock"
        time.sleep(0.02)
    state.close()


def objects(directory: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in (directory / "cloud" / "objects").glob("*.json")]


def test_a_second_apply_fails_fast_naming_the_holder_then_waits_with_lock_timeout(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, volumes=8)
    first = start_apply(stack, "--parallelism", "1")  # 8 x 300 ms
    try:
        wait_for_lock(stack, "locky")
        started = time.monotonic()
        second = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False)
        assert second.returncode == 1 and time.monotonic() - started < 5
        assert f"locked by {os.environ.get('USER', 'unknown')}@" in second.stderr
        assert f"pid {first.pid}, apply" in second.stderr and "Traceback" not in second.stderr
        waited = run_mlplat("apply", "--yes", "-f", str(stack), "--lock-timeout", "60", cwd=tmp_path)
        assert "waiting up to 60s for the lock" in waited.stderr
    finally:
        assert first.wait(timeout=60) == 0, first.stderr.read() if first.stderr else ""
    assert len(objects(tmp_path)) == 8  # the waiting apply found nothing left to do


def test_a_holder_killed_on_another_host_is_taken_over_when_its_lease_expires(tmp_path: Path) -> None:
    stack = write_stack(tmp_path, latency=400)
    lease = {"MLPLAT_LOCK_LEASE": "2"}
    first = start_apply(stack, "--parallelism", "1", env={**lease, "MLPLAT_HOSTNAME": "ci-runner-7"})
    wait_for_lock(stack, "locky")
    time.sleep(0.5)  # mid-apply
    first.send_signal(signal.SIGKILL)
    first.wait()
    refused = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False, env=lease)
    assert refused.returncode == 1 and "ci-runner-7" in refused.stderr  # another host: its pid proves nothing
    started = time.monotonic()
    resumed = run_mlplat("apply", "--yes", "-f", str(stack), "--lock-timeout", "30", cwd=tmp_path, env=lease)
    assert "took over the lock of" in resumed.stderr and "@ci-runner-7" in resumed.stderr
    assert "lease expired" in resumed.stderr
    assert time.monotonic() - started < 15
    found = objects(tmp_path)
    assert len(found) == 6 and len({o["address"] for o in found}) == 6  # no duplicate, no orphan
    assert run_mlplat("preview", "--detailed-exitcode", "-f", str(stack), cwd=tmp_path, check=False).returncode == 0


def test_a_live_holder_keeps_renewing_its_lease(tmp_path: Path) -> None:
    """An apply longer than its lease is never taken over: its heartbeat renews the lease."""
    stack = write_stack(tmp_path, latency=500, volumes=8)
    lease = {"MLPLAT_LOCK_LEASE": "1", "MLPLAT_HOSTNAME": "elsewhere"}
    first = start_apply(stack, "--parallelism", "1", env=lease)  # 8 x 500 ms: four leases long
    try:
        wait_for_lock(stack, "locky")
        for _ in range(3):
            time.sleep(0.7)
            other = run_mlplat("apply", "--yes", "-f", str(stack), cwd=tmp_path, check=False, env=lease)
            assert other.returncode == 1 and "locked by" in other.stderr, other.stderr
    finally:
        assert first.wait(timeout=60) == 0
    assert len(objects(tmp_path)) == 8
