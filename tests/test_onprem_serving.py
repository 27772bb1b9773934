"""Serving on the onprem target against the fake Kubernetes API server (tests/kube_fake): a registry and an endpoint
through the engine, with the real `kubernetes` client.

Gateway API path: per path a model-server Deployment and Service, one HTTPRoute splitting (or mirroring) between
them; requests go through the fake Gateway's data plane on 127.0.0.1. KServe path: one InferenceService whose
production predictor is rolled out before its canary. Every traffic check is bounded (a few hundred loopback
requests)."""

from __future__ import annotations

import json
import shutil
import threading
import urllib.error
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from stack_file import StackFile

from provisioner.errors import MlplatError, SpecError

from conftest import FAKE_CLOUD_TIMEOUTS, STACKS, KubeCluster, require_module

require_module("kubernetes", "the onprem extra is part of the test extra")

NS = "mlplat-shop"
GATEWAY = "gateway.networking.k8s.io/v1"
KSERVE = "serving.kserve.io/v1beta1"
#: provider ids are kubectl's `Kind/namespace/name`
ID = "InferenceService"


class OnpremStack(StackFile):
    """Stack `shop` on the fake cluster: a registry (iris 1 and 2, on its own NFS claim) and endpoint `iris`
    splitting 80/20."""

    def __init__(self, tmp_path: Path, cluster: KubeCluster) -> None:
        shutil.copytree(STACKS / "models", tmp_path / "models")
        self.fake = cluster.server
        super().__init__(tmp_path / "shop.yaml", {
            "apiVersion": "mlplat/v1", "metadata": {"name": "shop"}, "target": "onprem",
            "targets": {"onprem": {"kubeconfig": str(cluster.kubeconfig), "nfs_server": "10.0.0.2",
                                   "poll_interval_s": 0.02, "timeouts": FAKE_CLOUD_TIMEOUTS}},
            "registry": {"name": "models", "models": [
                {"name": "iris", "version": "1", "artifact": "models/iris-v1.json"},
                {"name": "iris", "version": "2", "artifact": "models/iris-v2.json"}]},
            "serving": [{"name": "iris", "paths": {
                "production": {"model": "iris:1", "weight": 80},
                "experimental": {"model": "iris:2", "weight": 20}}}]})

    @property
    def serving(self) -> dict[str, Any]:
        return self.doc["serving"][0]

    @property
    def paths(self) -> dict[str, Any]:
        return self.serving["paths"]

    @property
    def settings(self) -> dict[str, Any]:
        return self.doc["targets"]["onprem"]

    def validate(self) -> Any:
        return self.run(lambda s: s.validate())

    def lowered(self) -> dict[str, Any]:
        """The resources the stack lowers to on the cluster as it is now (discovery first)."""
        def lower(stack: Any) -> dict[str, Any]:
            stack.discovery()
            return stack.lower()[0]

        return self.run(lower)

    def addresses(self) -> set[str]:
        return set(self.lowered())

    # the cluster, as the fake stores it ---------------------------------------------------------------------

    def get(self, api_version: str, kind: str, name: str) -> dict[str, Any] | None:
        return self.fake.get(api_version, kind, name, NS)

    def names(self, group: str, plural: str) -> set[str]:
        return {o["metadata"]["name"] for o in self.fake.objects(group, plural, NS)}

    def route(self) -> dict[str, Any]:
        found = self.get(GATEWAY, "HTTPRoute", "iris")
        assert found is not None
        return found

    def weights(self) -> dict[str, int]:
        (rule,) = self.route()["spec"]["rules"]
        return {b["name"]: b["weight"] for b in rule["backendRefs"]}

    def deployment(self, path: str) -> dict[str, Any]:
        """The endpoint's Deployment of a path (named by its model's release: `iris-<path>-<hash>`)."""
        (found,) = [d for d in self.fake.objects("apps", "deployments", NS)
                    if d["metadata"].get("labels", {}).get("mlplat.dev/path") == path]
        return found

    @property
    def url(self) -> str:
        return f"{self.fake.gateway_url}/{NS}/iris"


@pytest.fixture
def shop(tmp_path: Path, kube_cluster: KubeCluster) -> OnpremStack:
    return OnpremStack(tmp_path, kube_cluster)


def predict(url: str, timeout: float = 10.0) -> tuple[int, str, dict[str, Any]]:
    """(status, backend header, body) of one POST /invocations on 127.0.0.1."""
    request = urllib.request.Request(f"{url}/invocations", data=json.dumps({"instances": [[1, 2, 3, 4]]}).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            return answer.status, answer.headers.get("X-Mlplat-Backend", ""), json.loads(answer.read())
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("X-Mlplat-Backend", ""), {"error": err.read().decode(errors="replace")}


def backends(url: str, n: int) -> Counter[str]:
    seen: Counter[str] = Counter()
    for _ in range(n):
        status, backend, body = predict(url)
        assert status == 200 and body["predictions"] == [10.0], (status, body)
        seen[backend] += 1
    return seen


class Traffic:
    """Requests sent in a loop from a thread while something else happens (bounded: at most `limit`)."""

    def __init__(self, url: str, limit: int = 2000) -> None:
        self.url, self.limit = url, limit
        self.results: list[tuple[int, str, str]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self.stop.is_set() and len(self.results) < self.limit:
            status, backend, body = predict(self.url)
            self.results.append((status, backend, str(body.get("model", body.get("error")))))

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(timeout=30)


# --- the Gateway API path ----------------------------------------------------------------------------------------


def test_split_lifecycle(shop: OnpremStack) -> None:
    fake = shop.fake
    shop.apply()
    production, experimental = shop.deployment("production"), shop.deployment("experimental")
    assert production["metadata"]["name"].startswith("iris-production-")
    assert experimental["metadata"]["name"].startswith("iris-experimental-")
    assert shop.names("apps", "deployments") == {"models", production["metadata"]["name"],
                                                 experimental["metadata"]["name"]}
    assert {"iris-production", "iris-experimental"} <= shop.names("", "services")
    route = shop.route()
    assert route["spec"]["parentRefs"] == [{"name": "mlplat-gateway", "namespace": "gateway-system"}]
    assert shop.weights() == {"iris-production": 80, "iris-experimental": 20}
    assert route["spec"]["rules"][0]["matches"] == [{"path": {"type": "PathPrefix", "value": f"/{NS}/iris"}}]
    outputs = shop.outputs()
    assert outputs["iris.url"] == shop.url and outputs["iris.engine"] == "gateway"
    assert shop.changes() == {}

    # the Gateway splits by weight: 300 requests, 80% expected on production (± 6 standard deviations)
    seen = backends(shop.url, 300)
    assert set(seen) == {"iris-production", "iris-experimental"}, seen
    assert 200 <= seen["iris-production"] <= 280, seen

    # a weight change is the HTTPRoute alone: no Deployment applied
    shop.paths["production"]["weight"], shop.paths["experimental"]["weight"] = 60, 40
    shop.write()
    assert shop.changes() == {"iris.http_route.main": "update"}
    before = {p: shop.deployment(p)["metadata"] for p in ("production", "experimental")}
    fake.calls.clear()
    shop.apply()
    assert fake.count("apply", "deployments") == 0 and fake.count("apply", "httproutes") == 1
    assert shop.weights() == {"iris-production": 60, "iris-experimental": 40}
    assert {p: shop.deployment(p)["metadata"]["resourceVersion"] for p in before} == {
        p: m["resourceVersion"] for p, m in before.items()}
    assert shop.changes() == {}

    # a new experimental model: that path's Deployment alone rolls (a new one beside the old, which the Service
    # selects until it is gone), the route and production untouched, and traffic sent meanwhile never fails
    shop.paths["experimental"]["model"] = "iris:1"
    shop.write()
    assert shop.changes() == {"iris.deployment.experimental": "replace"}
    fake.calls.clear()
    fake.rollout_polls = 6
    with Traffic(shop.url) as traffic:
        shop.apply()
        settled = len(traffic.results)
        while len(traffic.results) < settled + 20 and traffic.thread.is_alive():
            traffic.stop.wait(0.01)
    statuses = Counter(s for s, _, _ in traffic.results)
    assert traffic.results and set(statuses) == {200}, statuses
    assert fake.count("apply", "deployments") == 1 and fake.count("delete", "deployments") == 1
    assert fake.count("apply", "httproutes") == 0 and fake.count("apply", "services") == 0
    rolled = shop.deployment("experimental")
    assert rolled["metadata"]["name"] != before["experimental"]["name"]
    assert shop.deployment("production")["metadata"]["resourceVersion"] == before["production"]["resourceVersion"]
    env = {e["name"]: e["value"] for e in rolled["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert "/models/iris:1@sha256:" in env["MODEL_URI"], env
    models = {model for _, backend, model in traffic.results[settled:] if backend == "iris-experimental"}
    assert models <= {env["MODEL_URI"]}, models  # once applied, only the new model answers
    assert shop.changes() == {}


def test_shadow_mirrors_to_experimental(shop: OnpremStack) -> None:
    fake = shop.fake
    shop.paths["production"] = {"model": "iris:1"}
    shop.paths["experimental"] = {"model": "iris:2", "mode": "shadow", "mirror_percent": 50}
    shop.write()
    shop.apply()
    (rule,) = shop.route()["spec"]["rules"]
    assert [b["name"] for b in rule["backendRefs"]] == ["iris-production"]
    mirrors = [f["requestMirror"] for f in rule["filters"] if f["type"] == "RequestMirror"]
    assert mirrors == [{"backendRef": {"name": "iris-experimental", "port": 8080}, "percent": 50}]
    fake.mirrored.clear()
    seen = backends(shop.url, 200)
    assert seen == {"iris-production": 200}, seen  # clients get production's answers only
    mirrored = fake.mirrored[(NS, "iris-experimental")]
    assert 60 <= mirrored <= 140, fake.mirrored  # 50% of 200 (± 6 standard deviations)
    assert fake.served[(NS, "iris-experimental")] == 0
    assert shop.changes() == {}


def test_failed_rollout_names_the_resource(shop: OnpremStack) -> None:
    name = shop.lowered()["iris.deployment.experimental"].inputs["name"]
    shop.fake.fail_rollout(name, f'ReplicaSet "{name}-5d8f" has timed out progressing: Back-off pulling image')
    with pytest.raises(MlplatError) as err:
        shop.apply()
    text = str(err.value)
    assert "iris.deployment.experimental" in text and "Back-off pulling image" in text, text


def test_route_drift_from_another_manager(shop: OnpremStack) -> None:
    shop.apply()

    def move(route: dict[str, Any]) -> None:
        for backend in route["spec"]["rules"][0]["backendRefs"]:
            backend["weight"] = 100 if backend["name"] == "iris-production" else 0

    shop.fake.edit(GATEWAY, "HTTPRoute", "iris", NS, move, manager="kubectl-edit")
    drift = shop.drift()
    assert set(drift) == {"iris.http_route.main"}, drift
    assert shop.changes() == {"iris.http_route.main": "update"}
    # the other manager owns the weights it set: taking them back is a conflict naming it, unless forced
    with pytest.raises(MlplatError) as err:
        shop.apply()
    assert "iris.http_route.main" in str(err.value) and "kubectl-edit" in str(err.value), str(err.value)
    shop.settings["force_conflicts"] = True
    shop.write()
    shop.apply()
    assert shop.weights() == {"iris-production": 80, "iris-experimental": 20}
    assert shop.changes() == {}


def test_service_monitor_and_capture(shop: OnpremStack) -> None:
    shop.serving["monitoring"] = {"capture": {"sample_percent": 20}}
    shop.write()
    # no Prometheus operator: no ServiceMonitor, the capture settings still on the model servers
    assert "iris.service_monitor.main" not in shop.addresses()
    shop.fake.install("prometheus")
    shop.apply()
    monitor = shop.get("monitoring.coreos.com/v1", "ServiceMonitor", "iris")
    assert monitor is not None
    assert monitor["spec"]["selector"] == {"matchLabels": {"mlplat.dev/endpoint": "iris"}}
    assert monitor["spec"]["endpoints"][0]["path"] == "/metrics"
    for name in ("iris-production", "iris-experimental"):
        (container,) = shop.deployment(name.split("-")[1])["spec"]["template"]["spec"]["containers"]
        env = {e["name"]: e["value"] for e in container["env"]}
        assert container["name"] == "model-server"
        assert env["MLPLAT_CAPTURE_SAMPLE_PERCENT"] == "20" and env["MLPLAT_CAPTURE_REQUEST"] == "true"
        service = shop.get("v1", "Service", name)
        assert service is not None and service["metadata"]["labels"]["mlplat.dev/endpoint"] == "iris"
    assert shop.changes() == {}

    # an endpoint without monitoring gets no ServiceMonitor, even with the operator installed
    del shop.serving["monitoring"]
    shop.write()
    assert "iris.service_monitor.main" not in shop.addresses()


# --- KServe ----------------------------------------------------------------------------------------------------


def test_kserve_rolls_production_out_first(shop: OnpremStack) -> None:
    fake = shop.fake
    fake.install("kserve")
    shop.apply()
    assert "iris.inference_service.main" in shop.addresses()
    assert not shop.names("gateway.networking.k8s.io", "httproutes")
    assert shop.names("apps", "deployments") == {"models"}  # the registry's only
    isvc = shop.get(KSERVE, "InferenceService", "iris")
    assert isvc is not None
    predictor = isvc["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 20
    assert "/models/iris/blobs/sha256:" in predictor["model"]["storageUri"]
    # the first revision (production) was rolled out before the canary: it keeps 80%, the canary has 20%
    status = isvc["status"]["components"]["predictor"]
    first, second = "iris-predictor-00001", "iris-predictor-00002"
    assert status["latestRolledoutRevision"] == first and status["latestReadyRevision"] == second
    assert {t["revisionName"]: t["percent"] for t in status["traffic"]} == {first: 80, second: 20}
    production = fake.controllers.revision(NS, "iris", first)
    canary = fake.controllers.revision(NS, "iris", second)
    assert production["model"]["storageUri"] != canary["model"]["storageUri"]
    assert "canaryTrafficPercent" not in production
    # two applies: production alone, and the canary only once production served 100% (Ready)
    events = [e.obj for e in fake.history if e.key == ("serving.kserve.io", "inferenceservices")]
    assert sorted({e["metadata"]["generation"] for e in events}) == [1, 2]
    first_canary = next(i for i, e in enumerate(events) if e["metadata"]["generation"] == 2)
    assert any(e.get("status", {}).get("components", {}).get("predictor", {}).get("traffic") == [
        {"revisionName": first, "percent": 100, "latestRevision": True}] and
        {"type": "Ready", "status": "True"}.items() <= next(
            c for c in e["status"]["conditions"] if c["type"] == "Ready").items()
        for e in events[:first_canary]), "the canary was applied before production was ready"

    # requests follow the revisions' traffic
    url = isvc["status"]["url"]
    assert url == f"{fake.gateway_url}/serving/{NS}/iris"
    outputs = shop.outputs()
    assert outputs["iris.url"] == url and outputs["iris.engine"] == "kserve"
    seen = backends(url, 300)
    assert set(seen) == {first, second} and 200 <= seen[first] <= 280, seen
    assert shop.changes() == {}

    # a weight change is one apply of canaryTrafficPercent: no new revision
    shop.paths["production"]["weight"], shop.paths["experimental"]["weight"] = 60, 40
    shop.write()
    assert shop.changes() == {"iris.inference_service.main": "update"}
    fake.calls.clear()
    shop.apply()
    assert fake.count("apply", "inferenceservices") == 1
    status = shop.get(KSERVE, "InferenceService", "iris")["status"]["components"]["predictor"]  # type: ignore[index]
    assert {t["revisionName"]: t["percent"] for t in status["traffic"]} == {first: 60, second: 40}
    assert len(fake.controllers.isvcs[(NS, "iris")].revisions) == 2
    assert shop.changes() == {}

    # the canary percent moved out of band: drift, put back by one apply
    def move(obj: dict[str, Any]) -> None:
        obj["spec"]["predictor"]["canaryTrafficPercent"] = 90

    fake.edit(KSERVE, "InferenceService", "iris", NS, move, manager="kubectl-edit")
    assert set(shop.drift()) == {"iris.inference_service.main"}
    shop.settings["force_conflicts"] = True
    shop.write()
    fake.calls.clear()
    shop.apply()
    assert fake.count("apply", "inferenceservices") == 1
    assert shop.get(KSERVE, "InferenceService", "iris")["spec"]["predictor"]["canaryTrafficPercent"] == 40  # type: ignore[index]
    assert shop.changes() == {}

    # production and experimental swap: the canary's revision is rolled out (100%) first, then a new canary
    # revision of iris:1 takes 40%
    shop.paths["production"]["model"], shop.paths["experimental"]["model"] = "iris:2", "iris:1"
    shop.write()
    assert shop.changes() == {"iris.inference_service.main": "update"}
    fake.calls.clear()
    shop.apply()
    assert fake.count("apply", "inferenceservices") == 2
    status = shop.get(KSERVE, "InferenceService", "iris")["status"]["components"]["predictor"]  # type: ignore[index]
    third = "iris-predictor-00003"
    assert status["latestRolledoutRevision"] == second and status["latestReadyRevision"] == third
    assert {t["revisionName"]: t["percent"] for t in status["traffic"]} == {second: 60, third: 40}
    assert fake.controllers.revision(NS, "iris", third)["model"] == production["model"]
    assert shop.changes() == {}

    # both paths on one model: production (iris:1, the canary's revision) rolled out, and a canary with the same
    # predictor makes no revision: one revision serves everything
    shop.paths["production"]["model"] = "iris:1"
    shop.write()
    shop.apply()
    status = shop.get(KSERVE, "InferenceService", "iris")["status"]["components"]["predictor"]  # type: ignore[index]
    assert {t["revisionName"]: t["percent"] for t in status["traffic"] if t["percent"]} == {third: 100}
    assert len(fake.controllers.isvcs[(NS, "iris")].revisions) == 3
    assert shop.changes() == {}

    # which production predictor was rolled out is observed too: a stranger's annotation is drift on it, and
    # apply rolls production out again before the canary
    def forget(obj: dict[str, Any]) -> None:
        obj["metadata"]["annotations"]["mlplat.dev/production"] = "0" * 16

    fake.edit(KSERVE, "InferenceService", "iris", NS, forget, manager="kubectl-edit")
    drift = shop.drift()
    assert set(drift) == {"iris.inference_service.main"} and set(drift["iris.inference_service.main"]) == {
        "production"}, drift
    fake.calls.clear()
    shop.apply()
    assert fake.count("apply", "inferenceservices") == 2
    assert shop.changes() == {}


def test_kserve_refuses_shadow(shop: OnpremStack) -> None:
    shop.fake.install("kserve")
    shop.paths["production"] = {"model": "iris:1"}
    shop.paths["experimental"] = {"model": "iris:2", "mode": "shadow"}
    shop.settings["serving_engine"] = "kserve"
    shop.write()
    with pytest.raises(SpecError) as err:
        shop.validate()
    assert [r["code"] for r in err.value.reasons] == ["shadow-unsupported"], err.value.reasons
    assert err.value.reasons[0]["path"].endswith("experimental.mode")

    # under auto, a shadow path is served by the Gateway API route even with KServe installed
    shop.settings["serving_engine"] = "auto"
    shop.write()
    shop.apply()
    assert not shop.names("serving.kserve.io", "inferenceservices")
    assert shop.names("gateway.networking.k8s.io", "httproutes") == {"iris"}
    assert shop.deployment("production") and shop.deployment("experimental")


def test_no_experimental_path_is_one_apply(shop: OnpremStack) -> None:
    fake = shop.fake
    fake.install("kserve")
    del shop.paths["experimental"]
    shop.paths["production"] = {"model": "iris:1"}
    shop.write()
    shop.apply()
    isvc = shop.get(KSERVE, "InferenceService", "iris")
    assert isvc is not None and "canaryTrafficPercent" not in isvc["spec"]["predictor"]
    assert {t["revisionName"]: t["percent"] for t in isvc["status"]["components"]["predictor"]["traffic"]} == {
        "iris-predictor-00001": 100}
    assert fake.count("apply", "inferenceservices") == 1
    assert shop.changes() == {}


# --- the InferenceService provider, directly ---------------------------------------------------------------------


def _isvc_inputs(name: str, canary: int | None) -> dict[str, Any]:
    def predictor(version: str) -> dict[str, Any]:
        return {"minReplicas": 1, "maxReplicas": 1, "model": {
            "modelFormat": {"name": "mlplat-linear"}, "storageUri": f"http://models.{NS}.svc:5000/iris-{version}"}}

    production = predictor("1")
    final = production if canary is None else {**predictor("2"), "canaryTrafficPercent": canary}
    manifest = {"apiVersion": KSERVE, "kind": "InferenceService",
                "metadata": {"name": name, "namespace": NS, "labels": {"mlplat.dev/component": "iris"}},
                "spec": {"predictor": final}}
    return {"api_version": KSERVE, "kind": "InferenceService", "name": name, "namespace": NS, "manifest": manifest,
            "replace_on": None, "production": production}


def test_inference_service_provider(kube_cluster: KubeCluster, tmp_path: Path) -> None:
    from mlplat_plugins.onprem.inference import InferenceService
    from mlplat_plugins.onprem.target import OnpremSettings, OnpremTarget
    from provisioner.operations import StepContext
    from provisioner.target import TargetContext

    fake = kube_cluster.server
    fake.install("kserve")
    fake.put_object({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    settings = OnpremSettings(kubeconfig=str(kube_cluster.kubeconfig), poll_interval_s=0.02)
    provider = InferenceService(OnpremTarget(settings, TargetContext("shop", "onprem", tmp_path, tmp_path / ".w")))

    def ctx(op: str, token: str = "0123456789ab-1", **kw: Any) -> tuple[StepContext, list[str]]:
        done: list[str] = []
        return StepContext("iris.inference_service.main", op, token, timeout=60, on_checkpoint=done.append,
                           **kw), done

    inputs = _isvc_inputs("iris", 30)
    step, checkpoints = ctx("create")
    created = provider.create("iris.inference_service.main", inputs, step)
    assert created.id == f"{ID}/{NS}/iris" and checkpoints == [f"RollOut {ID}/{NS}/iris", f"Apply {ID}/{NS}/iris"]
    assert created.outputs["traffic"] == {"iris-predictor-00001": 70, "iris-predictor-00002": 30}
    assert created.outputs["url"] == f"{fake.gateway_url}/serving/{NS}/iris"
    assert provider.read(created.id, inputs).inputs == inputs  # type: ignore[union-attr]
    # the same create retried (a lost answer) applies nothing new; another apply's token is refused
    fake.calls.clear()
    provider.create("iris.inference_service.main", inputs, ctx("create")[0])
    assert len(fake.controllers.isvcs[(NS, "iris")].revisions) == 2
    with pytest.raises(MlplatError, match="not made by this apply"):
        provider.create("iris.inference_service.main", inputs, ctx("create", "fedcba987654-1")[0])

    # a weight change: one apply, no revision
    heavier = _isvc_inputs("iris", 50)
    step, checkpoints = ctx("update")
    fake.calls.clear()
    outputs = provider.update(created.id, inputs, heavier, step)
    assert checkpoints == [f"Apply {ID}/{NS}/iris"] and fake.count("apply", "inferenceservices") == 1
    assert outputs["traffic"] == {"iris-predictor-00001": 50, "iris-predictor-00002": 50}

    # drift: the canary percent, and the production predictor behind the canary (the annotation's hash)
    fake.edit(KSERVE, "InferenceService", "iris", NS,
              lambda o: o["spec"]["predictor"].update(canaryTrafficPercent=10))
    seen = provider.read(created.id, heavier)
    assert seen is not None and seen.inputs["manifest"]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert seen.inputs["production"] == heavier["production"]
    fake.edit(KSERVE, "InferenceService", "iris", NS,
              lambda o: o["metadata"]["annotations"].update({"mlplat.dev/production": "x"}))
    seen = provider.read(created.id, heavier)
    assert seen is not None and seen.inputs["production"] != heavier["production"]

    # a crash after production was rolled out: the resumed create applies the canary only
    other = _isvc_inputs("iris-b", 20)
    fake.calls.clear()
    provider.kube.apply(provider._body("iris.inference_service.main", other, "0123456789ab-2", True), force=False)
    step, checkpoints = ctx("create", "0123456789ab-2", operation=f"RollOut {ID}/{NS}/iris-b")
    resumed = provider.create("iris.inference_service.main", other, step)
    assert fake.count("apply", "inferenceservices") == 2 and checkpoints == [f"Apply {ID}/{NS}/iris-b"]
    assert resumed.outputs["traffic"] == {"iris-b-predictor-00001": 80, "iris-b-predictor-00002": 20}
    # find after a crash before any checkpoint: its own object (by token) only
    assert provider.find("x", other, ctx("find", "0123456789ab-9")[0]) is None
    found = provider.find("x", other, ctx("find", "0123456789ab-2")[0])
    assert found is not None and found.outputs["traffic"] == resumed.outputs["traffic"]

    # production alone: one apply, 100% on one revision
    alone = _isvc_inputs("iris-c", None)
    step, checkpoints = ctx("create", "0123456789ab-3")
    made = provider.create("iris.inference_service.main", alone, step)
    assert checkpoints == [f"RollOut {ID}/{NS}/iris-c"] and made.outputs["traffic"] == {"iris-c-predictor-00001": 100}
    assert provider.read(made.id, alone).inputs == alone  # type: ignore[union-attr]

    provider.delete(made.id, alone, ctx("delete")[0])
    assert provider.read(made.id, alone) is None
    provider.delete(made.id, alone, ctx("delete")[0])  # already gone
