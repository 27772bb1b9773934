"""The fake Kubernetes API server (tests/kube_fake) against the real `kubernetes` client: what the onprem
target's tests rely on it for."""

from __future__ import annotations

import hashlib
import json
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import pytest

from conftest import KubeCluster, require_module

require_module("kubernetes", "the onprem extra is part of the test extra")

from kubernetes import client, config, dynamic, watch  # noqa: E402
from kubernetes.client.rest import ApiException  # noqa: E402


def _api(cluster: KubeCluster) -> client.ApiClient:
    return config.new_client_from_config(config_file=str(cluster.kubeconfig))


def _dyn(cluster: KubeCluster) -> dynamic.DynamicClient:
    return dynamic.DynamicClient(_api(cluster))


def _deployment(name: str, ns: str = "default", replicas: int = 1, model: str = "s3://models/a",
                image: str = "ghcr.io/mlplat/server:1", **pod: Any) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name, "namespace": ns},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}},
                                  "spec": {"containers": [{"name": "main", "image": image,
                                                           "env": [{"name": "MODEL_URI", "value": model}]}],
                                           **pod}}}}


def _service(name: str, ns: str = "default") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": name}, "ports": [{"port": 80, "targetPort": 8080}]}}


def _apply(dc: dynamic.DynamicClient, body: dict[str, Any], manager: str = "mlplat", force: bool = False) -> Any:
    res = dc.resources.get(api_version=body["apiVersion"], kind=body["kind"])
    return res.server_side_apply(body=body, name=body["metadata"]["name"],
                                 namespace=body["metadata"].get("namespace"), field_manager=manager,
                                 force_conflicts=force)


def _wait(check: Any, timeout: float = 5.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def _post(url: str, doc: Any) -> tuple[int, dict[str, str], Any]:
    req = urllib.request.Request(url, data=json.dumps(doc).encode(), method="POST",
                                 headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read().decode()


def test_refuses_requests_without_the_token(kube_cluster: KubeCluster) -> None:
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(kube_cluster.server.url + "/api/v1/namespaces", timeout=5)
    assert err.value.code == 401
    body = json.loads(err.value.read())
    assert body["kind"] == "Status" and body["reason"] == "Unauthorized" and body["code"] == 401


def test_discovery_and_installed_groups(kube_cluster: KubeCluster) -> None:
    api = _api(kube_cluster)
    assert client.VersionApi(api).get_code().git_version == "v1.31.0"
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert {"apps", "scheduling.k8s.io", "apiextensions.k8s.io", "gateway.networking.k8s.io"} <= groups
    assert "kueue.x-k8s.io" not in groups
    kube_cluster.server.install("kueue", "kserve")
    try:
        dc = _dyn(kube_cluster)
        cq = dc.resources.get(api_version="kueue.x-k8s.io/v1beta1", kind="ClusterQueue")
        assert not cq.namespaced
        crds = dc.resources.get(api_version="apiextensions.k8s.io/v1", kind="CustomResourceDefinition").get()
        names = {c.metadata.name for c in crds.items}
        assert {"clusterqueues.kueue.x-k8s.io", "inferenceservices.serving.kserve.io"} <= names
        dep = dc.resources.get(api_version="apps/v1", kind="Deployment")
        assert "status" in dep.subresources and "scale" in dep.subresources
        svc = dc.resources.get(api_version="v1", kind="Service")
        assert "proxy" in svc.subresources
    finally:
        kube_cluster.server.uninstall("kueue", "kserve")
    groups = {g.name for g in client.ApisApi(api).get_api_versions().groups}
    assert "kueue.x-k8s.io" not in groups


def test_crud_selectors_and_errors(kube_cluster: KubeCluster) -> None:
    core = client.CoreV1Api(_api(kube_cluster))
    core.create_namespace({"metadata": {"name": "team"}})
    with pytest.raises(ApiException) as err:
        core.create_namespace({"metadata": {"name": "team"}})
    assert err.value.status == 409
    assert json.loads(err.value.body)["message"] == 'namespaces "team" already exists'
    for name, tier in (("a", "gold"), ("b", "silver"), ("c", "bronze")):
        core.create_namespaced_config_map("team", {"metadata": {"name": name, "labels": {"tier": tier}},
                                                   "data": {"k": name}})
    assert [c.metadata.name for c in core.list_namespaced_config_map("team", label_selector="tier=gold").items] \
        == ["a"]
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "team", label_selector="tier in (gold,silver)").items] == ["a", "b"]
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "team", label_selector="tier!=gold").items] == ["b", "c"]
    assert [c.metadata.name for c in core.list_namespaced_config_map(
        "team", field_selector="metadata.name=c").items] == ["c"]
    got = core.read_namespaced_config_map("a", "team")
    got.data["k"] = "changed"
    core.replace_namespaced_config_map("a", "team", got)
    with pytest.raises(ApiException) as err:  # a stale resourceVersion
        core.replace_namespaced_config_map("a", "team", got)
    assert err.value.status == 409 and json.loads(err.value.body)["reason"] == "Conflict"
    core.delete_namespaced_config_map("a", "team")
    with pytest.raises(ApiException) as err:
        core.read_namespaced_config_map("a", "team")
    body = json.loads(err.value.body)
    assert err.value.status == 404 and body["message"] == 'configmaps "a" not found'
    assert body["details"] == {"name": "a", "kind": "configmaps"}
    with pytest.raises(ApiException) as err:
        client.AppsV1Api(_api(kube_cluster)).read_namespaced_deployment("web", "team")
    assert json.loads(err.value.body)["message"] == 'deployments.apps "web" not found'
    with pytest.raises(ApiException) as err:  # a namespace that does not exist
        core.create_namespaced_config_map("nope", {"metadata": {"name": "x"}})
    assert err.value.status == 404 and json.loads(err.value.body)["message"] == 'namespaces "nope" not found'
    dc = _dyn(kube_cluster)
    pc = _apply(dc, {"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass", "metadata": {"name": "high"},
                     "value": 1000, "description": "serving"})
    assert pc.value == 1000 and pc.preemptionPolicy == "PreemptLowerPriority"


def test_server_side_apply_ownership(kube_cluster: KubeCluster) -> None:
    dc = _dyn(kube_cluster)
    body = _deployment("web", replicas=2)
    body["metadata"]["labels"] = {"team": "a", "tier": "gold"}
    made = _apply(dc, body)
    assert made.metadata.generation == 1 and made.metadata.uid
    entry = made.to_dict()["metadata"]["managedFields"][0]
    assert (entry["manager"], entry["operation"], entry["fieldsType"]) == ("mlplat", "Apply", "FieldsV1")
    assert "f:replicas" in entry["fieldsV1"]["f:spec"]
    del body["metadata"]["labels"]["tier"]  # a field the manager stops sending goes
    again = _apply(dc, body)
    assert dict(again.metadata.labels) == {"team": "a"} and again.metadata.generation == 1
    apps = client.AppsV1Api(_api(kube_cluster))
    apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 4}}, field_manager="kubectl-edit")
    body["spec"]["replicas"] = 3
    with pytest.raises(dynamic.exceptions.ConflictError) as err:
        _apply(dc, body)
    status = json.loads(err.value.body)
    assert status["message"] == ('Apply failed with 1 conflict: conflict with "kubectl-edit" using apps/v1: '
                                 ".spec.replicas")
    assert status["details"]["causes"][0]["field"] == ".spec.replicas"
    body["spec"]["replicas"] = 4  # the same value: shared ownership, no conflict
    assert _apply(dc, body).spec.replicas == 4
    body["spec"]["replicas"] = 3
    forced = _apply(dc, body, force=True)
    assert forced.spec.replicas == 3 and forced.metadata.generation == 3
    assert "kubectl-edit" not in {m.manager for m in forced.metadata.managedFields}
    merged = dc.resources.get(api_version="apps/v1", kind="Deployment").patch(
        name="web", namespace="default", body={"metadata": {"annotations": {"note": "x"}}},
        content_type="application/merge-patch+json")
    assert merged.metadata.annotations.note == "x"
    raw = urllib.request.Request(f"{kube_cluster.server.url}/apis/apps/v1/namespaces/default/deployments/web",
                                 data=b"{}", method="PATCH",
                                 headers={"Authorization": f"Bearer {kube_cluster.server.token}",
                                          "Content-Type": "application/apply-patch+yaml"})
    with pytest.raises(urllib.error.HTTPError) as missing:  # fieldManager is required for apply
        urllib.request.urlopen(raw, timeout=5)
    assert missing.value.code == 422


def test_watch_events(kube_cluster: KubeCluster) -> None:
    core = client.CoreV1Api(_api(kube_cluster))
    core.create_namespaced_config_map("default", {"metadata": {"name": "before"}})
    start = core.list_namespaced_config_map("default").metadata.resource_version
    core.create_namespaced_config_map("default", {"metadata": {"name": "w"}, "data": {"a": "1"}})
    core.patch_namespaced_config_map("w", "default", {"data": {"a": "2"}})
    core.delete_namespaced_config_map("w", "default")
    seen = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_config_map, "default", resource_version=start, timeout_seconds=1)]
    assert seen == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]
    initial = [(e["type"], e["object"].metadata.name) for e in watch.Watch().stream(
        core.list_namespaced_config_map, "default", timeout_seconds=1)]
    assert initial == [("ADDED", "before")]


def test_namespace_deletion_cascades(kube_cluster: KubeCluster) -> None:
    core = client.CoreV1Api(_api(kube_cluster))
    kube_cluster.server.controller_ticks = 10_000  # finalization waits: the namespace is seen terminating
    core.create_namespace({"metadata": {"name": "gone"}})
    core.create_namespaced_config_map("gone", {"metadata": {"name": "c"}})
    deleting = _dyn(kube_cluster).resources.get(api_version="v1", kind="Namespace").delete(name="gone")
    assert deleting.status.phase == "Terminating" and deleting.metadata.deletionTimestamp
    assert core.read_namespace("gone").status.phase == "Terminating"
    with pytest.raises(ApiException) as err:
        core.create_namespaced_config_map("gone", {"metadata": {"name": "late"}})
    assert err.value.status == 403
    kube_cluster.server.controller_ticks = 1

    def vanished() -> bool:
        try:
            core.read_namespace("gone")
        except ApiException as err:
            return err.status == 404
        return False

    _wait(vanished)
    assert not kube_cluster.server.objects("", "configmaps", "gone")


def test_pvc_binds_to_named_volume(kube_cluster: KubeCluster) -> None:
    core = client.CoreV1Api(_api(kube_cluster))
    core.create_persistent_volume({"metadata": {"name": "pv1"}, "spec": {
        "capacity": {"storage": "10Gi"}, "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/data"}}})
    core.create_namespaced_persistent_volume_claim("default", {"metadata": {"name": "data"}, "spec": {
        "volumeName": "pv1", "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "10Gi"}}}})
    core.create_namespaced_persistent_volume_claim("default", {"metadata": {"name": "loose"}, "spec": {
        "accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}})
    claim = _wait(lambda: (c := core.read_namespaced_persistent_volume_claim("data", "default")).status.phase
                  == "Bound" and c)
    assert claim.status.capacity == {"storage": "10Gi"}
    pv = core.read_persistent_volume("pv1")
    assert pv.status.phase == "Bound" and pv.spec.claim_ref.name == "data"
    assert "kube-controller-manager" in {m.manager for m in pv.metadata.managed_fields}
    assert core.read_namespaced_persistent_volume_claim("loose", "default").status.phase == "Pending"


def test_deployment_rollout_hold_fail_and_gpus(kube_cluster: KubeCluster) -> None:
    fake = kube_cluster.server
    apps = client.AppsV1Api(_api(kube_cluster))
    dc = _dyn(kube_cluster)
    fake.rollout_polls = 2
    made = _apply(dc, _deployment("web", replicas=2))
    assert not made.status or not made.status.get("availableReplicas")
    assert not apps.read_namespaced_deployment("web", "default").status.available_replicas
    done = apps.read_namespaced_deployment("web", "default")
    assert done.status.available_replicas == 2 and done.status.observed_generation == 1
    assert {c.type: c.reason for c in done.status.conditions}["Progressing"] == "NewReplicaSetAvailable"
    fake.hold_rollouts("held")
    _apply(dc, _deployment("held"))
    for _ in range(5):
        assert not apps.read_namespaced_deployment("held", "default").status.available_replicas
    fake.fail_rollout("held", 'ReplicaSet "held-1" has timed out progressing.')
    cond = {c.type: c for c in apps.read_namespaced_deployment("held", "default").status.conditions}
    assert cond["Progressing"].status == "False" and cond["Progressing"].reason == "ProgressDeadlineExceeded"
    fake.gpus_available = 1
    gpu = _deployment("big", replicas=2)
    gpu["spec"]["template"]["spec"]["containers"][0]["resources"] = {"limits": {"nvidia.com/gpu": 1}}
    _apply(dc, gpu)
    for _ in range(4):
        assert not apps.read_namespaced_deployment("big", "default").status.available_replicas
    core = client.CoreV1Api(_api(kube_cluster))
    events = core.list_namespaced_event("default").items
    assert any(e.reason == "FailedScheduling" and "Insufficient nvidia.com/gpu" in e.message for e in events)
    pods = core.list_namespaced_pod("default", label_selector="app=big").items
    assert pods and pods[0].status.phase == "Pending"


def _route(name: str, backends: list[tuple[str, int]], prefix: str = "/m", mirror: str | None = None,
           percent: int = 100) -> dict[str, Any]:
    filters: list[dict[str, Any]] = [{"type": "URLRewrite", "urlRewrite": {"path": {
        "type": "ReplacePrefixMatch", "replacePrefixMatch": "/v1/models/m:predict"}}}]
    if mirror:
        filters.append({"type": "RequestMirror", "requestMirror": {"backendRef": {"name": mirror, "port": 80},
                                                                   "percent": percent}})
    return {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"parentRefs": [{"name": "mlplat-gateway", "namespace": "gateway-system"}],
                     "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}], "filters": filters,
                                "backendRefs": [{"name": n, "port": 80, "weight": w} for n, w in backends]}]}}


def test_gateway_routes_weights_and_mirror(kube_cluster: KubeCluster) -> None:
    fake = kube_cluster.server
    fake.rollout_polls = 0
    dc = _dyn(kube_cluster)
    for name, model in (("blue", "s3://m/blue"), ("green", "s3://m/green"), ("shadow", "s3://m/shadow")):
        _apply(dc, _deployment(name, model=model))
        _apply(dc, _service(name))
    _apply(dc, _route("split", [("blue", 90), ("green", 10)], mirror="shadow", percent=50))
    route = _wait(lambda: (r := dc.resources.get(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute").get(
        name="split", namespace="default")).status and r)
    conds = {c.type: c.status for c in route.status.parents[0].conditions}
    assert conds == {"Accepted": "True", "ResolvedRefs": "True"}
    backends: Counter[str] = Counter()
    for _ in range(200):
        status, headers, body = _post(fake.gateway_url + "/m", {"instances": [[1, 2], [3]]})
        assert status == 200 and body["predictions"] == [3.0, 3.0]
        backends[headers["X-Mlplat-Backend"]] += 1
    assert 150 <= backends["blue"] <= 195 and backends["green"] >= 5 and set(backends) == {"blue", "green"}
    assert fake.served[("default", "blue")] == backends["blue"]
    assert 50 <= fake.mirrored[("default", "shadow")] <= 150
    gw = dc.resources.get(api_version="gateway.networking.k8s.io/v1", kind="Gateway").get(
        name="mlplat-gateway", namespace="gateway-system")
    assert gw.status.addresses[0].value == "127.0.0.1"
    assert gw.spec.listeners[0].port == int(fake.gateway_url.rsplit(":", 1)[1])
    apps = client.AppsV1Api(_api(kube_cluster))
    apps.patch_namespaced_deployment_scale("green", "default", {"spec": {"replicas": 0}})
    _apply(dc, _route("split", [("green", 1)]))
    _wait(lambda: _post(fake.gateway_url + "/m", {"instances": [[1]]})[0] == 503)
    fake.kill("default", "blue")
    _apply(dc, _route("split", [("blue", 1), ("missing", 0)]))
    assert _post(fake.gateway_url + "/m", {"instances": [[1]]})[0] == 503
    route = _wait(lambda: (r := dc.resources.get(api_version="gateway.networking.k8s.io/v1", kind="HTTPRoute").get(
        name="split", namespace="default")).status.parents[0].conditions[1].status == "False" and r)
    assert route.status.parents[0].conditions[1].reason == "BackendNotFound"


def test_inference_service_canary(kube_cluster: KubeCluster) -> None:
    fake = kube_cluster.server
    fake.install("kserve")
    dc = _dyn(kube_cluster)
    res = dc.resources.get(api_version="serving.kserve.io/v1beta1", kind="InferenceService")

    def isvc(uri: str, canary: int | None = None) -> dict[str, Any]:
        predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": uri}}
        if canary is not None:
            predictor["canaryTrafficPercent"] = canary
        return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
                "metadata": {"name": "iris", "namespace": "default"}, "spec": {"predictor": predictor}}

    _apply(dc, isvc("s3://m/v1"))
    first = res.get(name="iris", namespace="default")
    pred = first.status.components.predictor
    assert pred.latestReadyRevision == "iris-predictor-00001" and pred.traffic[0].percent == 100
    assert {c.type: c.status for c in first.status.conditions}["Ready"] == "True"
    _apply(dc, isvc("s3://m/v2", canary=20))
    canary = res.get(name="iris", namespace="default").status
    pred = canary.components.predictor
    assert pred.latestRolledoutRevision == "iris-predictor-00001"
    assert {t.revisionName: t.percent for t in pred.traffic} == {"iris-predictor-00002": 20,
                                                                 "iris-predictor-00001": 80}
    models: Counter[str] = Counter()
    for _ in range(100):
        status, _, body = _post(canary.url + "/v1/models/iris:predict", {"instances": [[1, 1]]})
        assert status == 200
        models[body["model"]] += 1
    assert models["s3://m/v1"] > models["s3://m/v2"] > 0
    _apply(dc, isvc("s3://m/v2"))
    pred = res.get(name="iris", namespace="default").status.components.predictor
    assert pred.latestRolledoutRevision == "iris-predictor-00002"
    assert pred.previousRolledoutRevision == "iris-predictor-00001"
    assert [(t.revisionName, t.percent) for t in pred.traffic] == [("iris-predictor-00002", 100)]


def test_oci_registry_through_the_service_proxy(kube_cluster: KubeCluster) -> None:
    fake = kube_cluster.server
    fake.rollout_polls = 0
    dc = _dyn(kube_cluster)
    _apply(dc, _deployment("registry", image="registry:2",
                           volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "registry-data"}}]))
    _apply(dc, _service("registry"))
    api = _api(kube_cluster)
    core = client.CoreV1Api(api)
    _wait(lambda: client.AppsV1Api(api).read_namespaced_deployment("registry", "default").status.available_replicas)
    assert core.connect_get_namespaced_service_proxy_with_path("registry:80", "default", "v2/") == "{}"
    base = f"{fake.url}/api/v1/namespaces/default/services/registry:80/proxy"
    auth = {"Authorization": f"Bearer {fake.token}"}

    def call(method: str, url: str, data: bytes | None = None, **headers: str) -> Any:
        req = urllib.request.Request(url, data=data, method=method, headers={**auth, **headers})
        try:
            return urllib.request.urlopen(req, timeout=5)
        except urllib.error.HTTPError as err:
            return err

    blob = b"model weights"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    started = call("POST", base + "/v2/models/iris/blobs/uploads/")
    assert started.status == 202 and started.headers["Docker-Upload-UUID"]
    location = started.headers["Location"]
    assert location.startswith(base + "/v2/models/iris/blobs/uploads/")
    bad = call("PUT", location + "?digest=sha256:" + "0" * 64, blob)
    assert bad.status == 400 and json.loads(bad.read())["errors"][0]["code"] == "DIGEST_INVALID"
    assert call("PUT", f"{location}?digest={digest}", blob).status == 201
    head = call("HEAD", f"{base}/v2/models/iris/blobs/{digest}")
    assert head.status == 200 and head.headers["Docker-Content-Digest"] == digest
    assert head.headers["Content-Length"] == str(len(blob))
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": digest,
                                      "size": len(blob)},
                           "layers": [{"mediaType": "application/octet-stream", "digest": digest,
                                       "size": len(blob)}]}).encode()
    put = call("PUT", base + "/v2/models/iris/manifests/v1", manifest,
               **{"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert put.status == 201 and put.headers["Docker-Content-Digest"].startswith("sha256:")
    assert json.loads(call("GET", base + "/v2/models/iris/tags/list").read()) == {"name": "models/iris",
                                                                                   "tags": ["v1"]}
    assert call("GET", f"{base}/v2/models/iris/blobs/{digest}").read() == blob
    missing = call("GET", base + "/v2/models/iris/blobs/sha256:" + "1" * 64)
    assert missing.status == 404 and json.loads(missing.read())["errors"][0]["code"] == "BLOB_UNKNOWN"
    assert fake.registry_blobs("default", "registry-data") == {digest: blob}
    # a restart (new template) keeps the data on the claim
    moved = _deployment("registry", image="registry:2.8",
                        volumes=[{"name": "data", "persistentVolumeClaim": {"claimName": "registry-data"}}])
    _apply(dc, moved)
    _wait(lambda: client.AppsV1Api(api).read_namespaced_deployment("registry", "default").status.updated_replicas
          == 1 and client.AppsV1Api(api).read_namespaced_deployment("registry", "default").status.ready_replicas)
    assert call("GET", base + "/v2/models/iris/manifests/v1").status == 200


def test_throttle_answers_429(kube_cluster: KubeCluster) -> None:
    fake = kube_cluster.server
    url = f"{fake.url}/apis/apps/v1/namespaces/default/deployments"
    with fake.throttle(1, {"list deployments"}):
        with pytest.raises(urllib.error.HTTPError) as err:
            urllib.request.urlopen(urllib.request.Request(url, headers={"Authorization": f"Bearer {fake.token}"}),
                                   timeout=5)
        assert err.value.code == 429 and err.value.headers["Retry-After"] == "1"
        assert json.loads(err.value.read())["reason"] == "TooManyRequests"
    with fake.throttle(1, {"list deployments"}):  # the client's urllib3 honours Retry-After and retries once
        assert client.AppsV1Api(_api(kube_cluster)).list_namespaced_deployment("default").items == []
    assert fake.throttled == 1 and fake.count("list", "deployments") == 3
