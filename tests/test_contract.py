"""The plugin contract, run against every target (one harness each, tests/contract_targets.py): the resource
life cycle, crashes at every journal boundary, out-of-band changes and deletes, throttling, deposed objects,
outputs and secrets, call limits, SDK hygiene, import, and stack-scoped resources. What a target can do is read
from its plugin (capabilities, replace modes, secret outputs, importable kinds); what a target has is asked of its
cloud. The checks of what a target accepts and refuses are in test_contract_capabilities.py."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import warnings
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from provisioner import faults, plugins
from provisioner.apply import ApplyFailed
from provisioner.errors import PlanError, SpecError
from provisioner.events import Event
from provisioner.plan import Plan
from provisioner.provider import ResourceProvider
from provisioner.secrets import is_secret
from provisioner.target import STACK_SCOPE

from conftest import REPO, run_mlplat
from contract_targets import (
    HARNESSES,
    Harness,
    actions,
    apply,
    assert_converged,
    contract_harness,
    delete_out_of_band,
    not_converged,
    opened,
    state_files,
    wrap_providers,
)

#: "<test>[<target>...]" -> the plugin bug that makes it fail (a strict xfail: once the bug is fixed the test
#: fails until its entry is removed here)
KNOWN_BUGS: dict[str, str] = {}

PHASES = ("pending", "before-done", "done")


@pytest.fixture(params=HARNESSES, ids=lambda h: h.target)
def harness(request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Harness]:
    yield from contract_harness(request, tmp_path, monkeypatch, KNOWN_BUGS)


# -- the life cycle -----------------------------------------------------------------------------------------------


def test_create_read_update_replace_delete_round_trip(harness: Harness) -> None:
    assert {c.action for c in apply(harness, check=True).changes} == {"create"}

    harness.write_stack(production=60, experimental=40)
    changed = {a: act for a, act in actions(harness).items() if act != "noop"}
    assert set(changed.values()) == {"update"}, changed  # a weight change is in place
    apply(harness, check=True)

    harness.write_stack(production=60, experimental=40, experimental_model="iris:1")
    changed = {a: act for a, act in actions(harness).items() if act != "noop"}
    assert "replace" in changed.values() and "delete" not in changed.values(), changed
    apply(harness, check=True)

    apply(harness, destroy=True, check=True)


def test_resources_per_kind_in_the_graph_and_in_the_cloud(harness: Harness) -> None:
    with opened(harness) as stack:
        desired = stack.lower()[0]
    assert Counter(r.kind for r in desired.values()) == harness.expected_kinds
    apply(harness)
    objects = harness.cloud_objects()
    assert set(objects) <= set(desired), f"objects of no declared resource: {set(objects) - set(desired)}"
    assert Counter(desired[a].kind for a in objects.elements()) == harness.expected_kinds


def test_bad_target_settings_are_rejected_with_their_location(harness: Harness) -> None:
    path = harness.write_stack(settings=harness.bad_settings)
    with pytest.raises(SpecError) as err, opened(harness) as stack:
        stack.validate()
    assert f"{path}:5:" in str(err.value)
    assert f"targets.{harness.target}" in str(err.value)


# -- crashes at every journal boundary ------------------------------------------------------------------------------


class SimulatedCrash(BaseException):
    """Stands in for `kill -9` at a journal boundary: it escapes every `except Exception` of the engine."""


class Crash:
    """Dies (raises SimulatedCrash) the first time the journal reaches `phase` in a step doing `op` to one of
    `addresses` — the fault points of the kill matrices (provisioner/faults.py), in this process: a step's
    thread knows its address from the step's start event."""

    def __init__(self, phase: str, op: str) -> None:
        self.phase, self.op = phase, op
        self.addresses: set[str] = set()
        self.crashed: list[str] = []
        self._step = threading.local()
        self._lock = threading.Lock()
        self._reached = faults.reached

    def listen(self, event: Event) -> None:
        if event.kind == "step-start":
            self._step.current = (event.address, event.action)

    def reached(self, phase: str) -> None:
        address, op = getattr(self._step, "current", ("", ""))
        if phase == self.phase and op == self.op and address in self.addresses:
            with self._lock:
                first = not self.crashed
                self.crashed.append(address)
            if first:
                raise SimulatedCrash(f"{phase} of {op} {address}")
        self._reached(phase)


def crash_during(h: Harness, phase: str, op: str, choose: Callable[[Plan], set[str]], *,
                 destroy: bool = False) -> tuple[list[str], int]:
    """Plan (or plan the destroy; the state is known to be right: no refresh), then apply it until the journal
    reaches `phase` in an `op` step of an address `choose(plan)` picks. Returns the address crashed in (none: the
    crash point was never reached) and how many journal entries the crash left pending."""
    crash = Crash(phase, op)
    with opened(h, crash.listen) as stack:
        plan = stack.plan(destroy=destroy, refresh=False)
        crash.addresses = choose(plan)
        faults.reached = crash.reached
        try:
            stack.apply(plan)
        except ApplyFailed as err:
            if not crash.crashed:
                raise
            assert "SimulatedCrash" in str(err), err
        finally:
            faults.reached = crash._reached
        return crash.crashed[:1], len(stack.state.pending())


def in_the_middle(plan: Plan, action: str, turn: int) -> set[str]:
    """One resource the plan `action`s, in turn: of those with a dependency and a dependent (a crash there
    strands both sides), else of all."""
    chosen = sorted(c.address for c in plan.changes if c.action == action)
    assert chosen, f"the plan has no {action}: {[(c.address, c.action) for c in plan.changes]}"
    used = {d for c in plan.changes for d in c.depends_on}
    middle = [a for a in chosen if a in used and next(c for c in plan.changes if c.address == a).depends_on]
    pool = middle or chosen
    return {pool[turn % len(pool)]}


#: the change each scenario applies (and applies back, in turn)
CHANGES: dict[str, tuple[dict[str, Any], dict[str, Any]]] = {
    "update": ({"production": 60, "experimental": 40}, {}),  # endpoint weights: in place
    "replace": ({"experimental_model": "iris:1"}, {}),  # a path's model: replaced
}


@pytest.mark.parametrize("op", ["create", "update", "replace", "delete"])
def test_a_crash_at_any_journal_boundary_leaves_no_orphan_and_no_duplicate(harness: Harness, op: str) -> None:
    """For each crash point (pending: before the cloud call; before-done: after it, before the journal's done
    record; done: after that), crash once in a step that creates, updates, replaces or deletes, then apply again:
    every object exists exactly once and is recorded, nothing replaced or deleted remains, the next plan is
    a no-op. The crash is in a step in the middle of the graph where there is one (its dependents are skipped)."""
    problems: dict[str, list[str]] = {}
    if op != "create":
        apply(harness)
    for turn, phase in enumerate(PHASES):
        if op == "create" and turn:
            apply(harness, destroy=True)
        if op == "delete" and turn:
            apply(harness)
        if op in CHANGES:
            harness.write_stack(**CHANGES[op][turn % 2])
        step = {"replace": "create"}.get(op, op)  # a replace's new object: a create step at that address
        crashed, pending = crash_during(harness, phase, step, lambda plan, t=turn: in_the_middle(plan, op, t),
                                        destroy=op == "delete")
        label = f"{phase} of {op} {crashed}"
        if not crashed:
            problems[label] = ["the crash point was not reached"]
            continue
        problems[label] = [] if pending or phase == "done" else [f"no journal entry pending after a crash at {phase}"]
        with opened(harness) as stack:  # recovers what the crash left, then converges
            stack.apply(stack.plan(destroy=op == "delete"))
            problems[label] += not_converged(harness, stack, destroyed=op == "delete")
    failed = {label: found for label, found in problems.items() if found}
    assert not failed, json.dumps(failed, indent=1)


def test_destroy_deletes_the_object_an_interrupted_replace_deposed(harness: Harness) -> None:
    """A create-before-destroy replace interrupted once its new object exists (before or after the journal
    recorded it) leaves the old object deposed: destroy deletes both. A target with no create-before-destroy kind
    (the providers' `replace_mode`) never deposes: the destroy-first path is checked instead (a replace
    interrupted after its delete)."""
    with opened(harness) as stack:
        blue_green_kinds = sorted({r.kind for r in stack.lower()[0].values()
                                   if stack.provider_for(r.target, r.kind).create_before_destroy})
    if not blue_green_kinds:
        warnings.warn(f"target {harness.target} has no create-before-destroy kind: checking the destroy-first path "
                      "instead", stacklevel=1)
    for phase in ("before-done", "done"):
        harness.write_stack()
        apply(harness)
        replaces: list[str] = []
        for change in ({"experimental_model": "iris:1"}, {"experimental": None}):
            harness.write_stack(**change)
            with opened(harness) as stack:
                plan = stack.plan(refresh=False)
            replaces = sorted(c.address for c in plan.changes if c.action == "replace" and not c.recreate_in_place
                              and c.create_before_destroy == bool(blue_green_kinds))
            if replaces:
                break
        assert replaces, (f"no change of the contract stack replaces a resource "
                          f"{'create-before-destroy' if blue_green_kinds else 'destroy-first'}")
        address = replaces[0]
        step = "create" if blue_green_kinds else "delete"
        assert crash_during(harness, phase, step, lambda plan, a=address: {a})[0] == [address]
        with opened(harness) as stack:
            stack.recover()  # what the next command does first
            record = stack.state.resources().get(address)
        if blue_green_kinds:
            assert record is not None and record.deposed, f"{address}: the replaced object is not deposed"
            assert harness.cloud_objects()[address] == 2, "the new object and the deposed one"
        else:
            assert record is None and harness.cloud_objects()[address] == 0
        apply(harness, destroy=True, check=True)


# -- the target changed behind mlplat's back ----------------------------------------------------------------------


def test_change_made_outside_mlplat_shows_as_drift_and_is_corrected(harness: Harness) -> None:
    apply(harness)
    address = harness.make_drift()
    with opened(harness) as stack:
        change = next(c for c in stack.plan().changes if c.address == address)
    assert change.drift, change
    assert change.action == "update"
    apply(harness, check=True)


def delete_everything_out_of_band(h: Harness) -> dict[str, str]:
    """Every recorded object deleted behind mlplat's back, dependents first; returns address -> id."""
    with opened(h) as stack:
        records = stack.state.resources()
    delete_out_of_band(h, records)
    return {a: r.id for a, r in records.items()}


def test_objects_deleted_out_of_band_are_planned_again_and_recreated(harness: Harness) -> None:
    apply(harness)
    deleted = delete_everything_out_of_band(harness)
    assert sum(harness.cloud_objects().values()) == 0
    with opened(harness) as stack:
        plan = stack.plan()
    wrong = {c.address: (c.action, c.drift) for c in plan.changes
             if c.action != "create" or c.drift != {"$gone": True}}
    assert not wrong, f"each read must see its object gone (None), and plan it again: {wrong}"
    assert {c.address for c in plan.changes} == set(deleted)
    apply(harness, check=True)


def test_destroy_succeeds_when_the_objects_are_already_gone(harness: Harness) -> None:
    apply(harness)
    delete_everything_out_of_band(harness)
    apply(harness, destroy=True, check=True)  # a destroy does not refresh: each delete meets an object gone


# -- throttling ---------------------------------------------------------------------------------------------------


def test_throttled_writes_are_retried_until_they_succeed(harness: Harness) -> None:
    events: list[Event] = []
    with harness.throttled(2, "writes"):
        apply(harness, events.append)
        harness.write_stack(production=60, experimental=40)
        apply(harness, events.append)
        apply(harness, events.append, destroy=True)
    retried = {e.action for e in events if e.kind == "step-retry"}
    assert {"create", "update", "delete"} <= retried, retried
    assert not [e for e in events if e.kind == "step-failed"]
    assert_converged(harness, destroyed=True)


def test_throttled_reads_are_retried_until_they_succeed(harness: Harness) -> None:
    apply(harness)
    events: list[Event] = []
    with harness.throttled(2, "reads"), opened(harness, events.append) as stack:
        plan = stack.plan()
    assert not plan.has_changes, [(c.address, c.action) for c in plan.changes if c.action != "noop"]
    retried = {e.address for e in events if e.kind == "step-retry" and e.action == "read"}
    assert retried, "no read was throttled"
    assert_converged(harness)


# -- outputs and secrets -------------------------------------------------------------------------------------------


def test_outputs_are_all_set_and_stable_across_no_op_applies(harness: Harness) -> None:
    apply(harness)
    with opened(harness) as stack:
        first = stack.outputs()
    assert first, "the contract stack has outputs"
    assert not [k for k, v in first.items() if v is None], first
    assert not apply(harness).has_changes
    with opened(harness) as stack:
        assert stack.outputs() == first


def test_secret_outputs_never_reach_a_screen_or_the_disk(harness: Harness) -> None:
    with opened(harness) as stack:
        secret = {a: sorted(p.secret_outputs) for a, r in stack.lower()[0].items()
                  if (p := stack.provider_for(r.target, r.kind)).secret_outputs}
    if not secret:
        pytest.skip(f"target {harness.target}'s providers declare no secret outputs")
    apply(harness)
    with opened(harness) as stack:
        records = stack.state.resources()
        values = {str(records[a].outputs[k]) for a, keys in secret.items() for k in keys}
        secret_outputs = [name for name, value in stack.outputs().items() if is_secret(value)]
    assert values and all(values), "each secret output has a value"

    harness.write_stack(production=60, experimental=40)  # a plan with changes to show
    from rich.console import Console

    from provisioner.render import render_plan

    screen = io.StringIO()
    with opened(harness) as stack:
        render_plan(Console(file=screen, width=200), stack.plan())
    stack_file = str(harness.directory / "stack.yaml")
    shown = [screen.getvalue()] + [
        run_mlplat(*args, "-f", stack_file, cwd=harness.directory).stdout for args in (
            ("preview",), ("preview", "--json"), ("output",), ("output", "--json"), ("state", "list", "--json"),
            *(("output", name) for name in secret_outputs), *(("state", "show", a) for a in secret))]
    leaked = [text for text in shown if any(v in text for v in values)]
    assert not leaked, f"a secret output is shown: {leaked}"
    assert all("(sensitive)" in text for text in shown[-len(secret):])
    assert not [v for v in values if v.encode() in state_files(harness)], "a secret output is on disk in plaintext"


# -- call limits, SDK hygiene -------------------------------------------------------------------------------------


class InFlight:
    """Counts each target's provider calls in flight, by wrapping the providers a Stack hands out. A call waiting
    on its cloud operation (`ctx.wait`, which gives the target's slot back between polls) counts only while it
    polls."""

    def __init__(self) -> None:
        self.now: Counter[str] = Counter()
        self.peak: Counter[str] = Counter()
        self._lock = threading.Lock()

    def _enter(self, target: str) -> None:
        with self._lock:
            self.now[target] += 1
            self.peak[target] = max(self.peak[target], self.now[target])

    def _leave(self, target: str) -> None:
        with self._lock:
            self.now[target] -= 1

    def _counted(self, target: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            ctx = args[-1] if args and hasattr(args[-1], "wait") else None
            if ctx is not None:
                wait = ctx.wait

                def counted_wait(check: Callable[[], Any], **kwargs: Any) -> Any:
                    self._leave(target)
                    try:
                        return wait(self._counted(target, check), **kwargs)
                    finally:
                        self._enter(target)

                ctx.wait = counted_wait
            self._enter(target)
            try:
                return fn(*args)
            finally:
                self._leave(target)

        return call

    def wrap(self, target: str, kind: str, provider: ResourceProvider) -> None:
        for method in ("create", "read", "update", "delete", "find", "import_"):
            setattr(provider, method, self._counted(target, getattr(provider, method)))


def test_calls_in_flight_stay_within_the_declared_max_concurrency(harness: Harness) -> None:
    with opened(harness) as stack:
        limit = stack.targets[harness.target].capabilities().max_concurrency
    if limit is None:
        pytest.skip(f"target {harness.target} declares no max_concurrency")
    in_flight = InFlight()
    with wrap_providers(in_flight.wrap):
        apply(harness)  # creates
        harness.write_stack(experimental_model="iris:1")
        apply(harness)  # reads (refresh), replaces, updates
        apply(harness, destroy=True)  # deletes
    assert 1 <= in_flight.peak[harness.target] <= limit, (in_flight.peak, limit)


def plugin_module(target: str) -> str:
    """The module whose `mlplat_targets` hook provides target type `target`."""
    for impl in plugins.manager().hook.mlplat_targets.get_hookimpls():
        if any(t.name == target for t in impl.function() or ()):
            return impl.plugin.__name__
    raise AssertionError(f"no plugin provides target {target!r}")


def test_importing_the_plugin_and_listing_its_targets_imports_no_sdk(harness: Harness) -> None:
    module = plugin_module(harness.target)
    sdk = sorted({*harness.sdk, *(m for h in HARNESSES for m in h.sdk),
                  *(m for t in plugins.target_types().values() for m in t.sdk)})
    code = ("import importlib, json, sys\n"
            f"targets = importlib.import_module({module!r}).mlplat_targets()\n"
            f"print(json.dumps({{'targets': [t.name for t in targets], "
            f"'sdk': [m for m in {sdk!r} if m in sys.modules]}}))\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60,
                          check=True)
    seen = json.loads(proc.stdout)
    assert harness.target in seen["targets"]
    assert seen["sdk"] == [], f"importing {module} and calling mlplat_targets imported {seen['sdk']}"


# -- import, stack-scoped resources --------------------------------------------------------------------------------


def test_a_forgotten_resource_is_imported_back_to_a_no_op_plan(harness: Harness) -> None:
    """Each resource in turn is forgotten (`mlplat state rm`) and imported back by its id (`mlplat import`): the
    import matches the stack file (its change is a no-op). A kind with `importable = False` must refuse cleanly."""
    apply(harness)
    not_noop: dict[str, Any] = {}
    with opened(harness) as stack:
        records = stack.state.resources()
        importable = {a: stack.provider_for(r.target, r.kind).importable for a, r in records.items()}
        if not any(importable.values()):
            pytest.skip(f"no kind of target {harness.target} is importable (importable = False)")
        for address, record in sorted(records.items()):
            stack.forget(address)
            if not importable[address]:
                with pytest.raises(PlanError, match="cannot be imported"):
                    stack.import_resource(address, record.id)
                with stack.locked("test: put the record back"):
                    stack.state.put(record)
                continue
            change = stack.import_resource(address, record.id)
            if change.action != "noop":
                not_noop[address] = (change.action, change.changed)
    assert not not_noop, f"imported, these differ from the stack file: {not_noop}"
    with opened(harness) as stack:
        assert {a: r.id for a, r in stack.state.resources().items()} == {a: r.id for a, r in records.items()}
    assert_converged(harness)


def test_stack_scoped_resources_are_made_first_and_deleted_last(harness: Harness) -> None:
    with opened(harness) as stack:
        desired = stack.lower()[0]
    scoped = {a for a in desired if a.startswith(f"{STACK_SCOPE}.")}
    if not scoped:
        pytest.skip(f"target {harness.target} lowers no stack-scoped resource")
    components = set(desired) - scoped

    def order(events: list[Event]) -> list[tuple[str, str]]:
        return [(e.kind, e.address) for e in events if e.kind in ("step-start", "step-done")]

    made: list[Event] = []
    apply(harness, made.append)
    steps = order(made)
    last_scoped = max(i for i, (kind, a) in enumerate(steps) if kind == "step-done" and a in scoped)
    first_component = min(i for i, (kind, a) in enumerate(steps) if kind == "step-start" and a in components)
    assert last_scoped < first_component, steps

    deleted: list[Event] = []
    apply(harness, deleted.append, destroy=True, check=True)
    steps = order(deleted)
    last_component = max(i for i, (kind, a) in enumerate(steps) if kind == "step-done" and a in components)
    first_scoped = min(i for i, (kind, a) in enumerate(steps) if kind == "step-start" and a in scoped)
    assert last_component < first_scoped, steps
