"""Plugin surface v2 in the core: stack-scoped resources, plan-time discovery, capability reasons, a missing SDK
at validate, import / state rm, export formats and pluggy hygiene. Targets' own behaviour is in the contract suite."""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from provisioner import plugins
from provisioner.api import Stack
from provisioner.errors import MlplatError, PlanError, SpecError
from provisioner.events import Event
from provisioner.plan import Plan
from provisioner.target import STACK_SCOPE, Capabilities, StorageLimits, Target

from conftest import STACKS, run_mlplat

SIM_STACK = """\
apiVersion: mlplat/v1
metadata: {{name: surface}}
target: sim
targets:
  sim: {settings}
storage:
  - {{name: shared, size_gb: 10}}
registry:
  name: models
  models:
    - {{name: iris, version: "1", artifact: models/iris-v1.json{framework}}}
serving:
  - name: iris
    auth: {auth}
    paths:
      production: {{model: "iris:1"}}
"""


def sim_stack(tmp_path: Path, auth: str = "none", framework: str = "", **settings: object) -> Path:
    (tmp_path / "models").mkdir(exist_ok=True)
    (tmp_path / "models" / "iris-v1.json").write_text((STACKS / "models" / "iris-v1.json").read_text())
    path = tmp_path / "stack.yaml"
    settings = {"store": "cloud", **settings}
    path.write_text(SIM_STACK.format(settings=json.dumps(settings), auth=auth,
                                     framework=f", framework: {framework}" if framework else ""))
    return path


# -- stack-scoped resources -------------------------------------------------------------------------------------
def test_stack_scoped_resources_are_made_first_and_deleted_last(tmp_path: Path) -> None:
    path = sim_stack(tmp_path, namespace=True)
    events: list[Event] = []
    stack = Stack(path, listeners=[events.append])
    resources, _ = stack.lower()
    namespace = f"{STACK_SCOPE}.sim.namespace.main"
    assert resources[namespace].kind == "sim.namespace"
    component_resources = [r for a, r in resources.items() if a != namespace]
    # direct edges only: a resource already after another component resource of the target gets no extra edge
    assert all(namespace in r.edges or any(e in resources and e != namespace for e in r.edges)
               for r in component_resources)
    assert namespace in resources["shared.filesystem.main"].depends_on

    stack.apply(stack.plan())
    done = [e.address for e in events if e.kind == "step-done"]
    assert done[0] == namespace and len(done) == len(resources)
    events.clear()
    stack.apply(stack.plan(destroy=True))
    done = [e.address for e in events if e.kind == "step-done"]
    assert done[-1] == namespace and len(done) == len(resources)


def test_a_resource_lowered_outside_its_scope_is_a_plugin_bug_named_as_such(tmp_path: Path,
                                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplat_plugins.sim.target import SimTarget

    real = SimTarget.lower

    def stray(self: SimTarget, component, ctx):  # type: ignore[no-untyped-def]
        lowered = real(self, component, ctx)
        for res in lowered.resources:
            res.address = "elsewhere." + res.address
        return lowered

    monkeypatch.setattr(SimTarget, "lower", stray)
    with pytest.raises(PlanError, match=r"outside shared\.: elsewhere\.shared\.filesystem\.main \(a plugin bug\)"):
        Stack(sim_stack(tmp_path)).validate()


# -- discovery ----------------------------------------------------------------------------------------------------
def test_discovery_is_recorded_shown_and_a_saved_plan_is_refused_when_it_changed(tmp_path: Path) -> None:
    path = sim_stack(tmp_path)
    (tmp_path / "cloud").mkdir()
    (tmp_path / "cloud" / "discovery.json").write_text(json.dumps({"kueue": True, "regions": ["r1"]}))
    shown = run_mlplat("preview", "-f", str(path), "-o", str(tmp_path / "plan.json"), cwd=tmp_path)
    assert "discovered on target sim: kueue=true, regions=[\"r1\"]" in shown.stdout
    assert json.loads((tmp_path / "plan.json").read_text())["discovery"] == {"sim": {"kueue": True,
                                                                                    "regions": ["r1"]}}

    (tmp_path / "cloud" / "discovery.json").write_text(json.dumps({"kueue": False, "regions": ["r1"]}))
    refused = run_mlplat("apply", str(tmp_path / "plan.json"), "-f", str(path), "--yes", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert "target 'sim': kueue was true, now false" in refused.stderr
    assert "mlplat preview -o plan.json" in refused.stderr
    stack = Stack(path)
    assert not stack.state.resources()  # nothing was applied
    stack.close()

    (tmp_path / "cloud" / "discovery.json").write_text(json.dumps({"regions": ["r1"], "kueue": True}))
    run_mlplat("apply", str(tmp_path / "plan.json"), "-f", str(path), "--yes", cwd=tmp_path)
    stack = Stack(path)
    assert stack.state.resources()
    run_mlplat("destroy", "-f", str(path), "--yes", cwd=tmp_path)


def test_validate_discovers_nothing_and_a_plan_lowers_with_what_was_discovered(tmp_path: Path,
                                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplat_plugins.sim.target import SimTarget

    calls: list[dict[str, object]] = []
    real = SimTarget.lower_stack

    def seen(self: SimTarget, ctx):  # type: ignore[no-untyped-def]
        calls.append(dict(self.discovered))
        return real(self, ctx)

    monkeypatch.setattr(SimTarget, "lower_stack", seen)
    monkeypatch.setattr(SimTarget, "discover", lambda self: {"zone": "z1"})
    stack = Stack(sim_stack(tmp_path))
    stack.validate()
    assert calls == [{}]  # validate calls no cloud
    assert stack.plan(refresh=False).discovery == {"sim": {"zone": "z1"}}
    assert calls == [{}, {"zone": "z1"}]  # lowered again, now with the discovery


def test_a_plan_file_from_before_discovery_still_loads() -> None:
    plan = Plan("s", "l", 1, [])
    data = plan.to_json()
    del data["discovery"]
    assert Plan.loads(json.dumps(data)).discovery == {}


# -- capabilities -------------------------------------------------------------------------------------------------
def test_a_target_that_declares_nothing_offers_nothing_beyond_cpu_and_no_auth() -> None:
    caps = Capabilities()
    assert not caps.traffic_split and caps.shadow is None and not caps.spot and not caps.autoscaling
    assert caps.training_accelerators == caps.serving_accelerators == frozenset({"cpu"})
    assert caps.storage_kinds == frozenset() and caps.auth_modes == frozenset({"none"})
    assert caps.model_formats == frozenset()
    assert Capabilities(storage={"nas": StorageLimits(min_gb=1024)}).to_json()["storage"] == {
        "nas": {"min_gb": 1024, "max_gb": None}}


def test_a_model_format_the_target_does_not_serve_is_refused_at_validate(tmp_path: Path) -> None:
    path = sim_stack(tmp_path, framework="sklearn", model_formats=["onnx", "mlplat-linear"])
    stack = Stack(path)
    codes = [(reason.code, loc) for loc, _, reason in stack.check_capabilities()]
    assert codes == [("model-format-unsupported", ("serving", 0, "paths", "production", "model"))]
    with pytest.raises(SpecError) as err:
        stack.validate()
    assert f"{path}:16:20: serving[0].paths.production.model:" in str(err.value)
    assert "its framework 'sklearn' is not one it serves (served: mlplat-linear, onnx)" in str(err.value)


def test_xgboost_on_local_fails_validate_not_half_way_through_apply(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    text = (STACKS / "quickstart.yaml").read_text()
    assert "artifact: models/iris-v1.json}" in text
    (tmp_path / "stack.yaml").write_text(text.replace("artifact: models/iris-v1.json}",
                                                      "artifact: models/iris-v1.json, framework: xgboost}"))
    (tmp_path / "models").mkdir()
    for model in (STACKS / "models").glob("*.json"):
        (tmp_path / "models" / model.name).write_text(model.read_text())
    proc = cli("validate", "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "cannot serve model 'iris:1': its framework 'xgboost'" in proc.stderr
    assert "stack.yaml:" in proc.stderr


def test_keys_minted_by_the_service_need_no_api_key_where_the_target_mints_them(tmp_path: Path,
                                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MLPLAT_STATE_PASSPHRASE", "correct horse battery staple")
    with pytest.raises(SpecError, match="does not mint endpoint keys: give the key clients must send"):
        Stack(sim_stack(tmp_path, auth="key")).validate()
    stack = Stack(sim_stack(tmp_path, auth="key", endpoint_keys=True))
    stack.apply(stack.plan())
    key = stack.outputs()["iris.key"]
    from provisioner.secrets import is_secret

    assert is_secret(key)  # sealed in the state, masked when shown
    stack.apply(stack.plan(destroy=True))


def test_autoscaling_a_target_lacks_is_a_warning_not_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                                              ) -> None:
    from dataclasses import replace

    from mlplat_plugins.sim.target import SimTarget

    real = SimTarget.capabilities
    monkeypatch.setattr(SimTarget, "capabilities", lambda self: replace(real(self), autoscaling=False))
    path = sim_stack(tmp_path)
    path.write_text(path.read_text() + "clusters:\n  - name: train\n    gpu_pools:\n"
                    "      - {name: a, accelerator: cpu, nodes: {min: 1, max: 3}}\n")
    warnings = Stack(path).validate()
    assert [w.message for w in warnings] == [
        "target 'sim' (sim) does not autoscale: pool 'a' runs nodes.min (1) node(s), never up to 3"]


# -- unknown targets and missing SDKs -----------------------------------------------------------------------------
def test_an_unknown_target_is_an_error_even_with_no_components(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "stack.yaml").write_text("apiVersion: mlplat/v1\nmetadata: {name: empty}\ntarget: alibaba\n")
    proc = cli("validate", "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    from provisioner import plugins

    installed = ", ".join(sorted(plugins.target_types()))  # aws, azure, gcp, local, sim with the test extra
    assert f"stack.yaml:3:1: unknown target 'alibaba' (installed target types: {installed};" in proc.stderr


def test_a_target_whose_sdk_is_missing_is_reported_at_validate_with_the_install_line(tmp_path: Path) -> None:
    """boto3 hidden (sys.modules["boto3"] = None makes it uninstalled to find_spec and import alike)."""
    (tmp_path / "stack.yaml").write_text(textwrap.dedent("""\
        apiVersion: mlplat/v1
        metadata: {name: needs-boto3}
        target: aws
        targets:
          aws: {region: us-east-1}
        storage:
          - {name: shared}
        """))
    code = ("import sys; sys.modules['boto3'] = None; sys.argv = ['mlplat', *sys.argv[1:]]; "
            "from provisioner.cli import main; main()")
    import subprocess

    for command in ("validate", "preview", "plugins"):
        proc = subprocess.run([sys.executable, "-c", code, command, *(["-f", "stack.yaml"] if command != "plugins"
                                                                     else [])],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60,
                              env={"NO_COLOR": "1", "COLUMNS": "200", "PATH": "/usr/bin:/bin"})
        if command == "plugins":
            assert proc.returncode == 0, proc.stderr
            assert "target aws" in proc.stdout and "SDK missing: pip install 'mlplat[aws]'" in proc.stdout
            continue
        assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert ("stack.yaml:5:3: target 'aws' (aws) needs boto3, which is not installed: "
                "pip install 'mlplat[aws]'") in proc.stderr
        assert "No module named" not in proc.stderr


# -- import and state rm ------------------------------------------------------------------------------------------
def test_state_rm_then_import_adopts_the_object_and_the_next_plan_is_noop(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    path = sim_stack(tmp_path)
    stack = Stack(path)
    stack.apply(stack.plan())
    record = stack.state.resources()["shared.filesystem.main"]
    stack.close()

    removed = cli("state", "rm", "shared.filesystem.main", "-f", "stack.yaml", cwd=tmp_path)
    assert f"sim.filesystem {record.id} still exists, unmanaged" in removed.stdout
    assert Stack(path).plan().summary()["create"] == 1  # forgotten: the plan would make another

    wrong = cli("import", "shared.filesystem.main", "no-such-id", "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert wrong.returncode == 1 and "Traceback" not in wrong.stderr
    assert "shared.filesystem.main: target 'sim' has no sim.filesystem with id 'no-such-id'" in wrong.stderr
    other = Stack(path).state.resources()["models.registry.main"].id
    wrong_kind = cli("import", "shared.filesystem.main", other, "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert wrong_kind.returncode == 1 and "already managed as models.registry.main" in wrong_kind.stderr

    typo = cli("import", "shared.filesystem.mian", record.id, "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert "no resource shared.filesystem.mian (did you mean shared.filesystem.main?)" in typo.stderr

    imported = cli("import", "shared.filesystem.main", record.id, "-f", "stack.yaml", cwd=tmp_path)
    assert "imported shared.filesystem.main" in imported.stdout and "It matches the stack file" in imported.stdout
    again = cli("import", "shared.filesystem.main", record.id, "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert again.returncode == 1 and "is already managed" in again.stderr

    stack = Stack(path)
    assert set(stack.plan().summary().items()) >= {("create", 0), ("update", 0), ("replace", 0)}
    objects = list((tmp_path / "cloud" / "objects").glob("*.json"))
    stack.apply(stack.plan())
    assert list((tmp_path / "cloud" / "objects").glob("*.json")) == objects  # no duplicate made
    stack.apply(stack.plan(destroy=True))
    assert not list((tmp_path / "cloud" / "objects").glob("*.json"))


def test_an_imported_object_that_differs_shows_the_difference_as_the_next_plan(tmp_path: Path) -> None:
    path = sim_stack(tmp_path)
    stack = Stack(path)
    stack.apply(stack.plan())
    record = stack.forget("shared.filesystem.main")
    obj_path = tmp_path / "cloud" / "objects" / f"{record.id}.json"
    obj = json.loads(obj_path.read_text())
    obj["inputs"]["size_gb"] = 500  # made by hand, not as the stack says
    obj_path.write_text(json.dumps(obj))

    change = Stack(path).import_resource("shared.filesystem.main", record.id)
    assert change.action == "update" and change.changed == ["size_gb"]
    assert (change.before or {})["size_gb"] == 500 and (change.after or {})["size_gb"] == 10
    stack = Stack(path)
    stack.apply(stack.plan())
    assert json.loads(obj_path.read_text())["inputs"]["size_gb"] == 10
    stack.apply(stack.plan(destroy=True))


def test_a_kind_that_cannot_be_imported_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplat_plugins.sim.providers import SimProvider

    stack = Stack(sim_stack(tmp_path))
    stack.apply(stack.plan())
    record = stack.forget("shared.filesystem.main")
    monkeypatch.setattr(SimProvider, "importable", False)
    with pytest.raises(PlanError, match=r"a sim\.filesystem cannot be imported"):
        Stack(sim_stack(tmp_path)).import_resource("shared.filesystem.main", record.id)


# -- export -------------------------------------------------------------------------------------------------------
def test_export_json_and_a_plugin_format(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sim_stack(tmp_path)
    data = json.loads(cli("export", "--format", "json", "-f", "stack.yaml", cwd=tmp_path).stdout)
    assert {r["address"] for r in data["resources"]} >= {"shared.filesystem.main", "iris.endpoint.main"}
    assert data["outputs"]["iris.url"] == {"$ref": ["iris.endpoint.main", "url"]}

    plugin = tmp_path / "toy_export.py"
    plugin.write_text(textwrap.dedent("""\
        from provisioner.export import Exporter
        from provisioner.plugins import hookimpl

        @hookimpl
        def mlplat_exporters():
            return [Exporter("addresses", "one address per line",
                             lambda stack: "".join(a + "\\n" for a in sorted(stack.lower()[0])))]
        """))
    env = {"MLPLAT_PLUGINS": "toy_export", "PYTHONPATH": str(tmp_path)}
    listed = cli("export", "--list", cwd=tmp_path, env=env).stdout
    assert "addresses\tone address per line" in listed and "json\t" in listed
    out = cli("export", "--format", "addresses", "-f", "stack.yaml", "-o", "out.txt", cwd=tmp_path, env=env)
    assert "wrote out.txt (addresses)" in out.stderr
    assert "shared.filesystem.main\n" in (tmp_path / "out.txt").read_text()
    unknown = cli("export", "--format", "hcl", "-f", "stack.yaml", cwd=tmp_path, check=False)
    assert unknown.returncode == 1 and "unknown export format 'hcl' (formats: json, pulumi)" in unknown.stderr


# -- pluggy hygiene -----------------------------------------------------------------------------------------------
def test_a_misspelt_hook_is_an_error_naming_its_plugin(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "typo_plugin.py").write_text(textwrap.dedent("""\
        from provisioner.plugins import hookimpl

        @hookimpl
        def mlplat_target():
            return []
        """))
    proc = cli("plugins", cwd=tmp_path, env={"MLPLAT_PLUGINS": "typo_plugin", "PYTHONPATH": str(tmp_path)},
               check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "plugin typo_plugin:" in proc.stderr and "mlplat_target" in proc.stderr


def test_two_plugins_claiming_one_target_type_is_an_error_naming_both(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "second_sim.py").write_text(textwrap.dedent("""\
        from provisioner.plugins import hookimpl
        from provisioner.target import Target

        class OtherSim(Target):
            name = "sim"

        @hookimpl
        def mlplat_targets():
            return [OtherSim]
        """))
    sim_stack(tmp_path)
    proc = cli("validate", "-f", "stack.yaml", cwd=tmp_path,
               env={"MLPLAT_PLUGINS": "second_sim", "PYTHONPATH": str(tmp_path)}, check=False)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "two plugins provide target type 'sim'" in proc.stderr
    assert "sim (mlplat_plugins.sim.target)" in proc.stderr and "second_sim (second_sim)" in proc.stderr


def test_target_types_in_process_reports_the_conflict(monkeypatch: pytest.MonkeyPatch) -> None:
    class Clash(Target):
        name = "local"

    module = type(sys)("clash_plugin")
    module.mlplat_targets = plugins.hookimpl(lambda: [Clash])  # type: ignore[attr-defined]
    pm = plugins.manager()
    pm.register(module, name="clash_plugin")
    try:
        with pytest.raises(MlplatError, match="two plugins provide target type 'local': local"):
            plugins.target_types()
    finally:
        pm.unregister(module)


def test_two_targets_capabilities_compare_field_by_field() -> None:
    from provisioner.capabilities import differences
    from provisioner.target import ShadowCapability

    azure_like = Capabilities(traffic_split=True, shadow=ShadowCapability(max_mirror_percent=50))
    local_like = Capabilities(traffic_split=True, shadow=ShadowCapability(), max_replicas=1)
    assert differences(azure_like, local_like) == {"shadow": ({"max_mirror_percent": 50}, {"max_mirror_percent": 100}),
                                                   "max_replicas": (None, 1)}
    assert differences(local_like, local_like) == {}


def test_a_throttled_discovery_is_retried_through_the_targets_gate(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplat_plugins.sim.target import SimTarget
    from provisioner.apply import ApplyOptions, RetryPolicy
    from provisioner.errors import RetryableError

    calls: list[int] = []

    def flaky(self: SimTarget) -> dict[str, object]:
        calls.append(1)
        if len(calls) < 3:
            raise RetryableError("429 Too Many Requests", retry_after=0.01)
        return {"zone": "z1"}

    monkeypatch.setattr(SimTarget, "discover", flaky)
    events: list[Event] = []
    stack = Stack(sim_stack(tmp_path), listeners=[events.append],
                  options=ApplyOptions(retry=RetryPolicy(attempts=5, base_delay=0.01, max_delay=0.02)))
    assert stack.plan(refresh=False).discovery == {"sim": {"zone": "z1"}}
    assert len(calls) == 3 and [e.address for e in events if e.kind == "step-retry"] == ["_stack.sim"] * 2


def test_a_target_adds_its_own_coded_refusals(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from mlplat_plugins.sim.target import SimTarget
    from provisioner.spec.model import Storage
    from provisioner.target import Reason

    def check(self: SimTarget, component: object) -> list[Reason]:
        if isinstance(component, Storage) and component.size_gb % 10:
            return [Reason("size-granularity", "sim storage comes in steps of 10 GB", ("size_gb",))]
        return []

    monkeypatch.setattr(SimTarget, "check", check)
    path = sim_stack(tmp_path)
    path.write_text(path.read_text().replace("size_gb: 10", "size_gb: 15"))
    stack = Stack(path)
    assert [(r.code, loc) for loc, _, r in stack.check_capabilities()] == [("size-granularity",
                                                                             ("storage", 0, "size_gb"))]
    with pytest.raises(SpecError, match=r"stack\.yaml:7:20: storage\[0\]\.size_gb: sim storage comes in steps"):
        stack.validate()


def test_mlplat_plugins_may_name_a_module_an_entry_point_already_loaded(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    proc = cli("plugins", cwd=tmp_path, env={"MLPLAT_PLUGINS": "mlplat_plugins.sim.plugin"})
    assert proc.stdout.count("target sim:") == 1


def test_a_target_declares_its_accelerators_from_its_catalog_rows() -> None:
    from provisioner import catalog

    training, serving = catalog.accelerators_offered("aws"), catalog.accelerators_offered("aws", serving=True)
    assert {"cpu", "a10g", "h100"} <= serving <= training
    assert training == {o.accelerator for n in catalog.names() for o in catalog.offerings("aws", n)}
    with pytest.raises(MlplatError, match="no accelerator catalog for target 'alibaba'"):
        catalog.accelerators_offered("alibaba")


def test_a_target_without_training_says_so(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dataclasses import replace

    from mlplat_plugins.sim.target import SimTarget

    real = SimTarget.capabilities
    monkeypatch.setattr(SimTarget, "capabilities", lambda self: replace(real(self), training_accelerators=frozenset()))
    path = sim_stack(tmp_path)
    path.write_text(path.read_text() + "clusters:\n  - name: train\n    gpu_pools:\n"
                    "      - {name: a, accelerator: cpu}\n")
    with pytest.raises(SpecError, match=r"target 'sim' \(sim\) runs no training clusters; put this cluster on "):
        Stack(path).validate()


def test_validate_json_gives_each_refusal_its_code_and_place(tmp_path: Path, cli) -> None:  # type: ignore[no-untyped-def]
    sim_stack(tmp_path, framework="sklearn", model_formats=["onnx"])
    proc = cli("validate", "-f", "stack.yaml", "--json", cwd=tmp_path, check=False)
    assert proc.returncode == 1
    data = json.loads(proc.stdout)
    assert [(r["code"], r["path"], r["at"].rsplit("/", 1)[-1]) for r in data["reasons"]] == [
        ("model-format-unsupported", "serving[0].paths.production.model", "stack.yaml:16:20")]
