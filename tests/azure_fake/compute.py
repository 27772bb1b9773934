"""Compute in the fake: AmlCompute clusters of the workspace, as ARM serves them to azure-ai-ml's `compute`
operations (api-version 2023-08-01-preview).

`.../workspaces/{ws}/computes/{name}`: PUT (long-running: 201 + Azure-AsyncOperation, provisioningState Creating
or Updating → Succeeded; an existing cluster takes new scale settings and tags, and refuses a vmSize or vmPriority
change with 400 as Azure does), GET (advances the running operation), PATCH (scale settings, long-running),
DELETE (`underlyingResourceAction=Delete|Detach`; 202, Deleting → gone; 204 when absent), and the list.
Objects live in `fake.objects["computes"][name]` as the ComputeResource JSON ARM returns.
"""

from __future__ import annotations

import copy
import re
from typing import TYPE_CHECKING, Any

from azure_fake import WORKSPACE_PATH, ApiError, Request, Response, not_found

if TYPE_CHECKING:
    from azure_fake import AzureFake

COMPUTE_TYPE = "Microsoft.MachineLearningServices/workspaces/computes"
NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]{0,14}[a-zA-Z0-9]")
PRIORITIES = ("Dedicated", "LowPriority")
DURATION = re.compile(r"PT(?:(\d+)H)?(?:(\d+)M)?(?:(\d+)S)?")


def register(fake: AzureFake) -> None:
    computes = WORKSPACE_PATH + r"/computes"
    one = computes + r"/(?P<name>[^/]+)"
    fake.route("arm", "GET", computes, "Compute.List", _list)
    fake.route("arm", "PUT", one, "Compute.CreateOrUpdate", _put)
    fake.route("arm", "GET", one, "Compute.Get", _get)
    fake.route("arm", "PATCH", one, "Compute.Update", _patch)
    fake.route("arm", "DELETE", one, "Compute.Delete", _delete)


def by_address(fake: AzureFake) -> dict[str, int]:
    """Computes per `mlplat-address` tag (a compute without one counted under its own name)."""
    counted: dict[str, int] = {}
    for obj in fake.objects["computes"].values():
        key = (obj.get("tags") or {}).get("mlplat-address") or obj["name"]
        counted[key] = counted.get(key, 0) + 1
    return counted


def _scale(settings: Any) -> dict[str, Any]:
    if not isinstance(settings, dict) or settings.get("maxNodeCount") is None:
        raise ApiError(400, "UserError", "scaleSettings.maxNodeCount is required for an AmlCompute.")
    low, high = int(settings.get("minNodeCount") or 0), int(settings["maxNodeCount"])
    if low < 0 or high < low:
        raise ApiError(400, "UserError", f"Invalid scale settings: minNodeCount {low} must be between 0 and "
                                         f"maxNodeCount {high}.")
    idle = settings.get("nodeIdleTimeBeforeScaleDown") or "PT2M"
    if not DURATION.fullmatch(str(idle)):
        raise ApiError(400, "UserError", f"nodeIdleTimeBeforeScaleDown {idle!r} is not an ISO 8601 duration.")
    return {"maxNodeCount": high, "minNodeCount": low, "nodeIdleTimeBeforeScaleDown": idle}


def _put(fake: AzureFake, request: Request) -> Response:
    name = request.groups["name"]
    if not NAME.fullmatch(name):
        raise ApiError(400, "UserError", f"Compute name {name!r} is invalid. It can include letters, digits and "
                                         "dashes. It must start with a letter, end with a letter or digit, and be "
                                         "between 2 and 16 characters in length.")
    body = request.json()
    props = body.get("properties") or {}
    if props.get("computeType") != "AmlCompute":
        raise ApiError(400, "UserError", f"computeType {props.get('computeType')!r} is not supported here.")
    aml = props.get("properties") or {}
    size = aml.get("vmSize")
    priority = aml.get("vmPriority") or "Dedicated"
    if not size:
        raise ApiError(400, "UserError", "properties.properties.vmSize is required.")
    if priority not in PRIORITIES:
        raise ApiError(400, "UserError", f"vmPriority {priority!r} is not one of {', '.join(PRIORITIES)}.")
    scale = _scale(aml.get("scaleSettings"))
    key = name.lower()
    existing = fake.objects["computes"].get(key)
    if existing is not None:
        state = existing["properties"]["provisioningState"]
        if state in ("Creating", "Updating", "Deleting"):
            raise ApiError(409, "Conflict", f"Compute {name} is {state}: wait for the operation to finish.")
        current = existing["properties"]["properties"]
        if current["vmSize"].lower() != size.lower():
            raise ApiError(400, "UserError", f"Updating the VM size of compute {name} from {current['vmSize']} to "
                                             f"{size} is not supported. Create a new compute instead.")
        if current["vmPriority"] != priority:
            raise ApiError(400, "UserError", f"Updating the VM priority of compute {name} is not supported. "
                                             "Create a new compute instead.")
        existing["properties"]["provisioningState"] = "Updating"
        if "tags" in body:
            existing["tags"] = body.get("tags") or {}
        staged = copy.deepcopy(scale)

        def finish_update() -> None:
            _rescale(fake, existing, staged)
            existing["properties"]["provisioningState"] = "Succeeded"

        return fake.long_running(existing["id"], finish_update, status=200, body=copy.deepcopy(existing))
    now = fake.now()
    obj = {
        "id": f"{WORKSPACE_PATH}/computes/{name}", "name": name, "type": COMPUTE_TYPE,
        "location": body.get("location") or fake.location, "tags": body.get("tags") or {},
        "identity": body.get("identity"),
        "properties": {
            "computeType": "AmlCompute", "computeLocation": body.get("location") or fake.location,
            "provisioningState": "Creating", "description": props.get("description"), "createdOn": now,
            "modifiedOn": now, "resourceId": None, "provisioningErrors": None, "isAttachedCompute": False,
            "disableLocalAuth": bool(props.get("disableLocalAuth", True)),
            "properties": {
                "osType": aml.get("osType") or "Linux", "vmSize": size, "vmPriority": priority,
                "virtualMachineImage": None, "isolatedNetwork": False, "subnet": aml.get("subnet"),
                "scaleSettings": scale, "userAccountCredentials": None,
                "remoteLoginPortPublicAccess": "Disabled" if aml.get("remoteLoginPortPublicAccess") in
                (None, "NotSpecified") else aml["remoteLoginPortPublicAccess"],
                "allocationState": "Resizing", "allocationStateTransitionTime": now, "errors": None,
                "currentNodeCount": 0, "targetNodeCount": scale["minNodeCount"],
                "nodeStateCounts": _node_counts(0), "enableNodePublicIp": aml.get("enableNodePublicIp", True),
                "propertyBag": None}},
        "systemData": {"createdAt": now, "createdBy": "mlplat", "createdByType": "Application",
                       "lastModifiedAt": now}}
    fake.objects["computes"][key] = obj

    def finish_create() -> None:
        obj["properties"]["provisioningState"] = "Succeeded"
        _rescale(fake, obj, scale)

    return fake.long_running(obj["id"], finish_create, status=201, body=copy.deepcopy(obj))


def _node_counts(idle: int) -> dict[str, int]:
    return {"idleNodeCount": idle, "runningNodeCount": 0, "preparingNodeCount": 0, "unusableNodeCount": 0,
            "leavingNodeCount": 0, "preemptedNodeCount": 0}


def _rescale(fake: AzureFake, obj: dict[str, Any], scale: dict[str, Any]) -> None:
    """New scale settings, the cluster settled at its minimum (no jobs run on the fake)."""
    aml = obj["properties"]["properties"]
    aml["scaleSettings"] = scale
    aml["currentNodeCount"] = aml["targetNodeCount"] = scale["minNodeCount"]
    aml["nodeStateCounts"] = _node_counts(scale["minNodeCount"])
    aml["allocationState"] = "Steady"
    aml["allocationStateTransitionTime"] = obj["properties"]["modifiedOn"] = fake.now()


def _find(fake: AzureFake, request: Request) -> dict[str, Any]:
    found = fake.objects["computes"].get(request.groups["name"].lower())
    if found is None:
        raise not_found(COMPUTE_TYPE, f"{fake.workspace}/{request.groups['name']}")
    return found


def _get(fake: AzureFake, request: Request) -> dict[str, Any]:
    found = _find(fake, request)
    fake.advance(found["id"])
    found = _find(fake, request)  # the operation may have finished a delete
    return found


def _list(fake: AzureFake, request: Request) -> dict[str, Any]:
    return {"value": list(fake.objects["computes"].values())}


def _patch(fake: AzureFake, request: Request) -> Response:
    obj = _find(fake, request)
    props = request.json().get("properties") or {}
    if "scaleSettings" not in props:
        raise ApiError(400, "UserError", "properties.scaleSettings is required.")
    scale = _scale(props["scaleSettings"])
    obj["properties"]["provisioningState"] = "Updating"

    def finish() -> None:
        _rescale(fake, obj, scale)
        obj["properties"]["provisioningState"] = "Succeeded"

    return fake.long_running(obj["id"], finish, status=202, body=None)


def _delete(fake: AzureFake, request: Request) -> Response:
    action = request.query.get("underlyingResourceAction")
    if action not in ("Delete", "Detach"):
        raise ApiError(400, "UserError", "The query parameter underlyingResourceAction must be Delete or Detach.")
    key = request.groups["name"].lower()
    obj = fake.objects["computes"].get(key)
    if obj is None:
        return Response(204)
    obj["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        fake.objects["computes"].pop(key, None)

    return fake.long_running(obj["id"], finish, status=202, body=None)
