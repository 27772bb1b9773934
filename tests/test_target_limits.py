"""A target's declared concurrency limit (its API's rate limit) bounds the apply on that target."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from provisioner.api import Stack
from provisioner.events import Event

STACK = """\
apiVersion: mlplat/v1
metadata: {{name: limits}}
target: sim
targets:
  sim: {{store: cloud, latency_ms: 20{limit}}}
storage:
{storage}
"""


def max_in_flight(tmp_path: Path, limit: str) -> int:
    storage = "\n".join(f"  - {{name: s{i}}}" for i in range(12))
    (tmp_path / "stack.yaml").write_text(STACK.format(limit=limit, storage=storage))
    lock, current, peak = threading.Lock(), [0], [0]

    def on_event(event: Event) -> None:
        with lock:
            if event.kind == "step-start":
                current[0] += 1
                peak[0] = max(peak[0], current[0])
            elif event.kind in ("step-done", "step-failed"):
                current[0] -= 1

    stack = Stack(tmp_path / "stack.yaml", listeners=[on_event])
    stack.apply(stack.plan())
    return peak[0]


@pytest.mark.parametrize("limit", [1, 3])
def test_declared_max_concurrency_caps_steps_in_flight(tmp_path: Path, limit: int) -> None:
    assert max_in_flight(tmp_path, f", max_concurrency: {limit}") <= limit


def test_without_a_limit_steps_run_in_parallel(tmp_path: Path) -> None:
    assert max_in_flight(tmp_path, "") > 1
