"""Planning and applying at engine level: desired resources vs recorded (and refreshed) state -> changes, and
what apply then asks of the provider. A provider over an in-memory cloud records every call."""

from __future__ import annotations

import pytest
from memory_provider import Engine, ref, res

from provisioner.errors import PlanError
from provisioner.graph import Ref
from provisioner.plan import Plan


@pytest.fixture
def engine(tmp_path):
    eng = Engine(tmp_path)
    yield eng
    eng.state.close()


def actions(plan: Plan) -> dict[str, str]:
    return {c.address: c.action for c in plan.changes}


def change(plan: Plan, address: str):
    return next(c for c in plan.changes if c.address == address)


def serving(weight: int = 80, model: str = "iris:1") -> list:
    """A small endpoint graph: model <- config <- endpoint (each refers to the one before by its id)."""
    return [
        res("iris.model.prod", "mem.model", ref_name=model),
        res("iris.config.main", "mem.config", model=ref("iris.model.prod"), weight=weight),
        res("iris.endpoint.main", "mem.endpoint", config=ref("iris.config.main")),
    ]


# -- create / no-op / update ------------------------------------------------------------------------------------
def test_empty_state_plans_a_create_for_every_resource(engine):
    plan = engine.plan(serving())

    assert actions(plan) == {"iris.model.prod": "create", "iris.config.main": "create",
                             "iris.endpoint.main": "create"}
    assert plan.summary()["create"] == 3
    assert plan.has_changes


def test_apply_of_a_create_plan_creates_each_resource_once_and_records_it(engine):
    engine.converge(serving())

    assert engine.cloud.count("create") == 3
    records = engine.records()
    assert sorted(records) == ["iris.config.main", "iris.endpoint.main", "iris.model.prod"]
    for address, record in records.items():
        assert engine.cloud.objects[record.id]["address"] == address


def test_creates_follow_dependencies(engine):
    engine.converge(serving())

    assert [a for _, a in engine.cloud.ops("create")] == ["iris.model.prod", "iris.config.main",
                                                          "iris.endpoint.main"]


def test_replan_after_apply_is_a_noop(engine):
    engine.converge(serving())

    plan = engine.plan(serving(), refresh=True)

    assert set(actions(plan).values()) == {"noop"}
    assert not plan.has_changes
    assert not plan.has_drift


def test_weight_change_updates_in_place(engine):
    engine.converge(serving(weight=80))
    config_id = engine.records()["iris.config.main"].id

    plan = engine.plan(serving(weight=50))

    assert actions(plan) == {"iris.model.prod": "noop", "iris.config.main": "update", "iris.endpoint.main": "noop"}
    c = change(plan, "iris.config.main")
    assert c.changed == ["weight"]
    assert c.forces_replacement == []
    assert (c.before["weight"], c.after["weight"]) == (80, 50)

    calls_before = len(engine.cloud.calls)
    engine.apply(plan)
    assert engine.cloud.calls[calls_before:] == [("update", "iris.config.main")]
    assert engine.records()["iris.config.main"].id == config_id
    assert engine.cloud.objects[config_id]["inputs"]["weight"] == 50


# -- replace ----------------------------------------------------------------------------------------------------
def test_force_new_field_change_plans_a_replace(engine):
    engine.provider("mem.model", force_new=frozenset({"ref_name"}))
    engine.converge(serving(model="iris:1"))

    plan = engine.plan(serving(model="iris:2"))

    c = change(plan, "iris.model.prod")
    assert c.action == "replace"
    assert c.forces_replacement == ["ref_name"]
    assert not c.create_before_destroy


def test_replace_deletes_the_old_object_before_creating_the_new_one_by_default(engine):
    engine.provider("mem.model", force_new=frozenset({"ref_name"}))
    engine.converge(serving(model="iris:1"))
    old_id = engine.records()["iris.model.prod"].id
    calls_before = len(engine.cloud.calls)

    engine.apply(engine.plan(serving(model="iris:2")))

    model_calls = [c for c in engine.cloud.calls[calls_before:] if c[1] == "iris.model.prod"]
    assert model_calls == [("delete", "iris.model.prod"), ("create", "iris.model.prod")]
    new = engine.records()["iris.model.prod"]
    assert new.id != old_id
    assert old_id not in engine.cloud.objects
    assert engine.cloud.only("iris.model.prod")["inputs"]["ref_name"] == "iris:2"


def test_dependent_of_a_replaced_resource_is_updated_to_the_new_output(engine):
    engine.provider("mem.model", force_new=frozenset({"ref_name"}))
    engine.converge(serving(model="iris:1"))

    plan = engine.plan(serving(model="iris:2"))

    config = change(plan, "iris.config.main")
    assert config.action == "update"
    assert config.after["model"] == Ref("iris.model.prod", "id")  # known after apply
    engine.apply(plan)
    new_model_id = engine.records()["iris.model.prod"].id
    assert engine.records()["iris.config.main"].inputs["model"] == new_model_id
    assert engine.cloud.only("iris.config.main")["inputs"]["model"] == new_model_id


def test_create_before_destroy_creates_new_then_updates_dependents_then_deletes_old(engine):
    engine.provider("mem.config", force_new=frozenset({"weight"}), create_before_destroy=True)
    engine.converge(serving(weight=80))
    old_id = engine.records()["iris.config.main"].id
    calls_before = len(engine.cloud.calls)

    plan = engine.plan(serving(weight=50))
    assert change(plan, "iris.config.main").action == "replace"
    assert change(plan, "iris.config.main").create_before_destroy
    assert change(plan, "iris.endpoint.main").action == "update"
    engine.apply(plan)

    assert engine.cloud.calls[calls_before:] == [("create", "iris.config.main"), ("update", "iris.endpoint.main"),
                                                 ("delete", "iris.config.main")]
    new = engine.records()["iris.config.main"]
    assert new.id != old_id and old_id not in engine.cloud.objects
    assert new.deposed == []
    assert engine.records()["iris.endpoint.main"].inputs["config"] == new.id


# -- delete -----------------------------------------------------------------------------------------------------
def test_removed_resource_is_planned_for_delete_and_deleted(engine):
    engine.converge([res("a", size=1), res("b", size=2)])
    b_id = engine.records()["b"].id

    plan = engine.plan([res("a", size=1)])

    assert actions(plan) == {"a": "noop", "b": "delete"}
    assert change(plan, "b").cloud_id == b_id
    engine.apply(plan)
    assert b_id not in engine.cloud.objects
    assert sorted(engine.records()) == ["a"]


def test_several_deletes_happen_dependents_first(engine):
    chain = [res("net"), res("cluster", net=ref("net")), res("pool", cluster=ref("cluster")),
             res("job", pool=ref("pool"), depends_on=("cluster",))]
    engine.converge([*chain, res("keep")])

    plan = engine.plan([res("keep")])

    assert [c.address for c in plan.changes if c.action == "delete"] == ["job", "pool", "cluster", "net"]
    engine.apply(plan)
    assert engine.cloud.ops("delete") == [("delete", "job"), ("delete", "pool"), ("delete", "cluster"),
                                          ("delete", "net")]
    assert sorted(engine.records()) == ["keep"]


def test_destroy_plan_deletes_everything_dependents_first(engine):
    engine.converge(serving())

    plan = engine.destroy_plan()

    assert plan.destroy
    assert set(actions(plan).values()) == {"delete"}
    engine.apply(plan)
    assert engine.cloud.ops("delete") == [("delete", "iris.endpoint.main"), ("delete", "iris.config.main"),
                                          ("delete", "iris.model.prod")]
    assert engine.cloud.objects == {}
    assert engine.records() == {}


# -- references -------------------------------------------------------------------------------------------------
def test_input_referring_to_a_resource_being_created_is_known_after_apply(engine):
    plan = engine.plan(serving())

    config = change(plan, "iris.config.main")
    assert config.after["model"] == Ref("iris.model.prod", "id")
    assert config.depends_on == ["iris.model.prod"]


def test_apply_resolves_a_reference_to_the_real_output(engine):
    engine.converge(serving())

    records = engine.records()
    model_id = records["iris.model.prod"].id
    assert records["iris.config.main"].inputs["model"] == model_id
    assert engine.cloud.only("iris.config.main")["inputs"]["model"] == model_id


def test_reference_to_an_existing_unchanged_resource_is_shown_with_its_value(engine):
    engine.converge(serving())

    plan = engine.plan([*serving(), res("iris.alarm.main", target_id=ref("iris.endpoint.main", "arn"))])

    alarm = change(plan, "iris.alarm.main")
    assert alarm.action == "create"
    assert alarm.after["target_id"] == f"arn:mem:{engine.records()['iris.endpoint.main'].id}"


def test_dependency_cycle_is_a_plan_error_naming_the_nodes(engine):
    cycle = [res("x.a", v=ref("x.c")), res("x.b", v=ref("x.a")), res("x.c", v=ref("x.b")), res("free")]

    with pytest.raises(PlanError) as err:
        engine.plan(cycle)

    assert str(err.value) == "dependency cycle among: x.a, x.b, x.c"


def test_cycle_error_names_the_cycle_not_the_resources_that_merely_depend_on_it(engine):
    users = [res(f"a.user{i:02}", v=ref("z.one")) for i in range(12)]  # sort before the cycle's names
    cycle = [res("z.one", v=ref("z.two")), res("z.two", v=ref("z.one"))]

    with pytest.raises(PlanError) as err:
        engine.plan([*users, *cycle])

    assert str(err.value) == "dependency cycle among: z.one, z.two"


def test_dependency_on_an_undeclared_address_is_a_plan_error(engine):
    with pytest.raises(PlanError, match=r"b depends on ghost\.thing\.main, which is not declared"):
        engine.plan([res("a"), res("b", x=ref("ghost.thing.main"))])


# -- drift ------------------------------------------------------------------------------------------------------
def test_drift_shows_in_the_change_and_plans_an_update_back(engine):
    engine.converge([res("fs", size_gb=10)])
    fs_id = engine.records()["fs"].id
    engine.cloud.objects[fs_id]["inputs"]["size_gb"] = 20  # someone resized it in the console

    plan = engine.plan([res("fs", size_gb=10)], refresh=True)

    fs = change(plan, "fs")
    assert fs.drift == {"size_gb": [10, 20]}
    assert fs.action == "update"
    assert (fs.before["size_gb"], fs.after["size_gb"]) == (20, 10)
    engine.apply(plan)
    assert engine.cloud.objects[fs_id]["inputs"]["size_gb"] == 10


def test_plan_without_refresh_does_not_see_drift(engine):
    engine.converge([res("fs", size_gb=10)])
    engine.cloud.objects[engine.records()["fs"].id]["inputs"]["size_gb"] = 20

    plan = engine.plan([res("fs", size_gb=10)], refresh=False)

    assert change(plan, "fs").drift is None
    assert change(plan, "fs").action == "noop"


def test_resource_deleted_out_of_band_is_planned_for_create(engine):
    engine.converge([res("fs", size_gb=10)])
    del engine.cloud.objects[engine.records()["fs"].id]

    plan = engine.plan([res("fs", size_gb=10)], refresh=True)

    fs = change(plan, "fs")
    assert fs.action == "create"
    assert fs.drift == {"$gone": True}
    engine.apply(plan)
    assert engine.cloud.count("delete") == 0
    assert engine.cloud.only("fs")["inputs"] == {"size_gb": 10}
    assert engine.records()["fs"].id in engine.cloud.objects


def test_removed_resource_already_gone_is_forgotten_without_a_delete_call(engine):
    engine.converge([res("a"), res("b")])
    del engine.cloud.objects[engine.records()["b"].id]

    plan = engine.plan([res("a")], refresh=True)

    assert change(plan, "b").action == "delete"
    assert change(plan, "b").drift == {"$gone": True}
    engine.apply(plan)
    assert engine.cloud.count("delete") == 0
    assert sorted(engine.records()) == ["a"]


# -- a plan is a value ------------------------------------------------------------------------------------------
def test_plan_json_round_trip_keeps_every_change(engine):
    engine.provider("mem.model", force_new=frozenset({"ref_name"}))
    engine.converge([*serving(model="iris:1"), res("old"), res("fs", size_gb=1)])
    engine.cloud.objects[engine.records()["fs"].id]["inputs"]["size_gb"] = 2
    plan = engine.plan([*serving(model="iris:2"), res("fs", size_gb=1), res("new", x=ref("fs", "arn"))],
                       refresh=True)
    assert {"replace", "update", "delete", "create"} <= set(actions(plan).values())

    loaded = Plan.loads(plan.dumps())

    assert loaded.changes == plan.changes
    assert (loaded.stack, loaded.lineage, loaded.serial) == (plan.stack, plan.lineage, plan.serial)
    assert loaded.summary() == plan.summary()


def test_a_loaded_plan_applies_like_the_original(engine):
    engine.converge([res("a", size=1)])
    plan = Plan.loads(engine.plan([res("a", size=2), res("b", parent=ref("a"))]).dumps())

    engine.apply(plan)

    assert engine.records()["a"].inputs == {"size": 2}
    assert engine.records()["b"].inputs == {"parent": engine.records()["a"].id}


def test_text_that_is_not_a_plan_is_a_plan_error():
    with pytest.raises(PlanError, match="not a saved mlplat plan"):
        Plan.loads('{"format": 1}')
