"""A target's declared concurrency limit (its API's rate limit) bounds the provider calls in flight on that target."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from provisioner.api import Stack
from provisioner.apply import ApplyOptions

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: limits}}
target: sim
targets:
  sim: {{store: cloud, latency_ms: 20{limit}}}
storage:
{storage}
"""


def max_in_flight(tmp_path: Path, limit: str, overlap: int, monkeypatch: pytest.MonkeyPatch) -> int:
    """The most provider calls in flight at once. Each call (counted where the sim provider starts its work)
    waits until `overlap` calls have been in flight at once, so a test can assert that a limit is reached
    without relying on timing; if they never overlap the first waiter gives up (bounded) and no later call
    waits, leaving the peak below `overlap`."""
    from mlplat_plugins.sim.providers import SimProvider

    storage = "\n".join(f"  - {{name: s{i}}}" for i in range(12))
    (tmp_path / "stack.yaml").write_text(STACK.format(limit=limit, storage=storage))
    cond, current, peak, gave_up = threading.Condition(), [0], [0], [False]
    work = SimProvider._work

    def counted(provider: SimProvider, key: str) -> None:
        with cond:
            current[0] += 1
            peak[0] = max(peak[0], current[0])
            cond.notify_all()
            if not gave_up[0] and not cond.wait_for(lambda: peak[0] >= overlap or gave_up[0], timeout=10):
                gave_up[0] = True
                cond.notify_all()
        try:
            work(provider, key)
        finally:
            with cond:
                current[0] -= 1

    monkeypatch.setattr(SimProvider, "_work", counted)
    stack = Stack(tmp_path / "stack.yaml")
    stack.apply(stack.plan())
    return peak[0]


@pytest.mark.parametrize("limit", [1, 3])
def test_declared_max_concurrency_caps_calls_in_flight(tmp_path: Path, limit: int, monkeypatch) -> None:
    assert max_in_flight(tmp_path, f", max_concurrency: {limit}", limit, monkeypatch) == limit  # reached, not exceeded


def test_without_a_limit_steps_run_in_parallel(tmp_path: Path, monkeypatch) -> None:
    parallelism = ApplyOptions().parallelism  # the apply's own bound (12 steps are ready at once)
    assert max_in_flight(tmp_path, "", parallelism, monkeypatch) == parallelism
