"""Apply: retries of transient failures, permanent failures reported by address, bounded concurrency per
target, and a journal written before and closed after every provider call."""

from __future__ import annotations

import time

import pytest
from memory_provider import FAST_RETRY, ConcurrencyMeter, Engine, ref, res

from provisioner.apply import ApplyFailed, ApplyOptions, RetryPolicy
from provisioner.errors import RetryableError
from provisioner.operations import detached


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path)
    yield eng
    eng.state.close()


def fail_times(n: int, error: Exception):
    """A create hook that raises `error` the first `n` times it runs."""
    left = [n]

    def hook() -> None:
        if left[0] > 0:
            left[0] -= 1
            raise error

    return hook


def independent(n: int) -> list:
    return [res(f"pool{i}", size=i) for i in range(n)]


# -- retries ----------------------------------------------------------------------------------------------------
def test_retryable_error_is_retried_until_the_call_succeeds(engine):
    engine.provider("mem.thing").on_create["fs"] = fail_times(2, RetryableError("ThrottlingException: slow down"))

    result = engine.converge([res("fs", size_gb=10)])

    assert result.summary()["create"] == 1
    assert engine.cloud.count("create", "fs") == 3
    assert len(engine.cloud.objects) == 1
    assert "fs" in engine.records()


def test_each_retry_is_reported_as_a_step_retry_event(engine):
    engine.provider("mem.thing").on_create["fs"] = fail_times(2, RetryableError("ThrottlingException: slow down"))

    engine.converge([res("fs", size_gb=10)])

    retries = engine.events_of("step-retry")
    assert [(e.address, e.action) for e in retries] == [("fs", "create"), ("fs", "create")]
    assert all("ThrottlingException" in e.message for e in retries)


def test_retry_after_given_by_the_cloud_is_honoured():
    assert RetryPolicy(max_delay=30).delay(0, retry_after=7.0) == 7.0
    assert RetryPolicy(max_delay=5).delay(0, retry_after=60.0) == 5.0  # capped


def test_retries_stop_after_the_policy_allows_and_the_step_fails(engine):
    engine.options = ApplyOptions(retry=RetryPolicy(attempts=3, base_delay=0.001, max_delay=0.001))
    engine.provider("mem.thing").on_create["fs"] = fail_times(10, RetryableError("ThrottlingException"))

    with pytest.raises(ApplyFailed, match="fs: create failed after 3 attempts: ThrottlingException"):
        engine.converge([res("fs")])

    assert engine.cloud.count("create", "fs") == 3
    assert engine.records() == {}


# -- permanent failures -----------------------------------------------------------------------------------------
def broken_graph() -> list:
    """`db` fails; `app` depends on it; `cache` is independent."""
    return [res("db", tier="large"), res("app", db=ref("db")), res("web", app=ref("app")), res("cache", size=1)]


def test_permanent_failure_names_the_resource_and_the_providers_message(engine):
    engine.provider("mem.thing").on_create["db"] = fail_times(1, RuntimeError("InsufficientCapacity: no p5 left"))

    with pytest.raises(ApplyFailed) as err:
        engine.converge(broken_graph())

    assert "db: create failed: InsufficientCapacity: no p5 left" in str(err.value)
    assert engine.cloud.count("create", "db") == 1  # not retried: it is not a transient failure


def test_dependents_of_a_failed_step_are_skipped(engine):
    engine.provider("mem.thing").on_create["db"] = fail_times(1, RuntimeError("InsufficientCapacity"))

    with pytest.raises(ApplyFailed) as err:
        engine.converge(broken_graph())

    assert sorted(err.value.skipped) == ["app", "web"]
    assert engine.cloud.count("create", "app") == 0
    assert engine.cloud.count("create", "web") == 0
    assert sorted(e.address for e in engine.events_of("step-skipped")) == ["app", "web"]


def test_a_failed_step_is_reported_as_a_step_failed_event(engine):
    engine.provider("mem.thing").on_create["db"] = fail_times(1, RuntimeError("InsufficientCapacity"))

    with pytest.raises(ApplyFailed):
        engine.converge(broken_graph())

    failed = engine.events_of("step-failed")
    assert [(e.address, e.action) for e in failed] == [("db", "create")]
    assert "InsufficientCapacity" in failed[0].message


def test_independent_resources_are_still_applied_when_one_fails(engine):
    engine.provider("mem.thing").on_create["db"] = fail_times(1, RuntimeError("InsufficientCapacity"))

    with pytest.raises(ApplyFailed) as err:
        engine.converge(broken_graph())

    assert sorted(engine.records()) == ["cache"]
    assert err.value.done == 1


def test_rerun_after_a_failure_completes_without_duplicating_what_was_done(engine):
    engine.provider("mem.thing").on_create["db"] = fail_times(1, RuntimeError("InsufficientCapacity"))
    with pytest.raises(ApplyFailed):
        engine.converge(broken_graph())

    plan = engine.converge(broken_graph())

    assert {c.address: c.action for c in plan.changes} == {"db": "create", "app": "create", "web": "create",
                                                           "cache": "noop"}
    assert sorted(engine.records()) == ["app", "cache", "db", "web"]
    assert engine.cloud.count("create", "cache") == 1
    assert len(engine.cloud.objects) == 4
    assert not engine.plan(broken_graph(), refresh=True).has_changes


# -- an interrupted blue/green replace ---------------------------------------------------------------------------
def endpoint_graph(weight: int) -> list:
    return [res("config", "mem.config", weight=weight), res("endpoint", "mem.endpoint", config=ref("config"))]


def test_old_object_left_by_a_failed_blue_green_replace_is_deleted_only_after_its_users_move(engine):
    engine.provider("mem.config", force_new=frozenset({"weight"}), create_before_destroy=True)
    engine.converge(endpoint_graph(80))
    old_config = engine.records()["config"].id
    endpoint = engine.provider("mem.endpoint")
    endpoint.on_update["endpoint"] = fail_times(1, RuntimeError("endpoint is updating, try later"))
    with pytest.raises(ApplyFailed):
        engine.converge(endpoint_graph(50))  # new config made; the endpoint still uses the old one
    assert engine.records()["config"].deposed == [old_config]
    endpoint.on_update["endpoint"] = lambda: time.sleep(0.02)  # a slow update: the old config must wait for it
    calls_before = len(engine.cloud.calls)

    plan = engine.converge(endpoint_graph(50))

    assert {c.address: c.action for c in plan.changes} == {"config": "noop", "endpoint": "update"}
    assert engine.cloud.calls[calls_before:] == [("update", "endpoint"), ("delete", "config")]
    assert old_config not in engine.cloud.objects
    assert engine.records()["config"].deposed == []


def test_leftover_old_object_and_an_in_place_update_of_the_same_resource_both_land_in_the_state(engine):
    engine.provider("mem.config", force_new=frozenset({"weight"}), create_before_destroy=True)
    engine.converge([res("config", "mem.config", weight=50, tags="a")])
    record = engine.records()["config"]
    old = engine.provider("mem.config").create("config", {"weight": 80, "tags": "a"}, detached("config")).id  # blue
    record.deposed = [old]  # as an apply interrupted between creating green and deleting blue leaves it
    engine.state.put(record)
    engine.provider("mem.config").on_update["config"] = lambda: time.sleep(0.02)

    engine.converge([res("config", "mem.config", weight=50, tags="b")])

    assert old not in engine.cloud.objects
    assert engine.records()["config"].deposed == []
    assert engine.records()["config"].inputs["tags"] == "b"
    assert not engine.plan([res("config", "mem.config", weight=50, tags="b")]).has_changes


# -- bounded concurrency ----------------------------------------------------------------------------------------
def test_per_target_limit_bounds_concurrent_steps(engine):
    engine.options = ApplyOptions(parallelism=16, per_target={"mem": 2}, retry=FAST_RETRY)
    # each create waits (bounded) until two are in flight, then holds its slot while six more steps are ready
    meter = ConcurrencyMeter(until_overlap=2, hold_s=0.03)
    for i in range(8):
        engine.provider("mem.thing").on_create[f"pool{i}"] = meter

    engine.converge(independent(8))

    assert len(engine.records()) == 8
    assert meter.max_active == 2  # the limit is reached, never exceeded


def test_a_higher_per_target_limit_lets_more_steps_run_at_once(engine):
    engine.options = ApplyOptions(parallelism=16, per_target={"mem": 8}, retry=FAST_RETRY)
    meter = ConcurrencyMeter(until_overlap=8)  # each create waits (bounded) until all eight are in flight
    for i in range(8):
        engine.provider("mem.thing").on_create[f"pool{i}"] = meter

    engine.converge(independent(8))

    assert len(engine.records()) == 8
    assert meter.max_active == 8


def test_global_parallelism_bounds_concurrent_steps(engine):
    engine.options = ApplyOptions(parallelism=1, retry=FAST_RETRY)
    meter = ConcurrencyMeter(hold_s=0.002)
    for i in range(4):
        engine.provider("mem.thing").on_create[f"pool{i}"] = meter

    engine.converge(independent(4))

    assert meter.max_active == 1


# -- the journal ------------------------------------------------------------------------------------------------
def test_every_journal_entry_is_done_after_apply(engine):
    engine.converge(broken_graph())
    engine.converge([res("db", tier="xlarge"), res("cache", size=1)])  # update + deletes

    entries = engine.journal_phases()
    assert {op for op, _, _ in entries} == {"create", "update", "delete"}
    assert all(phase == "done" for _, _, phase in entries)
    assert engine.state.pending() == []


def test_journal_has_one_entry_per_provider_call_that_changed_something(engine):
    engine.converge(broken_graph())

    assert sorted(a for op, a, _ in engine.journal_phases() if op == "create") == ["app", "cache", "db", "web"]


def test_exception_inside_create_leaves_the_entry_failed_not_pending(engine):
    engine.provider("mem.thing").on_create["db"] = fail_times(1, RuntimeError("InsufficientCapacity"))

    with pytest.raises(ApplyFailed):
        engine.converge([res("db")])

    assert engine.journal_phases() == [("create", "db", "failed")]
    assert engine.state.pending() == []


def test_exhausted_retries_leave_the_entry_failed_not_pending(engine):
    engine.options = ApplyOptions(retry=RetryPolicy(attempts=2, base_delay=0.001, max_delay=0.001))
    engine.provider("mem.thing").on_create["db"] = fail_times(5, RetryableError("503 Service Unavailable"))

    with pytest.raises(ApplyFailed):
        engine.converge([res("db")])

    assert engine.journal_phases() == [("create", "db", "failed")]


def test_state_only_steps_run_inline_journalled_in_one_batch_and_reported_after_it(tmp_path):
    """`sim.data` (state-only): a flat batch is written in one transaction; each step is journalled done, recorded,
    and reported done after the write; a chain resolves each reference from the step before it."""
    import threading
    import uuid

    from mlplat_plugins.sim.providers import DataProvider
    from provisioner.apply import Applier
    from provisioner.graph import Ref, Resource
    from provisioner.plan import make_plan
    from provisioner.state import LockInfo, open_state

    provider = DataProvider()
    state = open_state("inline", tmp_path, url=f"sqlite:///{tmp_path}/state.db")
    lock = LockInfo(uuid.uuid4().hex[:8], "apply")
    state.acquire_lock(lock)
    state.fence = lock.id
    desired = {f"r{i}.data.main": Resource(f"r{i}.data.main", "sim.data", "sim", {"input": f"v{i}"}) for i in range(50)}
    desired |= {f"c{i}.data.main": Resource(f"c{i}.data.main", "sim.data", "sim",
                                            {"input": Ref(f"c{i - 1}.data.main", "output") if i else "start"})
                for i in range(5)}
    meta = state.meta()
    plan = make_plan(desired, {}, lambda t, k: provider, stack="inline", lineage=meta.lineage, serial=meta.serial)
    events, threads = [], set()

    def seen(event):
        events.append(event)
        threads.add(threading.current_thread().name)

    transactions = []
    write = state.journal_instant_many
    state.journal_instant_many = lambda entries: (transactions.append(len(entries)), write(entries))[1]
    result = Applier(state, lambda t, k: provider, seen, ApplyOptions(parallelism=10)).run(plan)
    assert result.done == 55
    assert threads == {threading.current_thread().name}  # no worker thread ran a state-only step
    assert transactions[0] == 51  # the 50 flat ones and the chain's first, together; then the chain, one by one
    assert sorted(transactions[1:]) == [1, 1, 1, 1]
    records = state.resources()
    assert records["c4.data.main"].inputs == {"input": "start"}  # the chain passed the value along
    assert records["c4.data.main"].outputs["output"] == "start"
    assert [e.phase for e in state.journal()] == ["done"] * 55
    done = [e.address for e in events if e.kind == "step-done"]
    assert sorted(done) == sorted(desired)
    for address in desired:  # each started before it was reported done
        kinds = [e.kind for e in events if e.address == address]
        assert kinds == ["step-start", "step-done"]
