"""Azure ML managed online endpoints on the fake: endpoints, their deployments, keys, traffic, scoring, and the
workspace's schedules (monitor schedules), with the ARM paths, JSON shapes, long-running operations and refusals
of the real service.

State (`fake.objects`):
- `online_endpoints[<endpoint>]`: the OnlineEndpoint ARM JSON (`properties.traffic` / `mirrorTraffic` by deployment
  name, `scoringUri`, `authMode` Key / AMLToken / AADToken); its keys live apart in `endpoint_keys[<endpoint>]`
  (ARM never returns them with the endpoint: `listKeys` does).
- `online_deployments[<endpoint>/<deployment>]`: the OnlineDeployment ARM JSON (`sku.capacity`, `properties.model`,
  `environmentId`, `instanceType`, `dataCollector`).
- `schedules[<name>]`: the Schedule ARM JSON (`properties.action` a CreateMonitor with its monitorDefinition).
- `environments[<name>/<version>]` and `data[<name>/<version>]`: fallbacks for the anonymous environment azure-ai-ml
  registers for a deployment's image and the data assets a data collector registers; the models module's own
  routes, registered first, win where it serves them.

What the service refuses, as Azure does: traffic not summing to 100 (or 0), traffic or mirror traffic to a
deployment that does not exist, mirror traffic over 50 % or to a deployment taking live traffic (400 BadArgument);
deleting a deployment that still takes (or mirrors) traffic (409 Conflict); a deployment on a missing endpoint, of
a missing model version or environment (404/400). Deleting an endpoint deletes its deployments (as Azure does).

Scoring: host `<endpoint>.<region>.inference.ml.azure.com`, POST /score, `Authorization: Bearer <key>` (the primary
or secondary key of a key endpoint) or an Entra ID token (aad_token endpoint); a deployment is chosen by traffic or
by the `azureml-model-deployment` header, and answers with that header. Mirrored requests are counted in
`fake.mirrored[<endpoint>][<deployment>]`.

Console helpers: `fake.set_traffic(endpoint, traffic, mirror=None)`, `fake.deployments(endpoint)` ({name: {...,
"traffic": %, "mirror": %}}), `fake.traffic_log[endpoint]` (every traffic the endpoint was given, in order).
"""

from __future__ import annotations

import json
import random
import re
import secrets
from typing import TYPE_CHECKING, Any

from azure_fake import WORKSPACE_PATH, ApiError, Request, Response, not_found

if TYPE_CHECKING:
    from azure_fake import AzureFake

ENDPOINTS = WORKSPACE_PATH + r"/onlineEndpoints"
ENDPOINT = ENDPOINTS + r"/(?P<endpoint>[^/]+)"
DEPLOYMENTS = ENDPOINT + r"/deployments"
DEPLOYMENT = DEPLOYMENTS + r"/(?P<deployment>[^/]+)"
SCHEDULES = WORKSPACE_PATH + r"/schedules"
SCHEDULE = SCHEDULES + r"/(?P<name>[^/]+)"
ENVIRONMENT = WORKSPACE_PATH + r"/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)"
DATA = WORKSPACE_PATH + r"/data/(?P<name>[^/]+)/versions/(?P<version>[^/]+)"
#: endpoint and deployment names: 3 to 32 characters, a letter first, letters digits and hyphens
NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]")
AUTH_MODES = {"key": "Key", "amltoken": "AMLToken", "aadtoken": "AADToken"}
MAX_MIRROR = 50
#: what Azure fills in on a managed deployment the request leaves out
_PROBE = {"failureThreshold": 30, "successThreshold": 1, "timeout": "PT2S", "period": "PT10S", "initialDelay": "PT10S"}
DEPLOYMENT_DEFAULTS: dict[str, Any] = {
    "scaleSettings": {"scaleType": "Default"}, "appInsightsEnabled": False, "egressPublicNetworkAccess": "Enabled",
    "requestSettings": {"requestTimeout": "PT5S", "maxConcurrentRequestsPerInstance": 1, "maxQueueWait": "PT0.5S"},
    "livenessProbe": _PROBE, "readinessProbe": {**_PROBE, "initialDelay": "PT10S"}, "properties": {},
    "environmentVariables": {}}


def _bad(message: str, code: str = "BadArgument") -> ApiError:
    return ApiError(400, code, message)


def _system(fake: AzureFake, existing: dict[str, Any] | None) -> dict[str, Any]:
    now = fake.now()
    created = (existing or {}).get("systemData", {}).get("createdAt", now)
    return {"createdAt": created, "createdBy": "mlplat-test", "createdByType": "Application",
            "lastModifiedAt": now, "lastModifiedBy": "mlplat-test", "lastModifiedByType": "Application"}


# --- endpoints -----------------------------------------------------------------------------------------------


def _endpoint(fake: AzureFake, name: str) -> dict[str, Any]:
    found = fake.objects["online_endpoints"].get(name.lower())
    if found is None:
        raise not_found("Microsoft.MachineLearningServices/workspaces/onlineEndpoints", name)
    return found


def _deployments_of(fake: AzureFake, endpoint: str) -> dict[str, dict[str, Any]]:
    prefix = endpoint.lower() + "/"
    return {d["name"]: d for key, d in fake.objects["online_deployments"].items() if key.startswith(prefix)}


def _check_traffic(fake: AzureFake, endpoint: str, traffic: dict[str, Any], mirror: dict[str, Any]) -> None:
    """Azure's rules: live traffic sums to 100 (or is empty), mirror traffic at most 50 % and never to a deployment
    taking live traffic, every name an existing deployment of the endpoint."""
    known = {n.lower() for n in _deployments_of(fake, endpoint)}
    for kind, split in (("traffic", traffic), ("mirror traffic", mirror)):
        for name, percent in split.items():
            if not isinstance(percent, int) or percent < 0 or percent > 100:
                raise _bad(f"The {kind} value for deployment {name} must be an integer between 0 and 100.")
            if name.lower() not in known:
                raise _bad(f"The deployment {name} in {kind} does not exist in endpoint {endpoint}.")
    total = sum(traffic.values())
    if total not in (0, 100):
        raise _bad(f"Traffic values need to sum to 100, but they sum to {total}.")
    mirrored = sum(mirror.values())
    if mirrored > MAX_MIRROR:
        raise _bad(f"Mirror traffic values need to sum to at most {MAX_MIRROR}, but they sum to {mirrored}.")
    for name, percent in mirror.items():
        if percent and traffic.get(name):
            raise _bad(f"Deployment {name} cannot receive both live and mirror traffic.")


def _set_traffic(fake: AzureFake, live: dict[str, Any], traffic: dict[str, int], mirror: dict[str, int]) -> None:
    props = live["properties"]
    if traffic != props.get("traffic", {}) or mirror != props.get("mirrorTraffic", {}):
        fake.traffic_log.setdefault(live["name"].lower(), []).append(dict(traffic))  # type: ignore[attr-defined]
    props["traffic"], props["mirrorTraffic"] = dict(traffic), dict(mirror)


def put_endpoint(fake: AzureFake, request: Request) -> Response:
    name = request.groups["endpoint"]
    if not NAME.fullmatch(name):
        raise _bad(f"Endpoint name {name!r} is invalid: 3 to 32 characters, a letter first, letters, digits and "
                   "hyphens, not ending with a hyphen.")
    body = request.json()
    props = body.get("properties") or {}
    if not body.get("location"):
        raise _bad("The location is required.", "InvalidRequestContent")
    mode = AUTH_MODES.get(str(props.get("authMode", "")).lower())
    if mode is None:
        raise _bad(f"authMode {props.get('authMode')!r} is not one of Key, AMLToken, AADToken.")
    existing = fake.objects["online_endpoints"].get(name.lower())
    if existing is not None and existing["properties"]["provisioningState"] in ("Creating", "Updating", "Deleting"):
        raise ApiError(409, "Conflict", f"Endpoint {name} has an operation in progress "
                                        f"({existing['properties']['provisioningState']}).")
    traffic = {k: int(v) for k, v in (props.get("traffic") or {}).items()}
    mirror = {k: int(v) for k, v in (props.get("mirrorTraffic") or {}).items()}
    if existing is not None:
        _check_traffic(fake, name, traffic, mirror)
    elif traffic or mirror:
        raise _bad("Traffic cannot be set on an endpoint that has no deployments.")
    rid = f"{WORKSPACE_PATH}/onlineEndpoints/{name}"
    location = fake.location
    live: dict[str, Any] = {
        "id": rid, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints",
        "location": body["location"], "tags": dict(body.get("tags") or {}), "kind": body.get("kind") or "Managed",
        "identity": {"type": "SystemAssigned", "principalId": (existing or {}).get("identity", {}).get(
            "principalId", fake.new_id()), "tenantId": fake.tenant},
        "systemData": _system(fake, existing),
        "properties": {
            "authMode": mode, "description": props.get("description"), "properties": props.get("properties") or {},
            "scoringUri": f"https://{name.lower()}.{location}.inference.ml.azure.com/score",
            "swaggerUri": f"https://{name.lower()}.{location}.inference.ml.azure.com/swagger.json",
            "traffic": {}, "mirrorTraffic": {}, "publicNetworkAccess": props.get("publicNetworkAccess") or "Enabled",
            "provisioningState": "Updating" if existing is not None else "Creating"}}
    if existing is None:
        fake.traffic_log[name.lower()] = []  # type: ignore[attr-defined]
        keys = fake.objects["endpoint_keys"]
        keys[name.lower()] = {"primaryKey": secrets.token_urlsafe(32), "secondaryKey": secrets.token_urlsafe(32)}
    _set_traffic(fake, live, traffic, mirror)
    fake.objects["online_endpoints"][name.lower()] = live

    def finish() -> None:
        live["properties"]["provisioningState"] = "Succeeded"

    return fake.long_running(rid, finish, status=200 if existing is not None else 201, body=live)


def get_endpoint(fake: AzureFake, request: Request) -> dict[str, Any]:
    name = request.groups["endpoint"]
    fake.advance(f"{WORKSPACE_PATH}/onlineEndpoints/{name}")
    return _endpoint(fake, name)


def list_endpoints(fake: AzureFake, request: Request) -> dict[str, Any]:
    return {"value": list(fake.objects["online_endpoints"].values())}


def delete_endpoint(fake: AzureFake, request: Request) -> Response:
    """Deleting an endpoint deletes its deployments (Azure does, traffic or not)."""
    name = request.groups["endpoint"]
    live = fake.objects["online_endpoints"].get(name.lower())
    if live is None:
        return Response(204)
    if live["properties"]["provisioningState"] == "Deleting":
        raise ApiError(409, "Conflict", f"Endpoint {name} is being deleted.")
    live["properties"]["provisioningState"] = "Deleting"
    for deployment in _deployments_of(fake, name).values():
        deployment["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        for key in [k for k in fake.objects["online_deployments"] if k.startswith(name.lower() + "/")]:
            del fake.objects["online_deployments"][key]
        fake.objects["online_endpoints"].pop(name.lower(), None)
        fake.objects["endpoint_keys"].pop(name.lower(), None)

    return fake.long_running(live["id"], finish, status=202)


def list_keys(fake: AzureFake, request: Request) -> dict[str, Any]:
    live = _endpoint(fake, request.groups["endpoint"])
    if live["properties"]["authMode"] != "Key":
        raise _bad(f"Endpoint {live['name']} does not use keys for authentication "
                   f"(authMode {live['properties']['authMode']}).")
    return dict(fake.objects["endpoint_keys"][live["name"].lower()])


# --- deployments ---------------------------------------------------------------------------------------------


def _deployment(fake: AzureFake, endpoint: str, name: str) -> dict[str, Any]:
    found = fake.objects["online_deployments"].get(f"{endpoint}/{name}".lower())
    if found is None:
        raise not_found("Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments", name)
    return found


def _asset_exists(fake: AzureFake, arm_id: str, segment: str, collections: tuple[str, ...]) -> bool | None:
    """Whether the versioned asset `arm_id` (…/<segment>/<name>/versions/<version>) is in the fake; None when no
    module keeps such assets (then anything is accepted)."""
    match = re.search(rf"/{segment}/(?P<name>[^/]+)/versions/(?P<version>[^/]+)$", arm_id)
    if match is None:
        return False
    seen = False
    suffix = f"/{segment}/{match['name']}/versions/{match['version']}".lower()
    for collection in collections:
        objects = fake.objects.get(collection) or {}
        for value in objects.values():
            if isinstance(value, dict) and str(value.get("id", "")).lower().endswith(suffix):
                return True
            seen = seen or (isinstance(value, dict) and f"/{segment}/" in str(value.get("id", "")).lower())
    return False if seen else None


def put_deployment(fake: AzureFake, request: Request) -> Response:
    endpoint, name = request.groups["endpoint"], request.groups["deployment"]
    live_endpoint = _endpoint(fake, endpoint)
    if live_endpoint["properties"]["provisioningState"] == "Deleting":
        raise ApiError(409, "Conflict", f"Endpoint {endpoint} is being deleted.")
    if not NAME.fullmatch(name):
        raise _bad(f"Deployment name {name!r} is invalid: 3 to 32 characters, a letter first, letters, digits and "
                   "hyphens.")
    body = request.json()
    props = body.get("properties") or {}
    for field in ("model", "environmentId", "instanceType"):
        if not props.get(field):
            raise _bad(f"properties.{field} is required for a managed online deployment.")
    if (props.get("endpointComputeType") or "").lower() != "managed":
        raise _bad("endpointComputeType must be Managed on a managed online endpoint.")
    capacity = (body.get("sku") or {}).get("capacity")
    if not isinstance(capacity, int) or capacity < 1:
        raise _bad("sku.capacity (the instance count) must be at least 1.")
    if _asset_exists(fake, props["model"], "models", tuple(c for c in fake.objects if "model" in c)) is False:
        raise ApiError(404, "UserError.NotFound", f"Model {props['model']} was not found.")
    if _asset_exists(fake, props["environmentId"], "environments", ("environments",)) is False:
        raise ApiError(404, "UserError.NotFound", f"Environment {props['environmentId']} was not found.")
    for collection in ((props.get("dataCollector") or {}).get("collections") or {}).values():
        mode = str(collection.get("dataCollectionMode") or "Disabled")
        if mode.lower() not in ("enabled", "disabled"):
            raise _bad(f"dataCollectionMode {mode!r} is not one of Enabled, Disabled.")
        collection["dataCollectionMode"] = mode.capitalize()  # ARM's enum casing, whatever the request's
    key = f"{endpoint}/{name}".lower()
    existing = fake.objects["online_deployments"].get(key)
    if existing is not None and existing["properties"]["provisioningState"] in ("Creating", "Updating", "Deleting"):
        raise ApiError(409, "Conflict", f"Deployment {name} has an operation in progress "
                                        f"({existing['properties']['provisioningState']}).")
    rid = f"{live_endpoint['id']}/deployments/{name}"
    live: dict[str, Any] = {
        "id": rid, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/onlineEndpoints/deployments",
        "location": body.get("location") or fake.location, "tags": dict(body.get("tags") or {}), "kind": "Managed",
        "sku": {"name": "Default", "tier": "Standard", "capacity": capacity}, "systemData": _system(fake, existing),
        "properties": {**DEPLOYMENT_DEFAULTS, **{k: v for k, v in props.items() if v is not None},
                       "endpointComputeType": "Managed",
                       "provisioningState": "Updating" if existing is not None else "Creating"}}
    fake.objects["online_deployments"][key] = live

    def finish() -> None:
        live["properties"]["provisioningState"] = "Succeeded"

    return fake.long_running(rid, finish, status=200 if existing is not None else 201, body=live)


def get_deployment(fake: AzureFake, request: Request) -> dict[str, Any]:
    endpoint, name = request.groups["endpoint"], request.groups["deployment"]
    _endpoint(fake, endpoint)
    fake.advance(f"{WORKSPACE_PATH}/onlineEndpoints/{endpoint}/deployments/{name}")
    return _deployment(fake, endpoint, name)


def list_deployments(fake: AzureFake, request: Request) -> dict[str, Any]:
    endpoint = request.groups["endpoint"]
    _endpoint(fake, endpoint)
    return {"value": list(_deployments_of(fake, endpoint).values())}


def delete_deployment(fake: AzureFake, request: Request) -> Response:
    """Azure refuses to delete a deployment that takes live or mirror traffic (409)."""
    endpoint, name = request.groups["endpoint"], request.groups["deployment"]
    live_endpoint = fake.objects["online_endpoints"].get(endpoint.lower())
    live = fake.objects["online_deployments"].get(f"{endpoint}/{name}".lower())
    if live_endpoint is None or live is None:
        return Response(204)
    props = live_endpoint["properties"]
    share = {k.lower(): v for k, v in {**props.get("traffic", {}), **props.get("mirrorTraffic", {})}.items()}
    if share.get(name.lower()):
        raise ApiError(409, "Conflict", f"Deployment {name} cannot be deleted because it has traffic "
                                        f"({share[name.lower()]} %): set its traffic to 0 first.")
    if live["properties"]["provisioningState"] == "Deleting":
        raise ApiError(409, "Conflict", f"Deployment {name} is being deleted.")
    live["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        fake.objects["online_deployments"].pop(f"{endpoint}/{name}".lower(), None)

    return fake.long_running(live["id"], finish, status=202)


# --- schedules -----------------------------------------------------------------------------------------------


def put_schedule(fake: AzureFake, request: Request) -> Response:
    name = request.groups["name"]
    body = request.json()
    props = body.get("properties") or {}
    action, trigger = props.get("action") or {}, props.get("trigger") or {}
    if not action.get("actionType") or not trigger.get("triggerType"):
        raise _bad("A schedule needs properties.action.actionType and properties.trigger.triggerType.")
    if trigger["triggerType"] == "Recurrence" and (trigger.get("frequency", "").lower() not in
                                                    ("minute", "hour", "day", "week", "month")
                                                    or int(trigger.get("interval") or 0) < 1):
        raise _bad(f"Invalid recurrence {trigger.get('frequency')!r} every {trigger.get('interval')!r}.")
    if action["actionType"] == "CreateMonitor":
        definition = action.get("monitorDefinition") or {}
        target = (definition.get("monitoringTarget") or {}).get("deploymentId")
        if target:
            match = re.search(r"onlineEndpoints/(?P<e>[^/]+)/deployments/(?P<d>[^/]+)$", target)
            if match is None or f"{match['e']}/{match['d']}".lower() not in fake.objects["online_deployments"]:
                raise _bad(f"The monitoring target deployment {target} does not exist.")
        if not definition.get("signals"):
            raise _bad("A monitor definition needs at least one signal.")
        data = tuple(c for c in fake.objects if "data" in c)
        for signal_name, signal in definition["signals"].items():
            for role in ("productionData", "referenceData"):
                uri = str((signal.get(role) or {}).get("uri") or "")
                if uri.startswith("/subscriptions/") and _asset_exists(fake, uri, "data", data) is False:
                    raise ApiError(404, "UserError.NotFound", f"Signal {signal_name}: {role} {uri} was not found.")
        if not (definition.get("computeConfiguration") or {}).get("computeType"):
            raise _bad("A monitor definition needs a computeConfiguration.")
    if trigger.get("frequency"):
        trigger["frequency"] = str(trigger["frequency"]).capitalize()  # ARM's enum casing (Hour, Day...)
    existing = fake.objects["schedules"].get(name.lower())
    rid = f"{WORKSPACE_PATH}/schedules/{name}"
    live = {"id": rid, "name": name, "type": "Microsoft.MachineLearningServices/workspaces/schedules",
            "systemData": _system(fake, existing),
            "properties": {**props, "isEnabled": props.get("isEnabled", True),
                           "provisioningState": "Updating" if existing is not None else "Creating"}}
    fake.objects["schedules"][name.lower()] = live

    def finish() -> None:
        live["properties"]["provisioningState"] = "Succeeded"

    return fake.long_running(rid, finish, status=200 if existing is not None else 201, body=live)


def get_schedule(fake: AzureFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    fake.advance(f"{WORKSPACE_PATH}/schedules/{name}")
    found = fake.objects["schedules"].get(name.lower())
    if found is None:
        raise not_found("Microsoft.MachineLearningServices/workspaces/schedules", name)
    return found


def list_schedules(fake: AzureFake, request: Request) -> dict[str, Any]:
    return {"value": list(fake.objects["schedules"].values())}


def delete_schedule(fake: AzureFake, request: Request) -> Response:
    name = request.groups["name"]
    live = fake.objects["schedules"].get(name.lower())
    if live is None:
        return Response(204)
    live["properties"]["provisioningState"] = "Deleting"

    def finish() -> None:
        fake.objects["schedules"].pop(name.lower(), None)

    return fake.long_running(live["id"], finish, status=202)


# --- fallbacks: environments and data assets (versions) --------------------------------------------------------


def _versioned(collection: str, segment: str) -> tuple[Any, Any]:
    def put(fake: AzureFake, request: Request) -> Response:
        name, version = request.groups["name"], request.groups["version"]
        body = request.json()
        key = f"{name}/{version}".lower()
        existing = fake.objects[collection].get(key)
        live = {"id": f"{WORKSPACE_PATH}/{segment}/{name}/versions/{version}", "name": version,
                "type": f"Microsoft.MachineLearningServices/workspaces/{segment}/versions",
                "systemData": _system(fake, existing),
                "properties": {**(body.get("properties") or {}), "provisioningState": "Succeeded"}}
        fake.objects[collection][key] = live
        return Response(200 if existing is not None else 201, live)

    def get(fake: AzureFake, request: Request) -> dict[str, Any]:
        found = fake.objects[collection].get(f"{request.groups['name']}/{request.groups['version']}".lower())
        if found is None:
            raise not_found(f"Microsoft.MachineLearningServices/workspaces/{segment}/versions",
                            f"{request.groups['name']}/{request.groups['version']}")
        return found

    return put, get


# --- scoring -------------------------------------------------------------------------------------------------


def score(fake: AzureFake, request: Request) -> Response:
    """POST /score on `<endpoint>.<region>.inference.ml.azure.com`: authorized by the endpoint's key (key) or an
    Entra ID token (aad_token), routed by traffic or the azureml-model-deployment header."""
    live = fake.objects["online_endpoints"].get(request.groups["endpoint"].lower())
    if live is None:
        raise ApiError(404, "EndpointNotFound", f"Endpoint {request.groups['endpoint']} does not exist.")
    auth = request.headers.get("authorization", "")
    token = auth[7:] if auth.startswith("Bearer ") else ""
    mode = live["properties"]["authMode"]
    allowed = set(fake.objects["endpoint_keys"].get(live["name"].lower(), {}).values()) if mode == "Key" \
        else fake.tokens
    if not token or token not in allowed:
        raise ApiError(401, "Unauthorized", f"The request is not authorized ({mode} authentication).")
    deployments = _deployments_of(fake, live["name"])
    wanted = request.headers.get("azureml-model-deployment")
    traffic = {k: v for k, v in live["properties"].get("traffic", {}).items() if v}
    if wanted:
        chosen = next((n for n in deployments if n.lower() == wanted.lower()), None)
        if chosen is None:
            raise ApiError(404, "DeploymentNotFound", f"Deployment {wanted} does not exist.")
    elif not traffic:
        raise ApiError(424, "NoTraffic", "No deployment takes traffic on this endpoint: set the endpoint's traffic.")
    else:
        chosen = random.choices(list(traffic), weights=list(traffic.values()))[0]
        for mirrored, percent in live["properties"].get("mirrorTraffic", {}).items():
            if percent and random.uniform(0, 100) < percent:
                counts = fake.mirrored.setdefault(live["name"].lower(), {})  # type: ignore[attr-defined]
                counts[mirrored] = counts.get(mirrored, 0) + 1
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        raise ApiError(400, "BadRequest", "The request body is not JSON.") from None
    rows = payload.get("input_data", payload.get("instances")) if isinstance(payload, dict) else payload
    predictions = [sum(v for v in (row if isinstance(row, list) else []) if isinstance(v, (int, float)))
                   for row in (rows if isinstance(rows, list) else [])]
    model = deployments[chosen]["properties"].get("model")
    return Response(200, {"predictions": predictions, "deployment": chosen, "model": model},
                    {"azureml-model-deployment": chosen})


# --- the console ---------------------------------------------------------------------------------------------


def deployments(fake: AzureFake, endpoint: str) -> dict[str, dict[str, Any]]:
    """The deployments of `endpoint`, each with its live `traffic` and `mirror` percentages."""
    with fake.lock:
        live = fake.objects["online_endpoints"].get(endpoint.lower())
        props = (live or {}).get("properties", {})
        return {name: {**d, "traffic": props.get("traffic", {}).get(name, 0),
                       "mirror": props.get("mirrorTraffic", {}).get(name, 0)}
                for name, d in _deployments_of(fake, endpoint).items()}


def set_traffic(fake: AzureFake, endpoint: str, traffic: dict[str, int], mirror: dict[str, int] | None = None
                ) -> None:
    """Change an endpoint's traffic out of band (as the portal does; validated the same way)."""
    with fake.lock:
        live = _endpoint(fake, endpoint)
        mirror = dict(live["properties"].get("mirrorTraffic", {}) if mirror is None else mirror)
        traffic = {k: v for k, v in traffic.items() if v}
        _check_traffic(fake, endpoint, traffic, {k: v for k, v in mirror.items() if v})
        _set_traffic(fake, live, traffic, {k: v for k, v in mirror.items() if v})


def seed(fake: AzureFake) -> None:
    fake.traffic_log = {}  # type: ignore[attr-defined]
    fake.mirrored = {}  # type: ignore[attr-defined]


def register(fake: AzureFake) -> None:
    fake.deployments = lambda endpoint: deployments(fake, endpoint)  # type: ignore[attr-defined]
    fake.set_traffic = lambda endpoint, traffic, mirror=None: set_traffic(  # type: ignore[attr-defined]
        fake, endpoint, traffic, mirror)
    seed(fake)
    route = fake.route
    route("arm", "GET", ENDPOINTS, "OnlineEndpoints.List", list_endpoints)
    route("arm", "PUT", ENDPOINT, "OnlineEndpoints.CreateOrUpdate", put_endpoint)
    route("arm", "GET", ENDPOINT, "OnlineEndpoints.Get", get_endpoint)
    route("arm", "DELETE", ENDPOINT, "OnlineEndpoints.Delete", delete_endpoint)
    route("arm", "POST", ENDPOINT + r"/listKeys", "OnlineEndpoints.ListKeys", list_keys)
    route("arm", "GET", DEPLOYMENTS, "OnlineDeployments.List", list_deployments)
    route("arm", "PUT", DEPLOYMENT, "OnlineDeployments.CreateOrUpdate", put_deployment)
    route("arm", "GET", DEPLOYMENT, "OnlineDeployments.Get", get_deployment)
    route("arm", "DELETE", DEPLOYMENT, "OnlineDeployments.Delete", delete_deployment)
    route("arm", "GET", SCHEDULES, "Schedules.List", list_schedules)
    route("arm", "PUT", SCHEDULE, "Schedules.CreateOrUpdate", put_schedule)
    route("arm", "GET", SCHEDULE, "Schedules.Get", get_schedule)
    route("arm", "DELETE", SCHEDULE, "Schedules.Delete", delete_schedule)
    put_env, get_env = _versioned("environments", "environments")
    route("arm", "PUT", ENVIRONMENT, "EnvironmentVersions.CreateOrUpdate", put_env)
    route("arm", "GET", ENVIRONMENT, "EnvironmentVersions.Get", get_env)
    put_data, get_data = _versioned("data", "data")
    route("arm", "PUT", DATA, "DataVersions.CreateOrUpdate", put_data)
    route("arm", "GET", DATA, "DataVersions.Get", get_data)
    route("scoring", "POST", r"/score", "Scoring.Score", score)
