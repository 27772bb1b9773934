"""The Vertex AI Model Registry (`ModelService`): models:upload (long-running; a new model with `modelId`, or a new
version of `parentModel`), get (`models/ID`, `models/ID@<version id>`, `models/ID@<alias>`), list, listVersions,
mergeVersionAliases, deleteVersion and delete (long-running).

Each version is kept as the Model JSON the API returns for it (`objects["model_versions"]["<model name>@<version
id>"]`; its `name` is the model's, unversioned, as Vertex answers). Versions are numbered "1", "2", ...; the first
carries the `default` alias, which one version always holds. An alias is unique within a model: giving it to a
version takes it from the one that had it. Vertex refuses to delete the default version or a model's only version
with deleteVersion, and a version still deployed to an endpoint (FAILED_PRECONDITION); `resolve` is what other fake
modules (endpoints deploying a model) use to look a version up.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from gcp_fake import ApiError, not_found

if TYPE_CHECKING:
    from gcp_fake import GcpFake, Request

COLLECTION = "model_versions"
_TYPES = "type.googleapis.com/google.cloud.aiplatform.v1"
_PARENT = r"/v1/(?P<parent>projects/[^/]+/locations/[^/]+)"
_MODEL = r"/v1/(?P<name>projects/[^/]+/locations/[^/]+/models/[^/:]+)"
MODEL_ID = re.compile(r"[a-z0-9][a-z0-9-]{0,62}")
ALIAS = re.compile(r"[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]")
_LABEL = re.compile(r"[a-z0-9_-]{0,63}")


def register(fake: GcpFake) -> None:
    fake.route("POST", _PARENT + r"/models:upload", "UploadModel", _upload)
    fake.route("GET", _PARENT + r"/models", "ListModels", _list_models)
    fake.route("GET", _MODEL + r":listVersions", "ListModelVersions", _list_versions)
    fake.route("POST", _MODEL + r":mergeVersionAliases", "MergeVersionAliases", _merge_aliases)
    fake.route("DELETE", _MODEL + r":deleteVersion", "DeleteModelVersion", _delete_version)
    fake.route("GET", _MODEL, "GetModel", _get)
    fake.route("DELETE", _MODEL, "DeleteModel", _delete_model)
    fake.resolve_model = lambda name: resolve(fake, name)  # type: ignore[attr-defined]


# --- lookups (also for other fake modules and the harness) ---------------------------------------------------


def versions(fake: GcpFake, model: str) -> list[dict[str, Any]]:
    """The versions of `model` (unversioned name), oldest first."""
    found = [v for k, v in fake.objects[COLLECTION].items() if k.rsplit("@", 1)[0] == model]
    return sorted(found, key=lambda v: int(v["versionId"]))


def resolve(fake: GcpFake, name: str) -> dict[str, Any]:
    """The version `name` names: `models/ID` (the default version), `models/ID@<version id>` or `@<alias>`."""
    model, _, which = name.partition("@")
    found = versions(fake, model)
    if not found:
        raise not_found(f"Model {model}")
    which = which or "default"
    for version in found:
        if version["versionId"] == which or which in version.get("versionAliases", []):
            return version
    raise not_found(f"Model {name}")


def _deployments(fake: GcpFake, model: str, version_id: str | None) -> list[str]:
    """Endpoints (from the serving fake's objects) where the model, or one version of it, is deployed."""
    found = []
    for endpoint in list(fake.objects.get("endpoints", {}).values()):
        for deployed in endpoint.get("deployedModels", []):
            name, _, at = str(deployed.get("model", "")).partition("@")
            deployed_version = deployed.get("modelVersionId") or at
            if name == model and (version_id is None or deployed_version in (version_id, "")):
                found.append(endpoint.get("name", "?"))
    return found


def _check_labels(labels: dict[str, Any]) -> None:
    for key, value in labels.items():
        if not re.fullmatch(r"[a-z][a-z0-9_-]{0,62}", key) or not _LABEL.fullmatch(str(value)):
            raise ApiError(400, f"Label {key}={value!r} is invalid: keys and values use [a-z0-9_-], up to 63 "
                                "characters.")


def _check_aliases(aliases: list[str], *, removing: bool = False) -> None:
    for alias in aliases:
        bare = alias[1:] if removing and alias.startswith("-") else alias
        if not ALIAS.fullmatch(bare) or bare.isdigit():
            raise ApiError(400, f"Version alias {alias!r} is invalid: it must match [a-z][a-zA-Z0-9-]{{0,126}}"
                                "[a-z0-9] and not be a number.")


def _take_alias(fake: GcpFake, model: str, alias: str, holder: dict[str, Any]) -> None:
    """Give `alias` to `holder`, taking it from the version of `model` that had it."""
    for version in versions(fake, model):
        if version is not holder and alias in version.get("versionAliases", []):
            version["versionAliases"].remove(alias)
            version["versionUpdateTime"] = fake.now()
    if alias not in holder.setdefault("versionAliases", []):
        holder["versionAliases"].append(alias)


# --- handlers --------------------------------------------------------------------------------------------------


def _upload(fake: GcpFake, request: Request) -> dict[str, Any]:
    parent = request.groups["parent"]
    body = request.json()
    spec = body.get("model") or {}
    if not spec.get("displayName"):
        raise ApiError(400, "Model.display_name is required.")
    image = (spec.get("containerSpec") or {}).get("imageUri")
    if not image and not spec.get("metadataSchemaUri"):
        raise ApiError(400, "Model.container_spec.image_uri is required for a custom-trained model.")
    artifact = spec.get("artifactUri")
    if artifact and not artifact.startswith("gs://"):
        raise ApiError(400, f"Model.artifact_uri {artifact!r} must be a Cloud Storage URI (gs://).")
    _check_labels(spec.get("labels") or {})
    aliases = list(spec.get("versionAliases") or [])
    _check_aliases(aliases)
    parent_model = body.get("parentModel")
    if parent_model:
        if not parent_model.startswith(parent + "/models/") or not versions(fake, parent_model):
            raise not_found(f"Model {parent_model}")
        model = parent_model
    else:
        model_id = body.get("modelId") or fake.new_id()
        if not MODEL_ID.fullmatch(model_id):
            raise ApiError(400, f"Model id {model_id!r} is invalid: it must match [a-z0-9][a-z0-9-]{{0,62}}.")
        model = f"{parent}/models/{model_id}"
        if versions(fake, model):
            raise ApiError(409, f"Model {model} already exists.")

    def finish() -> dict[str, Any]:
        existing = versions(fake, model)
        if parent_model and not existing:
            raise not_found(f"Model {parent_model}")
        version_id = str(max((int(v["versionId"]) for v in existing), default=0) + 1)
        now = fake.now()
        version: dict[str, Any] = {
            "name": model, "displayName": spec["displayName"], "versionId": version_id, "versionAliases": [],
            "versionCreateTime": now, "versionUpdateTime": now, "createTime": now, "updateTime": now,
            "etag": f"AMEw9yP{fake.new_id()}", "labels": dict(spec.get("labels") or {}),
            "supportedDeploymentResourcesTypes": ["DEDICATED_RESOURCES", "SHARED_RESOURCES"],
            "supportedInputStorageFormats": ["jsonl", "csv", "bigquery", "file-list"],
            "supportedOutputStorageFormats": ["jsonl", "bigquery"],
            "modelSourceInfo": {"sourceType": "CUSTOM"},
        }
        for key in ("description", "versionDescription", "artifactUri", "containerSpec", "metadataSchemaUri",
                    "predictSchemata", "encryptionSpec", "explanationSpec"):
            if spec.get(key):
                version[key] = spec[key]
        if existing:
            version["createTime"] = existing[0]["createTime"]
        fake.objects[COLLECTION][f"{model}@{version_id}"] = version
        if not existing:
            version["versionAliases"].append("default")
        for alias in aliases:
            _take_alias(fake, model, alias, version)
        return {"@type": f"{_TYPES}.UploadModelResponse", "model": model, "modelVersionId": version_id}

    return fake.operation(model, f"{_TYPES}.UploadModelOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now(), "updateTime": fake.now()})


def _get(fake: GcpFake, request: Request) -> dict[str, Any]:
    return resolve(fake, request.groups["name"])


def _list_models(fake: GcpFake, request: Request) -> dict[str, Any]:
    prefix = request.groups["parent"] + "/models/"
    models = sorted({k.rsplit("@", 1)[0] for k in fake.objects[COLLECTION] if k.startswith(prefix)})
    found = [resolve(fake, m) for m in models]
    return {"models": found} if found else {}


def _list_versions(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    if "@" in name:
        raise ApiError(400, f"ListModelVersions takes a model name without a version: {name}")
    found = versions(fake, name)
    if not found:
        raise not_found(f"Model {name}")
    return {"models": found}


def _merge_aliases(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    model, _, which = name.partition("@")
    if not which or not which.isdigit():
        raise ApiError(400, f"The model version name must include a version id: {name}")
    version = resolve(fake, name)
    aliases = list(request.json().get("versionAliases") or [])
    if not aliases:
        raise ApiError(400, "version_aliases is required.")
    _check_aliases(aliases, removing=True)
    adds = [a for a in aliases if not a.startswith("-")]
    drops = [a[1:] for a in aliases if a.startswith("-") and a[1:] not in adds]
    if "default" in drops:
        raise ApiError(400, "The default alias cannot be removed: give it to another version instead.",
                       "FAILED_PRECONDITION")
    for alias in adds:
        _take_alias(fake, model, alias, version)
    version["versionAliases"] = [a for a in version["versionAliases"] if a not in drops]
    version["versionUpdateTime"] = fake.now()
    return version


def _delete_version(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    model, _, which = name.partition("@")
    if not which:
        raise ApiError(400, f"The model version name must include a version id or alias: {name}")
    version = resolve(fake, name)
    if len(versions(fake, model)) == 1:
        raise ApiError(400, f"Model version {name} is the only version of the model: delete the model instead.",
                       "FAILED_PRECONDITION")
    if "default" in version.get("versionAliases", []):
        raise ApiError(400, f"Model version {name} is the default version: make another version the default "
                            "first.", "FAILED_PRECONDITION")
    deployed = _deployments(fake, model, version["versionId"])
    if deployed:
        raise ApiError(400, f"Model version {name} is deployed to {', '.join(deployed)}: undeploy it first.",
                       "FAILED_PRECONDITION")
    key = f"{model}@{version['versionId']}"

    def finish() -> dict[str, Any]:
        fake.objects[COLLECTION].pop(key, None)
        return {"@type": "type.googleapis.com/google.protobuf.Empty"}

    return fake.operation(model, f"{_TYPES}.DeleteOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now(), "updateTime": fake.now()})


def _delete_model(fake: GcpFake, request: Request) -> dict[str, Any]:
    model = request.groups["name"]
    if "@" in model:
        raise ApiError(400, f"DeleteModel takes a model name without a version: {model} (use deleteVersion)")
    if not versions(fake, model):
        raise not_found(f"Model {model}")
    deployed = _deployments(fake, model, None)
    if deployed:
        raise ApiError(400, f"Model {model} is deployed to {', '.join(deployed)}: undeploy it first.",
                       "FAILED_PRECONDITION")

    def finish() -> dict[str, Any]:
        for key in [k for k in fake.objects[COLLECTION] if k.rsplit("@", 1)[0] == model]:
            del fake.objects[COLLECTION][key]
        return {"@type": "type.googleapis.com/google.protobuf.Empty"}

    return fake.operation(model, f"{_TYPES}.DeleteOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now(), "updateTime": fake.now()})
