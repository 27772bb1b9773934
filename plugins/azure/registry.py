"""The registry on azure: per model version an Azure ML model version whose artifact is a blob in the workspace's
default blob datastore, and (for drift monitoring) the baseline as an Azure ML data asset version.

Model and data asset versions are immutable and keyed by name + version (an ARM PUT of an existing version may
change its tags, never its path): every input that reaches the cloud is force_new and a change replaces the version
destroy-first. The blob's metadata and the version's tags both record the artifact's sha256, so an artifact
replaced or deleted out of band shows as drift on `sha256` (and is replaced: uploaded and registered again).
"""

from __future__ import annotations

import re
from typing import Any

from mlplat_plugins.azure import artifact_store as blobs
from mlplat_plugins.azure.artifact_store import BlobStore
from mlplat_plugins.azure.base import TOKEN_TAG, AzureProvider
from provisioner.cloud import CloudApiError
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

SHA256_TAG = "mlplat-sha256"
FRAMEWORK_TAG = "mlplat-framework"
FORMAT_TAG = "mlplat-format"
#: what a blob read back says when the blob an asset points at is gone (drift on sha256: the asset is replaced)
MISSING = "missing"
#: an asset's datastore path, short (`azureml://datastores/D/paths/P`) or as azure-ai-ml resolves it (long)
DATASTORE_URI = re.compile(r"azureml://(?:subscriptions/[^/]+/resource[gG]roups/[^/]+/workspaces/[^/]+/)?"
                           r"datastores/(?P<datastore>[^/]+)/paths/(?P<path>.+)")
ASSET_ID = re.compile(r"azureml:(?P<name>[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}):(?P<version>[a-zA-Z0-9][a-zA-Z0-9_.-]*)")


def _short(uri: str) -> str:
    """An azureml:// datastore URI in its short form (what the stack's inputs give); other URIs unchanged."""
    found = DATASTORE_URI.fullmatch(uri or "")
    return f"azureml://datastores/{found['datastore']}/paths/{found['path']}" if found else uri


class _Asset(AzureProvider):
    """What model and data asset versions share: the blob upload, the version's tags, get/delete of a version,
    and removing the container once its last version is gone."""

    #: MLClient operations group; the tag holding the kind's extra input; that input's name
    group_name = ""
    extra_tag = ""
    extra_input = ""
    what = ""
    #: `source` (a local path) is not the artifact: a moved stack directory changes nothing in the cloud
    force_new = frozenset({"name", "version", "path", "uri", "sha256", "framework", "format"})
    write_only = frozenset({"source"})
    import_id = ASSET_ID

    # -- the SDK --------------------------------------------------------------------------------------------

    def _entity(self, name: str, version: str, path: str, tags: dict[str, str]) -> Any:
        raise NotImplementedError

    def _versions_operation(self) -> Any:
        """The generated ARM client of the kind's versions (MLClient exposes no delete of a workspace asset)."""
        raise NotImplementedError

    def _containers_operation(self) -> Any:
        raise NotImplementedError

    def _get(self, name: str, version: str) -> Any | None:
        return self.get(lambda: self.azure.group(self.group_name).get(name=name, version=version))

    def _scope(self) -> dict[str, str]:
        return {"resource_group_name": self.azure.resource_group, "workspace_name": self.azure.workspace}

    def _client(self, operation: Any, label: str) -> Any:
        from mlplat_plugins.azure.sdk import Client

        return Client(operation, label)

    # -- shapes ---------------------------------------------------------------------------------------------

    @staticmethod
    def _id(inputs: dict[str, Any]) -> str:
        return f"azureml:{inputs['name']}:{inputs['version']}"

    def _outputs(self, inputs: dict[str, Any], uri: str) -> dict[str, Any]:
        return {"id": self._id(inputs), "name": inputs["name"], "version": inputs["version"], "uri": uri}

    def _asset_path(self, inputs: dict[str, Any], store: BlobStore | None) -> tuple[str, str]:
        """(the path the asset records, the blob's https URL) for these inputs."""
        if "path" in inputs:
            assert store is not None
            return store.short_path(inputs["path"]), store.url(inputs["path"])
        uri = inputs["uri"]
        if uri.startswith("https://"):
            account, container, name = blobs.split_url(uri)
            store = store or blobs.default_datastore(self.azure)
            if (account, container) == (store.account, store.container):
                return store.short_path(name), uri
        return _short(uri), uri

    def _tags(self, address: str, inputs: dict[str, Any], ctx: StepContext | None) -> dict[str, str]:
        return {**self.tags(address, ctx), SHA256_TAG: inputs["sha256"],
                self.extra_tag: str(inputs.get(self.extra_input) or "")}

    # -- create / find --------------------------------------------------------------------------------------

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name, version = inputs["name"], inputs["version"]
        existing = self._get(name, version)
        if existing is not None and (not ctx.token or (existing.tags or {}).get(TOKEN_TAG) != ctx.token):
            raise self.refuse_stranger(f"{self.what} {name}", f"version {version}")
        store = blobs.default_datastore(self.azure) if "path" in inputs else None
        path, url = self._asset_path(inputs, store)
        if store is not None:
            props = blobs.properties(self.azure, store.account, store.container, inputs["path"])
            if blobs.recorded_sha256(props) != inputs["sha256"]:
                metadata = {blobs.STACK_METADATA: self.target.context.stack_name, blobs.ADDRESS_METADATA: address,
                            **({blobs.TOKEN_METADATA: ctx.token} if ctx.token else {})}
                blobs.upload(self.azure, store.account, store.container, inputs["path"], inputs["source"],
                       inputs["sha256"], metadata)
        if existing is None:  # else: this create's own version, made before a crash
            self.azure.group(self.group_name).create_or_update(
                self._entity(name, version, path, self._tags(address, inputs, ctx)))
        return Created(self._id(inputs), self._outputs(inputs, url))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name, version = inputs["name"], inputs["version"]
        seen = self.find_named(self._id(inputs), ctx, lambda: self._get(name, version), lambda v: v.tags)
        if seen is None:
            return None
        observed = self.read(self._id(inputs), inputs)
        if observed is None or observed.inputs.get("sha256") != inputs["sha256"]:
            return None  # registered, but its blob is not (all) there: create again (it adopts the version)
        return Created(self._id(inputs), observed.outputs)

    # -- read -----------------------------------------------------------------------------------------------

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        found = ASSET_ID.fullmatch(id)
        if found is None:
            return None
        seen = self._get(found["name"], found["version"])
        if seen is None:
            return None
        tags = dict(seen.tags or {})
        recorded = _short(str(seen.path or ""))
        observed: dict[str, Any] = {**inputs, "name": seen.name, "version": str(seen.version),
                                    self.extra_input: tags.get(self.extra_tag) or None,
                                    "sha256": tags.get(SHA256_TAG, "unknown")}
        at = DATASTORE_URI.fullmatch(recorded)
        if "uri" in inputs:  # a model registered from another target's artifact: its URI as given, if it is this
            wanted, url = self._asset_path(inputs, None) if isinstance(inputs["uri"], str) else ("", "")
            observed["uri"] = inputs["uri"] if recorded == wanted else recorded
            return Observed(observed, self._outputs(observed, url if recorded == wanted else recorded))
        if at is None:  # not in a datastore (imported from elsewhere): the next apply replaces it
            observed["path"] = recorded
            return Observed(observed, self._outputs(observed, recorded))
        store = blobs.datastore(self.azure, at["datastore"])
        observed["path"] = at["path"]
        props = blobs.properties(self.azure, store.account, store.container, at["path"])
        # gone, or rewritten without mlplat's metadata
        blob = blobs.recorded_sha256(props) or (MISSING if props is None else "unknown")
        if observed["sha256"] == inputs.get("sha256"):  # the version's tag agrees: the blob says the rest
            observed["sha256"] = blob
        return Observed(observed, self._outputs(observed, store.url(at["path"])))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Only `source` (where the stack's file is) changes in place, which changes nothing in Azure."""
        observed = self.read(id, desired)
        if observed is None:
            raise MlplatError(f"{self.what} {id} disappeared", hint="apply again: it is then created")
        return observed.outputs

    # -- delete ---------------------------------------------------------------------------------------------

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """The version (ARM DELETE; Azure refuses while a deployment uses a model), its blob (not another
        target's artifact, which the core's copy owns), and the container once it has no version left."""
        found = ASSET_ID.fullmatch(id)
        name, version = (found["name"], found["version"]) if found else (inputs["name"], inputs["version"])
        seen = self._get(name, version)
        raw = self._versions_operation()
        versions = self._client(raw, f"{self.group_name}.versions")
        if seen is not None:
            self.get(lambda: versions.delete(name=name, version=version, **self._scope()))
        if "path" in inputs:
            recorded = DATASTORE_URI.fullmatch(_short(str(seen.path or ""))) if seen is not None else None
            if recorded is not None:
                store, path = blobs.datastore(self.azure, recorded["datastore"]), recorded["path"]
            else:
                store, path = blobs.default_datastore(self.azure), inputs["path"]
            blobs.delete_blob(self.azure, store.account, store.container, path)
        left = self.get(lambda: blobs.azure_call(f"{self.group_name}.versions.list",
                                                 lambda: list(raw.list(name=name, top=1, **self._scope()))))
        if left == []:
            containers = self._client(self._containers_operation(), f"{self.group_name}.containers")
            try:
                self.get(lambda: containers.delete(name=name, **self._scope()))
            except CloudApiError as err:  # a version made meanwhile (a replace's create): the container stays
                if err.status != 409:
                    raise


class ModelVersion(_Asset):
    """An Azure ML model version (`azureml:<name>:<version>`, type custom_model), its artifact a blob of the
    workspace's default datastore at `path` (uploaded from `source`), or, for an endpoint serving another target's
    registry, the artifact the core copied into this target's artifact store (`uri`).

    Import ID: `azureml:<name>:<version>`."""

    group_name = "models"
    extra_tag = FRAMEWORK_TAG
    extra_input = "framework"
    what = "Azure ML model"

    def _entity(self, name: str, version: str, path: str, tags: dict[str, str]) -> Any:
        from azure.ai.ml.entities import Model

        return Model(name=name, version=version, path=path, type="custom_model", tags=tags)

    def _versions_operation(self) -> Any:
        return self.azure.ml.models._model_versions_operation

    def _containers_operation(self) -> Any:
        return self.azure.ml.models._model_container_operation


class DataAsset(_Asset):
    """An Azure ML data asset version (uri_file): a drift baseline uploaded to the workspace's default datastore.

    Import ID: `azureml:<name>:<version>`."""

    group_name = "data"
    extra_tag = FORMAT_TAG
    extra_input = "format"
    what = "Azure ML data asset"

    def _entity(self, name: str, version: str, path: str, tags: dict[str, str]) -> Any:
        from azure.ai.ml.constants import AssetTypes
        from azure.ai.ml.entities import Data

        return Data(name=name, version=version, path=path, type=AssetTypes.URI_FILE, tags=tags)

    def _versions_operation(self) -> Any:
        return self.azure.ml.data._operation

    def _containers_operation(self) -> Any:
        return self.azure.ml.data._container_operation
