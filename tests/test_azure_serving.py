"""Serving and monitoring on the azure target: managed online endpoints, deployments, endpoint traffic and monitor
schedules, with the real azure-ai-ml clients against the fake in tests/azure_fake.

Two layers: the providers driven directly (model versions seeded into the fake), which pins each kind's calls; and
whole stacks through the engine (a registry with two versions of iris, an endpoint 80/20, auth key or iam), once
the registry providers are there."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path
from typing import Any

import pytest
from stack_file import StackFile

from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created

from conftest import STACKS, AzureWorkspace, require_module, run_mlplat

require_module("azure.ai.ml", "the azure extra is part of the test extra")

IMAGE = "mlplatacr.azurecr.io/serving/iris-server:latest"
#: the azure catalog offers GPU instances for serving (no cpu row)
GPU = {"accelerator": "t4", "gpus": 1}
PASSPHRASE = {"MLPLAT_STATE_PASSPHRASE": "a passphrase for the azure serving tests"}


# --- the providers, directly --------------------------------------------------------------------------------


def ctx(address: str, op: str = "create", token: str = "0123456789ab-1", **kw: Any) -> StepContext:
    return StepContext(address, op, token, **kw)


def _seed_model(server: Any, name: str, versions: int = 2) -> None:
    """Model versions put straight into the fake (the models module's collection)."""
    from azure_fake import WORKSPACE_PATH

    for v in range(1, versions + 1):
        server.objects["model_versions"][f"{name}/{v}"] = {
            "id": f"{WORKSPACE_PATH}/models/{name}/versions/{v}", "name": str(v),
            "properties": {"modelUri": f"azureml://datastores/workspaceblobstore/paths/m/{v}/iris.json",
                           "modelType": "custom_model", "provisioningState": "Succeeded"}}


class Direct:
    def __init__(self, workspace: AzureWorkspace, tmp_path: Path) -> None:
        from mlplat_plugins.azure.monitoring import MonitorSchedule
        from mlplat_plugins.azure.serving import EndpointTraffic, OnlineDeployment, OnlineEndpoint
        from mlplat_plugins.azure.target import AzureSettings, AzureTarget
        from provisioner.target import TargetContext

        self.server = workspace.server
        self.server.operation_polls = 2
        settings = AzureSettings(**workspace.settings(timeouts=None))
        target = AzureTarget(settings, TargetContext("shop", "azure", tmp_path, tmp_path / ".work"))
        self.endpoint, self.deployment = OnlineEndpoint(target), OnlineDeployment(target)
        self.traffic, self.schedule = EndpointTraffic(target), MonitorSchedule(target)
        _seed_model(self.server, "shop-iris")

    def ep(self, auth_mode: str = "key") -> tuple[str, dict[str, Any]]:
        inputs = {"name": "shop-iris", "auth_mode": auth_mode}
        return self.endpoint.create("iris.online_endpoint.main", inputs, ctx("iris.online_endpoint.main")).id, inputs

    def dep_inputs(self, path: str, version: int, **kw: Any) -> dict[str, Any]:
        return {"endpoint": "shop-iris", "path": path, "model": f"azureml:shop-iris:{version}", "image": IMAGE,
                "instance_type": "Standard_DS3_v2", "instance_count": 1, **kw}

    def deploy(self, path: str, version: int, **kw: Any) -> tuple[Created, dict[str, Any]]:
        inputs = self.dep_inputs(path, version, **kw)
        address = f"iris.online_deployment.{path}"
        return self.deployment.create(address, inputs, ctx(address)), inputs


@pytest.fixture
def direct(azure_workspace: AzureWorkspace, tmp_path: Path) -> Direct:
    return Direct(azure_workspace, tmp_path)


def test_providers_round_trip(direct: Direct) -> None:
    server = direct.server
    name, ep_in = direct.ep()
    created_key = direct.endpoint.read(name, ep_in).outputs["key"]
    assert name == "shop-iris"
    assert created_key == server.objects["endpoint_keys"]["shop-iris"]["primaryKey"]
    observed = direct.endpoint.read(name, ep_in)
    assert observed.inputs == ep_in  # no drift after create
    assert observed.outputs["scoring_uri"] == "https://shop-iris.eastus.inference.ml.azure.com/score"
    live = server.objects["online_endpoints"]["shop-iris"]
    assert live["tags"]["mlplat-token"] == "0123456789ab-1" and live["tags"]["mlplat-address"] == \
        "iris.online_endpoint.main"
    # a create retried after a lost answer adopts its own endpoint; a stranger's is refused
    assert direct.endpoint.create("iris.online_endpoint.main", ep_in, ctx("e")).id == name
    assert direct.endpoint.find("x", ep_in, ctx("x", "find")).id == name  # type: ignore[union-attr]
    assert direct.endpoint.find("x", ep_in, ctx("x", "find", token="000000000000-9")) is None
    with pytest.raises(MlplatError, match="not made by this apply"):
        direct.endpoint.create("x", ep_in, ctx("x", token="000000000000-9"))

    prod, prod_in = direct.deploy("production", 1)
    exp, exp_in = direct.deploy("experimental", 2, instance_type="Standard_NC6s_v3",
                                capture={"sampling_rate": 0.2, "destination": None})
    assert prod.id == f"shop-iris/{prod.outputs['name']}" and prod.outputs["name"].startswith("production-")
    assert len(exp.outputs["name"]) <= 32
    assert direct.deployment.read(prod.id, prod_in).inputs == prod_in
    assert direct.deployment.read(exp.id, exp_in).inputs == exp_in
    assert direct.deployment.find("x", prod_in, ctx("x", "find")) == Created(prod.id, prod.outputs)
    assert direct.deployment.find("x", prod_in, ctx("x", "find", exclude=frozenset({prod.id}))) is None
    # a new deployment takes no traffic
    assert {n: d["traffic"] for n, d in server.deployments("shop-iris").items()} == {
        prod.outputs["name"]: 0, exp.outputs["name"]: 0}
    collector = server.objects["online_deployments"][exp.id.lower()]["properties"]["dataCollector"]
    assert collector["collections"]["model_inputs"]["samplingRate"] == 0.2

    tr_in = {"endpoint": name, "traffic": {"production": 80, "experimental": 20}, "mirror": {},
             "deployments": {"production": prod.outputs["name"], "experimental": exp.outputs["name"]}}
    split = direct.traffic.create("iris.endpoint_traffic.main", tr_in, ctx("t"))
    assert split.id == "shop-iris/traffic"
    assert server.objects["online_endpoints"]["shop-iris"]["properties"]["traffic"] == {
        prod.outputs["name"]: 80, exp.outputs["name"]: 20}
    assert direct.traffic.read(split.id, tr_in).inputs == tr_in

    # the portal moves traffic: read shows the paths' percentages
    server.set_traffic("shop-iris", {prod.outputs["name"]: 50, exp.outputs["name"]: 50})
    assert direct.traffic.read(split.id, tr_in).inputs["traffic"] == {"production": 50, "experimental": 50}

    # an update of the endpoint keeps the traffic (EndpointTraffic owns it)
    direct.endpoint.update(name, ep_in, {**ep_in, "auth_mode": "aad_token"}, ctx("e", "update"))
    live = server.objects["online_endpoints"]["shop-iris"]["properties"]
    assert live["authMode"] == "AADToken" and live["traffic"] == {prod.outputs["name"]: 50, exp.outputs["name"]: 50}
    assert "key" not in direct.endpoint.read(name, ep_in).outputs

    # instance count and capture change in place
    bigger = {**prod_in, "instance_count": 3, "capture": {"sampling_rate": 0.5, "destination": None}}
    assert direct.deployment.diff(prod_in, bigger).forces_replacement == ()
    assert direct.deployment.deployment_name(bigger) == prod.outputs["name"]
    direct.deployment.update(prod.id, prod_in, bigger, ctx("p", "update"))
    assert direct.deployment.read(prod.id, bigger).inputs == bigger
    assert server.objects["online_deployments"][prod.id.lower()]["sku"]["capacity"] == 3

    # a deployment with traffic is refused by Azure; the provider hands its share on first
    from mlplat_plugins.azure.sdk import AzureApiError

    with pytest.raises(AzureApiError, match="Conflict"):
        direct.deployment.deployments_api.begin_delete(name=exp.outputs["name"], endpoint_name="shop-iris")
    direct.deployment.delete(exp.id, exp_in, ctx("d", "delete"))
    assert list(server.deployments("shop-iris")) == [prod.outputs["name"]]
    assert server.objects["online_endpoints"]["shop-iris"]["properties"]["traffic"] == {prod.outputs["name"]: 100}
    assert direct.deployment.read(exp.id, exp_in) is None
    direct.deployment.delete(exp.id, exp_in, ctx("d", "delete"))  # already gone: success

    # deleting the traffic empties it; the endpoint's delete takes the deployments with it
    direct.traffic.delete(split.id, tr_in, ctx("t", "delete"))
    assert server.objects["online_endpoints"]["shop-iris"]["properties"]["traffic"] == {}
    assert direct.traffic.read(split.id, tr_in) is None
    direct.endpoint.delete(name, ep_in, ctx("e", "delete"))
    assert not server.objects["online_endpoints"] and not server.objects["online_deployments"]
    assert direct.endpoint.read(name, ep_in) is None and direct.deployment.read(prod.id, prod_in) is None
    direct.endpoint.delete(name, ep_in, ctx("e", "delete"))


def test_traffic_rules_of_the_fake(direct: Direct) -> None:
    from mlplat_plugins.azure.sdk import AzureApiError

    direct.ep()
    one, _ = direct.deploy("production", 1)
    two, _ = direct.deploy("shadow", 2)
    a, b = one.outputs["name"], two.outputs["name"]
    for traffic, mirror, message in (({a: 80}, {}, "sum to 100"), ({a: 100}, {b: 60}, "at most 50"),
                                     ({a: 50, b: 50}, {b: 10}, "both live and mirror"),
                                     ({"nope-1234": 100}, {}, "does not exist")):
        with pytest.raises(AzureApiError, match=message):
            direct.traffic.put_traffic(ctx("t"), "SetEndpointTraffic", "shop-iris", traffic, mirror)
    tr_in = {"endpoint": "shop-iris", "traffic": {"production": 100}, "mirror": {"shadow": 20},
             "deployments": {"production": a, "shadow": b}}
    split = direct.traffic.create("t", tr_in, ctx("t"))
    live = direct.server.objects["online_endpoints"]["shop-iris"]["properties"]
    assert live["traffic"] == {a: 100} and live["mirrorTraffic"] == {b: 20}
    assert direct.traffic.read(split.id, tr_in).inputs == tr_in
    # deleting a mirrored deployment drops its mirror share first
    direct.deployment.delete(two.id, {}, ctx("d", "delete"))
    live = direct.server.objects["online_endpoints"]["shop-iris"]["properties"]
    assert live["mirrorTraffic"] == {} and list(direct.server.deployments("shop-iris")) == [a]


def test_resumed_deployment_create_after_a_crash(direct: Direct) -> None:
    """The deployment's PUT was issued and checkpointed, then the process died: the resumed step waits on the
    same operation and issues no second PUT."""
    server = direct.server
    direct.ep()
    inputs = direct.dep_inputs("production", 1)
    name = direct.deployment.deployment_name(inputs)
    server.operation_polls = 4
    entity = direct.deployment._entity(inputs, name, direct.deployment.tags("iris.online_deployment.production",
                                                                           ctx("b")))
    direct.deployment.deployments_api.begin_create_or_update(entity)
    assert server.objects["online_deployments"][f"shop-iris/{name}"]["properties"]["provisioningState"] == \
        "Creating"
    before = server.count("OnlineDeployments.CreateOrUpdate")
    crashed = ctx("b", operation=f"CreateOnlineDeployment shop-iris/{name}")
    created = direct.deployment.create("iris.online_deployment.production", inputs, crashed)
    assert created.outputs == {"name": name} and server.count("OnlineDeployments.CreateOrUpdate") == before
    assert server.objects["online_deployments"][f"shop-iris/{name}"]["properties"]["provisioningState"] == \
        "Succeeded"
    # find after a crash before the checkpoint: the token tag says it is this create's
    assert direct.deployment.find("b", inputs, ctx("b", "find")) == Created(created.id, {"name": name})


def test_monitor_schedule_provider(direct: Direct) -> None:
    server = direct.server
    direct.ep()
    prod, _ = direct.deploy("production", 1, capture={"sampling_rate": 0.2, "destination": None})
    _seed_baseline(server)
    sched_in = {"name": "shop-iris-drift", "endpoint": "shop-iris", "deployments": {"production": prod.outputs["name"]},
                "baseline": "azureml:shop-iris-baseline:abc123", "features": ["sepal_length", "petal_width"],
                "metric": "jensen_shannon_distance", "threshold": 0.3,
                "recurrence": {"frequency": "hour", "interval": 1}, "emails": ["oncall@example.com"]}
    created = direct.schedule.create("iris.monitor_schedule.main", sched_in, ctx("s"))
    assert created == Created("shop-iris-drift", {"name": "shop-iris-drift"})
    assert direct.schedule.read(created.id, sched_in).inputs == sched_in
    live = server.objects["schedules"]["shop-iris-drift"]["properties"]
    definition = live["action"]["monitorDefinition"]
    assert definition["monitoringTarget"]["deploymentId"].endswith(f"/deployments/{prod.outputs['name']}")
    assert definition["alertNotificationSetting"]["emailNotificationSetting"]["emails"] == ["oncall@example.com"]
    assert live["trigger"]["frequency"] == "Hour" and live["tags"]["mlplat-token"] == "0123456789ab-1"
    signal = definition["signals"]["data-drift"]
    assert signal["referenceData"]["uri"].endswith("/data/shop-iris-baseline/versions/abc123")
    assert signal["productionData"]["uri"].endswith(f"/data/shop-iris-{prod.outputs['name']}-model_inputs/versions/1")
    assert signal["metricThresholds"] == [{"metric": "jensenShannonDistance", "threshold": {"value": 0.3},
                                           "dataType": "Numerical"}]
    assert direct.schedule.find("s", sched_in, ctx("s", "find")) == created

    changed = {**sched_in, "threshold": 0.1, "emails": ["a@example.com", "b@example.com"]}
    assert direct.schedule.diff(sched_in, changed).forces_replacement == ()
    direct.schedule.update(created.id, sched_in, changed, ctx("s", "update"))
    assert direct.schedule.read(created.id, changed).inputs == changed
    direct.schedule.delete(created.id, changed, ctx("s", "delete"))
    assert direct.schedule.read(created.id, changed) is None and not server.objects["schedules"]
    direct.schedule.delete(created.id, changed, ctx("s", "delete"))


def test_drift_needs_capture(direct: Direct) -> None:
    direct.ep()
    prod, _ = direct.deploy("production", 1)
    sched_in = {"name": "shop-iris-drift", "endpoint": "shop-iris", "deployments": {"production": prod.outputs["name"]},
                "baseline": "azureml:shop-iris-baseline:abc123", "features": ["sepal_length"],
                "metric": "population_stability_index", "threshold": 0.2,
                "recurrence": {"frequency": "day", "interval": 1}, "emails": []}
    with pytest.raises(MlplatError, match=r"declare monitoring\.capture"):
        direct.schedule.create("s", sched_in, ctx("s"))


def _seed_baseline(server: Any) -> None:
    from azure_fake import WORKSPACE_PATH

    server.objects["data_versions"]["shop-iris-baseline/abc123"] = {
        "id": f"{WORKSPACE_PATH}/data/shop-iris-baseline/versions/abc123", "name": "abc123",
        "type": "Microsoft.MachineLearningServices/workspaces/data/versions",
        "systemData": {"createdAt": server.now()},
        "properties": {"dataUri": "azureml://datastores/workspaceblobstore/paths/mlplat/monitoring/baseline.csv",
                       "dataType": "uri_file", "provisioningState": "Succeeded", "tags": {}, "properties": {}}}


def test_scoring_with_the_minted_key(direct: Direct) -> None:
    import requests

    server = direct.server
    name, ep_in = direct.ep()
    one, _ = direct.deploy("production", 1)
    two, _ = direct.deploy("experimental", 2)
    direct.traffic.create("t", {"endpoint": name, "traffic": {"production": 100, "experimental": 0}, "mirror": {},
                                "deployments": {"production": one.outputs["name"],
                                                "experimental": two.outputs["name"]}}, ctx("t"))
    key = direct.endpoint.read(name, ep_in).outputs["key"]
    headers = {"X-Mlplat-Original-Host": "shop-iris.eastus.inference.ml.azure.com",
               "Authorization": f"Bearer {key}"}
    url = f"{server.url}/score"
    answer = requests.post(url, json={"input_data": [[1.0, 2.0]]}, headers=headers, timeout=10)
    assert answer.status_code == 200 and answer.json()["predictions"] == [3.0]
    assert answer.headers["azureml-model-deployment"] == one.outputs["name"]
    pinned = requests.post(url, json={"input_data": [[1.0]]}, timeout=10,
                           headers={**headers, "azureml-model-deployment": two.outputs["name"]})
    assert pinned.headers["azureml-model-deployment"] == two.outputs["name"]
    secondary = server.objects["endpoint_keys"]["shop-iris"]["secondaryKey"]
    assert requests.post(url, json={}, headers={**headers, "Authorization": f"Bearer {secondary}"},
                         timeout=10).status_code == 200
    refused = requests.post(url, json={}, headers={**headers, "Authorization": "Bearer nope"}, timeout=10)
    assert refused.status_code == 401


# --- whole stacks through the engine -------------------------------------------------------------------------

needs_registry = pytest.mark.skipif(importlib.util.find_spec("mlplat_plugins.azure.registry") is None,
                                    reason="the azure registry providers (plugins/azure/registry.py) are not there yet")


class AzureStack(StackFile):
    """A stack with a registry (two versions of iris) and an endpoint splitting 80/20 on azure."""

    def __init__(self, tmp_path: Path, workspace: AzureWorkspace, auth: str = "key") -> None:
        shutil.copytree(STACKS / "models", tmp_path / "models")
        shutil.copytree(STACKS / "data", tmp_path / "data")
        self.directory = tmp_path
        self.workspace, self.server = workspace, workspace.server
        self.server.operation_polls = 2
        super().__init__(tmp_path / "shop.yaml", {
            "apiVersion": "mlplat/v1", "metadata": {"name": "shop"}, "target": "azure",
            "targets": {"azure": workspace.settings(serving_image=IMAGE)},
            "registry": {"name": "models", "models": [
                {"name": "iris", "version": "1", "artifact": "models/iris-v1.json"},
                {"name": "iris", "version": "2", "artifact": "models/iris-v2.json"}]},
            "serving": [{"name": "iris", "auth": auth, "paths": {
                "production": {"model": "iris:1", "weight": 80, **GPU},
                "experimental": {"model": "iris:2", "weight": 20, **GPU}}}]})

    @property
    def serving(self) -> dict[str, Any]:
        return self.doc["serving"][0]

    endpoint = "shop-iris"

    def split(self) -> dict[str, int]:
        """{path: percent} as the endpoint serves it (paths from the deployments' address tags)."""
        return {d["tags"]["mlplat-address"].rsplit(".", 1)[1]: d["traffic"]
                for d in self.server.deployments(self.endpoint).values()}

    def names(self) -> dict[str, str]:
        return {d["tags"]["mlplat-address"].rsplit(".", 1)[1]: n
                for n, d in self.server.deployments(self.endpoint).items()}


@pytest.fixture
def passphrase(monkeypatch: pytest.MonkeyPatch) -> None:
    for key, value in PASSPHRASE.items():
        monkeypatch.setenv(key, value)


@pytest.fixture
def azure_stack(tmp_path: Path, azure_workspace: AzureWorkspace, passphrase: None) -> AzureStack:
    return AzureStack(tmp_path, azure_workspace)


@needs_registry
def test_endpoint_lifecycle(azure_stack: AzureStack) -> None:
    server = azure_stack.server
    azure_stack.apply()
    assert azure_stack.split() == {"production": 80, "experimental": 20}
    assert azure_stack.changes() == {}
    models = {p: d["properties"]["model"].rsplit("/models/", 1)[1]
              for p, d in ((d["tags"]["mlplat-address"].rsplit(".", 1)[1], d)
                           for d in server.deployments(azure_stack.endpoint).values())}
    assert models == {"production": "shop-iris/versions/1", "experimental": "shop-iris/versions/2"}

    # a weight change is the traffic alone: nothing deployed or deleted
    azure_stack.serving["paths"]["production"]["weight"] = 70
    azure_stack.serving["paths"]["experimental"]["weight"] = 30
    azure_stack.write()
    assert azure_stack.changes() == {"iris.endpoint_traffic.main": "update"}
    server.calls.clear()
    azure_stack.apply()
    assert [server.count(a) for a in ("OnlineDeployments.CreateOrUpdate", "OnlineDeployments.Delete",
                                      "OnlineEndpoints.CreateOrUpdate")] == [0, 0, 1]
    assert azure_stack.split() == {"production": 70, "experimental": 30}

    # a path's model change: a new deployment beside the old one, traffic moved, then the old one deleted
    old = set(server.deployments(azure_stack.endpoint))
    azure_stack.serving["paths"]["experimental"]["model"] = "iris:1"
    azure_stack.write()
    assert azure_stack.changes() == {"iris.online_deployment.experimental": "replace",
                                     "iris.endpoint_traffic.main": "update"}
    server.calls.clear()
    azure_stack.apply()
    actions = [a for a, _ in server.calls if a in ("OnlineDeployments.CreateOrUpdate",
                                                   "OnlineEndpoints.CreateOrUpdate", "OnlineDeployments.Delete")]
    assert actions == ["OnlineDeployments.CreateOrUpdate", "OnlineEndpoints.CreateOrUpdate",
                       "OnlineDeployments.Delete"], actions
    assert azure_stack.split() == {"production": 70, "experimental": 30}
    assert len(set(server.deployments(azure_stack.endpoint)) - old) == 1
    assert all(sum(t.values()) == 100 for t in server.traffic_log[azure_stack.endpoint]), \
        server.traffic_log[azure_stack.endpoint]  # never a moment without traffic once it was set
    assert azure_stack.changes() == {}

    # the portal moves traffic: drift in the plan, and apply puts it back
    names = azure_stack.names()
    server.set_traffic(azure_stack.endpoint, {names["production"]: 100})
    drift = azure_stack.drift()
    assert set(drift) == {"iris.endpoint_traffic.main"} and "traffic" in drift["iris.endpoint_traffic.main"], drift
    assert azure_stack.changes() == {"iris.endpoint_traffic.main": "update"}
    azure_stack.apply()
    assert azure_stack.split() == {"production": 70, "experimental": 30}

    # throttled writes (429 TooManyRequests) are retried by the engine
    azure_stack.serving["paths"]["production"]["replicas"] = 2
    azure_stack.serving["paths"]["production"]["weight"] = 60
    azure_stack.serving["paths"]["experimental"]["weight"] = 40
    azure_stack.write()
    assert azure_stack.changes() == {"iris.online_deployment.production": "update",
                                     "iris.endpoint_traffic.main": "update"}
    with server.throttle(1, {"OnlineDeployments.CreateOrUpdate", "OnlineEndpoints.CreateOrUpdate"}):
        azure_stack.apply()
    assert server.throttled_count("OnlineDeployments.CreateOrUpdate") == 1
    assert server.throttled_count("OnlineEndpoints.CreateOrUpdate") == 1
    assert azure_stack.split() == {"production": 60, "experimental": 40}
    production = server.deployments(azure_stack.endpoint)[names["production"]]
    assert production["sku"]["capacity"] == 2
    assert azure_stack.changes() == {}

    # the endpoint deleted out of band (its deployments with it) reads as gone: the plan recreates them
    with server.lock:
        server.objects["online_endpoints"].clear()
        server.objects["online_deployments"].clear()
    changes = azure_stack.changes()
    assert {a: c for a, c in changes.items() if a.startswith("iris.")} == {
        "iris.online_endpoint.main": "create", "iris.online_deployment.production": "create",
        "iris.online_deployment.experimental": "create", "iris.endpoint_traffic.main": "create"}, changes
    azure_stack.apply()
    assert azure_stack.split() == {"production": 60, "experimental": 40}
    assert azure_stack.changes() == {}

    azure_stack.destroy()
    assert not server.objects["online_endpoints"] and not server.objects["online_deployments"]
    assert not server.objects["model_versions"] and not server.objects["schedules"]


@needs_registry
def test_minted_key_is_sealed_and_scores(azure_stack: AzureStack) -> None:
    import requests

    server = azure_stack.server
    azure_stack.apply()
    key = server.objects["endpoint_keys"][azure_stack.endpoint]["primaryKey"]
    stack_file = str(azure_stack.path)
    shown = [run_mlplat(*args, "-f", stack_file, cwd=azure_stack.directory).stdout for args in (
        ("preview",), ("preview", "--json"), ("output",), ("output", "--json"), ("output", "iris.key"),
        ("state", "list", "--json"), ("state", "show", "iris.online_endpoint.main"))]
    assert not [text for text in shown if key in text], "the endpoint key is shown"
    assert "(sensitive)" in shown[4] and "(sensitive)" in shown[6]
    on_disk = b"".join(p.read_bytes() for p in sorted((azure_stack.directory / ".mlplat").rglob("*"))
                       if p.is_file() and p.suffix != ".log")
    assert key.encode() not in on_disk, "the endpoint key is on disk in plaintext"

    def output(stack: Any) -> Any:
        return stack.outputs()

    outputs = azure_stack.run(output)
    assert str(outputs["iris.key"]) == key and outputs["iris.url"].endswith("/score")
    answer = requests.post(f"{server.url}/score", json={"input_data": [[1.0, 2.0, 3.0]]}, timeout=10, headers={
        "X-Mlplat-Original-Host": "shop-iris.eastus.inference.ml.azure.com", "Authorization": f"Bearer {key}"})
    assert answer.status_code == 200 and answer.json()["predictions"] == [6.0]
    assert answer.headers["azureml-model-deployment"] in azure_stack.names().values()
    azure_stack.destroy()


@needs_registry
def test_iam_endpoint_shadow_and_out_of_band_delete(tmp_path: Path, azure_workspace: AzureWorkspace,
                                                    passphrase: None) -> None:
    stack = AzureStack(tmp_path, azure_workspace, auth="iam")
    server = stack.server
    stack.serving["paths"] = {"production": {"model": "iris:1", **GPU},
                              "experimental": {"model": "iris:2", "mode": "shadow", "mirror_percent": 20, **GPU}}
    stack.write()
    stack.apply()
    live = server.objects["online_endpoints"][stack.endpoint]["properties"]
    names = stack.names()
    assert live["authMode"] == "AADToken" and live["traffic"] == {names["production"]: 100}
    assert live["mirrorTraffic"] == {names["experimental"]: 20}
    assert stack.changes() == {}
    # scoring with an Entra ID token
    import requests

    token = next(iter(server.tokens))
    answer = requests.post(f"{server.url}/score", json={"input_data": [[1.0]]}, timeout=10, headers={
        "X-Mlplat-Original-Host": "shop-iris.eastus.inference.ml.azure.com", "Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and answer.headers["azureml-model-deployment"] == names["production"]

    # a mirror over 50 % is refused at validate, before any call
    stack.serving["paths"]["experimental"]["mirror_percent"] = 60
    stack.write()
    server.calls.clear()
    from provisioner.errors import SpecError

    with pytest.raises(SpecError, match="mirror"):
        stack.changes()
    assert server.count("OnlineEndpoints.CreateOrUpdate") == 0
    stack.serving["paths"]["experimental"]["mirror_percent"] = 20
    stack.write()

    # a deployment deleted out of band reads as gone and is recreated
    name = names["experimental"]
    server.set_traffic(stack.endpoint, {names["production"]: 100}, {})
    del server.objects["online_deployments"][f"{stack.endpoint}/{name}"]
    changes = stack.changes()
    assert changes["iris.online_deployment.experimental"] == "create", changes
    stack.apply()
    assert stack.changes() == {}
    assert server.objects["online_endpoints"][stack.endpoint]["properties"]["mirrorTraffic"] == {name: 20}
    stack.destroy()
    assert not server.objects["online_endpoints"] and not server.objects["online_deployments"]


@needs_registry
def test_monitoring(azure_stack: AzureStack) -> None:
    server = azure_stack.server
    azure_stack.serving["monitoring"] = {
        "capture": {"sample_percent": 20},
        "drift": {"baseline": "data/iris-baseline.csv", "metric": "jensen_shannon", "threshold": 0.3,
                  "schedule": "hourly"},
        "alerts": {"emails": ["oncall@example.com"]}}
    azure_stack.write()
    azure_stack.apply()
    names = azure_stack.names()
    for name in names.values():
        collector = server.objects["online_deployments"][f"shop-iris/{name}"]["properties"]["dataCollector"]
        assert collector["collections"]["model_inputs"]["samplingRate"] == 0.2
    (schedule,) = server.objects["schedules"].values()
    definition = schedule["properties"]["action"]["monitorDefinition"]
    assert definition["monitoringTarget"]["deploymentId"].endswith(f"/deployments/{names['production']}")
    (signal,) = definition["signals"].values()
    assert signal["signalType"] == "DataDrift"
    assert json.dumps(signal).count("0.3") >= 1
    assert definition["alertNotificationSetting"]["emailNotificationSetting"]["emails"] == ["oncall@example.com"]
    assert schedule["properties"]["trigger"]["frequency"].lower() == "hour"
    assert azure_stack.changes() == {}

    # a new threshold updates the schedule in place
    azure_stack.serving["monitoring"]["drift"]["threshold"] = 0.1
    azure_stack.write()
    assert azure_stack.changes() == {"iris.monitor_schedule.main": "update"}
    server.calls.clear()
    azure_stack.apply()
    assert server.count("Schedules.CreateOrUpdate") == 1 and server.count("Schedules.Delete") == 0
    assert azure_stack.changes() == {}

    # the production path's new model: a new deployment, the schedule moved to it in place
    azure_stack.serving["paths"]["production"]["model"] = "iris:2"
    azure_stack.write()
    assert azure_stack.changes() == {"iris.online_deployment.production": "replace",
                                     "iris.endpoint_traffic.main": "update", "iris.monitor_schedule.main": "update"}
    azure_stack.apply()
    names = azure_stack.names()
    (schedule,) = server.objects["schedules"].values()
    target = schedule["properties"]["action"]["monitorDefinition"]["monitoringTarget"]["deploymentId"]
    assert target.endswith(f"/deployments/{names['production']}")
    assert azure_stack.changes() == {}

    # forgotten and imported back by their ids, the serving resources plan as no-ops
    order = ("iris.online_endpoint.main", "iris.online_deployment.production", "iris.online_deployment.experimental",
             "iris.endpoint_traffic.main", "iris.monitor_schedule.main")

    def reimport(stack: Any) -> dict[str, tuple[str, list[str]]]:
        ids = {a: r.id for a, r in stack.state.resources().items() if a in order}
        for address in order:
            stack.forget(address)
        done = {a: stack.import_resource(a, ids[a]) for a in order}
        assert {a: r.id for a, r in stack.state.resources().items() if a in order} == ids
        return {a: (c.action, c.changed) for a, c in done.items() if c.action != "noop"}

    assert azure_stack.run(reimport) == {}
    assert azure_stack.changes() == {}

    azure_stack.destroy()
    assert not server.objects["online_endpoints"] and not server.objects["schedules"]


def test_resumed_deployment_delete_after_its_traffic_move(direct: Direct) -> None:
    """The delete moved the deployment's traffic off (checkpointed), then the process died: the resumed step lets
    that update finish and deletes the deployment."""
    server = direct.server
    direct.ep()
    one, _ = direct.deploy("production", 1)
    two, two_in = direct.deploy("experimental", 2)
    a, b = one.outputs["name"], two.outputs["name"]
    server.set_traffic("shop-iris", {a: 70, b: 30})
    server.operation_polls = 4
    endpoint = direct.endpoint.endpoints.get("shop-iris")
    endpoint.traffic, endpoint.mirror_traffic = {a: 100}, {}
    direct.endpoint.endpoints.begin_create_or_update(endpoint)
    assert server.objects["online_endpoints"]["shop-iris"]["properties"]["provisioningState"] == "Updating"
    direct.deployment.delete(two.id, two_in, ctx("d", "delete", operation="MoveTrafficOff shop-iris"))
    assert list(server.deployments("shop-iris")) == [a]
    assert server.objects["online_endpoints"]["shop-iris"]["properties"]["traffic"] == {a: 100}
