"""Providers report progress from inside long calls; `poll` (under `StepContext.wait`) bounds a wait and reports
while it waits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from provisioner import progress
from provisioner.apply import Applier
from provisioner.events import Event
from provisioner.graph import Resource
from provisioner.operations import StepContext
from provisioner.plan import make_plan
from provisioner.provider import Created, ResourceProvider
from provisioner.state.sqlite import SqliteState


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_poll_returns_once_done_and_reports_each_wait() -> None:
    clock, seen, statuses = FakeClock(), [], iter(["Creating", "Creating", "InService"])
    progress.bind(lambda message, data: seen.append((message, data["status"])))
    try:
        def check() -> tuple[bool, str]:
            status = next(statuses)
            return status == "InService", status

        result = progress.poll(check, what="endpoint", timeout=600, interval=5, clock=clock, sleep=clock.sleep)
    finally:
        progress.bind(None)
    assert result == "InService"
    assert [s for _, s in seen] == ["Creating", "Creating"]
    assert clock.now == 5 + 7.5  # backs off between checks


def test_poll_gives_up_after_its_bound_naming_what_it_waited_for() -> None:
    clock = FakeClock()
    with pytest.raises(progress.WaitTimeout, match=r"cluster: not done after 60s \(last seen: Creating\)"):
        progress.poll(lambda: (False, "Creating"), what="cluster", timeout=60, interval=10, clock=clock,
                      sleep=clock.sleep)


def test_report_outside_an_apply_is_a_no_op() -> None:
    progress.report("nobody listens")


class SlowCloud(ResourceProvider):
    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        progress.report("provisioning", percent=50)
        return Created(address, {})


def test_progress_reported_by_a_provider_becomes_an_event_for_its_resource(tmp_path: Path) -> None:
    state = SqliteState(tmp_path / "s.db", "p")
    desired = {"a.thing.one": Resource("a.thing.one", "slow", "t", {})}
    meta = state.meta()
    plan = make_plan(desired, {}, lambda t, k: SlowCloud(), stack="p", lineage=meta.lineage, serial=meta.serial)
    events: list[Event] = []
    Applier(state, lambda t, k: SlowCloud(), events.append).run(plan)
    reported = [e for e in events if e.kind == "progress"]
    assert [(e.address, e.message, e.data) for e in reported] == [("a.thing.one", "provisioning", {"percent": 50})]
