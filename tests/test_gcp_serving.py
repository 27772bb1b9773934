"""Serving and monitoring on the gcp target: Vertex AI endpoints, deployed models, traffic splits and model
deployment monitoring jobs, with the real google-cloud-aiplatform clients against the fake in tests/gcp_fake.

Two layers: the providers driven directly (Model Registry versions seeded into the fake), which pins each kind's
calls; and whole stacks through the engine (registry + endpoint 80/20, auth: iam) once the registry providers are
there."""

from __future__ import annotations

import importlib.util
import json
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from stack_file import StackFile

from provisioner.operations import StepContext
from provisioner.provider import Created

from conftest import STACKS, GcpProject, require_module

require_module("google.cloud.aiplatform_v1", "the gcp extra is part of the test extra")

MODEL = "projects/{p}/locations/{r}/models/{m}"
#: the prediction container (an image of the stack's own would need an Artifact Registry repository too)
IMAGE = "us-central1-docker.pkg.dev/mlplat-test/serving/iris-server:latest"


# --- the providers, directly --------------------------------------------------------------------------------


def _target(project: GcpProject, tmp_path: Path) -> Any:
    from mlplat_plugins.gcp.target import GcpSettings, GcpTarget
    from provisioner.target import TargetContext

    settings = GcpSettings(**project.settings(timeouts=None))
    return GcpTarget(settings, TargetContext("shop", "gcp", tmp_path, tmp_path / ".work"))


def _seed_model(server: Any, model_id: str, versions: int = 2) -> str:
    """Model Registry versions put straight into the fake (the registry fake's collection)."""
    name = MODEL.format(p=server.project, r=server.region, m=model_id)
    for v in range(1, versions + 1):
        server.objects["model_versions"][f"{name}@{v}"] = {
            "name": name, "displayName": model_id, "versionId": str(v),
            "versionAliases": ["default"] if v == 1 else [], "labels": {}}
    return name


def ctx(address: str, op: str = "create", token: str = "0123456789ab-1", **kw: Any) -> StepContext:
    return StepContext(address, op, token, **kw)


class Direct:
    def __init__(self, project: GcpProject, tmp_path: Path) -> None:
        from mlplat_plugins.gcp.monitoring import MonitoringJob
        from mlplat_plugins.gcp.serving import DeployedModel, Endpoint, TrafficSplit

        self.server = project.server
        target = _target(project, tmp_path)
        self.endpoint, self.deployed = Endpoint(target), DeployedModel(target)
        self.split, self.job = TrafficSplit(target), MonitoringJob(target)
        self.model = _seed_model(self.server, "shop-models-iris")

    def dm_inputs(self, endpoint: str, path: str, version: int, **kw: Any) -> dict[str, Any]:
        return {"endpoint": endpoint, "path": path, "model": f"{self.model}@{version}",
                "machine_type": "n1-standard-4", "accelerator_type": None, "accelerator_count": 0,
                "min_replicas": 1, "max_replicas": 1, "service_account": None, **kw}


@pytest.fixture
def direct(gcp_project: GcpProject, tmp_path: Path) -> Direct:
    return Direct(gcp_project, tmp_path)


def test_providers_round_trip(direct: Direct) -> None:
    server = direct.server
    ep_in = {"name": "shop-iris", "display_name": "iris", "logging": {"sampling_rate": 0.2, "destination": None}}
    created = direct.endpoint.create("iris.endpoint.main", ep_in, ctx("iris.endpoint.main"))
    name = created.id
    assert name.endswith("/endpoints/shop-iris") and created.outputs == {"name": name, "id": "shop-iris"}
    assert direct.endpoint.read(name, ep_in).inputs == ep_in  # no drift after create
    live = server.objects["endpoints"][name]
    assert live["labels"]["mlplat-token"] == "0123456789ab-1" and live["description"] == "mlplat:iris.endpoint.main"
    assert live["predictRequestResponseLoggingConfig"]["samplingRate"] == 0.2

    prod_in = direct.dm_inputs(name, "production", 1)
    exp_in = direct.dm_inputs(name, "experimental", 2, machine_type="n1-standard-8",
                              accelerator_type="NVIDIA_TESLA_T4", accelerator_count=1)
    prod = direct.deployed.create("iris.deployed_model.production", prod_in, ctx("iris.deployed_model.production"))
    exp = direct.deployed.create("iris.deployed_model.experimental", exp_in,
                                 ctx("iris.deployed_model.experimental"))
    # the first deployed model takes all traffic, a newcomer none
    assert {m["id"]: m["traffic"] for m in server.deployed(name)} == {prod.outputs["id"]: 100, exp.outputs["id"]: 0}
    assert prod.id == f"{name}/deployedModels/{prod.outputs['id']}"
    assert direct.deployed.read(prod.id, prod_in).inputs == prod_in
    assert direct.deployed.read(exp.id, exp_in).inputs == exp_in
    assert direct.deployed.find("x", prod_in, ctx("x", "find")) == Created(prod.id, prod.outputs)
    assert direct.deployed.find("x", prod_in, ctx("x", "find", exclude=frozenset({prod.id}))) is None

    split_in = {"endpoint": name, "weights": {"production": 80.0, "experimental": 20.0},
                "deployed": {"production": prod.outputs["id"], "experimental": exp.outputs["id"]}}
    split = direct.split.create("iris.traffic_split.main", split_in, ctx("iris.traffic_split.main"))
    assert split.id == f"{name}/trafficSplit"
    assert server.objects["endpoints"][name]["trafficSplit"] == {prod.outputs["id"]: 80, exp.outputs["id"]: 20}
    assert direct.split.read(split.id, split_in).inputs == split_in

    # out of band: the console moves traffic; read shows it as the paths' weights
    server.set_traffic(name, {prod.outputs["id"]: 50, exp.outputs["id"]: 50})
    assert direct.split.read(split.id, split_in).inputs["weights"] == {"production": 50.0, "experimental": 50.0}

    # replica counts change in place
    bigger = {**prod_in, "min_replicas": 2, "max_replicas": 3}
    assert direct.deployed.diff(prod_in, bigger).forces_replacement == ()
    direct.deployed.update(prod.id, prod_in, bigger, ctx("p", "update"))
    assert direct.deployed.read(prod.id, bigger).inputs == bigger
    assert server.count("MutateDeployedModel") == 1

    # logging switched off out of band shows as drift, and update puts it back
    server.edit("endpoints", name, lambda e: e.pop("predictRequestResponseLoggingConfig"))
    assert direct.endpoint.read(name, ep_in).inputs["logging"] is None
    direct.endpoint.update(name, {**ep_in, "logging": None}, ep_in, ctx("e", "update"))
    assert direct.endpoint.read(name, ep_in).inputs == ep_in

    # the endpoint's delete undeploys what is left (a crash's leftovers), then deletes
    direct.deployed.delete(exp.id, exp_in, ctx("d", "delete"))
    assert [m["id"] for m in server.deployed(name)] == [prod.outputs["id"]]
    assert server.objects["endpoints"][name]["trafficSplit"] == {prod.outputs["id"]: 100}
    direct.endpoint.delete(name, ep_in, ctx("e", "delete"))
    assert name not in server.objects["endpoints"]
    assert direct.endpoint.read(name, ep_in) is None and direct.deployed.read(prod.id, prod_in) is None
    direct.endpoint.delete(name, ep_in, ctx("e", "delete"))  # already gone: success


def test_undeploy_with_traffic_is_refused_by_the_fake(direct: Direct) -> None:
    from mlplat_plugins.gcp.sdk import GcpApiError

    ep_in = {"name": "shop-iris", "display_name": "iris", "logging": None}
    name = direct.endpoint.create("a", ep_in, ctx("a")).id
    one = direct.deployed.create("b", direct.dm_inputs(name, "production", 1), ctx("b"))
    two = direct.deployed.create("c", direct.dm_inputs(name, "experimental", 2), ctx("c"))
    direct.server.set_traffic(name, {one.outputs["id"]: 60, two.outputs["id"]: 40})
    with pytest.raises(GcpApiError, match="FAILED_PRECONDITION"):
        direct.endpoint.gcp.endpoints.undeploy_model(request={"endpoint": name,
                                                              "deployed_model_id": two.outputs["id"]})
    with pytest.raises(GcpApiError, match="FAILED_PRECONDITION"):  # a model is still deployed
        direct.endpoint.gcp.endpoints.delete_endpoint(request={"name": name})
    # the provider hands the share on: 60/40 → one keeps all
    direct.deployed.delete(two.id, {}, ctx("c", "delete"))
    assert direct.server.objects["endpoints"][name]["trafficSplit"] == {one.outputs["id"]: 100}
    assert all(sum(s.values()) in (0, 100) for s in direct.server.traffic_log[name])


def test_resumed_deploy_after_a_crash(direct: Direct) -> None:
    """The DeployModel was issued and checkpointed, then the process died: the resumed step waits on the same
    operation and issues no second deploy."""
    server = direct.server
    name = direct.endpoint.create("a", {"name": "shop-iris", "display_name": "iris", "logging": None}, ctx("a")).id
    inputs = direct.dm_inputs(name, "production", 1)
    server.operation_polls = 3
    deployed_id = direct.deployed.deployed_id(inputs)
    op = direct.endpoint.gcp.endpoints.deploy_model(request={
        "endpoint": name, "traffic_split": {"0": 100}, "deployed_model": {
            "id": deployed_id, "model": inputs["model"], "display_name": "mlplat:b",
            "dedicated_resources": {"machine_spec": {"machine_type": "n1-standard-4"}, "min_replica_count": 1,
                                    "max_replica_count": 1}}})
    assert server.deployed(name) == []  # still deploying
    crashed = ctx("b", operation=f"DeployModel {op.operation.name}")
    created = direct.deployed.create("b", inputs, crashed)
    assert created.outputs == {"id": deployed_id} and server.count("DeployModel") == 1
    assert [m["id"] for m in server.deployed(name)] == [deployed_id]


def test_deploy_retried_after_a_lost_answer(direct: Direct) -> None:
    """The DeployModel went out but its answer was lost (no checkpoint): the retried create's deploy is refused
    as ALREADY_EXISTS (the same derived id), and it waits for the first one instead of deploying twice."""
    server = direct.server
    name = direct.endpoint.create("a", {"name": "shop-iris", "display_name": "iris", "logging": None}, ctx("a")).id
    inputs = direct.dm_inputs(name, "production", 1)
    server.operation_polls = 3
    direct.endpoint.gcp.endpoints.deploy_model(request={
        "endpoint": name, "traffic_split": {"0": 100}, "deployed_model": {
            "id": direct.deployed.deployed_id(inputs), "model": inputs["model"], "display_name": "mlplat:b",
            "dedicated_resources": {"machine_spec": {"machine_type": "n1-standard-4"}, "min_replica_count": 1}}})
    assert direct.deployed.find("b", inputs, ctx("b", "find")) is None  # not on the endpoint yet
    # the first operation goes on meanwhile (the fake's finish when polled: someone polls it)
    (op,) = [o for o in server.operations if "/endpoints/" in o and not server.operations[o].done][-1:]

    def finish_later() -> None:
        time.sleep(0.3)
        for _ in range(3):
            direct.endpoint.gcp.endpoints.get_operation(request={"name": op})

    poller = threading.Thread(target=finish_later)
    poller.start()
    created = direct.deployed.create("b", inputs, ctx("b"))
    poller.join()
    assert created.outputs == {"id": direct.deployed.deployed_id(inputs)}
    assert server.count("DeployModel") == 2 and len(server.deployed(name)) == 1


def test_monitoring_job_provider(direct: Direct) -> None:
    server = direct.server
    name = direct.endpoint.create("a", {"name": "shop-iris", "display_name": "iris", "logging": None}, ctx("a")).id
    one = direct.deployed.create("b", direct.dm_inputs(name, "production", 1), ctx("b"))
    job_in = {"display_name": "shop-iris-drift", "endpoint": name, "deployed": {"production": one.outputs["id"]},
              "baseline_uri": "gs://mlplat-artifacts/mlplat/monitoring/shop-iris/baseline.csv",
              "baseline_format": "csv", "features": ["sepal_length", "petal_width"], "threshold": 0.3,
              "interval_hours": 1, "sample_rate": 0.2, "emails": ["oncall@example.com"]}
    token = "fedcba987654-2"
    job = direct.job.create("iris.monitoring_job.main", job_in, ctx("j", token=token))
    assert job.id.startswith(f"{server.parent()}/modelDeploymentMonitoringJobs/")
    assert direct.job.read(job.id, job_in).inputs == job_in
    live = server.objects["monitoring_jobs"][job.id]
    assert live["modelDeploymentMonitoringScheduleConfig"]["monitorInterval"] == "3600s"
    assert live["modelMonitoringAlertConfig"]["emailAlertConfig"]["userEmails"] == ["oncall@example.com"]
    # a retried create (lost answer) and find after a crash adopt it by its token label
    assert direct.job.create("j", job_in, ctx("j", token=token)).id == job.id
    assert direct.job.find("j", job_in, ctx("j", token=token)) == Created(job.id, {"name": job.id})
    assert direct.job.find("j", job_in, ctx("j", token="000000000000-1")) is None
    assert len(server.objects["monitoring_jobs"]) == 1

    changed = {**job_in, "threshold": 0.1, "emails": ["a@example.com", "b@example.com"]}
    assert direct.job.diff(job_in, changed).forces_replacement == ()
    direct.job.update(job.id, job_in, changed, ctx("j", "update"))
    assert direct.job.read(job.id, changed).inputs == changed
    assert server.count("UpdateModelDeploymentMonitoringJob") == 1
    direct.job.delete(job.id, changed, ctx("j", "delete"))
    assert direct.job.read(job.id, changed) is None
    direct.job.delete(job.id, changed, ctx("j", "delete"))


def test_predict_routes_by_the_split(direct: Direct) -> None:
    from google.cloud import aiplatform_v1

    name = direct.endpoint.create("a", {"name": "shop-iris", "display_name": "iris", "logging": None}, ctx("a")).id
    one = direct.deployed.create("b", direct.dm_inputs(name, "production", 1), ctx("b"))
    from google.protobuf import json_format, struct_pb2

    client = direct.endpoint.gcp.prediction.raw
    instance = json_format.ParseDict([1.0, 2.0], struct_pb2.Value())
    request = aiplatform_v1.PredictRequest(endpoint=name)
    request.instances.append(instance)
    answer = client.predict(request=request)
    assert answer.deployed_model_id == one.outputs["id"] and list(answer.predictions) == [3.0]
    assert isinstance(answer, aiplatform_v1.PredictResponse)

    # rawPredict: any JSON body, the serving model named in headers; bad JSON is a 400
    from google.auth.transport.requests import AuthorizedSession

    session = AuthorizedSession(direct.endpoint.gcp.credentials)
    url = f"{direct.server.url}/v1/{name}:rawPredict"
    raw = session.post(url, data=json.dumps({"instances": [{"a": 1, "b": 2}]}),
                       headers={"Content-Type": "application/json"})
    assert raw.status_code == 200 and raw.json()["predictions"] == [3.0]
    assert raw.headers["X-Vertex-AI-Deployed-Model-Id"] == one.outputs["id"]
    assert raw.headers["X-Vertex-AI-Endpoint-Id"] == "shop-iris"
    bad = session.post(url, data=b"{not json", headers={"Content-Type": "application/json"})
    assert bad.status_code == 400 and bad.json()["error"]["status"] == "INVALID_ARGUMENT"
    direct.server.set_traffic(name, {})
    refused = session.post(url, data=b"{}", headers={"Content-Type": "application/json"})
    assert refused.status_code == 400 and refused.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_traffic_split_rounding() -> None:
    from provisioner.cloud import split_percent

    assert split_percent({"a": 80.0, "b": 20.0}) == {"a": 80, "b": 20}
    assert split_percent({"a": 1.0, "b": 1.0, "c": 1.0}) == {"a": 34, "b": 33, "c": 33}
    assert sum(split_percent({"a": 33.3, "b": 33.3, "c": 33.4}).values()) == 100
    assert split_percent({"a": 0.0}) == {"a": 0}


# --- whole stacks through the engine -------------------------------------------------------------------------

needs_registry = pytest.mark.skipif(importlib.util.find_spec("mlplat_plugins.gcp.registry") is None,
                                    reason="the gcp registry providers (plugins/gcp/registry.py) are not there yet")


class GcpStack(StackFile):
    """A stack with a registry (two versions of iris) and an endpoint splitting 80/20 on gcp, auth: iam."""

    def __init__(self, tmp_path: Path, project: GcpProject) -> None:
        shutil.copytree(STACKS / "models", tmp_path / "models")
        shutil.copytree(STACKS / "data", tmp_path / "data")
        self.project, self.server = project, project.server
        super().__init__(tmp_path / "shop.yaml", {
            "apiVersion": "mlplat/v1", "metadata": {"name": "shop"}, "target": "gcp",
            "targets": {"gcp": project.settings(serving_image=IMAGE)},
            "registry": {"name": "models", "models": [
                {"name": "iris", "version": "1", "artifact": "models/iris-v1.json"},
                {"name": "iris", "version": "2", "artifact": "models/iris-v2.json"}]},
            "serving": [{"name": "iris", "auth": "iam", "paths": {
                "production": {"model": "iris:1", "weight": 80},
                "experimental": {"model": "iris:2", "weight": 20}}}]})

    @property
    def serving(self) -> dict[str, Any]:
        return self.doc["serving"][0]

    @property
    def endpoint(self) -> str:
        return f"{self.server.parent()}/endpoints/shop-iris"

    def split(self) -> dict[str, int]:
        """{path: percent} as the endpoint serves it (paths from the deployed models' display names)."""
        return {m["displayName"].rsplit(".", 1)[1]: m["traffic"] for m in self.server.deployed(self.endpoint)}


@pytest.fixture
def gcp_stack(tmp_path: Path, gcp_project: GcpProject) -> GcpStack:
    return GcpStack(tmp_path, gcp_project)


@needs_registry
def test_endpoint_lifecycle(gcp_stack: GcpStack) -> None:
    server = gcp_stack.server
    gcp_stack.apply()
    assert gcp_stack.split() == {"production": 80, "experimental": 20}
    assert gcp_stack.changes() == {}
    versions = {m["displayName"].rsplit(".", 1)[1]: m["modelVersionId"] for m in server.deployed(gcp_stack.endpoint)}
    assert versions == {"production": "1", "experimental": "2"}

    # a weight change is the traffic split alone: nothing deployed or undeployed
    gcp_stack.serving["paths"]["production"]["weight"] = 70
    gcp_stack.serving["paths"]["experimental"]["weight"] = 30
    gcp_stack.write()
    assert gcp_stack.changes() == {"iris.traffic_split.main": "update"}
    server.calls.clear()
    gcp_stack.apply()
    assert [server.count(a) for a in ("DeployModel", "UndeployModel", "UpdateEndpoint")] == [0, 0, 1]
    assert gcp_stack.split() == {"production": 70, "experimental": 30}

    # a path's model change: a new deployed model beside the old one, traffic moved, then the old one undeployed
    old = {m["id"] for m in server.deployed(gcp_stack.endpoint)}
    gcp_stack.serving["paths"]["experimental"]["model"] = "iris:1"
    gcp_stack.write()
    assert gcp_stack.changes() == {"iris.deployed_model.experimental": "replace",
                                   "iris.traffic_split.main": "update"}
    server.calls.clear()
    gcp_stack.apply()
    actions = [a for a, _ in server.calls if a in ("DeployModel", "UpdateEndpoint", "UndeployModel")]
    assert actions == ["DeployModel", "UpdateEndpoint", "UndeployModel"], actions
    assert gcp_stack.split() == {"production": 70, "experimental": 30}
    assert len({m["id"] for m in server.deployed(gcp_stack.endpoint)} - old) == 1
    assert all(sum(s.values()) == 100 for s in server.traffic_log[gcp_stack.endpoint][1:]), \
        server.traffic_log[gcp_stack.endpoint]  # no moment without traffic after the first deploy
    assert gcp_stack.changes() == {}

    # the console moves traffic: drift in the plan, and apply puts the split back
    ids = {m["displayName"].rsplit(".", 1)[1]: m["id"] for m in server.deployed(gcp_stack.endpoint)}
    server.set_traffic(gcp_stack.endpoint, {ids["production"]: 100, ids["experimental"]: 0})
    drift = gcp_stack.drift()
    assert set(drift) == {"iris.traffic_split.main"} and "weights" in drift["iris.traffic_split.main"], drift
    assert gcp_stack.changes() == {"iris.traffic_split.main": "update"}
    gcp_stack.apply()
    assert gcp_stack.split() == {"production": 70, "experimental": 30}

    # throttled writes (429 RESOURCE_EXHAUSTED) are retried by the engine
    gcp_stack.serving["paths"]["production"]["replicas"] = 2
    gcp_stack.serving["paths"]["production"]["weight"] = 60
    gcp_stack.serving["paths"]["experimental"]["weight"] = 40
    gcp_stack.write()
    assert gcp_stack.changes() == {"iris.deployed_model.production": "update", "iris.traffic_split.main": "update"}
    with server.throttle(1, {"MutateDeployedModel", "UpdateEndpoint"}):
        gcp_stack.apply()
    assert server.throttled_count("MutateDeployedModel") == 1 and server.throttled_count("UpdateEndpoint") == 1
    assert gcp_stack.split() == {"production": 60, "experimental": 40}
    production = next(m for m in server.deployed(gcp_stack.endpoint) if m["id"] == ids["production"])
    assert production["dedicatedResources"]["minReplicaCount"] == 2
    assert gcp_stack.changes() == {}

    gcp_stack.destroy()
    assert not server.objects["endpoints"] and not server.objects["model_versions"]
    assert not server.objects["monitoring_jobs"]


@needs_registry
def test_monitoring(gcp_stack: GcpStack) -> None:
    server = gcp_stack.server
    gcp_stack.serving["monitoring"] = {
        "capture": {"sample_percent": 20},
        "drift": {"baseline": "data/iris-baseline.csv", "metric": "jensen_shannon", "threshold": 0.3,
                  "schedule": "hourly"},
        "alerts": {"emails": ["oncall@example.com"]}}
    gcp_stack.write()
    gcp_stack.apply()
    endpoint = server.objects["endpoints"][gcp_stack.endpoint]
    assert endpoint["predictRequestResponseLoggingConfig"]["enabled"] is True
    assert endpoint["predictRequestResponseLoggingConfig"]["samplingRate"] == 0.2
    (job,) = server.objects["monitoring_jobs"].values()
    assert job["endpoint"] == gcp_stack.endpoint and endpoint["modelDeploymentMonitoringJob"] == job["name"]
    assert {c["deployedModelId"] for c in job["modelDeploymentMonitoringObjectiveConfigs"]} == {
        m["id"] for m in server.deployed(gcp_stack.endpoint)}
    objective = job["modelDeploymentMonitoringObjectiveConfigs"][0]["objectiveConfig"]
    assert objective["predictionDriftDetectionConfig"]["driftThresholds"]["petal_width"] == {"value": 0.3}
    assert objective["trainingDataset"]["gcsSource"]["uris"][0].startswith("gs://mlplat-artifacts/")
    assert job["modelMonitoringAlertConfig"]["emailAlertConfig"]["userEmails"] == ["oncall@example.com"]
    assert job["loggingSamplingStrategy"]["randomSampleConfig"]["sampleRate"] == 0.2
    assert gcp_stack.changes() == {}

    # logging switched off in the console is drift on the endpoint, put back in place
    server.edit("endpoints", gcp_stack.endpoint, lambda e: e["predictRequestResponseLoggingConfig"].update(
        enabled=False))
    assert gcp_stack.changes() == {"iris.endpoint.main": "update"}
    gcp_stack.apply()
    assert server.objects["endpoints"][gcp_stack.endpoint]["predictRequestResponseLoggingConfig"]["enabled"]

    # a new threshold updates the job in place
    gcp_stack.serving["monitoring"]["drift"]["threshold"] = 0.1
    gcp_stack.write()
    assert gcp_stack.changes() == {"iris.monitoring_job.main": "update"}
    server.calls.clear()
    gcp_stack.apply()
    assert server.count("UpdateModelDeploymentMonitoringJob") == 1
    assert server.count("CreateModelDeploymentMonitoringJob") == server.count(
        "DeleteModelDeploymentMonitoringJob") == 0
    (job,) = server.objects["monitoring_jobs"].values()
    objective = job["modelDeploymentMonitoringObjectiveConfigs"][0]["objectiveConfig"]
    assert objective["predictionDriftDetectionConfig"]["driftThresholds"]["petal_width"] == {"value": 0.1}

    # a path's new model: a new deployed model, the job's objective configs moved to it in place, the old one
    # undeployed after that
    gcp_stack.serving["paths"]["experimental"]["model"] = "iris:1"
    gcp_stack.write()
    assert gcp_stack.changes() == {"iris.deployed_model.experimental": "replace", "iris.traffic_split.main": "update",
                                   "iris.monitoring_job.main": "update"}
    server.calls.clear()
    gcp_stack.apply()
    (job,) = server.objects["monitoring_jobs"].values()
    assert {c["deployedModelId"] for c in job["modelDeploymentMonitoringObjectiveConfigs"]} == {
        m["id"] for m in server.deployed(gcp_stack.endpoint)}
    assert server.count("CreateModelDeploymentMonitoringJob") == 0 and server.count("UndeployModel") == 1
    assert gcp_stack.changes() == {}

    # a new capture rate: the endpoint's logging and the job's sampling, both in place
    gcp_stack.serving["monitoring"]["capture"]["sample_percent"] = 50
    gcp_stack.write()
    assert gcp_stack.changes() == {"iris.endpoint.main": "update", "iris.monitoring_job.main": "update"}
    gcp_stack.apply()
    assert server.objects["endpoints"][gcp_stack.endpoint]["predictRequestResponseLoggingConfig"]["samplingRate"] \
        == 0.5
    (job,) = server.objects["monitoring_jobs"].values()
    assert job["loggingSamplingStrategy"]["randomSampleConfig"]["sampleRate"] == 0.5
    assert gcp_stack.changes() == {}

    # forgotten and imported back by their ids, the serving resources plan as no-ops
    order = ("iris.endpoint.main", "iris.deployed_model.production", "iris.deployed_model.experimental",
             "iris.traffic_split.main", "iris.monitoring_job.main")

    def reimport(stack: Any) -> dict[str, tuple[str, list[str]]]:
        ids = {a: r.id for a, r in stack.state.resources().items() if a in order}
        for address in order:
            stack.forget(address)
        done = {a: stack.import_resource(a, ids[a]) for a in order}
        assert {a: r.id for a, r in stack.state.resources().items() if a in order} == ids
        return {a: (c.action, c.changed) for a, c in done.items() if c.action != "noop"}

    assert gcp_stack.run(reimport) == {}
    assert gcp_stack.changes() == {}

    gcp_stack.destroy()
    assert not server.objects["endpoints"] and not server.objects["monitoring_jobs"]
