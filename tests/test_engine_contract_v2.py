"""Engine contract v2: safe replacement on name-keyed clouds, no forgotten objects, outputs an update changes,
resilient reads, call limits and long-running operations — at the engine level, on the in-memory provider."""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from memory_provider import FAST_RETRY, Engine, ref, res

from provisioner import faults
from provisioner.apply import ApplyFailed
from provisioner.errors import RetryableError
from provisioner.operations import CallGates, Interrupted, RetryPolicy, StepContext, TargetCalls
from provisioner.provider import Observed
from provisioner.recovery import recover
from provisioner.state.base import ResourceRecord


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path)
    yield eng
    eng.state.close()


class Killed(BaseException):
    """Stands in for SIGKILL: raised at a journal boundary, it escapes every `except Exception`."""


def kill_at(monkeypatch: pytest.MonkeyPatch, phase: str, n: int) -> None:
    """Die the n-th time the journal reaches `phase`, as MLPLAT_CRASH_AT=<phase>:<n> does in a real process."""
    seen = {"count": 0}
    original = faults.reached

    def reached(at: str) -> None:
        if at == phase:
            seen["count"] += 1
            if seen["count"] == n:
                monkeypatch.setattr(faults, "reached", original)
                raise Killed(f"{phase}:{n}")
        original(at)

    monkeypatch.setattr(faults, "reached", reached)


def recovered(engine: Engine) -> int:
    return recover(engine.state, engine.provider_for, engine.events.append)


def assert_cloud_matches_state(engine: Engine) -> None:
    recorded = {r.id: r.address for r in engine.records().values()}
    assert {i: o["address"] for i, o in engine.cloud.objects.items()} == recorded
    assert all(not r.deposed for r in engine.records().values())
    assert not engine.state.pending()


# -- 1. replacement on name-keyed clouds -------------------------------------------------------------------------
def name_keyed_db_and_app(engine: Engine, *, db_mode: str = "destroy_before_create") -> None:
    engine.provider("mem.db", name_keyed=True, force_new=frozenset({"engine"}), replace_mode=db_mode)
    engine.provider("mem.app", force_new=frozenset({"image"}), create_before_destroy=True)


def db_and_app(db_engine: str, image: str) -> list:
    return [res("db", "mem.db", engine=db_engine),
            res("app", "mem.app", ("db",), db=ref("db"), image=image)]


def test_create_before_destroy_is_not_forced_onto_a_name_keyed_dependency(engine):
    name_keyed_db_and_app(engine)
    engine.converge(db_and_app("pg15", "v1"))

    plan = engine.converge(db_and_app("pg16", "v2"))

    changes = {c.address: c for c in plan.changes}
    assert changes["db"].action == "replace" and not changes["db"].create_before_destroy
    # its user cannot keep its old object past the dependency's delete: it goes destroy-first too
    assert changes["app"].action == "replace" and not changes["app"].create_before_destroy
    assert engine.cloud.only("db")["inputs"]["engine"] == "pg16"
    assert_cloud_matches_state(engine)
    assert not engine.plan(db_and_app("pg16", "v2"), refresh=True).has_changes


def test_the_object_a_record_names_is_never_deleted_as_its_old_one(engine):
    """A name-keyed provider that (wrongly) declares create-before-destroy: its "new" object is the old one."""
    name_keyed_db_and_app(engine, db_mode="create_before_destroy")
    engine.converge(db_and_app("pg15", "v1"))

    engine.converge(db_and_app("pg16", "v2"))

    assert engine.cloud.count("delete", "db") == 0
    assert engine.cloud.only("db")["inputs"]["engine"] == "pg16"
    assert engine.records()["db"].id == "db" and engine.records()["db"].deposed == []
    assert_cloud_matches_state(engine)


def test_in_place_recreate_is_one_create_call_naming_the_object_it_replaces(engine):
    provider = engine.provider("mem.db", name_keyed=True, force_new=frozenset({"engine"}),
                               replace_mode="in_place_recreate")
    seen: list[StepContext] = []
    original = provider.create
    provider.create = lambda address, inputs, ctx: (seen.append(ctx), original(address, inputs, ctx))[1]
    engine.converge([res("db", "mem.db", engine="pg15")])

    plan = engine.converge([res("db", "mem.db", engine="pg16")])

    assert plan.changes[0].action == "replace" and plan.changes[0].recreate_in_place
    assert engine.cloud.ops("create", "delete") == [("create", "db"), ("create", "db")]
    assert [c.replacing for c in seen] == [None, "db"]
    assert_cloud_matches_state(engine)


# -- 2. a crash during a create-before-destroy replace -----------------------------------------------------------
@pytest.mark.parametrize("phase", ["pending", "before-done", "done"])
def test_crash_in_a_blue_green_replace_neither_orphans_nor_adopts_the_predecessor(engine, monkeypatch, phase):
    engine.provider("mem.config", force_new=frozenset({"variants"}), create_before_destroy=True)
    engine.converge([res("config", "mem.config", variants="a")])
    kill_at(monkeypatch, phase, 1)

    with pytest.raises(ApplyFailed, match="Killed"):
        engine.converge([res("config", "mem.config", variants="b")])
    recovered(engine)
    engine.converge([res("config", "mem.config", variants="b")])

    assert engine.cloud.only("config")["inputs"] == {"variants": "b"}
    assert_cloud_matches_state(engine)


def test_find_gets_the_token_of_the_interrupted_create_and_the_ids_to_exclude(engine, monkeypatch):
    provider = engine.provider("mem.config", force_new=frozenset({"variants"}), create_before_destroy=True)
    engine.converge([res("config", "mem.config", variants="a")])
    old_id = engine.records()["config"].id
    finds: list[StepContext] = []
    original = provider.find
    provider.find = lambda address, inputs, ctx: (finds.append(ctx), original(address, inputs, ctx))[1]
    kill_at(monkeypatch, "before-done", 1)

    with pytest.raises(ApplyFailed):
        engine.converge([res("config", "mem.config", variants="b")])
    (entry,) = engine.state.pending()
    recovered(engine)

    assert finds[0].token == entry.token and entry.token
    assert old_id in finds[0].exclude
    record = engine.records()["config"]
    assert record.id != old_id and record.deposed == [old_id]  # adopted the new one; the old one still to go


# -- 3. deposed objects are never forgotten ----------------------------------------------------------------------
def with_deposed(engine: Engine) -> str:
    """A converged "config" whose record also names a deposed object still in the cloud (an interrupted replace)."""
    provider = engine.provider("mem.config", force_new=frozenset({"variants"}), create_before_destroy=True)
    engine.converge([res("config", "mem.config", variants="b")])
    old = provider.create("config", {"variants": "a"}, StepContext("config", "create", "t0"))
    record = engine.records()["config"]
    record.deposed = [old.id]
    engine.state.put(record)
    return old.id


def test_deposed_object_survives_an_out_of_band_delete_of_the_current_one(engine):
    deposed = with_deposed(engine)
    engine.cloud.objects.pop(engine.records()["config"].id)  # deleted behind mlplat's back

    plan = engine.plan([res("config", "mem.config", variants="b")], refresh=True)
    assert plan.changes[0].action == "create" and plan.changes[0].deposed == [deposed]
    engine.apply(plan)

    assert deposed not in engine.cloud.objects
    assert_cloud_matches_state(engine)


def test_destroy_deletes_deposed_objects_too(engine):
    deposed = with_deposed(engine)

    engine.apply(engine.destroy_plan())

    assert deposed not in engine.cloud.objects
    assert engine.cloud.objects == {} and engine.records() == {}


def test_removing_a_resource_deletes_its_deposed_objects(engine):
    with_deposed(engine)

    engine.converge([])

    assert engine.cloud.objects == {} and engine.records() == {}


def test_destroy_first_replace_deletes_deposed_objects_with_the_current_one(engine):
    deposed = with_deposed(engine)
    engine.provider("mem.config", force_new=frozenset({"variants"}))  # now destroy-before-create

    engine.converge([res("config", "mem.config", variants="c")])

    assert deposed not in engine.cloud.objects
    assert engine.cloud.only("config")["inputs"] == {"variants": "c"}
    assert_cloud_matches_state(engine)


# -- 4. outputs an update changes ---------------------------------------------------------------------------------
def source_and_user(tag: str) -> list:
    return [res("source", "mem.source", tag=tag), res("user", "mem.thing", ("source",), rev=ref("source", "rev"))]


def test_an_output_an_update_changes_reaches_dependents_in_the_same_apply(engine):
    engine.provider("mem.source", revisions=True)
    engine.converge(source_and_user("a"))

    plan = engine.converge(source_and_user("b"))

    assert {c.address: c.action for c in plan.changes} == {"source": "update", "user": "update"}
    assert engine.records()["user"].inputs["rev"] == engine.records()["source"].outputs["rev"] == 1
    assert not engine.plan(source_and_user("b"), refresh=True).has_changes


def test_a_known_after_apply_value_that_came_out_unchanged_costs_no_call(engine):
    provider = engine.provider("mem.source", revisions=True)
    engine.converge(source_and_user("a"))
    provider.update_outputs = frozenset({"rev", "arn"})  # declared, but arn does not change on update
    resources = [res("source", "mem.source", tag="b"), res("user", "mem.thing", ("source",), arn=ref("source", "arn"))]
    engine.converge([res("source", "mem.source", tag="a"), resources[1]])
    updates_before = engine.cloud.count("update", "user")

    engine.converge(resources)

    assert engine.cloud.count("update", "user") == updates_before
    assert not engine.plan(resources, refresh=True).has_changes


# -- 5. reads and call limits -------------------------------------------------------------------------------------
def test_a_throttled_read_during_recovery_is_retried(engine, monkeypatch):
    engine.provider("mem.thing")
    engine.converge([res("a", size=1)])
    kill_at(monkeypatch, "before-done", 1)
    with pytest.raises(ApplyFailed):
        engine.converge([res("a", size=2)])
    provider = engine.provider("mem.thing")
    throttled = [2]
    original = provider.read

    def read(id, inputs):
        if throttled[0]:
            throttled[0] -= 1
            raise RetryableError("ThrottlingException: Rate exceeded", retry_after=0.001)
        return original(id, inputs)

    provider.read = read
    recover(engine.state, engine.provider_for, engine.events.append, CallGates(parallelism=1, retry=FAST_RETRY))

    assert not engine.state.pending() and throttled == [0]
    assert engine.records()["a"].inputs == {"size": 2}


def test_calls_per_second_limit_spaces_call_starts():
    gate = TargetCalls("t", concurrency=8, calls_per_s=50)
    starts: list[float] = []
    threads = [threading.Thread(target=gate.call, args=("a", "read", lambda: starts.append(time.monotonic())))
               for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    starts.sort()
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert min(gaps) >= 0.02 * 0.9, gaps  # 50 per second: at least ~20 ms apart


def test_a_waiting_step_gives_its_concurrency_slot_back():
    gate = TargetCalls("t", concurrency=1)
    other_ran = threading.Event()
    polls = []

    def long_create() -> str:
        ctx = StepContext("slow", "create", calls=gate)

        def check():
            polls.append(other_ran.is_set())
            return other_ran.is_set(), "creating"

        return ctx.wait(check, what="slow create", interval=0.01, max_interval=0.01, timeout=5)

    waiter = threading.Thread(target=gate.call, args=("slow", "create", long_create))
    waiter.start()
    while not polls:
        time.sleep(0.001)
    gate.call("quick", "create", other_ran.set)  # would block forever if the waiting step kept the only slot
    waiter.join(5)

    assert other_ran.is_set() and polls[-1] is True


def test_a_retry_sleeps_without_holding_the_slot():
    gate = TargetCalls("t", concurrency=1, retry=RetryPolicy(attempts=3, base_delay=0.2, max_delay=0.2))
    attempts = []
    quick_done = threading.Event()

    def throttled_until_quick_ran() -> None:
        attempts.append(quick_done.is_set())
        if not quick_done.is_set():
            raise RetryableError("SlowDown", retry_after=0.2)

    waiter = threading.Thread(target=gate.call, args=("a", "create", throttled_until_quick_ran))
    waiter.start()
    while not attempts:
        time.sleep(0.001)
    gate.call("b", "create", quick_done.set)
    waiter.join(5)

    assert attempts == [False, True]


def test_stop_interrupts_a_wait():
    stop = threading.Event()
    ctx = StepContext("slow", "create", calls=TargetCalls("t", concurrency=1, stop=stop))
    threading.Timer(0.05, stop.set).start()

    with pytest.raises(Interrupted):
        ctx.wait(lambda: (False, "creating"), what="slow", interval=0.01, max_interval=0.01, timeout=30)


def test_a_wait_past_its_timeout_fails_naming_the_operation():
    ctx = StepContext("slow", "create", timeout=0.05)

    with pytest.raises(Exception, match="slow create: not done after"):
        ctx.wait(lambda: (False, "Creating"), what="slow create", interval=0.01, max_interval=0.01)


# -- also: write-only inputs, secret outputs ------------------------------------------------------------------------
def test_write_only_inputs_the_cloud_never_returns_are_not_drift(engine):
    provider = engine.provider("mem.thing")
    provider.write_only = frozenset({"password"})
    original = provider.read

    def read(id, inputs):
        seen = original(id, inputs)
        return Observed({k: v for k, v in seen.inputs.items() if k != "password"}, seen.outputs) if seen else None

    provider.read = read
    engine.converge([res("db", password="hunter22", size=1)])

    plan = engine.plan([res("db", password="hunter22", size=1)], refresh=True)

    assert plan.changes[0].action == "noop" and not plan.changes[0].drift
    assert engine.refreshed()["db"].inputs == {"password": "hunter22", "size": 1}


def test_declared_secret_outputs_are_sealed_in_the_state(tmp_path):
    from provisioner.state.codec import StateCodec

    engine = Engine(tmp_path)
    engine.state.codec = StateCodec(lambda: b"k" * 32)
    provider = engine.provider("mem.thing")
    provider.secret_outputs = frozenset({"arn"})
    engine.converge([res("endpoint", size=1)])
    engine.state.close()

    raw = (tmp_path / "state.db").read_bytes()
    assert b"arn:mem:" not in raw
    reopened = Engine(tmp_path)
    reopened.state.codec = StateCodec(lambda: b"k" * 32)
    assert reopened.records()["endpoint"].outputs["arn"].startswith("arn:mem:")
    reopened.state.close()


def test_pending_record_carries_the_deposed_list_into_recovery(engine, monkeypatch):
    """A create journalled for a blue/green replace names the old object as deposed, before the call."""
    engine.provider("mem.config", force_new=frozenset({"variants"}), create_before_destroy=True)
    engine.converge([res("config", "mem.config", variants="a")])
    old_id = engine.records()["config"].id
    kill_at(monkeypatch, "pending", 1)

    with pytest.raises(ApplyFailed):
        engine.converge([res("config", "mem.config", variants="b")])

    (entry,) = engine.state.pending()
    assert isinstance(entry.record, ResourceRecord) and entry.record.deposed == [old_id]
    recovered(engine)
    assert engine.records()["config"].id == old_id  # nothing was made: the old object is still the current one
