"""The registry on gcp: an Artifact Registry Docker repository for images, a GCS object per model artifact (and per
drift baseline), and a version per declared model version in the Vertex AI Model Registry."""

from __future__ import annotations

import posixpath
import re
from typing import Any

from mlplat_plugins.gcp.artifact_store import SHA256_METADATA, delete_blob, get_blob, upload
from mlplat_plugins.gcp.base import LONG, STACK_LABEL, TOKEN_LABEL, GcpProvider, describe, label_value
from provisioner.cloud import CloudApiError, operation_of, or_existing, unless_missing
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

#: custom metadata of a GCS object naming what made it (the engine's token) and its mlplat address
TOKEN_METADATA = TOKEN_LABEL
ADDRESS_METADATA = "mlplat-address"
STACK_METADATA = STACK_LABEL
#: labels of a model version holding what a label can of its inputs (the full sha256 is in its version description)
SHA256_LABEL = "mlplat-sha256"
FRAMEWORK_LABEL = "mlplat-framework"
GCS_BUCKET = re.compile(r"[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]")


class ArtifactRepository(GcpProvider):
    """A Docker repository in Artifact Registry (`projects/P/locations/L/repositories/ID`), its address in its
    description. Deleting it deletes the images pushed to it, as `gcloud artifacts repositories delete` does.

    Import ID: the repository's resource name."""

    force_new = frozenset({"name", "location", "format"})
    import_id = re.compile(r"projects/[^/]+/locations/[a-z0-9-]+/repositories/[a-z]([a-z0-9-]*[a-z0-9])?")

    def _name(self, inputs: dict[str, Any]) -> str:
        return f"projects/{self.project}/locations/{inputs['location']}/repositories/{inputs['name']}"

    def _get(self, name: str) -> Any | None:
        return unless_missing(lambda: self.gcp.artifact_registry.get_repository(name=name))

    def _outputs(self, name: str) -> dict[str, Any]:
        _, project, _, location, _, repo = name.split("/")
        return {"name": name, "uri": f"{location}-docker.pkg.dev/{project}/{repo}"}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = self._name(inputs)
        client = self.gcp.artifact_registry
        repository = {"format_": inputs["format"], "description": describe(address), "labels": self.labels(ctx)}
        or_existing(lambda: self.run_operation(
            ctx, "CreateRepository", lambda: client.create_repository(request={
                "parent": name.rsplit("/repositories/", 1)[0], "repository_id": inputs["name"],
                "repository": repository}), client, f"repository {name}"),
            lambda: self._adopt(name, ctx))
        return Created(name, self._outputs(name))

    def _adopt(self, name: str, ctx: StepContext) -> Any:
        seen = self.find_named(name, ctx, lambda: self._get(name), lambda r: dict(r.labels))
        if seen is None:
            raise MlplatError(f"Artifact Registry repository {name} exists and was not made by this apply",
                              hint="delete or rename it, or rename the registry")
        return seen

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        repo = self._get(id)
        if repo is None:
            return None
        _, _, _, location, _, repo_id = repo.name.split("/")
        observed = {"name": repo_id, "location": location, "format": repo.format_.name}
        return Observed(observed, self._outputs(repo.name))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Only the description and labels change in place (every input is force_new): set them again."""
        repo = self._get(id)
        if repo is None:
            raise MlplatError(f"Artifact Registry repository {id} disappeared")
        labels = {**dict(repo.labels), **self.labels()}
        self.gcp.artifact_registry.update_repository(request={
            "repository": {"name": id, "description": repo.description, "labels": labels},
            "update_mask": {"paths": ["description", "labels"]}})
        return self._outputs(id)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = self._name(inputs)
        seen = self.find_named(name, ctx, lambda: self._get(name), lambda r: dict(r.labels))
        return Created(name, self._outputs(name)) if seen is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        client = self.gcp.artifact_registry
        unless_missing(lambda: self.run_operation(ctx, "DeleteRepository",
                                                  lambda: client.delete_repository(name=id), client,
                                                  f"repository {id} deletion"))


class GcsObject(GcpProvider):
    """A GCS object uploaded from a local file (a model artifact, a drift baseline). Its custom metadata holds the
    file's sha256, so an object replaced out of band shows as drift on `sha256`, and the stack, address and token
    of the apply that wrote it. A new file is uploaded over the object (in place).

    Import ID: `bucket/object name`. An object without mlplat's sha256 metadata reports its sha256 as "unknown":
    the next apply uploads the stack's file over it once, with the metadata."""

    force_new = frozenset({"bucket", "key"})
    write_only = frozenset({"source"})

    @staticmethod
    def _outputs(inputs: dict[str, Any]) -> dict[str, Any]:
        return {"uri": f"gs://{inputs['bucket']}/{inputs['key']}"}

    def _put(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        metadata = {STACK_METADATA: self.target.context.stack_name, ADDRESS_METADATA: address,
                    **({TOKEN_METADATA: ctx.token} if ctx.token else {})}
        upload(self.gcp, inputs["bucket"], inputs["key"], inputs["source"], inputs["sha256"], metadata)

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        self._put(address, inputs, ctx)
        return Created(f"{inputs['bucket']}/{inputs['key']}", self._outputs(inputs))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        blob = get_blob(self.gcp, inputs["bucket"], inputs["key"])
        if blob is None:
            return None
        observed = {k: v for k, v in inputs.items() if k not in self.write_only}
        observed["sha256"] = (blob.metadata or {}).get(SHA256_METADATA, "unknown")
        return Observed(observed, self._outputs(inputs))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        bucket, _, key = id.partition("/")
        if not GCS_BUCKET.fullmatch(bucket) or not key:
            return None
        return self.read(id, {**inputs, "bucket": bucket, "key": key})

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        self._put(ctx.address, desired, ctx)
        return self._outputs(desired)

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        id = f"{inputs['bucket']}/{inputs['key']}"
        blob = get_blob(self.gcp, inputs["bucket"], inputs["key"]) if id not in ctx.exclude else None
        metadata = (blob.metadata if blob is not None else None) or {}
        if blob is None or metadata.get(SHA256_METADATA) != inputs["sha256"]:
            return None  # upload again: writing the same name again is idempotent
        if ctx.token and metadata.get(TOKEN_METADATA) != ctx.token:
            return None
        return Created(id, self._outputs(inputs))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        delete_blob(self.gcp, inputs["bucket"], inputs["key"])


class ModelVersion(GcpProvider):
    """A version of a model in the Vertex AI Model Registry (`projects/P/locations/L/models/ID@<version id>`).

    The first version of a model id makes the model (UploadModel with model_id), later ones are uploaded under it
    (parent_model). The version carries the stack and token labels, the sha256 (a label holds its first 63
    characters; the version description the whole, with the artifact file's URI), its declared alias, and its
    address in its description. Vertex numbers versions itself, so `find` looks for the version carrying the
    token. Everything but the alias is immutable: a change uploads a new version (which takes the alias over)
    before the old one is deleted; the last version deletes the model.

    Import ID: the versioned name."""

    force_new = frozenset({"model_id", "display_name", "artifact_uri", "image", "framework", "sha256"})
    replace_mode = "create_before_destroy"
    timeouts = LONG
    import_id = re.compile(r"projects/[^/]+/locations/[a-z0-9-]+/models/[a-z0-9][a-z0-9-]*@\d+")

    def _model(self, inputs: dict[str, Any]) -> str:
        return f"{self.location}/models/{inputs['model_id']}"

    @staticmethod
    def _outputs(model: str, version_id: str) -> dict[str, Any]:
        return {"name": f"{model}@{version_id}", "model": model, "version_id": version_id}

    @staticmethod
    def _artifact_dir(uri: str) -> str:
        if not isinstance(uri, str) or not uri.startswith("gs://"):
            raise MlplatError(f"model artifact {uri!r} is not in Cloud Storage: Vertex AI loads models only from "
                              "gs:// URIs", hint="set targets.<gcp>.bucket so the artifact is uploaded to GCS (or "
                                                 "copied there from another target's registry)")
        return posixpath.dirname(uri)

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        model = self._model(inputs)
        client = self.gcp.models
        body = {
            "display_name": inputs["display_name"], "description": describe(address),
            "version_description": f"artifact={inputs['artifact_uri']} sha256={inputs['sha256']}",  # see _recorded
            "artifact_uri": self._artifact_dir(inputs["artifact_uri"]),
            "container_spec": {"image_uri": inputs["image"]},
            "version_aliases": [inputs["alias"]] if inputs.get("alias") else [],
            "labels": {**self.labels(ctx), SHA256_LABEL: label_value(inputs["sha256"]),
                       FRAMEWORK_LABEL: label_value(inputs["framework"])},
        }

        def start() -> Any:
            request = {"parent": self.location, "model": body}
            if unless_missing(lambda: client.get_model(name=model)) is None:
                try:
                    return client.upload_model(request={**request, "model_id": inputs["model_id"]})
                except CloudApiError as err:  # made meanwhile (another version's create): add the version to it
                    if not err.already_exists:
                        raise
            return client.upload_model(request={**request, "parent_model": model})

        self.run_operation(ctx, "UploadModel", start, client, f"model version of {model}")
        made = self._find(model, address, ctx)
        if made is None:
            raise MlplatError(f"the upload of a version of {model} finished, but no version carries this apply's "
                              f"token {ctx.token}", hint="someone may have deleted it meanwhile; apply again")
        return made

    def _versions(self, model: str) -> list[Any] | None:
        return unless_missing(lambda: list(self.gcp.models.list_model_versions(name=model)))

    def _find(self, model: str, address: str, ctx: StepContext) -> Created | None:
        found = []
        for version in self._versions(model) or []:
            name = f"{model}@{version.version_id}"
            if name in ctx.exclude:
                continue
            mine = (self.token_of(dict(version.labels)) == ctx.token) if ctx.token else (
                version.description == describe(address))
            if mine:
                found.append(version)
        if not found:
            return None
        newest = max(found, key=lambda v: int(v.version_id))
        return Created(f"{model}@{newest.version_id}", self._outputs(model, newest.version_id))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        return self._find(self._model(inputs), address, ctx)

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        model, _, version_id = id.partition("@")
        version = unless_missing(lambda: self.gcp.models.get_model(name=id))
        if version is None or version.version_id != version_id:
            return None
        recorded = _recorded(version.version_description)
        labels = dict(version.labels)
        aliases = [a for a in version.version_aliases if a != "default"]
        artifact = recorded.get("artifact")
        framework = inputs.get("framework")
        observed = {
            **inputs,
            "model_id": model.rsplit("/", 1)[1],
            "display_name": version.display_name,
            "alias": inputs.get("alias") if inputs.get("alias") in aliases else (aliases[0] if aliases else None),
            "artifact_uri": artifact if artifact and posixpath.dirname(artifact) == version.artifact_uri.rstrip("/")
            else version.artifact_uri,
            "image": version.container_spec.image_uri,
            "framework": framework if isinstance(framework, str) and label_value(framework) == labels.get(
                FRAMEWORK_LABEL) else labels.get(FRAMEWORK_LABEL),
            "sha256": recorded.get("sha256") or labels.get(SHA256_LABEL) or "unknown",
        }
        return Observed(observed, self._outputs(model, version_id))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        """Only the alias changes in place: the desired one is given to this version (Vertex takes it from the
        version holding it), the old one removed."""
        aliases = [desired["alias"]] if desired.get("alias") else []
        if prior.get("alias") and prior["alias"] != desired.get("alias"):
            aliases.append(f"-{prior['alias']}")
        if aliases:
            self.gcp.models.merge_version_aliases(name=id, version_aliases=aliases)
        model, _, version_id = id.partition("@")
        return self._outputs(model, version_id)

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """A model's last version deletes the model (Vertex refuses to delete its only version); the `default`
        alias, which one version must hold, first moves to the newest other version."""
        client = self.gcp.models
        model, _, version_id = id.partition("@")
        resumed = operation_of(ctx, "DeleteModel") or operation_of(ctx, "DeleteModelVersion")
        if resumed:
            operation = resumed[-1]
            unless_missing(lambda: self.wait_operation(ctx, client, operation, f"deletion of {id}"))
            return
        version = unless_missing(lambda: client.get_model(name=id))
        if version is None or version.version_id != version_id:
            return
        others = [v for v in self._versions(model) or [] if v.version_id != version_id]
        if not others:
            unless_missing(lambda: self.run_operation(ctx, "DeleteModel", lambda: client.delete_model(name=model),
                                                      client, f"deletion of model {model}"))
            return
        if "default" in version.version_aliases:
            newest = max(others, key=lambda v: int(v.version_id))
            client.merge_version_aliases(name=f"{model}@{newest.version_id}", version_aliases=["default"])
        unless_missing(lambda: self.run_operation(ctx, "DeleteModelVersion",
                                                  lambda: client.delete_model_version(name=id), client,
                                                  f"deletion of {id}"))


def _recorded(text: str) -> dict[str, str]:
    """The artifact URI and sha256 a version description written by `ModelVersion.create` records."""
    if not text.startswith("artifact=") or " sha256=" not in text:
        return {}
    artifact, _, sha256 = text.removeprefix("artifact=").rpartition(" sha256=")
    return {"artifact": artifact, "sha256": sha256.strip()}
