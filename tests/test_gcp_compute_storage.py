"""The gcp target's cluster (a Vertex AI persistent resource) and nas storage (a Filestore instance), end to end:
the real plugin and Google's own clients (REST transport) against the fake in tests/gcp_fake, through the engine.
What exists is checked on the fake's objects, as the Cloud console would show them."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
from stack_file import StackFile

from provisioner.errors import MlplatError, SpecError
from provisioner.operations import detached

from conftest import GcpProject, require_module

require_module("google.cloud.aiplatform_v1", "the gcp extra is part of the test extra")

from gcp_fake import filestore, vertex_compute  # noqa: E402

CLUSTER = "train.persistent_resource.main"
STORAGE = "shared.filestore_instance.main"
PR_NAME = "projects/mlplat-test/locations/us-central1/persistentResources/vision-train"
FS_NAME = "projects/mlplat-test/locations/us-central1-a/instances/vision-shared"


class GcpStack(StackFile):
    """A stack file with a two-pool GPU cluster and nas storage on the fake, edited as a dict."""

    def __init__(self, path: Path, project: GcpProject) -> None:
        self.project, self.server = project, project.server
        super().__init__(path, {
            "apiVersion": "mlplat/v1", "metadata": {"name": "vision"}, "target": "gcp",
            "targets": {"gcp": project.settings()},
            "clusters": [{"name": "train", "gpu_pools": [
                {"name": "big", "accelerator": "L4", "gpus_per_node": 2, "nodes": {"min": 1, "max": 3}},
                {"name": "small", "accelerator": "T4", "gpus_per_node": 1, "nodes": {"min": 2, "max": 2}}]}],
            "storage": [{"name": "shared", "kind": "nas", "size_gb": 1024, "mount_path": "/mnt/shared"}],
        })

    def objects(self) -> dict[str, int]:
        """What exists per address: persistent resources by their address label, instances by description."""
        counted = vertex_compute.by_address(self.server, [CLUSTER]) + filestore.by_address(self.server)
        return dict(counted)

    @property
    def resource(self) -> dict[str, Any]:
        return self.server.objects["persistentResources"][PR_NAME]

    @property
    def instance(self) -> dict[str, Any]:
        return self.server.objects["instances"][FS_NAME]


@pytest.fixture
def gcp_stack(tmp_path: Path, gcp_project: GcpProject) -> GcpStack:
    gcp_project.server.operation_polls = 2
    return GcpStack(tmp_path / "stack.yaml", gcp_project)


def pools(resource: dict[str, Any]) -> dict[str, tuple[Any, ...]]:
    return {p["id"]: (p["machineSpec"]["machineType"], p["machineSpec"].get("acceleratorType"),
                      p["machineSpec"].get("acceleratorCount"), int(p["replicaCount"]),
                      (p.get("autoscalingSpec") or {}).get("minReplicaCount"),
                      (p.get("autoscalingSpec") or {}).get("maxReplicaCount")) for p in resource["resourcePools"]}


def test_cluster_and_filestore_round_trip(gcp_stack: GcpStack) -> None:
    server = gcp_stack.server
    assert gcp_stack.apply() == {CLUSTER: "create", STORAGE: "create"}
    assert gcp_stack.objects() == {CLUSTER: 1, STORAGE: 1}
    resource, instance = gcp_stack.resource, gcp_stack.instance
    assert resource["state"] == "RUNNING" and resource["displayName"] == "train"
    assert pools(resource) == {"big": ("g2-standard-24", "NVIDIA_L4", 2, 1, "1", "3"),
                               "small": ("n1-standard-4", "NVIDIA_TESLA_T4", 1, 2, None, None)}
    assert resource["labels"]["mlplat-stack"] == "vision" and "mlplat-token" in resource["labels"]
    assert "network" not in resource  # the `default` network: not peered with Vertex AI
    assert instance["state"] == "READY" and instance["tier"] == "BASIC_HDD"
    assert instance["fileShares"][0] == {"name": "share1", "capacityGb": "1024"}
    assert instance["description"] == f"mlplat:{STORAGE}"
    ip = instance["networks"][0]["ipAddresses"][0]
    with gcp_stack.open() as stack:
        outputs = stack.outputs()
    assert outputs["shared.nfs"] == f"{ip}:/share1" and outputs["shared.ip"] == ip
    assert outputs["shared.name"] == FS_NAME and outputs["shared.mount_path"] == "/mnt/shared"
    assert outputs["train.name"] == PR_NAME and outputs["train.id"] == "vision-train"
    assert gcp_stack.apply() == {}  # no drift right after create

    # node counts and autoscaling bounds change in place
    gcp_stack.doc["clusters"][0]["gpu_pools"][0]["nodes"] = {"min": 2, "max": 5}
    gcp_stack.doc["clusters"][0]["gpu_pools"][1]["nodes"] = {"min": 3, "max": 3}
    gcp_stack.write()
    server.calls.clear()
    assert gcp_stack.apply() == {CLUSTER: "update"}
    assert [server.count(a) for a in ("UpdatePersistentResource", "CreatePersistentResource",
                                      "DeletePersistentResource")] == [1, 0, 0]
    assert pools(gcp_stack.resource) == {"big": ("g2-standard-24", "NVIDIA_L4", 2, 2, "2", "5"),
                                         "small": ("n1-standard-4", "NVIDIA_TESLA_T4", 1, 3, None, None)}

    # an accelerator change replaces the persistent resource (its id is its name: the old one goes first)
    gcp_stack.doc["clusters"][0]["gpu_pools"][1]["accelerator"] = "L4"
    gcp_stack.write()
    server.calls.clear()
    assert gcp_stack.apply() == {CLUSTER: "replace"}
    assert [server.count(a) for a in ("DeletePersistentResource", "CreatePersistentResource")] == [1, 1]
    assert server.calls.index(next(c for c in server.calls if c[0] == "DeletePersistentResource")) < \
        server.calls.index(next(c for c in server.calls if c[0] == "CreatePersistentResource"))
    assert pools(gcp_stack.resource)["small"] == ("g2-standard-4", "NVIDIA_L4", 1, 3, None, None)
    assert gcp_stack.objects() == {CLUSTER: 1, STORAGE: 1}

    # capacity grows in place
    gcp_stack.doc["storage"][0]["size_gb"] = 2048
    gcp_stack.write()
    server.calls.clear()
    assert gcp_stack.apply() == {STORAGE: "update"}
    assert [server.count(a) for a in ("UpdateInstance", "CreateInstance", "DeleteInstance")] == [1, 0, 0]
    assert gcp_stack.instance["fileShares"][0]["capacityGb"] == "2048"
    assert gcp_stack.instance["networks"][0]["ipAddresses"] == [ip]  # the same instance
    assert gcp_stack.apply() == {}

    # ... and Filestore refuses to shrink a BASIC tier: Google's error, at the address
    gcp_stack.doc["storage"][0]["size_gb"] = 1024
    gcp_stack.write()
    with pytest.raises(MlplatError) as failed:
        gcp_stack.apply()
    assert "it can only grow" in str(failed.value)
    assert gcp_stack.instance["fileShares"][0]["capacityGb"] == "2048"
    gcp_stack.doc["storage"][0]["size_gb"] = 2048
    gcp_stack.write()

    gcp_stack.destroy()
    assert gcp_stack.objects() == {}
    assert not server.objects["persistentResources"] and not server.objects["instances"]


def test_a_size_below_the_tiers_minimum_is_refused_at_validate(gcp_stack: GcpStack) -> None:
    gcp_stack.doc["storage"][0]["size_gb"] = 512
    gcp_stack.write()
    with gcp_stack.open() as stack, pytest.raises(SpecError) as refused:
        stack.validate()
    assert "1024" in str(refused.value)
    assert any(r["code"] == "storage-size-below-min" for r in refused.value.reasons)
    gcp_stack.doc["targets"]["gcp"]["filestore_tier"] = "BASIC_SSD"
    gcp_stack.doc["storage"][0]["size_gb"] = 2048
    gcp_stack.write()
    with gcp_stack.open() as stack, pytest.raises(SpecError) as refused:
        stack.validate()
    assert "2560" in str(refused.value)
    assert gcp_stack.server.calls == []  # no cloud call


def test_out_of_band_changes_show_as_drift_and_apply_corrects_them(gcp_stack: GcpStack) -> None:
    server = gcp_stack.server
    gcp_stack.apply()

    def scale(resource: dict[str, Any]) -> None:
        resource["resourcePools"][1]["replicaCount"] = "5"  # the fixed-size pool, resized in the console

    server.edit("persistentResources", PR_NAME, scale)
    server.edit("instances", FS_NAME, lambda i: i["fileShares"][0].update(capacityGb="3072"))
    with gcp_stack.open() as stack:
        plan = stack.plan()
    changes = {c.address: c for c in plan.changes if c.action != "noop"}
    assert {a: c.action for a, c in changes.items()} == {CLUSTER: "update", STORAGE: "update"}
    assert changes[CLUSTER].drift is not None and "pools" in changes[CLUSTER].drift
    assert changes[STORAGE].drift == {"capacity_gb": [1024, 3072]}

    # the autoscaler moving an autoscaled pool within its bounds is no drift
    server.edit("persistentResources", PR_NAME, lambda r: r["resourcePools"][0].update(replicaCount="3"))
    server.edit("instances", FS_NAME, lambda i: i["fileShares"][0].update(capacityGb="1024"))
    server.edit("persistentResources", PR_NAME, lambda r: r["resourcePools"][1].update(replicaCount="2"))
    assert gcp_stack.apply() == {}

    # an out-of-band resize is corrected in place; a deletion out of band is planned as a create
    server.edit("persistentResources", PR_NAME, scale)
    assert gcp_stack.apply() == {CLUSTER: "update"}
    assert int(gcp_stack.resource["resourcePools"][1]["replicaCount"]) == 2
    assert int(gcp_stack.resource["resourcePools"][0]["replicaCount"]) == 3  # the autoscaler's count kept
    del server.objects["instances"][FS_NAME]
    assert gcp_stack.apply() == {STORAGE: "create"}
    assert gcp_stack.objects() == {CLUSTER: 1, STORAGE: 1}
    del server.objects["instances"][FS_NAME]
    gcp_stack.destroy()  # a destroy of what is already gone succeeds
    assert gcp_stack.objects() == {}


class CrashAtCheckpoint(BaseException):
    """Escapes the provider like a kill would: the operation started and was checkpointed, no wait yet."""


@pytest.mark.parametrize(("kind", "address", "inputs", "action", "collection"), [
    ("gcp.persistent_resource", CLUSTER, {
        "name": "vision-train", "display_name": "train", "network": "default", "service_account": None,
        "pools": [{"id": "big", "machine_type": "g2-standard-4", "accelerator_type": "NVIDIA_L4",
                   "accelerator_count": 1, "replica_count": 1, "min_replica_count": 1, "max_replica_count": 2}]},
     "CreatePersistentResource", "persistentResources"),
    ("gcp.filestore_instance", STORAGE, {"name": "vision-shared", "location": "us-central1-a", "tier": "BASIC_HDD",
                                         "capacity_gb": 1024, "share": "share1", "network": "default"},
     "CreateInstance", "instances"),
])
def test_a_create_resumed_after_a_crash_waits_on_its_operation(gcp_stack: GcpStack, kind: str, address: str,
                                                               inputs: dict[str, Any], action: str,
                                                               collection: str) -> None:
    server = gcp_stack.server
    server.operation_polls = 3
    with gcp_stack.open() as stack:
        provider = stack.provider_for("gcp", kind)
        checkpoints: list[str] = []

        def crash(operation: str) -> None:
            checkpoints.append(operation)
            raise CrashAtCheckpoint(operation)

        with pytest.raises(CrashAtCheckpoint):
            provider.create(address, inputs, detached(address, token="t1", on_checkpoint=crash))
        assert len(checkpoints) == 1 and checkpoints[0].startswith(f"{action} projects/mlplat-test/locations/")
        assert "/operations/" in checkpoints[0]
        (name, obj), = server.objects[collection].items()
        assert obj["state"] in ("PROVISIONING", "CREATING")
        created = provider.create(address, inputs, detached(address, token="t1", operation=checkpoints[0]))
        assert server.count(action) == 1  # waited on the checkpointed operation, never created again
        assert created.id == name and server.objects[collection][name]["state"] in ("RUNNING", "READY")

        # a crash before the checkpoint: the retried create adopts its own object, a stranger's is refused
        again = provider.create(address, inputs, detached(address, token="t1"))
        assert (again.id, again.outputs) == (created.id, created.outputs)
        with pytest.raises(MlplatError, match="not made by this apply"):
            provider.create(address, inputs, detached(address, token="t-other"))
        found = provider.find(address, inputs, detached(address, "find", token="t1"))
        assert found is not None and (found.id, found.outputs) == (created.id, created.outputs)
        assert provider.find(address, inputs, detached(address, "find", token="t-other")) is None
        assert provider.find(address, inputs, detached(address, "find", token="t1",
                                                         exclude=frozenset({name}))) is None

        # forgotten and imported back by its id: the stack's inputs rebuilt from the cloud alone
        observed = provider.import_(address, name, inputs)
        assert observed is not None and observed.inputs == inputs
        assert provider.import_(address, "projects/x/locations/y/endpoints/1", inputs) is None

        provider.delete(name, inputs, detached(address, "delete"))
        provider.delete(name, inputs, detached(address, "delete"))  # already gone: success
        assert not server.objects[collection]

        # a crash after the call, before its checkpoint: recovery's find waits on the object's own state
        with pytest.raises(CrashAtCheckpoint):
            provider.create(address, inputs, detached(address, token="t2", on_checkpoint=crash))
        assert server.objects[collection][name]["state"] in ("PROVISIONING", "CREATING")
        found = provider.find(address, inputs, detached(address, "find", token="t2"))
        assert found is not None and found.id == name
        assert server.objects[collection][name]["state"] in ("RUNNING", "READY")
        assert server.count(action) == 4  # the first, two answered ALREADY_EXISTS, this one
        provider.delete(name, inputs, detached(address, "delete"))
    assert not server.objects[collection]


@pytest.mark.parametrize(("address", "action", "change"), [
    (CLUSTER, "UpdatePersistentResource",
     lambda i: i["pools"][1].update(replica_count=4, min_replica_count=4, max_replica_count=4)),
    (STORAGE, "UpdateInstance", lambda i: i.update(capacity_gb=2048)),
])
def test_an_update_resumed_after_a_crash_waits_on_its_operation(gcp_stack: GcpStack, address: str, action: str,
                                                                change: Any) -> None:
    server = gcp_stack.server
    gcp_stack.apply()
    server.operation_polls = 3
    with gcp_stack.open() as stack:
        record = stack.state.resources()[address]
        provider = stack.provider_for("gcp", record.kind)
        prior = copy.deepcopy(record.inputs)
        desired = copy.deepcopy(prior)
        change(desired)
        checkpoints: list[str] = []

        def crash(operation: str) -> None:
            checkpoints.append(operation)
            raise CrashAtCheckpoint(operation)

        with pytest.raises(CrashAtCheckpoint):
            provider.update(record.id, prior, desired, detached(address, "update", on_checkpoint=crash))
        assert len(checkpoints) == 1 and checkpoints[0].startswith(f"{action} ")
        outputs = provider.update(record.id, prior, desired, detached(address, "update", operation=checkpoints[0]))
        assert server.count(action) == 1 and outputs == record.outputs
        observed = provider.read(record.id, desired)
        assert observed is not None and observed.inputs == desired


def test_throttled_writes_and_reads_are_retried(gcp_stack: GcpStack) -> None:
    server = gcp_stack.server
    with server.throttle(1, "writes"):
        assert gcp_stack.apply() == {CLUSTER: "create", STORAGE: "create"}
    assert server.count("CreatePersistentResource") == 2 and server.count("CreateInstance") == 2
    assert gcp_stack.objects() == {CLUSTER: 1, STORAGE: 1}
    with server.throttle(1, "reads"):
        assert gcp_stack.apply() == {}
    gcp_stack.doc["clusters"][0]["gpu_pools"][0]["nodes"] = {"min": 1, "max": 4}
    gcp_stack.doc["storage"][0]["size_gb"] = 1500
    gcp_stack.write()
    server.calls.clear()
    with server.throttle(1, "writes"):
        assert gcp_stack.apply() == {CLUSTER: "update", STORAGE: "update"}
    assert server.count("UpdatePersistentResource") == 2 and server.count("UpdateInstance") == 2
    server.calls.clear()
    with server.throttle(1, "writes"):
        gcp_stack.destroy()
    assert server.count("DeletePersistentResource") == 2 and server.count("DeleteInstance") == 2
    assert gcp_stack.objects() == {}


def test_a_failed_provisioning_fails_with_googles_message_and_leaves_nothing(gcp_stack: GcpStack) -> None:
    server = gcp_stack.server
    del gcp_stack.doc["storage"]
    gcp_stack.write()
    with vertex_compute.stockout("NVIDIA_L4"), pytest.raises(MlplatError) as failed:
        gcp_stack.apply()
    assert "does not have enough resources available" in str(failed.value)
    assert server.count("DeletePersistentResource") == 1  # the resource left in ERROR was deleted
    assert not server.objects["persistentResources"]
    assert gcp_stack.apply() == {CLUSTER: "create"}  # once there is capacity, the next apply makes it
    assert gcp_stack.objects() == {CLUSTER: 1}
    gcp_stack.destroy()
    assert gcp_stack.objects() == {}
