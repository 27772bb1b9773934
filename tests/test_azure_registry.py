"""The azure registry end to end: model artifacts uploaded to the workspace's default blob datastore and registered
as Azure ML model versions, through the engine (provisioner.api.Stack) and the real azure-ai-ml / azure-storage-blob
clients against tests/azure_fake. Every claim about what exists is checked on the fake's objects, never through the
providers."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from stack_file import StackFile

from provisioner.errors import MlplatError
from provisioner.events import Event
from provisioner.operations import StepContext

from conftest import STACKS, AzureWorkspace, require_module

require_module("azure.ai.ml", "the azure extra is part of the test extra")

from azure_fake import STORAGE_ACCOUNT, WORKSPACE_PATH  # noqa: E402
from azure_fake.storage import BLOB_CONTAINER  # noqa: E402

MODEL = "vision-iris"
V1 = "models.model.iris:1"
V2 = "models.model.iris:2"
PATH1 = "mlplat/models/iris/1/iris-v1.json"
PATH2 = "mlplat/models/iris/2/iris-v2.json"
BLOB_URL = f"https://{STORAGE_ACCOUNT}.blob.core.windows.net/{BLOB_CONTAINER}"


class RegistryStack(StackFile):
    """A stack with a registry on azure: two versions of one model, artifacts beside the stack file."""

    def __init__(self, directory: Path, workspace: AzureWorkspace) -> None:
        self.server = workspace.server
        shutil.copytree(STACKS / "models", directory / "models")
        super().__init__(directory / "stack.yaml", {
            "apiVersion": "mlplat/v1", "metadata": {"name": "vision"}, "target": "azure",
            "targets": {"azure": workspace.settings()},
            "registry": {"name": "models",
                         "models": [{"name": "iris", "version": "1", "artifact": "models/iris-v1.json"},
                                    {"name": "iris", "version": "2", "artifact": "models/iris-v2.json"}]},
        })

    @property
    def artifact(self) -> Path:
        return self.path.parent / "models" / "iris-v1.json"

    # the console: the fake's objects
    def versions(self) -> dict[str, dict[str, Any]]:
        """version → its ARM properties, of the stack's model."""
        return {k.split("/", 1)[1]: v["properties"] for k, v in self.server.objects["model_versions"].items()
                if k.split("/", 1)[0] == MODEL}

    def blobs(self) -> dict[str, dict[str, Any]]:
        """blob name → {"content", "metadata"} in the default datastore's container."""
        prefix = f"{STORAGE_ACCOUNT}/{BLOB_CONTAINER}/"
        return {k[len(prefix):]: v for k, v in self.server.objects["blobs"].items() if k.startswith(prefix)}


@pytest.fixture
def registry(tmp_path: Path, azure_workspace: AzureWorkspace) -> Iterator[RegistryStack]:
    yield RegistryStack(tmp_path, azure_workspace)


def test_registry_lifecycle(registry: RegistryStack) -> None:
    server = registry.server
    registry.apply()

    blobs = registry.blobs()
    assert set(blobs) == {PATH1, PATH2}
    digest = hashlib.sha256(registry.artifact.read_bytes()).hexdigest()
    assert blobs[PATH1]["content"] == registry.artifact.read_bytes()
    assert blobs[PATH1]["metadata"]["sha256"] == digest and blobs[PATH1]["metadata"]["mlplat_address"] == V1
    versions = registry.versions()
    assert set(versions) == {"1", "2"}
    first = versions["1"]
    assert first["modelType"] == "custom_model" and first["modelUri"].endswith(
        f"/datastores/workspaceblobstore/paths/{PATH1}")
    assert first["tags"]["mlplat-sha256"] == digest and first["tags"]["mlplat-framework"]
    assert first["tags"]["mlplat-address"] == V1 and first["tags"]["mlplat-stack"] == "vision"
    assert first["tags"]["mlplat-token"]
    assert server.count("Blob.Put") == 2 and server.count("Models.CreateOrUpdateVersion") == 2
    outputs = registry.outputs()
    assert outputs["models.model.iris:1"] == f"{BLOB_URL}/{PATH1}"
    assert outputs["models.asset.iris:2"] == f"azureml:{MODEL}:2"
    assert outputs["models.sha256.iris:1"] == digest
    assert registry.records()[V1].id == f"azureml:{MODEL}:1"
    server.calls.clear()
    assert registry.changes() == {}
    assert not any(method for method in server.calls if method[0].endswith(("Put", "CreateOrUpdateVersion")))

    # a new artifact: the version is replaced (deleted with its blob, then uploaded and registered again)
    registry.artifact.write_text(registry.artifact.read_text().replace("60 epochs", "80 epochs"))
    assert registry.changes() == {V1: "replace"}
    server.calls.clear()
    registry.apply()
    assert server.count("Models.DeleteVersion") == 1 and server.count("Models.CreateOrUpdateVersion") == 1
    assert server.count("Blob.Put") == 1 and server.count("Blob.Delete") == 1
    assert registry.blobs()[PATH1]["content"] == registry.artifact.read_bytes()
    new_digest = hashlib.sha256(registry.artifact.read_bytes()).hexdigest()
    assert registry.versions()["1"]["tags"]["mlplat-sha256"] == new_digest
    assert registry.changes() == {}

    # a blob rewritten out of band is drift on sha256 (the version is replaced); a tag changed likewise
    key = f"{STORAGE_ACCOUNT}/{BLOB_CONTAINER}/{PATH2}"
    server.edit("blobs", key, lambda b: b.update(content=b'{"tampered": true}', metadata={}))
    assert registry.changes() == {V2: "replace"}
    registry.apply()
    assert registry.blobs()[PATH2]["content"] == (registry.path.parent / "models" / "iris-v2.json").read_bytes()
    server.edit("model_versions", f"{MODEL}/2", lambda v: v["properties"]["tags"].update({"mlplat-sha256": "0"}))
    assert registry.changes() == {V2: "replace"}
    registry.apply()
    assert registry.changes() == {}

    # a version deleted out of band reads as gone (created again); a blob deleted out of band is drift
    del server.objects["model_versions"][f"{MODEL}/1"]
    assert registry.changes() == {V1: "create"}
    registry.apply()
    assert set(registry.versions()) == {"1", "2"} and registry.changes() == {}
    del server.objects["blobs"][key]
    assert registry.changes() == {V2: "replace"}
    registry.apply()
    assert set(registry.blobs()) == {PATH1, PATH2} and registry.changes() == {}

    registry.apply(destroy=True)
    assert registry.versions() == {} and registry.blobs() == {}
    assert MODEL not in server.objects["models"]  # the container goes with its last version


def test_throttled_writes_and_reads_are_retried(registry: RegistryStack) -> None:
    server = registry.server
    events: list[Event] = []
    with server.throttle(1, "writes"):
        registry.apply(events)
    retried = {e.address for e in events if e.kind == "step-retry"}
    assert retried == {V1, V2}
    assert server.throttled_count("Blob.Put") == 2 and server.throttled_count("Models.CreateOrUpdateVersion") == 2
    assert set(registry.versions()) == {"1", "2"} and len(registry.blobs()) == 2
    with server.throttle(1, "reads"):
        assert registry.changes() == {}
    registry.artifact.write_text(registry.artifact.read_text().replace("60 epochs", "70 epochs"))
    with server.throttle(1, "writes"):
        registry.apply()
    assert registry.changes() == {}
    with server.throttle(1, "writes"):
        registry.apply(destroy=True)
    assert registry.versions() == {} and registry.blobs() == {} and not server.objects["models"]


def test_a_create_interrupted_after_the_cloud_call_is_found_and_adopted(registry: RegistryStack) -> None:
    server = registry.server
    registry.apply()
    stack = registry.open()
    try:
        provider = stack.provider_for("azure", "azure.model")
        inputs = {**stack.state.resources()[V2].inputs, "version": "9"}
        token = "abcdef012345-7"
        made = provider.create(V2, inputs, StepContext(V2, "create", token))  # the journal never hears of it
        assert made.id == f"azureml:{MODEL}:9" and made.outputs["uri"] == f"{BLOB_URL}/{inputs['path']}"
        # recovery: find by the token (never an excluded id, never a stranger's token)
        assert provider.find(V2, inputs, StepContext(V2, "find", token)).id == made.id
        assert provider.find(V2, inputs, StepContext(V2, "find", token, frozenset({made.id}))) is None
        assert provider.find(V2, inputs, StepContext(V2, "find", "other-token-1")) is None
        # the create retried with the same token adopts what it made: nothing is uploaded or registered again
        server.calls.clear()
        assert provider.create(V2, inputs, StepContext(V2, "create", token)).id == made.id
        assert server.count("Blob.Put") == 0 and server.count("Models.CreateOrUpdateVersion") == 0
        # a registered version whose blob is missing (a crash between the two) is not "found": create finishes it
        server.objects["blobs"].pop(f"{STORAGE_ACCOUNT}/{BLOB_CONTAINER}/{inputs['path']}")
        assert provider.find(V2, inputs, StepContext(V2, "find", token)) is None
        assert provider.create(V2, inputs, StepContext(V2, "create", token)).id == made.id
        assert server.count("Blob.Put") == 1
        # someone else's version under the name is refused, not adopted
        with pytest.raises(MlplatError, match="not made by this apply"):
            provider.create(V2, inputs, StepContext(V2, "create", "other-token-1"))
        seen = provider.read(made.id, inputs)
        assert seen is not None and seen.inputs == inputs
        # Azure keeps a version's artifact immutable: a PUT with another path is refused
        with pytest.raises(MlplatError, match="Asset paths cannot be updated"):
            provider.azure.group("models").create_or_update(provider._entity(
                MODEL, "9", "azureml://datastores/workspaceblobstore/paths/elsewhere.json", {}))
        provider.delete(made.id, inputs, StepContext(V2, "delete"))
        assert "9" not in registry.versions() and inputs["path"] not in registry.blobs()
        assert provider.read(made.id, inputs) is None
        provider.delete(made.id, inputs, StepContext(V2, "delete"))  # already gone: success
    finally:
        stack.close()


def test_a_deployed_model_version_is_not_deleted(registry: RegistryStack) -> None:
    server = registry.server
    registry.apply()
    model_id = f"{WORKSPACE_PATH}/models/{MODEL}/versions/1"
    server.objects["online_deployments"]["vision-serve/production"] = {
        "name": "production", "properties": {"model": model_id}}
    stack = registry.open()
    try:
        provider = stack.provider_for("azure", "azure.model")
        record = stack.state.resources()[V1]
        with pytest.raises(MlplatError, match="Conflict"):
            provider.delete(record.id, record.inputs, StepContext(V1, "delete"))
        assert "1" in registry.versions() and PATH1 in registry.blobs()  # the blob stays with the version
    finally:
        stack.close()
    del server.objects["online_deployments"]["vision-serve/production"]
    registry.apply(destroy=True)
    assert registry.versions() == {} and registry.blobs() == {}


def test_each_version_forgotten_and_imported_by_its_id_plans_no_change(registry: RegistryStack) -> None:
    registry.apply()
    ids = {address: record.id for address, record in registry.records().items()}
    for address in (V1, V2):
        stack = registry.open()
        try:
            stack.forget(address)
        finally:
            stack.close()
    for address in (V1, V2):
        stack = registry.open()
        try:
            if address == V1:
                with pytest.raises(MlplatError):  # not an asset id
                    stack.import_resource(address, f"{WORKSPACE_PATH}/models/{MODEL}")
            stack.import_resource(address, ids[address])
        finally:
            stack.close()
    assert registry.changes() == {}


def test_data_asset_round_trip(registry: RegistryStack) -> None:
    """The drift baseline's provider on its own (the monitoring lowering makes it): upload, register, read,
    drift, delete."""
    server = registry.server
    baseline = registry.path.parent / "baseline.csv"
    baseline.write_text("x,y\n1,2\n3,4\n")
    digest = hashlib.sha256(baseline.read_bytes()).hexdigest()
    inputs = {"name": "vision-serve-baseline", "version": digest[:12], "path": "mlplat/monitoring/ep/baseline.csv",
              "source": str(baseline), "sha256": digest, "format": "csv"}
    address = "serve.monitoring_baseline.main"
    stack = registry.open()
    try:
        provider = stack.provider_for("azure", "azure.monitoring_baseline")
        made = provider.create(address, inputs, StepContext(address, "create", "tok-1"))
        assert made.id == f"azureml:vision-serve-baseline:{digest[:12]}"
        assert made.outputs["uri"] == f"{BLOB_URL}/mlplat/monitoring/ep/baseline.csv"
        version = server.objects["data_versions"][f"vision-serve-baseline/{digest[:12]}"]["properties"]
        assert version["dataType"] == "uri_file" and version["dataUri"].endswith(
            "/datastores/workspaceblobstore/paths/mlplat/monitoring/ep/baseline.csv")
        assert version["tags"]["mlplat-format"] == "csv" and version["tags"]["mlplat-sha256"] == digest
        seen = provider.read(made.id, inputs)
        assert seen is not None and {k: v for k, v in seen.inputs.items()} == inputs
        key = f"{STORAGE_ACCOUNT}/{BLOB_CONTAINER}/mlplat/monitoring/ep/baseline.csv"
        assert server.objects["blobs"][key]["content"] == baseline.read_bytes()
        server.edit("blobs", key, lambda b: b["metadata"].update(sha256="0" * 64))
        assert provider.read(made.id, inputs).inputs["sha256"] == "0" * 64
        provider.delete(made.id, inputs, StepContext(address, "delete"))
        assert not server.objects["data_versions"] and not server.objects["data"] and key not in server.objects["blobs"]
        assert provider.read(made.id, inputs) is None
    finally:
        stack.close()


def test_blob_artifact_store_round_trip(tmp_path: Path, azure_workspace: AzureWorkspace) -> None:
    from mlplat_plugins.azure.artifact_store import BlobArtifactStore
    from mlplat_plugins.azure.sdk import Clients
    from provisioner.artifacts import sha256_file

    server = azure_workspace.server
    store = BlobArtifactStore(Clients(server.subscription, server.resource_group, server.workspace, server.url),
                              "/mlplat/")
    source = tmp_path / "model.json"
    source.write_text('{"weights": [1, 2, 3]}')
    digest = sha256_file(source)

    uri = store.put(source, "iris/1/model.json", digest)
    assert uri == f"{BLOB_URL}/mlplat/artifacts/iris/1/model.json"
    assert store.reads(uri) and not store.reads("s3://b/k") and store.sha256(uri) == digest
    server.calls.clear()
    assert store.put(source, "iris/1/model.json", digest) == uri  # idempotent: nothing uploaded again
    assert server.count("Blob.Put") == 0
    with pytest.raises(MlplatError, match="changed since"):
        store.put(source, "iris/2/model.json", "f" * 64)

    store.fetch(uri, tmp_path / "out" / "model.json")
    assert (tmp_path / "out" / "model.json").read_bytes() == source.read_bytes()

    key = f"{STORAGE_ACCOUNT}/{BLOB_CONTAINER}/mlplat/artifacts/iris/1/model.json"
    server.edit("blobs", key, lambda b: b.update(content=b"written by az storage", metadata={}, content_md5=None))
    assert store.sha256(uri) == hashlib.sha256(b"written by az storage").hexdigest()  # no metadata: computed
    server.edit("blobs", key, lambda b: b["metadata"].update(sha256=digest))  # a lie: fetch refuses the bytes
    with pytest.raises(MlplatError, match="do not match"):
        store.fetch(uri, tmp_path / "bad.json")
    assert not (tmp_path / "bad.json").exists() and not list(tmp_path.glob(".bad.json.*"))

    store.delete(uri)
    assert store.sha256(uri) is None
    store.delete(uri)  # already gone
    with pytest.raises(MlplatError, match="does not exist"):
        store.fetch(uri, tmp_path / "gone.json")
    assert not (tmp_path / "gone.json").exists() and not list(tmp_path.glob(".gone.json.*"))
    with pytest.raises(MlplatError, match="not an https"):
        store.sha256("https://example.com/x")


def test_a_model_from_another_targets_artifact_is_registered_in_place(registry: RegistryStack) -> None:
    """A hybrid endpoint's model: the core copied the artifact into this target's artifact store; the version points
    at that blob (as an azureml:// datastore path) and deleting the version leaves the blob to the core."""
    from mlplat_plugins.azure.artifact_store import BlobArtifactStore
    from provisioner.artifacts import sha256_file

    server = registry.server
    stack = registry.open()
    try:
        target = stack.targets["azure"]
        source = registry.artifact
        digest = sha256_file(source)
        uri = BlobArtifactStore(target.clients(), "mlplat").put(source, "iris/1/iris-v1.json", digest)
        address = "serve.model.production"
        inputs = {"name": "vision-serve-production", "version": "1", "uri": uri, "sha256": digest,
                  "framework": "mlplat-linear"}
        provider = stack.provider_for("azure", "azure.model")
        made = provider.create(address, inputs, StepContext(address, "create", "tok-2"))
        assert made.id == "azureml:vision-serve-production:1" and made.outputs["uri"] == uri
        version = server.objects["model_versions"]["vision-serve-production/1"]["properties"]
        assert version["modelUri"].endswith("/datastores/workspaceblobstore/paths/mlplat/artifacts/iris/1/iris-v1.json")
        seen = provider.read(made.id, inputs)
        assert seen is not None and seen.inputs == inputs and seen.outputs["uri"] == uri
        # an artifact already in Azure ML terms (azureml://) is registered as given
        other = {**inputs, "version": "2", "uri": "azureml://datastores/workspaceblobstore/paths/shared/m.json"}
        provider.create(address, other, StepContext(address, "create", "tok-3"))
        assert provider.read("azureml:vision-serve-production:2", other).inputs == other
        for id, given in ((made.id, inputs), ("azureml:vision-serve-production:2", other)):
            provider.delete(id, given, StepContext(address, "delete"))
        assert not server.objects["model_versions"] and not server.objects["models"]
        assert f"{STORAGE_ACCOUNT}/{BLOB_CONTAINER}/mlplat/artifacts/iris/1/iris-v1.json" in server.objects["blobs"]
    finally:
        stack.close()
