"""The plugin contract, run against every target: round trip, idempotent create after a crash, drift,
throttling, bad settings. Targets join through a harness in tests/contract_targets.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner.api import Stack
from provisioner.apply import ApplyFailed, ApplyOptions, RetryPolicy
from provisioner.errors import SpecError
from provisioner.events import Event

from contract_targets import HARNESSES, Harness

FAST_RETRIES = ApplyOptions(retry=RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.05))


class SimulatedCrash(BaseException):
    """Escapes the engine like a kill would: after the cloud call, before the journal's done record."""


@pytest.fixture(params=HARNESSES, ids=lambda h: h.target)
def harness(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Harness]:
    h = request.param(tmp_path)
    h.prepare(request)
    h.write_stack()
    yield h
    stack = open_stack(h)
    stack.apply(stack.plan(destroy=True))  # never leave processes behind


def open_stack(h: Harness, events: list[Event] | None = None) -> Stack:
    return Stack(h.directory / "stack.yaml", options=FAST_RETRIES,
                 listeners=[events.append] if events is not None else None)


def apply(h: Harness, events: list[Event] | None = None) -> dict[str, str]:
    stack = open_stack(h, events)
    plan = stack.plan()
    stack.apply(plan)
    return {c.address: c.action for c in plan.changes}


def actions(h: Harness) -> dict[str, str]:
    return {c.address: c.action for c in open_stack(h).plan().changes}


def assert_exactly_once(h: Harness) -> None:
    objects = h.cloud_objects()
    assert len(objects) == h.expected_resources, objects
    assert set(objects.values()) == {1}, f"duplicated: {objects}"
    assert set(open_stack(h).state.resources()) == set(objects)


def test_create_read_update_replace_delete_round_trip(harness: Harness) -> None:
    assert set(apply(harness).values()) == {"create"}
    assert_exactly_once(harness)
    assert set(actions(harness).values()) == {"noop"}

    harness.write_stack(production=60, experimental=40)
    changed = {a: act for a, act in actions(harness).items() if act != "noop"}
    assert set(changed.values()) == {"update"}, changed  # a weight change is in place
    apply(harness)
    assert set(actions(harness).values()) == {"noop"}

    harness.write_stack(production=60, experimental=40, experimental_model="iris:1")
    changed = {a: act for a, act in actions(harness).items() if act != "noop"}
    assert "replace" in changed.values() and "delete" not in changed.values(), changed
    apply(harness)
    assert set(actions(harness).values()) == {"noop"}
    assert_exactly_once(harness)

    stack = open_stack(harness)
    stack.apply(stack.plan(destroy=True))
    assert sum(harness.cloud_objects().values()) == 0
    assert open_stack(harness).state.resources() == {}


def test_create_interrupted_after_the_cloud_call_is_adopted_not_repeated(harness: Harness,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    crashed: list[str] = []
    real_provider_for = Stack.provider_for

    def crashing_provider_for(self: Stack, target: str, kind: str) -> Any:
        provider = real_provider_for(self, target, kind)
        real_create = type(provider).create

        def create(address: str, inputs: dict[str, Any], ctx: Any) -> Any:
            created = real_create(provider, address, inputs, ctx)
            if not crashed and "model" in address:
                crashed.append(address)
                raise SimulatedCrash(address)
            return created

        provider.create = create
        return provider

    monkeypatch.setattr(Stack, "provider_for", crashing_provider_for)
    with pytest.raises(ApplyFailed):
        apply(harness)
    monkeypatch.undo()
    assert crashed and open_stack(harness).state.pending()  # the journal remembers the unfinished step

    events: list[Event] = []
    apply(harness, events)
    assert any(e.kind == "recovered" and e.address == crashed[0] for e in events)
    assert_exactly_once(harness)


def test_change_made_outside_mlplat_shows_as_drift_and_is_corrected(harness: Harness) -> None:
    apply(harness)
    address = harness.make_drift()
    plan = open_stack(harness).plan()
    change = next(c for c in plan.changes if c.address == address)
    assert change.drift, change
    assert change.action == "update"
    apply(harness)
    assert set(actions(harness).values()) == {"noop"}


def test_throttled_calls_are_retried_until_they_succeed(harness: Harness) -> None:
    events: list[Event] = []
    with harness.throttled(2):
        apply(harness, events)
    assert any(e.kind == "step-retry" for e in events)
    assert_exactly_once(harness)


def test_bad_target_settings_are_rejected_with_their_location(harness: Harness) -> None:
    path = harness.write_stack(settings=harness.bad_settings)
    with pytest.raises(SpecError) as err:
        open_stack(harness).validate()
    assert f"{path}:5:" in str(err.value)
    assert f"targets.{harness.target}" in str(err.value)
    harness.write_stack()
