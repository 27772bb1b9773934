"""The onprem target's cluster (PriorityClasses, ResourceQuotas, Kueue queues), nas storage (an NFS PV + PVC) and
registry (an OCI registry Deployment + Service, models pushed as OCI artifacts through the service proxy), end to
end: the real plugin and the official kubernetes client against the fake API server in tests/kube_fake, through the
engine (provisioner.api.Stack). What exists is checked on the fake's objects, as `kubectl get` would show them."""

from __future__ import annotations

import hashlib
import json
import shutil
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from stack_file import StackFile

from provisioner.cloud import CloudApiError
from provisioner.errors import MlplatError, RetryableError
from provisioner.events import Event
from provisioner.operations import StepContext

from conftest import FAKE_CLOUD_TIMEOUTS, STACKS, require_module

require_module("kubernetes", "the onprem extra is part of the test extra")

NS = "mlplat-vision"
NAMESPACE = "_stack.onprem.namespace.main"
PV = "shared.persistent_volume.main"
PVC = "shared.persistent_volume_claim.main"
A1 = "models.model_artifact.iris:1"
A2 = "models.model_artifact.iris:2"
QUOTA = "train.resource_quota.big"
REPO = "models/iris"
HOST = f"models.{NS}.svc.cluster.local:5000"
BASE = {NAMESPACE, "train.priority_class.cpu", "train.priority_class.big", "train.resource_quota.cpu", QUOTA, PV,
        PVC, "models.deployment.main", "models.service.main", A1, A2}
KUEUE = {f"train.{kind}.{pool}" for kind in ("resource_flavor", "cluster_queue", "local_queue")
         for pool in ("cpu", "big")}


class OnpremStack(StackFile):
    """A stack file (cluster with a cpu pool and an 8 x H100 pool, nas storage, a registry with two models) on the
    fake cluster, edited as a dict."""

    def __init__(self, directory: Path, cluster: Any) -> None:
        self.cluster, self.fake = cluster, cluster.server
        shutil.copytree(STACKS / "models", directory / "models")
        super().__init__(directory / "stack.yaml", {
            "apiVersion": "mlplat/v1", "metadata": {"name": "vision"}, "target": "onprem",
            "targets": {"onprem": {"kubeconfig": str(cluster.kubeconfig), "nfs_server": "10.0.0.2",
                                   "poll_interval_s": 0.02, "timeouts": FAKE_CLOUD_TIMEOUTS}},
            "clusters": [{"name": "train", "gpu_pools": [
                {"name": "cpu", "accelerator": "cpu", "nodes": {"min": 1, "max": 2}},
                {"name": "big", "accelerator": "h100", "gpus_per_node": 8, "nodes": {"min": 1, "max": 2}}]}],
            "storage": [{"name": "shared", "kind": "nas", "size_gb": 5, "mount_path": "/mnt/shared"}],
            "registry": {"name": "models", "models": [
                {"name": "iris", "version": "1", "artifact": "models/iris-v1.json"},
                {"name": "iris", "version": "2", "artifact": "models/iris-v2.json"}]},
        })

    def artifact(self, version: int) -> Path:
        return self.path.parent / "models" / f"iris-v{version}.json"

    def plan(self) -> Any:
        with self.open() as stack:
            return stack.plan()

    # kubectl get, on the fake's store
    def get(self, api_version: str, kind: str, name: str, namespace: str = "") -> dict[str, Any] | None:
        try:
            return self.fake.get(api_version, kind, name, namespace)
        except Exception:  # the kind is not served (Kueue not installed)
            return None

    def manifest(self, tag: str) -> tuple[int, dict[str, Any] | None, str | None]:
        """GET /v2/models/iris/manifests/<tag> through the API server's proxy, as `crane manifest` would."""
        status, headers, body = registry_call(self.fake, "GET", f"/v2/{REPO}/manifests/{tag}",
                                              headers={"Accept": "application/vnd.oci.image.manifest.v1+json"})
        return status, json.loads(body) if status == 200 else None, headers.get("Docker-Content-Digest")


def registry_call(fake: Any, method: str, path: str, body: bytes | None = None,
                  headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request to the stack's registry Service through the fake API server's service proxy."""
    return api_call(fake, method, f"/api/v1/namespaces/{NS}/services/models:5000/proxy{path}", body, headers)


def api_call(fake: Any, method: str, path: str, body: bytes | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, dict[str, str], bytes]:
    """One request to the fake API server with the kubeconfig's token (as kubectl would send it)."""
    url = f"{fake.url}{path}"
    request = urllib.request.Request(url, data=body, method=method,
                                     headers={"Authorization": f"Bearer {fake.token}", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return answer.status, dict(answer.headers), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


def push_out_of_band(fake: Any, tag: str, data: bytes) -> str:
    """Someone pushes another artifact at the tag (as `oras push` would); its manifest digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    empty = "sha256:" + hashlib.sha256(b"{}").hexdigest()
    for blob, content in ((empty, b"{}"), (digest, data)):
        status, headers, _ = registry_call(fake, "POST", f"/v2/{REPO}/blobs/uploads/", b"")
        assert status == 202, status
        location = headers["Location"]
        path = location[location.index("/v2/"):]
        status, _, _ = registry_call(fake, "PUT", f"{path}{'&' if '?' in path else '?'}digest={blob}", content,
                                     {"Content-Type": "application/octet-stream"})
        assert status == 201, status
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.empty.v1+json", "digest": empty, "size": 2},
                           "layers": [{"mediaType": "application/octet-stream", "digest": digest,
                                       "size": len(data)}]}).encode()
    status, headers, _ = registry_call(fake, "PUT", f"/v2/{REPO}/manifests/{tag}", manifest,
                                       {"Content-Type": "application/vnd.oci.image.manifest.v1+json"})
    assert status == 201, status
    return "sha256:" + hashlib.sha256(manifest).hexdigest()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def onprem(tmp_path: Path, kube_cluster: Any) -> OnpremStack:
    return OnpremStack(tmp_path, kube_cluster)


def test_cluster_storage_and_registry_round_trip(onprem: OnpremStack) -> None:
    fake = onprem.fake
    plan = onprem.plan()
    assert {c.address for c in plan.changes} == BASE and {c.action for c in plan.changes} == {"create"}
    assert plan.discovery["onprem"]["kueue"] is False and plan.discovery["onprem"]["namespace"] == NS
    onprem.apply()

    ns = onprem.get("v1", "Namespace", NS)
    assert ns is not None and ns["metadata"]["labels"]["app.kubernetes.io/managed-by"] == "mlplat"
    assert ns["metadata"]["labels"]["mlplat.dev/stack"] == "vision"
    assert ns["metadata"]["annotations"]["mlplat.dev/address"] == NAMESPACE
    for pool in ("cpu", "big"):
        pc = onprem.get("scheduling.k8s.io/v1", "PriorityClass", f"{NS}-train-{pool}")
        assert pc is not None and pc["value"] == 1000 and pc["globalDefault"] is False
    cpu_quota = onprem.get("v1", "ResourceQuota", "train-cpu", NS)
    big_quota = onprem.get("v1", "ResourceQuota", "train-big", NS)
    assert cpu_quota is not None and big_quota is not None
    assert cpu_quota["spec"]["hard"] == {"requests.cpu": "16"}  # 8 vCPUs (catalog) x nodes.max 2
    assert big_quota["spec"]["hard"] == {"requests.nvidia.com/gpu": "16"}  # 8 GPUs x nodes.max 2
    assert big_quota["spec"]["scopeSelector"] == {"matchExpressions": [
        {"scopeName": "PriorityClass", "operator": "In", "values": [f"{NS}-train-big"]}]}
    assert onprem.get("kueue.x-k8s.io/v1beta1", "ClusterQueue", f"{NS}-train-big") is None  # no Kueue

    pv = onprem.get("v1", "PersistentVolume", f"{NS}-shared")
    assert pv is not None and pv["spec"]["nfs"] == {"server": "10.0.0.2", "path": f"/exports/mlplat/{NS}/shared"}
    assert pv["spec"]["capacity"] == {"storage": "5Gi"} and pv["spec"]["accessModes"] == ["ReadWriteMany"]
    pvc = onprem.get("v1", "PersistentVolumeClaim", "shared", NS)
    assert pvc is not None and pvc["status"]["phase"] == "Bound" and pvc["spec"]["volumeName"] == f"{NS}-shared"

    deployment = onprem.get("apps/v1", "Deployment", "models", NS)
    service = onprem.get("v1", "Service", "models", NS)
    assert deployment is not None and service is not None
    pod = deployment["spec"]["template"]["spec"]
    assert pod["containers"][0]["image"] == "registry:2"
    assert pod["volumes"] == [{"name": "data", "persistentVolumeClaim": {"claimName": "shared"}}]
    assert service["spec"]["ports"][0]["port"] == 5000

    # the artifacts: blobs on the registry's claim, manifests at the tags, outputs naming both
    blobs = fake.registry_blobs(NS, "shared")
    for version in (1, 2):
        data = onprem.artifact(version).read_bytes()
        assert blobs[f"sha256:{sha256(onprem.artifact(version))}"] == data
    assert blobs["sha256:" + hashlib.sha256(b"{}").hexdigest()] == b"{}"
    status, manifest, digest = onprem.manifest("1")
    assert status == 200 and manifest is not None and digest is not None
    assert manifest["artifactType"] == "application/vnd.mlplat.model.v1"
    (layer,) = manifest["layers"]
    assert layer["digest"] == f"sha256:{sha256(onprem.artifact(1))}"
    assert layer["mediaType"] == "application/vnd.mlplat.model.mlplat-linear"
    assert layer["annotations"] == {"org.opencontainers.image.title": "iris-v1.json"}
    assert manifest["annotations"]["dev.mlplat.address"] == A1 and manifest["annotations"]["dev.mlplat.token"]
    outputs = onprem.outputs()
    assert outputs["models.model.iris:1"] == f"oci://{HOST}/{REPO}:1@{digest}"
    assert outputs["models.blob_url.iris:1"] == f"http://{HOST}/v2/{REPO}/blobs/sha256:{sha256(onprem.artifact(1))}"
    assert outputs["models.sha256.iris:2"] == sha256(onprem.artifact(2))
    assert outputs["shared.claim"] == "shared" and outputs["shared.nfs"] == f"10.0.0.2:/exports/mlplat/{NS}/shared"
    assert outputs["shared.phase"] == "Bound" and outputs["train.pool.big.priority_class"] == f"{NS}-train-big"
    assert onprem.records()[A1].id == f"{REPO}:1"

    assert onprem.changes() == {}  # nothing the server or controllers add is drift

    fake.calls.clear()
    onprem.apply(destroy=True)
    assert onprem.get("v1", "Namespace", NS) is None
    # the manifests were deleted through the registry (by digest) before the registry itself
    assert fake.dataplane.registries[(NS, "shared")]["manifests"][REPO] == {}
    deletes = [c for c in fake.calls if c[0] == "delete" or c[0] == "proxy"]
    assert deletes.index(("delete", "deployments", NS, "models")) > max(
        i for i, c in enumerate(deletes) if c[0] == "proxy")
    assert fake.objects("scheduling.k8s.io", "priorityclasses") == []
    assert fake.objects("", "persistentvolumes") == []
    assert fake.objects("", "resourcequotas", NS) == [] and fake.objects("apps", "deployments", NS) == []
    assert onprem.records() == {}


def test_kueue_queues_only_where_kueue_is_installed(onprem: OnpremStack) -> None:
    fake = onprem.fake
    without = onprem.plan()
    assert without.discovery["onprem"]["kueue"] is False
    assert not {c.address for c in without.changes} & KUEUE

    # a plan made before Kueue was installed is refused once it is: lowering depended on it
    fake.install("kueue")
    with onprem.open() as stack, pytest.raises(MlplatError, match="kueue"):
        stack.apply(without)
    plan = onprem.plan()
    assert plan.discovery["onprem"]["kueue"] is True
    assert {c.address for c in plan.changes} == BASE | KUEUE
    onprem.apply()
    flavor = onprem.get("kueue.x-k8s.io/v1beta1", "ResourceFlavor", f"{NS}-train-big")
    assert flavor is not None
    assert flavor["spec"]["nodeLabels"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert flavor["spec"]["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists",
                                              "effect": "NoSchedule"}]
    queue = onprem.get("kueue.x-k8s.io/v1beta1", "ClusterQueue", f"{NS}-train-big")
    assert queue is not None and queue["spec"]["resourceGroups"] == [{
        "coveredResources": ["nvidia.com/gpu"],
        "flavors": [{"name": f"{NS}-train-big", "resources": [{"name": "nvidia.com/gpu", "nominalQuota": 16}]}]}]
    assert queue["spec"]["namespaceSelector"] == {"matchLabels": {"kubernetes.io/metadata.name": NS}}
    local = onprem.get("kueue.x-k8s.io/v1beta1", "LocalQueue", "train-cpu", NS)
    assert local is not None and local["spec"] == {"clusterQueue": f"{NS}-train-cpu"}
    assert onprem.outputs()["train.pool.big.queue"] == "train-big"
    assert onprem.changes() == {}
    onprem.apply(destroy=True)
    assert fake.objects("kueue.x-k8s.io", "clusterqueues") == []
    assert fake.objects("kueue.x-k8s.io", "resourceflavors") == []


def test_a_field_another_manager_changed_is_drift_and_a_conflict_unless_forced(onprem: OnpremStack) -> None:
    fake = onprem.fake
    onprem.apply()

    # `kubectl patch --type merge` (its field manager: kubectl-patch) raises the pool's GPU quota
    status, _, _ = api_call(fake, "PATCH", f"/api/v1/namespaces/{NS}/resourcequotas/train-big?fieldManager="
                            "kubectl-patch", json.dumps({"spec": {"hard": {"requests.nvidia.com/gpu": "32"}}}).encode(),
                            {"Content-Type": "application/merge-patch+json"})
    assert status == 200
    plan = onprem.plan()
    changed = {c.address: c for c in plan.changes if c.action != "noop"}
    assert {a: c.action for a, c in changed.items()} == {QUOTA: "update"}
    drift = changed[QUOTA].drift
    assert drift is not None and set(drift) == {"manifest"}
    recorded, actual = drift["manifest"]
    assert (recorded["spec"]["hard"], actual["spec"]["hard"]) == ({"requests.nvidia.com/gpu": "16"},
                                                                  {"requests.nvidia.com/gpu": "32"})

    with pytest.raises(MlplatError) as failed:
        onprem.apply()
    message = str(failed.value)
    assert f"{QUOTA}: update failed: apply ResourceQuota {NS}/train-big: Conflict" in message
    assert 'conflict with "kubectl-patch"' in message and ".spec.hard.requests.nvidia.com/gpu" in message
    live = onprem.get("v1", "ResourceQuota", "train-big", NS)
    assert live is not None and live["spec"]["hard"]["requests.nvidia.com/gpu"] == "32"  # left alone

    onprem.doc["targets"]["onprem"]["force_conflicts"] = True
    onprem.write()
    assert onprem.apply() == {QUOTA: "update"}
    live = onprem.get("v1", "ResourceQuota", "train-big", NS)
    assert live is not None and live["spec"]["hard"]["requests.nvidia.com/gpu"] == "16"
    owners = {m["manager"] for m in live["metadata"]["managedFields"]}
    assert "mlplat" in owners
    assert onprem.changes() == {}


def test_a_new_size_replaces_the_volume_and_its_claim(onprem: OnpremStack) -> None:
    fake = onprem.fake
    onprem.apply()
    uid = onprem.get("v1", "PersistentVolume", f"{NS}-shared")["metadata"]["uid"]  # type: ignore[index]
    onprem.doc["storage"][0]["size_gb"] = 10
    onprem.write()
    # a static NFS volume cannot grow: both replaced, and the registry whose pods hold the claim with them (a
    # claim in use is not deleted until its pods are gone: kubernetes.io/pvc-protection)
    assert onprem.changes() == {PV: "replace", PVC: "replace", "models.deployment.main": "replace"}
    blobs = fake.registry_blobs(NS, "shared")
    fake.calls.clear()
    onprem.apply()
    assert [fake.count("delete", plural) for plural in ("persistentvolumes", "persistentvolumeclaims",
                                                        "deployments")] == [1, 1, 1]
    deleted = [c[1] for c in fake.calls if c[0] == "delete"]
    assert deleted == ["deployments", "persistentvolumeclaims", "persistentvolumes"]
    pv = onprem.get("v1", "PersistentVolume", f"{NS}-shared")
    pvc = onprem.get("v1", "PersistentVolumeClaim", "shared", NS)
    assert pv is not None and pv["metadata"]["uid"] != uid and pv["spec"]["capacity"] == {"storage": "10Gi"}
    assert pvc is not None and pvc["status"]["phase"] == "Bound"
    assert pvc["spec"]["resources"]["requests"] == {"storage": "10Gi"}
    assert onprem.get("apps/v1", "Deployment", "models", NS) is not None
    # the NFS directory is kept (Retain, the same path): the registry still serves what was pushed
    assert fake.registry_blobs(NS, "shared") == blobs and onprem.manifest("1")[0] == 200
    assert onprem.changes() == {}


def test_a_new_artifact_is_pushed_again_and_a_foreign_push_is_drift(onprem: OnpremStack) -> None:
    fake = onprem.fake
    onprem.apply()
    _, _, first = onprem.manifest("1")
    before = onprem.outputs()

    onprem.artifact(1).write_text(onprem.artifact(1).read_text().replace("60 epochs", "80 epochs"))
    assert onprem.changes() == {A1: "update"}
    onprem.apply()
    status, manifest, digest = onprem.manifest("1")
    assert status == 200 and manifest is not None and digest not in (None, first)
    new_sha = sha256(onprem.artifact(1))
    assert manifest["layers"][0]["digest"] == f"sha256:{new_sha}"
    assert fake.registry_blobs(NS, "shared")[f"sha256:{new_sha}"] == onprem.artifact(1).read_bytes()
    outputs = onprem.outputs()
    assert outputs["models.model.iris:1"] == f"oci://{HOST}/{REPO}:1@{digest}" != before["models.model.iris:1"]
    assert outputs["models.blob_url.iris:1"].endswith(new_sha) and outputs["models.sha256.iris:1"] == new_sha
    assert outputs["models.model.iris:2"] == before["models.model.iris:2"]
    assert registry_call(fake, "GET", f"/v2/{REPO}/manifests/{first}")[0] == 404  # the superseded one deleted
    assert onprem.changes() == {}

    # someone pushes another artifact at tag 2: drift on sha256, corrected by pushing the stack's file again
    foreign = push_out_of_band(fake, "2", b'{"tampered": true}')
    plan = onprem.plan()
    changed = {c.address: c for c in plan.changes if c.action != "noop"}
    assert {a: c.action for a, c in changed.items()} == {A2: "update"}
    assert changed[A2].drift is not None and "sha256" in changed[A2].drift
    onprem.apply()
    status, manifest, digest = onprem.manifest("2")
    assert manifest is not None and manifest["layers"][0]["digest"] == f"sha256:{sha256(onprem.artifact(2))}"
    assert onprem.outputs()["models.model.iris:2"] == f"oci://{HOST}/{REPO}:2@{digest}"
    assert registry_call(fake, "GET", f"/v2/{REPO}/manifests/{foreign}")[0] == 200  # not mlplat's: left alone

    # a manifest deleted out of band reads as gone: pushed again
    registry_call(fake, "DELETE", f"/v2/{REPO}/manifests/{digest}")
    assert onprem.changes() == {A2: "create"}
    onprem.apply()
    assert onprem.manifest("2")[0] == 200 and onprem.changes() == {}

    onprem.apply(destroy=True)
    assert onprem.get("v1", "Namespace", NS) is None


def test_throttled_apply_is_retried(onprem: OnpremStack) -> None:
    fake = onprem.fake
    events: list[Event] = []
    with fake.throttle(3, "apply"):  # 429 TooManyRequests with Retry-After, from the API server
        onprem.apply(events)
    assert fake.throttled == 3 and len([e for e in events if e.kind == "step-retry"]) == 3
    assert onprem.get("v1", "PersistentVolumeClaim", "shared", NS) is not None
    assert onprem.manifest("1")[0] == 200 and onprem.manifest("2")[0] == 200
    with fake.throttle(2, "get"):
        assert onprem.changes() == {}

    # the registry's pushes through the service proxy, throttled
    onprem.artifact(2).write_text(onprem.artifact(2).read_text().replace("epochs", "epochs (retrained)"))
    events.clear()
    with fake.throttle(2, "proxy"):
        assert onprem.apply(events) == {A2: "update"}
    retried = {e.address for e in events if e.kind == "step-retry"}  # the plan's reads, the update's pushes
    assert fake.throttled == 2 and A2 in retried and retried <= {A1, A2}
    manifest = onprem.manifest("2")[1]
    assert manifest is not None and manifest["layers"][0]["digest"] == f"sha256:{sha256(onprem.artifact(2))}"

    with fake.throttle(2, "delete"):
        onprem.apply(destroy=True)
    assert fake.throttled == 2
    assert onprem.get("v1", "Namespace", NS) is None and fake.objects("", "persistentvolumes") == []


def test_artifact_provider_idempotency_import_and_errors(onprem: OnpremStack) -> None:
    """The provider on its own: a retried create adopts its own push, a stranger's is refused; find honours the
    token and `exclude`; import by `<repository>:<tag>`; the registry's errors become CloudApiError /
    RetryableError."""
    fake = onprem.fake
    onprem.apply()
    record = onprem.records()[A1]
    inputs = dict(record.inputs)
    with onprem.open() as stack:
        provider = stack.provider_for("onprem", "onprem.model_artifact")
        manifest = onprem.manifest("1")[1]
        assert manifest is not None
        token = manifest["annotations"]["dev.mlplat.token"]

        again = provider.create(A1, inputs, StepContext(A1, "create", token))
        assert (again.id, again.outputs) == (record.id, record.outputs)
        with pytest.raises(MlplatError, match="not pushed by this apply"):
            provider.create(A1, inputs, StepContext(A1, "create", "someone-else"))
        found = provider.find(A1, inputs, StepContext(A1, "find", token))
        assert found is not None and found.outputs == record.outputs
        assert provider.find(A1, inputs, StepContext(A1, "find", "other-1")) is None
        assert provider.find(A1, inputs, StepContext(A1, "find", token, frozenset({record.id}))) is None

        observed = provider.import_(A1, f"{REPO}:1", inputs)
        assert observed is not None and observed.outputs == record.outputs
        assert {k: v for k, v in observed.inputs.items()} == {k: v for k, v in inputs.items() if k != "source"}
        assert provider.import_(A1, f"{REPO}:9", inputs) is None
        assert provider.read(f"{REPO}:9", {**inputs, "tag": "9"}) is None

        # the registry's error body: its code and message, naming the operation
        kube = provider.target.kube()
        real = kube.proxy

        def refusing(method: str, namespace: str, service: str, port: int, path: str,
                     **kw: Any) -> tuple[int, dict[str, str], bytes]:
            if method == "PUT" and "/manifests/" in path:
                return 400, {"Content-Type": "application/json"}, json.dumps({"errors": [
                    {"code": "MANIFEST_INVALID", "message": "manifest invalid", "detail": {}}]}).encode()
            return real(method, namespace, service, port, path, **kw)

        kube.proxy = refusing  # type: ignore[method-assign]
        try:
            with pytest.raises(CloudApiError) as failed:
                provider.update(record.id, inputs, inputs, StepContext(A1, "update", token))
        finally:
            del kube.proxy
        assert failed.value.code == "MANIFEST_INVALID" and failed.value.status == 400
        assert str(failed.value) == f"put manifest {REPO}:1: MANIFEST_INVALID: manifest invalid"
        # the API server's own answer (no such Service): its reason and message
        with pytest.raises(CloudApiError) as failed:
            provider.create(A1, {**inputs, "service": "nope"}, StepContext(A1, "create", "t-nope"))
        assert failed.value.code == "NotFound" and 'services "nope" not found' in str(failed.value)
        # the API server's proxy throttling, and a registry with no ready pod (503): retryable
        with fake.throttle(1, "proxy"), pytest.raises(RetryableError):
            provider.read(record.id, inputs)
        fake.kill(NS, "models")
        with pytest.raises(RetryableError, match="503"):
            provider.read(record.id, inputs)
        fake.controllers.killed.clear()
        assert provider.read(record.id, inputs) is not None

        provider.delete(record.id, inputs, StepContext(A1, "delete"))
        assert onprem.manifest("1")[0] == 404
        provider.delete(record.id, inputs, StepContext(A1, "delete"))  # already gone: success
        assert provider.read(record.id, inputs) is None
