"""Azure ML assets of the workspace: model containers and versions (`.../workspaces/{ws}/models/{name}` and
`.../models/{name}/versions/{version}`), and data containers and versions (`.../data/{name}[/versions/{version}]`),
with PUT, GET, DELETE and list as azure-ai-ml's ARM client (`arm_ml_service`) calls them.

Kept as the JSON ARM returns: `objects["models"][name]`, `objects["model_versions"]["name/version"]`,
`objects["data"][name]`, `objects["data_versions"]["name/version"]`. Asset PUTs are synchronous (200/201 with the
resource). A version PUT makes its container when missing, as Azure ML does. What Azure refuses, the fake refuses:
changing an existing version's asset path or type (409 UserError "Asset paths cannot be updated." — a version's
artifact is immutable; its description and tags may change), deleting a model version an online deployment still
uses (409 Conflict), deleting a container that still has versions (409 Conflict), bad names (400).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from azure_fake import WORKSPACE, WORKSPACE_PATH, ApiError, Response, not_found

if TYPE_CHECKING:
    from azure_fake import AzureFake, Request

_WS = re.escape(WORKSPACE_PATH)
ASSET_NAME = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,254}")
ASSET_VERSION = re.compile(r"[a-zA-Z0-9][a-zA-Z0-9_.-]{0,99}")
MODEL_TYPES = ("custom_model", "mlflow_model", "triton_model")
DATA_TYPES = ("uri_file", "uri_folder", "mltable")


class _Kind:
    """What differs between models and data: collection names, ARM type, the path and type fields."""

    def __init__(self, segment: str, containers: str, versions: str, arm_type: str, uri_field: str,
                 type_field: str, types: tuple[str, ...]) -> None:
        self.segment, self.containers, self.versions = segment, containers, versions
        self.arm_type, self.uri_field, self.type_field, self.types = arm_type, uri_field, type_field, types


MODELS = _Kind("models", "models", "model_versions", "Microsoft.MachineLearningServices/workspaces/models",
               "modelUri", "modelType", MODEL_TYPES)
DATA = _Kind("data", "data", "data_versions", "Microsoft.MachineLearningServices/workspaces/data",
             "dataUri", "dataType", DATA_TYPES)


def register(fake: AzureFake) -> None:
    for kind, label in ((MODELS, "Models"), (DATA, "Data")):
        base = _WS + "/" + kind.segment
        container = base + r"/(?P<name>[^/]+)"
        version = container + r"/versions/(?P<version>[^/]+)"
        fake.route("arm", "GET", base, f"{label}.ListContainers", _list_containers(kind))
        fake.route("arm", "PUT", container, f"{label}.CreateOrUpdateContainer", _put_container(kind))
        fake.route("arm", "GET", container, f"{label}.GetContainer", _get_container(kind))
        fake.route("arm", "DELETE", container, f"{label}.DeleteContainer", _delete_container(kind))
        fake.route("arm", "GET", container + r"/versions", f"{label}.ListVersions", _list_versions(kind))
        fake.route("arm", "PUT", version, f"{label}.CreateOrUpdateVersion", _put_version(kind))
        fake.route("arm", "GET", version, f"{label}.GetVersion", _get_version(kind))
        fake.route("arm", "DELETE", version, f"{label}.DeleteVersion", _delete_version(kind))


# --- lookups (other fake modules and tests) -------------------------------------------------------------------


def model_id(name: str, version: str) -> str:
    return f"{WORKSPACE_PATH}/models/{name}/versions/{version}"


def versions_of(fake: AzureFake, kind: _Kind, name: str) -> list[dict[str, Any]]:
    """The versions of container `name`, oldest first."""
    found = [v for k, v in fake.objects[kind.versions].items() if k.split("/", 1)[0] == name]
    return sorted(found, key=lambda v: v["systemData"]["createdAt"] + v["systemData"].get("_seq", ""))


def deployments_using(fake: AzureFake, name: str, version: str) -> list[str]:
    """Names of online deployments whose model is this version (by ARM id or `azureml:name:version`), from the
    endpoints module's collections (any collection named like `*deployments*`)."""
    suffix = f"/workspaces/{WORKSPACE}/models/{name}/versions/{version}".lower()
    short = f"azureml:{name}:{version}".lower()
    using = []
    for collection, objects in list(fake.objects.items()):
        if "deployment" not in collection:
            continue
        for key, obj in list(objects.items()):
            model = (obj.get("properties") or {}).get("model") if isinstance(obj, dict) else None
            if isinstance(model, str) and (model.lower().endswith(suffix) or model.lower() == short):
                using.append(str(obj.get("name") or key))
    return using


# --- handlers -------------------------------------------------------------------------------------------------


def _check_name(name: str, what: str) -> None:
    if not ASSET_NAME.fullmatch(name):
        raise ApiError(400, "UserError", f"{what} name '{name}' is invalid: it must start with a letter or digit and "
                                         "contain only letters, digits, '-', '_' and '.' (at most 255 characters).")


def _system_data(fake: AzureFake, prior: dict[str, Any] | None = None) -> dict[str, Any]:
    now = fake.now()
    created = (prior or {}).get("createdAt", now)
    seq = (prior or {}).get("_seq") or f"{int(fake.new_id()):012d}"
    return {"createdAt": created, "createdBy": "mlplat-test-sp", "createdByType": "Application",
            "lastModifiedAt": now, "lastModifiedBy": "mlplat-test-sp", "lastModifiedByType": "Application",
            "_seq": seq}


def _public(obj: dict[str, Any]) -> dict[str, Any]:
    """The object as ARM answers it (without the fake's own ordering key)."""
    system = {k: v for k, v in obj.get("systemData", {}).items() if not k.startswith("_")}
    return {**obj, "systemData": system}


def _page(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {"value": [_public(i) for i in items]}


def _container_body(fake: AzureFake, kind: _Kind, name: str, props: dict[str, Any] | None,
                    prior: dict[str, Any] | None) -> dict[str, Any]:
    props = props or {}
    old = (prior or {}).get("properties", {})
    return {
        "id": f"{WORKSPACE_PATH}/{kind.segment}/{name}", "name": name, "type": kind.arm_type,
        "properties": {"description": props.get("description", old.get("description")),
                       "tags": props.get("tags", old.get("tags")) or {},
                       "properties": props.get("properties", old.get("properties")) or {},
                       "isArchived": bool(props.get("isArchived", old.get("isArchived", False))),
                       "latestVersion": old.get("latestVersion"), "nextVersion": old.get("nextVersion"),
                       "provisioningState": "Succeeded",
                       **({"dataType": props.get("dataType", old.get("dataType", "uri_file"))}
                          if kind is DATA else {})},
        "systemData": _system_data(fake, (prior or {}).get("systemData")),
    }


def _refresh_container(fake: AzureFake, kind: _Kind, name: str) -> None:
    container = fake.objects[kind.containers].get(name)
    if container is None:
        return
    found = versions_of(fake, kind, name)
    latest = found[-1]["name"] if found else None
    container["properties"]["latestVersion"] = latest
    numeric = [int(v["name"]) for v in found if v["name"].isdigit()]
    container["properties"]["nextVersion"] = str(max(numeric) + 1) if numeric else "1"


def _list_containers(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> dict[str, Any]:
        return _page(list(fake.objects[kind.containers].values()))

    return handler


def _put_container(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> Response:
        name = request.groups["name"]
        _check_name(name, kind.segment)
        prior = fake.objects[kind.containers].get(name)
        body = _container_body(fake, kind, name, request.json().get("properties"), prior)
        fake.objects[kind.containers][name] = body
        _refresh_container(fake, kind, name)
        return Response(200 if prior else 201, _public(body))

    return handler


def _get_container(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> dict[str, Any]:
        found = fake.objects[kind.containers].get(request.groups["name"])
        if found is None:
            raise not_found(kind.arm_type, request.groups["name"])
        return _public(found)

    return handler


def _delete_container(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> Response:
        name = request.groups["name"]
        if name not in fake.objects[kind.containers]:
            return Response(204)
        if versions_of(fake, kind, name):
            raise ApiError(409, "Conflict", f"The {kind.segment} container '{name}' still has versions: delete them "
                                            "first.")
        del fake.objects[kind.containers][name]
        return Response(200)

    return handler


def _list_versions(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> dict[str, Any]:
        name = request.groups["name"]
        if name not in fake.objects[kind.containers]:
            raise not_found(kind.arm_type, name)
        found = versions_of(fake, kind, name)
        if request.query.get("$orderBy", "").lower().endswith("desc"):
            found.reverse()
        top = request.query.get("$top")
        if top:
            found = found[:int(top)]
        return _page(found)

    return handler


def _put_version(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> Response:
        name, version = request.groups["name"], request.groups["version"]
        _check_name(name, kind.segment)
        if not ASSET_VERSION.fullmatch(version):
            raise ApiError(400, "UserError", f"Version '{version}' is invalid: letters, digits, '-', '_' and '.'.")
        props = request.json().get("properties")
        if not isinstance(props, dict):
            raise ApiError(400, "UserError", "properties is required.")
        uri, asset_type = props.get(kind.uri_field), props.get(kind.type_field)
        if not uri:
            raise ApiError(400, "UserError", f"{kind.uri_field} is required.")
        if asset_type is not None and asset_type not in kind.types:
            raise ApiError(400, "UserError", f"{kind.type_field} '{asset_type}' is not one of {', '.join(kind.types)}.")
        key = f"{name}/{version}"
        prior = fake.objects[kind.versions].get(key)
        if prior is not None:
            old = prior["properties"]
            if old.get(kind.uri_field) != uri or (asset_type is not None and old.get(kind.type_field) != asset_type):
                raise ApiError(409, "UserError", "Asset paths cannot be updated.")
        if name not in fake.objects[kind.containers]:
            fake.objects[kind.containers][name] = _container_body(fake, kind, name, {}, None)
        old = (prior or {}).get("properties", {})
        properties: dict[str, Any] = {
            "description": props.get("description"), "tags": props.get("tags") or {},
            "properties": props.get("properties") or {}, "isArchived": bool(props.get("isArchived", False)),
            "isAnonymous": bool(props.get("isAnonymous", False)), kind.uri_field: uri,
            kind.type_field: asset_type or old.get(kind.type_field) or kind.types[0], "provisioningState": "Succeeded"}
        if kind is MODELS:
            properties.update({"flavors": props.get("flavors") or {}, "jobName": props.get("jobName"),
                               "stage": props.get("stage") or old.get("stage") or "Development"})
        body = {"id": f"{WORKSPACE_PATH}/{kind.segment}/{name}/versions/{version}", "name": version,
                "type": f"{kind.arm_type}/versions", "properties": properties,
                "systemData": _system_data(fake, (prior or {}).get("systemData"))}
        fake.objects[kind.versions][key] = body
        _refresh_container(fake, kind, name)
        return Response(200 if prior else 201, _public(body))

    return handler


def _get_version(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> dict[str, Any]:
        name, version = request.groups["name"], request.groups["version"]
        found = fake.objects[kind.versions].get(f"{name}/{version}")
        if found is None:
            raise not_found(f"{kind.arm_type}/versions", f"{name}/{version}")
        return _public(found)

    return handler


def _delete_version(kind: _Kind) -> Any:
    def handler(fake: AzureFake, request: Request) -> Response:
        name, version = request.groups["name"], request.groups["version"]
        key = f"{name}/{version}"
        if key not in fake.objects[kind.versions]:
            return Response(204)
        if kind is MODELS:
            using = deployments_using(fake, name, version)
            if using:
                raise ApiError(409, "Conflict", f"Model {name}:{version} is used by online deployment(s) "
                                                f"{', '.join(sorted(using))}: delete them first.")
        del fake.objects[kind.versions][key]
        _refresh_container(fake, kind, name)
        return Response(200)

    return handler

