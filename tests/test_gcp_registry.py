"""The gcp registry end to end: an Artifact Registry repository, model artifacts in GCS and versions in the Vertex AI
Model Registry, through the engine (provisioner.api.Stack) and the real Google clients against tests/gcp_fake. Every
claim about what exists is checked on the fake server's objects, never through the providers."""

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

from conftest import STACKS, GcpProject, require_module

require_module("google.cloud.aiplatform_v1", "the gcp extra is part of the test extra")

MODEL = "projects/mlplat-test/locations/us-central1/models/vision-models-iris"
REPOSITORY = "projects/mlplat-test/locations/us-central1/repositories/vision-models"
V1 = "models.model_version.iris:1"
V2 = "models.model_version.iris:2"
A1 = "models.model_artifact.iris:1"
A2 = "models.model_artifact.iris:2"


class RegistryStack(StackFile):
    """A stack with a registry on gcp: one image, two versions of one model, artifacts beside the stack file."""

    def __init__(self, directory: Path, project: GcpProject) -> None:
        self.project, self.server = project, project.server
        shutil.copytree(STACKS / "models", directory / "models")
        super().__init__(directory / "stack.yaml", {
            "apiVersion": "mlplat/v1", "metadata": {"name": "vision"}, "target": "gcp",
            "targets": {"gcp": project.settings()},
            "registry": {"name": "models", "images": [{"name": "iris-server"}],
                         "models": [{"name": "iris", "version": "1", "artifact": "models/iris-v1.json"},
                                    {"name": "iris", "version": "2", "artifact": "models/iris-v2.json"}]},
        })

    @property
    def artifact(self) -> Path:
        return self.path.parent / "models" / "iris-v1.json"

    # the console: the fake's objects
    def versions(self) -> dict[str, list[str]]:
        """version id → aliases, of the stack's model."""
        found = {k.rsplit("@", 1)[1]: sorted(v["versionAliases"])
                 for k, v in self.server.objects["model_versions"].items() if k.startswith(MODEL + "@")}
        return dict(sorted(found.items(), key=lambda kv: int(kv[0])))

    def objects(self) -> dict[str, dict[str, Any]]:
        return {o["name"]: o for o in self.server.gcs_objects(self.project.bucket)}


@pytest.fixture
def registry(tmp_path: Path, gcp_project: GcpProject) -> Iterator[RegistryStack]:
    yield RegistryStack(tmp_path, gcp_project)


def test_registry_lifecycle(registry: RegistryStack) -> None:
    server = registry.server
    registry.apply()

    repo = server.objects["repositories"][REPOSITORY]
    assert repo["format"] == "DOCKER" and repo["description"] == "mlplat:models.artifact_repository.main"
    assert repo["labels"]["mlplat-stack"] == "vision" and repo["labels"]["mlplat-token"]
    objects = registry.objects()
    assert set(objects) == {"mlplat/models/iris/1/iris-v1.json", "mlplat/models/iris/2/iris-v2.json"}
    first = objects["mlplat/models/iris/1/iris-v1.json"]
    assert first["metadata"]["mlplat-address"] == A1 and len(first["metadata"]["sha256"]) == 64
    assert server.gcs_read(registry.project.bucket, first["name"]) == registry.artifact.read_bytes()
    assert registry.versions() == {"1": ["default", "v1"], "2": ["v2"]}
    version = server.objects["model_versions"][MODEL + "@1"]
    assert version["artifactUri"] == "gs://mlplat-artifacts/mlplat/models/iris/1"
    assert version["containerSpec"]["imageUri"] == ("us-central1-docker.pkg.dev/mlplat-test/vision-models/"
                                                    "iris-server:latest")
    assert version["description"] == f"mlplat:{V1}" and version["labels"]["mlplat-framework"] == "mlplat-linear"
    outputs = registry.outputs()
    assert outputs["models.model.iris:1"] == "gs://mlplat-artifacts/mlplat/models/iris/1/iris-v1.json"
    assert outputs["models.version.iris:2"] == MODEL + "@2"
    assert outputs["models.repository"] == "us-central1-docker.pkg.dev/mlplat-test/vision-models"
    assert registry.changes() == {}

    # a new artifact: uploaded over the object in place, the version replaced (new version first, then the old
    # one deleted; the new one takes the alias, and "default" moves off the deleted version)
    registry.artifact.write_text(registry.artifact.read_text().replace("60 epochs", "80 epochs"))
    assert registry.changes() == {A1: "update", V1: "replace"}
    server.calls.clear()
    registry.apply()
    assert server.count("UploadModel") == 1 and server.count("DeleteModelVersion") == 1
    assert server.count("DeleteModel") == 0 and server.count("InsertObject") == 1
    assert registry.versions() == {"2": ["v2"], "3": ["default", "v1"]}
    assert registry.records()[V1].id == MODEL + "@3"
    assert server.gcs_read(registry.project.bucket, first["name"]) == registry.artifact.read_bytes()
    assert registry.changes() == {}

    # an alias taken off out of band is drift on `alias`, put back in place
    server.edit("model_versions", MODEL + "@2", lambda v: v["versionAliases"].remove("v2"))
    assert registry.changes() == {V2: "update"}
    registry.apply()
    assert registry.versions()["2"] == ["v2"] and registry.changes() == {}

    # an object replaced out of band is drift on sha256; one deleted out of band reads as gone
    server.gcs_write(registry.project.bucket, first["name"], b'{"tampered": true}')
    assert registry.changes() == {A1: "update"}
    registry.apply()
    assert server.gcs_read(registry.project.bucket, first["name"]) == registry.artifact.read_bytes()
    server.gcs_delete(registry.project.bucket, "mlplat/models/iris/2/iris-v2.json")
    assert registry.changes() == {A2: "create", V2: "replace"}  # the new object's uri is known after apply only
    registry.apply()
    assert registry.versions() == {"3": ["default", "v1"], "4": ["v2"]}
    assert set(registry.objects()) == {"mlplat/models/iris/1/iris-v1.json", "mlplat/models/iris/2/iris-v2.json"}
    assert registry.changes() == {}

    registry.apply(destroy=True)
    assert registry.versions() == {} and not server.objects["repositories"] and registry.objects() == {}
    assert server.count("DeleteModel") == 1  # the last version deletes the model


def test_throttled_writes_and_reads_are_retried(registry: RegistryStack) -> None:
    server = registry.server
    events: list[Event] = []
    with server.throttle(1, "writes"):
        registry.apply(events)
    retried = {e.address.split(".")[1] for e in events if e.kind == "step-retry"}  # the first call per action
    assert retried == {"artifact_repository", "model_artifact", "model_version"}
    assert registry.versions() == {"1": ["default", "v1"], "2": ["v2"]} and len(registry.objects()) == 2
    with server.throttle(1, "reads"):
        assert registry.changes() == {}
    registry.artifact.write_text(registry.artifact.read_text().replace("60 epochs", "70 epochs"))
    with server.throttle(1, "writes"):
        registry.apply()
    assert registry.versions() == {"2": ["v2"], "3": ["default", "v1"]}
    with server.throttle(1, "writes"):
        registry.apply(destroy=True)
    assert registry.versions() == {} and not server.objects["repositories"] and registry.objects() == {}


def test_an_upload_interrupted_after_its_checkpoint_is_resumed_not_issued_again(registry: RegistryStack) -> None:
    server = registry.server
    registry.apply()
    stack = registry.open()
    try:
        provider = stack.provider_for("gcp", "gcp.model_version")
        record = stack.state.resources()[V2]
        inputs = {**record.inputs, "sha256": "0" * 64, "alias": "v9"}
        server.operation_polls = 3
        server.calls.clear()

        class Crash(Exception):
            pass

        checkpoints: list[str] = []

        def crash(operation: str) -> None:
            checkpoints.append(operation)
            raise Crash

        with pytest.raises(Crash):
            provider.create(V2, inputs, StepContext(V2, "create", "abcdef012345-7", on_checkpoint=crash))
        assert server.count("UploadModel") == 1 and checkpoints[0].startswith(f"UploadModel {MODEL}/operations/")
        made = provider.create(V2, inputs, StepContext(V2, "create", "abcdef012345-7", operation=checkpoints[0]))
        assert server.count("UploadModel") == 1 and made.id == MODEL + "@3"
        assert registry.versions()["3"] == ["v9"]
        assert provider.find(V2, inputs, StepContext(V2, "find", "abcdef012345-7")).id == made.id
        assert provider.find(V2, inputs, StepContext(V2, "find", "abcdef012345-7", frozenset({made.id}))) is None
        seen = provider.read(made.id, inputs)
        assert seen is not None and seen.inputs == inputs
        # a model version refuses an artifact outside Cloud Storage
        with pytest.raises(MlplatError, match="only from gs://"):
            provider.create(V2, {**inputs, "artifact_uri": "s3://b/k"}, StepContext(V2, "create", "x"))
        provider.delete(made.id, inputs, StepContext(V2, "delete"))
        assert "3" not in registry.versions()
        assert provider.read(made.id, inputs) is None
        provider.delete(made.id, inputs, StepContext(V2, "delete"))  # already gone: success
    finally:
        stack.close()


def test_gcs_artifact_store_round_trip(tmp_path: Path, gcp_project: GcpProject) -> None:
    from mlplat_plugins.gcp.artifact_store import GcsArtifactStore
    from mlplat_plugins.gcp.sdk import Clients
    from provisioner.artifacts import sha256_file

    server = gcp_project.server
    store = GcsArtifactStore(Clients(server.project, server.region, server.url), gcp_project.bucket, "/mlplat/")
    source = tmp_path / "model.json"
    source.write_text('{"weights": [1, 2, 3]}')
    digest = sha256_file(source)

    uri = store.put(source, "iris/1/model.json", digest)
    assert uri == "gs://mlplat-artifacts/mlplat/artifacts/iris/1/model.json"
    assert store.reads(uri) and not store.reads("s3://b/k") and store.sha256(uri) == digest
    server.calls.clear()
    assert store.put(source, "iris/1/model.json", digest) == uri  # idempotent: nothing uploaded again
    assert server.count("InsertObject") == 0
    with pytest.raises(MlplatError, match="changed since"):
        store.put(source, "iris/2/model.json", "f" * 64)

    store.fetch(uri, tmp_path / "out" / "model.json")
    assert (tmp_path / "out" / "model.json").read_bytes() == source.read_bytes()

    server.gcs_write(gcp_project.bucket, "mlplat/artifacts/iris/3/model.json", b"written by gcloud")
    other = "gs://mlplat-artifacts/mlplat/artifacts/iris/3/model.json"
    assert store.sha256(other) == hashlib.sha256(b"written by gcloud").hexdigest()  # no metadata: computed

    store.delete(uri)
    assert store.sha256(uri) is None
    store.delete(uri)  # already gone
    with pytest.raises(MlplatError, match="does not exist"):
        store.fetch(uri, tmp_path / "gone.json")
    assert not (tmp_path / "gone.json").exists() and not list(tmp_path.glob(".gone.json.*"))


def test_each_resource_forgotten_and_imported_by_its_id_plans_no_change(registry: RegistryStack) -> None:
    registry.apply()
    ids = {address: record.id for address, record in registry.records().items()}
    assert ids[V1] == MODEL + "@1" and ids[A1] == "mlplat-artifacts/mlplat/models/iris/1/iris-v1.json"
    assert ids["models.artifact_repository.main"] == REPOSITORY
    for address in (V2, V1, A2, A1, "models.artifact_repository.main"):  # dependents first, as a user would
        stack = registry.open()
        try:
            stack.forget(address)
        finally:
            stack.close()
    for address in ("models.artifact_repository.main", A1, A2, V1, V2):
        stack = registry.open()
        try:
            if address == V1:
                with pytest.raises(MlplatError):  # not a model version's id
                    stack.import_resource(address, "projects/mlplat-test/locations/us-central1/endpoints/1")
            stack.import_resource(address, ids[address])
        finally:
            stack.close()
    assert registry.changes() == {}
    server = registry.server
    stack = registry.open()
    try:  # the repository's labels and description are set again in place (every input is force_new)
        provider = stack.provider_for("gcp", "gcp.artifact_repository")
        inputs = stack.state.resources()["models.artifact_repository.main"].inputs
        server.edit("repositories", REPOSITORY, lambda r: r["labels"].pop("mlplat-stack"))
        assert provider.update(REPOSITORY, inputs, inputs, StepContext("x", "update"))["uri"] == (
            "us-central1-docker.pkg.dev/mlplat-test/vision-models")
        assert server.objects["repositories"][REPOSITORY]["labels"]["mlplat-stack"] == "vision"
        assert server.count("UpdateRepository") == 1
    finally:
        stack.close()
