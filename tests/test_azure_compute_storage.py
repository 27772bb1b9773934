"""The azure target's cluster (an AmlCompute per GPU pool) and nas storage (an Azure file share and its
AzureFileDatastore), end to end: the real plugin, azure-ai-ml and the storage clients against the fake in
tests/azure_fake, through the engine. What exists is checked on the fake's objects, as the Azure portal would show
them. Also the blob data plane the registry uploads through, with azure-storage-blob directly."""

from __future__ import annotations

import copy
import hashlib
from pathlib import Path
from typing import Any

import pytest
from stack_file import StackFile

from provisioner.errors import MlplatError
from provisioner.operations import detached

from conftest import AzureWorkspace, require_module

require_module("azure.ai.ml", "the azure extra is part of the test extra")

from azure_fake import STORAGE_ACCOUNT, WORKSPACE_PATH, compute, storage  # noqa: E402

CLUSTER = "train.compute.gpu"
SHARE = "shared.file_share.main"
DATASTORE = "shared.datastore.main"
COMPUTE_NAME = "train-gpu"
SHARE_NAME = "vision-shared"
DATASTORE_NAME = "vision_shared"
COMPUTE_ID = f"{WORKSPACE_PATH}/computes/{COMPUTE_NAME}"
SHARE_ID = f"https://{STORAGE_ACCOUNT}.file.core.windows.net/{SHARE_NAME}"
DEFAULT_DATASTORES = {"workspaceblobstore", "workspacefilestore"}


class AzureStack(StackFile):
    """A stack file with a one-pool GPU cluster and nas storage on the fake, edited as a dict."""

    def __init__(self, path: Path, workspace: AzureWorkspace) -> None:
        self.server = workspace.server
        super().__init__(path, {
            "apiVersion": "mlplat/v1", "metadata": {"name": "vision"}, "target": "azure",
            "targets": {"azure": workspace.settings()},
            "clusters": [{"name": "train", "gpu_pools": [
                {"name": "gpu", "accelerator": "T4", "gpus_per_node": 1, "nodes": {"min": 0, "max": 2}}]}],
            "storage": [{"name": "shared", "kind": "nas", "size_gb": 100, "mount_path": "/mnt/shared"}],
        })

    def objects(self) -> dict[str, int]:
        """What exists per address: computes and datastores by their `mlplat-address` tag, shares by metadata."""
        counted = compute.by_address(self.server)
        for share in storage.shares(self.server).values():
            key = share["metadata"].get("mlplat_address", "?")
            counted[key] = counted.get(key, 0) + 1
        for name, datastore in self.server.objects["datastores"].items():
            if name not in DEFAULT_DATASTORES:
                key = (datastore["properties"].get("tags") or {}).get("mlplat-address") or name
                counted[key] = counted.get(key, 0) + 1
        return counted

    @property
    def compute(self) -> dict[str, Any]:
        return self.server.objects["computes"][COMPUTE_NAME]

    @property
    def share(self) -> dict[str, Any]:
        return self.server.objects["shares"][f"{STORAGE_ACCOUNT}/{SHARE_NAME}"]

    @property
    def datastore(self) -> dict[str, Any]:
        return self.server.objects["datastores"][DATASTORE_NAME]


@pytest.fixture
def azure_stack(tmp_path: Path, azure_workspace: AzureWorkspace) -> AzureStack:
    return AzureStack(tmp_path / "stack.yaml", azure_workspace)


def scale(obj: dict[str, Any]) -> tuple[Any, ...]:
    aml = obj["properties"]["properties"]
    return (aml["vmSize"], aml["vmPriority"], aml["scaleSettings"]["minNodeCount"],
            aml["scaleSettings"]["maxNodeCount"])


def test_cluster_and_file_share_round_trip(azure_stack: AzureStack) -> None:
    server = azure_stack.server
    assert azure_stack.apply() == {CLUSTER: "create", SHARE: "create", DATASTORE: "create"}
    assert azure_stack.objects() == {CLUSTER: 1, SHARE: 1, DATASTORE: 1}
    cluster, share, datastore = azure_stack.compute, azure_stack.share, azure_stack.datastore
    assert cluster["properties"]["provisioningState"] == "Succeeded"
    assert cluster["properties"]["computeType"] == "AmlCompute"
    assert scale(cluster) == ("Standard_NC4as_T4_v3", "Dedicated", 0, 2)
    assert cluster["tags"]["mlplat-stack"] == "vision" and "mlplat-token" in cluster["tags"]
    assert share["quota"] == 100
    assert share["metadata"]["mlplat_stack"] == "vision" and "mlplat_token" in share["metadata"]
    props = datastore["properties"]
    assert (props["datastoreType"], props["accountName"], props["fileShareName"]) == \
        ("AzureFile", STORAGE_ACCOUNT, SHARE_NAME)
    assert props["credentials"] == {"credentialsType": "None"}  # identity-based: no key kept in the workspace
    assert props["tags"]["mlplat-address"] == DATASTORE
    with azure_stack.open() as stack:
        outputs = stack.outputs()
    assert outputs["train.compute.gpu"] == COMPUTE_NAME
    assert outputs["shared.share"] == SHARE_NAME and outputs["shared.datastore"] == DATASTORE_NAME
    assert outputs["shared.account"] == STORAGE_ACCOUNT and outputs["shared.mount_path"] == "/mnt/shared"
    with azure_stack.open() as stack:
        records = stack.state.resources()
    assert records[CLUSTER].id == COMPUTE_ID and records[SHARE].id == SHARE_ID
    assert records[DATASTORE].id == f"{WORKSPACE_PATH}/datastores/{DATASTORE_NAME}"
    assert records[SHARE].outputs == {"name": SHARE_NAME, "url": SHARE_ID}
    assert azure_stack.apply() == {}  # no drift right after create

    # node counts change in place (the same PUT, new scale settings)
    azure_stack.doc["clusters"][0]["gpu_pools"][0]["nodes"] = {"min": 1, "max": 4}
    azure_stack.write()
    server.calls.clear()
    assert azure_stack.apply() == {CLUSTER: "update"}
    assert [server.count(a) for a in ("Compute.CreateOrUpdate", "Compute.Delete")] == [1, 0]
    assert scale(azure_stack.compute) == ("Standard_NC4as_T4_v3", "Dedicated", 1, 4)
    assert azure_stack.compute["properties"]["createdOn"] == cluster["properties"]["createdOn"]

    # an accelerator change (the VM size) replaces the cluster, the old one first (its name is its key)
    azure_stack.doc["clusters"][0]["gpu_pools"][0]["accelerator"] = "V100"
    azure_stack.write()
    server.calls.clear()
    assert azure_stack.apply() == {CLUSTER: "replace"}
    assert [server.count(a) for a in ("Compute.Delete", "Compute.CreateOrUpdate")] == [1, 1]
    actions = [a for a, _ in server.calls]
    assert actions.index("Compute.Delete") < actions.index("Compute.CreateOrUpdate")
    assert scale(azure_stack.compute) == ("Standard_NC6s_v3", "Dedicated", 1, 4)

    # ... and so does spot (low priority)
    azure_stack.doc["clusters"][0]["gpu_pools"][0]["spot"] = True
    azure_stack.write()
    assert azure_stack.apply() == {CLUSTER: "replace"}
    assert scale(azure_stack.compute) == ("Standard_NC6s_v3", "LowPriority", 1, 4)
    assert azure_stack.objects() == {CLUSTER: 1, SHARE: 1, DATASTORE: 1}

    # the quota grows in place: the same share (its metadata kept), no delete
    token = azure_stack.share["metadata"]["mlplat_token"]
    azure_stack.doc["storage"][0]["size_gb"] = 500
    azure_stack.write()
    server.calls.clear()
    assert azure_stack.apply() == {SHARE: "update"}
    assert server.count("File.DeleteShare") == 0 and server.count("File.PutShare") == 1
    assert azure_stack.share["quota"] == 500 and azure_stack.share["metadata"]["mlplat_token"] == token
    assert azure_stack.apply() == {}

    server.calls.clear()
    azure_stack.destroy()
    assert azure_stack.objects() == {}
    assert not server.objects["computes"] and storage.shares(server) == {}
    assert set(server.objects["datastores"]) == DEFAULT_DATASTORES
    actions = [a for a, _ in server.calls]
    assert actions.index("Datastores.Delete") < actions.index("File.DeleteShare")  # the datastore first


def test_out_of_band_changes_show_as_drift_and_apply_corrects_them(azure_stack: AzureStack) -> None:
    server = azure_stack.server
    azure_stack.apply()
    server.edit("computes", COMPUTE_NAME,
                lambda c: c["properties"]["properties"]["scaleSettings"].update(maxNodeCount=6))
    storage_key = f"{STORAGE_ACCOUNT}/{SHARE_NAME}"
    server.edit("shares", storage_key, lambda s: s.update(quota=300))
    server.edit("datastores", DATASTORE_NAME, lambda d: d["properties"].update(fileShareName="elsewhere"))
    with azure_stack.open() as stack:
        plan = stack.plan()
    changes = {c.address: c for c in plan.changes if c.action != "noop"}
    assert {a: c.action for a, c in changes.items()} == {CLUSTER: "update", SHARE: "update", DATASTORE: "update"}
    assert changes[CLUSTER].drift == {"max_nodes": [2, 6]}
    assert changes[SHARE].drift == {"quota_gb": [100, 300]}
    assert changes[DATASTORE].drift == {"share": [SHARE_NAME, "elsewhere"]}
    assert azure_stack.apply() == {CLUSTER: "update", SHARE: "update", DATASTORE: "update"}
    assert scale(azure_stack.compute)[3] == 2 and azure_stack.share["quota"] == 100
    assert azure_stack.datastore["properties"]["fileShareName"] == SHARE_NAME
    assert azure_stack.apply() == {}

    # deleted out of band: read as gone, planned as creates
    del server.objects["computes"][COMPUTE_NAME]
    del server.objects["shares"][storage_key]
    del server.objects["datastores"][DATASTORE_NAME]
    assert azure_stack.apply() == {CLUSTER: "create", SHARE: "create", DATASTORE: "create"}
    assert azure_stack.objects() == {CLUSTER: 1, SHARE: 1, DATASTORE: 1}
    del server.objects["computes"][COMPUTE_NAME]
    del server.objects["shares"][storage_key]
    del server.objects["datastores"][DATASTORE_NAME]
    azure_stack.destroy()  # a destroy of what is already gone succeeds
    assert azure_stack.objects() == {}


class CrashAtCheckpoint(BaseException):
    """Escapes the provider like a kill would: the operation started and was checkpointed, no wait yet."""


COMPUTE_INPUTS = {"name": "train-gpu", "vm_size": "Standard_NC4as_T4_v3", "min_nodes": 0, "max_nodes": 2,
                  "tier": "dedicated"}


def test_a_compute_create_resumed_after_a_crash_waits_on_its_operation(azure_stack: AzureStack) -> None:
    server = azure_stack.server
    server.operation_polls = 3
    with azure_stack.open() as stack:
        provider = stack.provider_for("azure", "azure.compute")
        checkpoints: list[str] = []

        def crash(operation: str) -> None:
            checkpoints.append(operation)
            raise CrashAtCheckpoint(operation)

        with pytest.raises(CrashAtCheckpoint):
            provider.create(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, token="t1", on_checkpoint=crash))
        assert checkpoints == [f"CreateCompute {COMPUTE_NAME}"]
        assert azure_stack.compute["properties"]["provisioningState"] == "Creating"
        created = provider.create(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, token="t1", operation=checkpoints[0]))
        assert server.count("Compute.CreateOrUpdate") == 1  # waited on the checkpointed operation
        assert created.id == COMPUTE_ID and created.outputs == {"name": COMPUTE_NAME, "id": COMPUTE_ID}
        assert azure_stack.compute["properties"]["provisioningState"] == "Succeeded"

        # a crash before the checkpoint: the retried create adopts its own cluster, a stranger's is refused
        again = provider.create(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, token="t1"))
        assert (again.id, again.outputs) == (created.id, created.outputs)
        assert server.count("Compute.CreateOrUpdate") == 1
        with pytest.raises(MlplatError, match="not made by this apply"):
            provider.create(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, token="t-other"))
        found = provider.find(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, "find", token="t1"))
        assert found is not None and (found.id, found.outputs) == (created.id, created.outputs)
        assert provider.find(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, "find", token="t-other")) is None
        assert provider.find(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, "find", token="t1",
                                                                exclude=frozenset({COMPUTE_NAME}))) is None

        # forgotten and imported back by its id: the stack's inputs rebuilt from the cloud alone
        observed = provider.import_(CLUSTER, COMPUTE_ID, COMPUTE_INPUTS)
        assert observed is not None and observed.inputs == COMPUTE_INPUTS
        assert provider.import_(CLUSTER, f"{WORKSPACE_PATH}/datastores/x", COMPUTE_INPUTS) is None

        provider.delete(COMPUTE_ID, COMPUTE_INPUTS, detached(CLUSTER, "delete"))
        provider.delete(COMPUTE_ID, COMPUTE_INPUTS, detached(CLUSTER, "delete"))  # already gone: success
        assert not server.objects["computes"]

        # a crash after the call, before its checkpoint: recovery's find waits on the cluster's own state
        with pytest.raises(CrashAtCheckpoint):
            provider.create(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, token="t2", on_checkpoint=crash))
        assert azure_stack.compute["properties"]["provisioningState"] == "Creating"
        found = provider.find(CLUSTER, COMPUTE_INPUTS, detached(CLUSTER, "find", token="t2"))
        assert found is not None and found.id == COMPUTE_ID
        assert azure_stack.compute["properties"]["provisioningState"] == "Succeeded"

        # a delete resumed after a crash waits on its checkpoint
        checkpoints.clear()
        with pytest.raises(CrashAtCheckpoint):
            provider.delete(COMPUTE_ID, COMPUTE_INPUTS, detached(CLUSTER, "delete", on_checkpoint=crash))
        assert checkpoints == [f"DeleteCompute {COMPUTE_NAME}"]
        assert azure_stack.compute["properties"]["provisioningState"] == "Deleting"
        assert provider.read(COMPUTE_ID, COMPUTE_INPUTS) is None  # going: read as gone
        provider.delete(COMPUTE_ID, COMPUTE_INPUTS, detached(CLUSTER, "delete", operation=checkpoints[0]))
        assert server.count("Compute.Delete") == 3  # the two deletes above, this one: not issued again
    assert not server.objects["computes"]


def test_an_update_resumed_after_a_crash_waits_on_its_operation(azure_stack: AzureStack) -> None:
    server = azure_stack.server
    azure_stack.apply()
    server.operation_polls = 3
    with azure_stack.open() as stack:
        record = stack.state.resources()[CLUSTER]
        provider = stack.provider_for("azure", record.kind)
        prior = copy.deepcopy(record.inputs)
        desired = {**prior, "min_nodes": 2, "max_nodes": 3}
        token = azure_stack.compute["tags"]["mlplat-token"]
        checkpoints: list[str] = []

        def crash(operation: str) -> None:
            checkpoints.append(operation)
            raise CrashAtCheckpoint(operation)

        server.calls.clear()
        with pytest.raises(CrashAtCheckpoint):
            provider.update(record.id, prior, desired, detached(CLUSTER, "update", on_checkpoint=crash))
        assert checkpoints == [f"UpdateCompute {COMPUTE_NAME}"]
        assert azure_stack.compute["properties"]["provisioningState"] == "Updating"
        outputs = provider.update(record.id, prior, desired, detached(CLUSTER, "update", operation=checkpoints[0]))
        assert server.count("Compute.CreateOrUpdate") == 1 and outputs == record.outputs
        observed = provider.read(record.id, desired)
        assert observed is not None and observed.inputs == desired
        assert azure_stack.compute["tags"]["mlplat-token"] == token  # the create's token kept


def test_file_share_and_datastore_create_adopt_and_import(azure_stack: AzureStack) -> None:
    with azure_stack.open() as stack:
        shares = stack.provider_for("azure", "azure.file_share")
        datastores = stack.provider_for("azure", "azure.datastore")
        inputs = {"account": STORAGE_ACCOUNT, "name": SHARE_NAME, "quota_gb": 100}
        made = shares.create(SHARE, inputs, detached(SHARE, token="t1"))
        assert made.id == SHARE_ID
        assert shares.create(SHARE, inputs, detached(SHARE, token="t1")).id == SHARE_ID  # a retried create adopts
        with pytest.raises(MlplatError, match="not made by this apply"):
            shares.create(SHARE, inputs, detached(SHARE, token="t-other"))
        found = shares.find(SHARE, inputs, detached(SHARE, "find", token="t1"))
        assert found is not None and found.id == SHARE_ID
        assert shares.find(SHARE, inputs, detached(SHARE, "find", token="t-other")) is None
        observed = shares.import_(SHARE, SHARE_ID, inputs)
        assert observed is not None and observed.inputs == inputs
        assert shares.import_(SHARE, COMPUTE_ID, inputs) is None

        ds_inputs = {"name": DATASTORE_NAME, "account": STORAGE_ACCOUNT, "share": SHARE_NAME}
        ds_id = f"{WORKSPACE_PATH}/datastores/{DATASTORE_NAME}"
        assert datastores.create(DATASTORE, ds_inputs, detached(DATASTORE, token="t1")).id == ds_id
        assert datastores.create(DATASTORE, ds_inputs, detached(DATASTORE, token="t1")).id == ds_id
        with pytest.raises(MlplatError, match="not made by this apply"):
            datastores.create(DATASTORE, ds_inputs, detached(DATASTORE, token="t-other"))
        found = datastores.find(DATASTORE, ds_inputs, detached(DATASTORE, "find", token="t1"))
        assert found is not None and found.id == ds_id
        observed = datastores.import_(DATASTORE, ds_id, ds_inputs)
        assert observed is not None and observed.inputs == ds_inputs
        assert datastores.import_(DATASTORE, f"{WORKSPACE_PATH}/datastores/workspaceblobstore", ds_inputs) is None
        assert datastores.import_(DATASTORE, SHARE_ID, ds_inputs) is None

        datastores.delete(ds_id, ds_inputs, detached(DATASTORE, "delete"))
        datastores.delete(ds_id, ds_inputs, detached(DATASTORE, "delete"))
        shares.delete(SHARE_ID, inputs, detached(SHARE, "delete"))
        shares.delete(SHARE_ID, inputs, detached(SHARE, "delete"))
    assert azure_stack.objects() == {}


def test_throttled_writes_and_reads_are_retried(azure_stack: AzureStack) -> None:
    server = azure_stack.server
    with server.throttle(1, "writes"):
        assert azure_stack.apply() == {CLUSTER: "create", SHARE: "create", DATASTORE: "create"}
    assert server.count("Compute.CreateOrUpdate") == 2 and server.count("File.PutShare") == 2
    assert server.count("Datastores.CreateOrUpdate") == 2
    assert azure_stack.objects() == {CLUSTER: 1, SHARE: 1, DATASTORE: 1}
    with server.throttle(1, "reads"):
        assert azure_stack.apply() == {}
    azure_stack.doc["clusters"][0]["gpu_pools"][0]["nodes"] = {"min": 1, "max": 3}
    azure_stack.doc["storage"][0]["size_gb"] = 200
    azure_stack.write()
    server.calls.clear()
    with server.throttle(1, "writes"):
        assert azure_stack.apply() == {CLUSTER: "update", SHARE: "update"}
    assert server.count("Compute.CreateOrUpdate") == 2 and server.count("File.PutShare") == 2
    assert scale(azure_stack.compute)[2:] == (1, 3) and azure_stack.share["quota"] == 200
    server.calls.clear()
    with server.throttle(1, "writes"):
        azure_stack.destroy()
    assert server.count("Compute.Delete") == 2 and server.count("File.DeleteShare") == 2
    assert server.count("Datastores.Delete") == 2
    assert azure_stack.objects() == {}


def test_the_fake_refuses_what_azure_refuses(azure_workspace: AzureWorkspace) -> None:
    """A VM size change of an existing cluster is a 400 (hence force_new); share metadata names must be C#
    identifiers; an existing share name is ShareAlreadyExists."""
    from azure.ai.ml.entities import AmlCompute
    from azure.core.exceptions import HttpResponseError

    from mlplat_plugins.azure.sdk import Clients

    server = azure_workspace.server
    server.operation_polls = 0
    clients = Clients(server.subscription, server.resource_group, server.workspace, server.url)
    clients.ml.compute.begin_create_or_update(AmlCompute(name="c1", size="Standard_NC4as_T4_v3",
                                                         max_instances=1))
    assert server.objects["computes"]["c1"]["properties"]["provisioningState"] == "Succeeded"
    with pytest.raises(HttpResponseError) as refused:
        clients.ml.compute.begin_create_or_update(AmlCompute(name="c1", size="Standard_NC6s_v3", max_instances=1))
    assert refused.value.status_code == 400
    share = clients.share(STORAGE_ACCOUNT)
    with pytest.raises(MlplatError, match=r"InvalidMetadata|INVALID_METADATA"):
        share.create_share("share1", quota=1, metadata={"mlplat-stack": "x"})
    share.create_share("share1", quota=1)
    with pytest.raises(MlplatError) as exists:
        share.create_share("share1", quota=1)
    assert getattr(exists.value, "already_exists", False)
    default = clients.ml.datastores.get_default()
    assert (default.name, default.account_name, default.container_name) == \
        ("workspaceblobstore", STORAGE_ACCOUNT, storage.BLOB_CONTAINER)


def test_blob_upload_download_and_properties_round_trip(azure_workspace: AzureWorkspace) -> None:
    from azure.core.exceptions import ResourceExistsError, ResourceNotFoundError
    from azure.storage.blob import ContentSettings

    from mlplat_plugins.azure.sdk import Clients

    server = azure_workspace.server
    clients = Clients(server.subscription, server.resource_group, server.workspace, server.url)
    service = clients.blob(STORAGE_ACCOUNT)
    data = bytes(range(256)) * 40
    md5 = hashlib.md5(data).digest()
    blob = service.get_blob_client(storage.BLOB_CONTAINER, "mlplat/models/m/1/model.bin")
    blob.upload_blob(data, overwrite=True, metadata={"sha256": hashlib.sha256(data).hexdigest()},
                     content_settings=ContentSettings(content_md5=bytearray(md5)))
    props = blob.get_blob_properties()
    assert props.size == len(data) and props.metadata == {"sha256": hashlib.sha256(data).hexdigest()}
    assert bytes(props.content_settings.content_md5) == md5 and props.blob_type == "BlockBlob"
    assert blob.download_blob().readall() == data
    assert blob.download_blob(offset=100, length=50).readall() == data[100:150]
    with pytest.raises(ResourceExistsError):
        blob.upload_blob(b"other", overwrite=False)
    with pytest.raises(Exception, match=r"Md5Mismatch|MD5_MISMATCH"):
        blob.upload_blob(b"other", overwrite=True, content_settings=ContentSettings(content_md5=bytearray(16)))
    assert server.blobs(STORAGE_ACCOUNT, storage.BLOB_CONTAINER) == {"mlplat/models/m/1/model.bin": data}

    # a large upload goes in blocks (Put Block, Put Block List), a large download in ranges
    big = service.get_blob_client(storage.BLOB_CONTAINER, "mlplat/big.bin")
    big._config.max_single_put_size, big._config.max_block_size = 4096, 4096
    big._config.max_single_get_size, big._config.max_chunk_get_size = 4096, 4096
    big.upload_blob(data, overwrite=True, validate_content=True)
    assert big.download_blob(validate_content=True).readall() == data
    container = service.get_container_client(storage.BLOB_CONTAINER)
    assert [b.name for b in container.list_blobs(name_starts_with="mlplat/")] == \
        ["mlplat/big.bin", "mlplat/models/m/1/model.bin"]
    walked = sorted(b.name for b in container.walk_blobs(name_starts_with="mlplat/"))
    assert walked == ["mlplat/big.bin", "mlplat/models/"]
    blob.delete_blob()
    with pytest.raises(ResourceNotFoundError):
        blob.get_blob_properties()
    with pytest.raises(ResourceNotFoundError):
        service.get_blob_client("no-such-container", "x").upload_blob(b"1")
    assert sorted(server.blobs(STORAGE_ACCOUNT)) == [f"{storage.BLOB_CONTAINER}/mlplat/big.bin"]
