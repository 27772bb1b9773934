"""Vertex AI serving on the fake: endpoints (EndpointService), deployed models, predictions (PredictionService) and
model deployment monitoring jobs (JobService), with the REST paths, JSON shapes, long-running operations and
refusals of the real API.

State: `objects["endpoints"][name]` (an Endpoint as Google's JSON API returns it: `deployedModels`,
`trafficSplit`, `predictRequestResponseLoggingConfig`...) and `objects["monitoring_jobs"][name]` (a
ModelDeploymentMonitoringJob). A deployed model joins its endpoint when its DeployModel operation finishes, and
leaves it when its UndeployModel operation finishes; ids still being deployed are held in `fake.pending_deploys`.

Helpers for the harness and tests (the console): `fake.deployed(endpoint)` lists the deployed models,
`fake.set_traffic(endpoint, split)` changes the traffic split out of band, `fake.traffic_log[endpoint]` is every
split the endpoint has had (in order), so a test can prove no moment went without traffic.
"""

from __future__ import annotations

import json
import random
import re
from typing import TYPE_CHECKING, Any

from gcp_fake import ApiError, Request, Response, not_found

if TYPE_CHECKING:
    from gcp_fake import GcpFake

V1 = "type.googleapis.com/google.cloud.aiplatform.v1."
EMPTY = {"@type": "type.googleapis.com/google.protobuf.Empty"}
LOC = r"/v1/(?P<parent>projects/[^/]+/locations/[^/]+)"
ENDPOINT = r"/v1/(?P<name>projects/[^/]+/locations/[^/]+/endpoints/[^/:]+)"
JOB = r"/v1/(?P<name>projects/[^/]+/locations/[^/]+/modelDeploymentMonitoringJobs/[^/:]+)"
#: an endpoint id: a letter then [a-z0-9-] (≤ 63, not ending in '-'), or ≤ 9 digits without a leading zero
ENDPOINT_ID = re.compile(r"[a-z](?:[a-z0-9-]{0,61}[a-z0-9])?|[1-9][0-9]{0,8}")
DEPLOYED_ID = re.compile(r"[0-9]{1,10}")
#: fields UpdateEndpoint accepts in its update_mask (snake_case as the API documents, camelCase as clients send)
ENDPOINT_MASK = {"display_name", "description", "labels", "traffic_split", "predict_request_response_logging_config",
                 "client_connection_config"}
MUTATE_MASK = {"dedicated_resources.min_replica_count", "dedicated_resources.max_replica_count",
               "dedicated_resources.autoscaling_metric_specs", "disable_container_logging"}
JOB_MASK = {"display_name", "model_deployment_monitoring_schedule_config", "model_monitoring_alert_config",
            "logging_sampling_strategy", "labels", "log_ttl", "enable_monitoring_pipeline_logs",
            "model_deployment_monitoring_objective_configs"}


def _snake(field: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), field)


def _mask(request: Request, allowed: set[str]) -> list[str]:
    paths = [_snake(p) for p in request.update_mask()]
    if not paths:
        raise ApiError(400, "update_mask is required.")
    bad = [p for p in paths if p not in allowed and not any(p.startswith(a + ".") for a in allowed)]
    if bad:
        raise ApiError(400, f"Unsupported update_mask paths: {', '.join(bad)}.")
    return paths


def _endpoint(fake: GcpFake, name: str) -> dict[str, Any]:
    endpoint = fake.objects["endpoints"].get(name)
    if endpoint is None:
        raise not_found(f"Endpoint {name}")
    return endpoint


def _check_split(split: dict[str, Any], ids: set[str], what: str) -> dict[str, int]:
    """A traffic split as Vertex AI validates it: known deployed model ids, integer percentages summing to 100."""
    out: dict[str, int] = {}
    for key, value in split.items():
        if key not in ids:
            raise ApiError(400, f"{what}: traffic_split refers to deployed model {key}, which is not deployed.")
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= 100:
            raise ApiError(400, f"{what}: traffic_split values must be integers in [0, 100], got {value!r}.")
        out[key] = value
    if out and sum(out.values()) != 100:
        raise ApiError(400, f"{what}: the sum of traffic_split values must be 100, got {sum(out.values())}.")
    return out


def _set_split(fake: GcpFake, endpoint: dict[str, Any], split: dict[str, int]) -> None:
    endpoint["trafficSplit"] = {k: v for k, v in split.items()}
    if not endpoint["trafficSplit"]:
        endpoint.pop("trafficSplit")
    endpoint["updateTime"] = fake.now()
    fake.traffic_log.setdefault(endpoint["name"], []).append(dict(split))


def _known_model(fake: GcpFake, model: str) -> tuple[str, str]:
    """(model name, version id) of a deployed model's `model` (`.../models/ID`, `@VERSION` or `@alias`), resolved
    by the Model Registry fake (vertex_models) once it holds any version; before that, taken as given."""
    if not re.fullmatch(r"projects/[^/]+/locations/[^/]+/models/[^/@]+(@[A-Za-z0-9-]+)?", model or ""):
        raise ApiError(400, f"Invalid Model resource name: {model!r}.")
    base, _, version = model.partition("@")
    if fake.objects.get("model_versions") is None:
        return base, version or "1"
    from gcp_fake.vertex_models import resolve

    return base, resolve(fake, model)["versionId"]


# --- endpoints -------------------------------------------------------------------------------------------


def create_endpoint(fake: GcpFake, request: Request) -> dict[str, Any]:
    body = request.json()
    endpoint_id = request.query.get("endpointId") or fake.new_id()
    if not ENDPOINT_ID.fullmatch(endpoint_id):
        raise ApiError(400, f"Endpoint id {endpoint_id!r} is invalid: use up to 63 characters [a-z0-9-] starting "
                            "with a letter, or up to 9 digits.")
    if not body.get("displayName"):
        raise ApiError(400, "Endpoint.display_name is required.")
    name = f"{request.groups['parent']}/endpoints/{endpoint_id}"
    if name in fake.objects["endpoints"]:
        raise ApiError(409, f"Endpoint {name} already exists.")
    now = fake.now()
    endpoint = {"name": name, "displayName": body["displayName"], "etag": fake.new_id(), "createTime": now,
                "updateTime": now}
    for key in ("description", "labels"):
        if body.get(key):
            endpoint[key] = body[key]
    if body.get("predictRequestResponseLoggingConfig"):
        endpoint["predictRequestResponseLoggingConfig"] = _logging(body["predictRequestResponseLoggingConfig"],
                                                                   name, fake)
    fake.objects["endpoints"][name] = endpoint
    fake.traffic_log[name] = []
    fake.pending_deploys.pop(name, None)
    return fake.operation(name, V1 + "CreateEndpointOperationMetadata",
                          lambda: {"@type": V1 + "Endpoint", **endpoint},
                          genericMetadata={"createTime": now, "updateTime": now})


def _logging(config: dict[str, Any], name: str, fake: GcpFake) -> dict[str, Any]:
    """Vertex AI makes a BigQuery table for request/response logs when the config names none."""
    out = dict(config)
    rate = out.get("samplingRate", 0)
    if not isinstance(rate, (int, float)) or not 0 <= rate <= 1:
        raise ApiError(400, f"sampling_rate must be in [0, 1], got {rate!r}.")
    if out.get("enabled") and not (out.get("bigqueryDestination") or {}).get("outputUri"):
        endpoint_id = name.rsplit("/", 1)[1].replace("-", "_")
        out["bigqueryDestination"] = {"outputUri": f"bq://{fake.project}.logging_{endpoint_id}"
                                                   f".request_response_logging"}
    return out


def get_endpoint(fake: GcpFake, request: Request) -> dict[str, Any]:
    return _endpoint(fake, request.groups["name"])


def list_endpoints(fake: GcpFake, request: Request) -> dict[str, Any]:
    prefix = request.groups["parent"] + "/endpoints/"
    found = [e for n, e in sorted(fake.objects["endpoints"].items()) if n.startswith(prefix)]
    return {"endpoints": found} if found else {}


def update_endpoint(fake: GcpFake, request: Request) -> dict[str, Any]:
    endpoint = _endpoint(fake, request.groups["name"])
    body = request.json()
    for path in _mask(request, ENDPOINT_MASK):
        if path == "traffic_split":
            ids = {m["id"] for m in endpoint.get("deployedModels", [])}
            _set_split(fake, endpoint, _check_split(body.get("trafficSplit") or {}, ids, "UpdateEndpoint"))
        elif path == "predict_request_response_logging_config":
            config = body.get("predictRequestResponseLoggingConfig")
            if config:
                endpoint["predictRequestResponseLoggingConfig"] = _logging(config, endpoint["name"], fake)
            else:
                endpoint.pop("predictRequestResponseLoggingConfig", None)
        elif path == "display_name":
            if not body.get("displayName"):
                raise ApiError(400, "Endpoint.display_name is required.")
            endpoint["displayName"] = body["displayName"]
        else:
            camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path)
            if body.get(camel) in (None, "", {}, []):
                endpoint.pop(camel, None)
            else:
                endpoint[camel] = body[camel]
    endpoint["updateTime"] = fake.now()
    endpoint["etag"] = fake.new_id()
    return endpoint


def delete_endpoint(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    endpoint = _endpoint(fake, name)
    if endpoint.get("deployedModels"):
        raise ApiError(400, f"Endpoint {name} has deployed models: undeploy them first.", "FAILED_PRECONDITION")

    def finish() -> dict[str, Any]:
        fake.objects["endpoints"].pop(name, None)
        return EMPTY

    return fake.operation(name, V1 + "DeleteOperationMetadata", finish, genericMetadata={"createTime": fake.now()})


# --- deployed models ---------------------------------------------------------------------------------------


def deploy_model(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    endpoint = _endpoint(fake, name)
    body = request.json()
    model = dict(body.get("deployedModel") or {})
    deployed_id = model.get("id") or fake.new_id()
    if not DEPLOYED_ID.fullmatch(str(deployed_id)):
        raise ApiError(400, f"DeployedModel.id {deployed_id!r} is invalid: 1-10 characters [0-9].")
    ids = {m["id"] for m in endpoint.get("deployedModels", [])}
    pending = fake.pending_deploys.setdefault(name, set())
    if deployed_id in ids or deployed_id in pending:
        raise ApiError(409, f"DeployedModel with id {deployed_id} already exists in Endpoint {name}.")
    base, version = _known_model(fake, model.get("model", ""))
    resources = model.get("dedicatedResources")
    if not resources or not (resources.get("machineSpec") or {}).get("machineType"):
        raise ApiError(400, "DeployedModel.dedicated_resources.machine_spec.machine_type is required.")
    low, high = resources.get("minReplicaCount", 0), resources.get("maxReplicaCount", 0)
    if low < 1 or (high and high < low):
        raise ApiError(400, f"Invalid replica counts: min {low}, max {high}.")
    spec = resources["machineSpec"]
    if isinstance(spec.get("acceleratorType"), int):  # the REST clients send enums as numbers; Google answers names
        from google.cloud.aiplatform_v1 import AcceleratorType

        spec["acceleratorType"] = AcceleratorType(spec["acceleratorType"]).name
    if spec.get("acceleratorType", "ACCELERATOR_TYPE_UNSPECIFIED") != "ACCELERATOR_TYPE_UNSPECIFIED" \
            and spec.get("acceleratorCount", 0) < 1:
        raise ApiError(400, "machine_spec.accelerator_count must be at least 1 with an accelerator_type.")
    split = body.get("trafficSplit") or {}
    checked = _check_split(split, ids | {"0"}, "DeployModel") if split else None
    pending.add(deployed_id)
    deployed = {**model, "id": deployed_id, "model": base, "modelVersionId": version, "createTime": fake.now(),
                "dedicatedResources": {**resources, "maxReplicaCount": high or low}}

    def finish() -> dict[str, Any]:
        pending.discard(deployed_id)
        live = fake.objects["endpoints"].get(name)
        if live is None:
            raise ApiError(404, f"Endpoint {name} not found.")
        live.setdefault("deployedModels", []).append(deployed)
        if checked is not None:
            _set_split(fake, live, {(deployed_id if k == "0" else k): v for k, v in checked.items()})
        return {"@type": V1 + "DeployModelResponse", "deployedModel": deployed}

    return fake.operation(name, V1 + "DeployModelOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now()})


def undeploy_model(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    endpoint = _endpoint(fake, name)
    body = request.json()
    deployed_id = str(body.get("deployedModelId", ""))
    ids = {m["id"] for m in endpoint.get("deployedModels", [])}
    if deployed_id not in ids:
        raise not_found(f"DeployedModel {deployed_id} of Endpoint {name}")
    split = body.get("trafficSplit") or {}
    checked = _check_split(split, ids, "UndeployModel") if split else None
    rest = ids - {deployed_id}
    if checked is not None and checked.get(deployed_id, 0):
        raise ApiError(400, f"traffic_split still gives DeployedModel {deployed_id} traffic.", "FAILED_PRECONDITION")
    if checked is None and rest and endpoint.get("trafficSplit", {}).get(deployed_id, 0) > 0:
        raise ApiError(400, f"DeployedModel {deployed_id} still has traffic: give it to the other deployed models "
                            "with traffic_split.", "FAILED_PRECONDITION")

    def finish() -> dict[str, Any]:
        live = fake.objects["endpoints"].get(name)
        if live is None:
            return {"@type": V1 + "UndeployModelResponse"}
        live["deployedModels"] = [m for m in live.get("deployedModels", []) if m["id"] != deployed_id]
        if not live["deployedModels"]:
            live.pop("deployedModels")
            _set_split(fake, live, {})
        elif checked is not None:
            _set_split(fake, live, {k: v for k, v in checked.items() if k != deployed_id})
        elif deployed_id in live.get("trafficSplit", {}):
            _set_split(fake, live, {k: v for k, v in live["trafficSplit"].items() if k != deployed_id})
        return {"@type": V1 + "UndeployModelResponse"}

    return fake.operation(name, V1 + "UndeployModelOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now()})


def mutate_deployed_model(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    endpoint = _endpoint(fake, name)
    body = request.json()
    change = body.get("deployedModel") or {}
    paths = [_snake(p) for p in (body.get("updateMask") or "").split(",") if p] if isinstance(
        body.get("updateMask"), str) else [_snake(p) for p in (body.get("updateMask") or {}).get("paths", [])]
    bad = [p for p in paths if p not in MUTATE_MASK]
    if not paths or bad:
        raise ApiError(400, f"update_mask must name fields of {sorted(MUTATE_MASK)}, got {paths}.")
    model = next((m for m in endpoint.get("deployedModels", []) if m["id"] == str(change.get("id"))), None)
    if model is None:
        raise not_found(f"DeployedModel {change.get('id')} of Endpoint {name}")
    wanted = change.get("dedicatedResources") or {}

    def finish() -> dict[str, Any]:
        for path in paths:
            if path.startswith("dedicated_resources."):
                key = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), path.split(".", 1)[1])
                model["dedicatedResources"][key] = wanted.get(key)
            else:
                model["disableContainerLogging"] = change.get("disableContainerLogging", False)
        return {"@type": V1 + "MutateDeployedModelResponse", "deployedModel": model}

    return fake.operation(name, V1 + "MutateDeployedModelOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now()})


# --- predictions ---------------------------------------------------------------------------------------------


def _choose(fake: GcpFake, name: str) -> dict[str, Any]:
    endpoint = _endpoint(fake, name)
    models = {m["id"]: m for m in endpoint.get("deployedModels", [])}
    split = {k: v for k, v in endpoint.get("trafficSplit", {}).items() if v > 0 and k in models}
    if not models or not split:
        raise ApiError(400, f"Endpoint {name} has no deployed model with traffic.", "FAILED_PRECONDITION")
    chosen = random.choices(list(split), weights=list(split.values()))[0]
    return models[chosen]


def _answer(fake: GcpFake, request: Request, body: dict[str, Any]) -> Response:
    name = request.groups["name"]
    return Response(200, body, {"X-Vertex-AI-Endpoint-Id": name.rsplit("/", 1)[1],
                                "X-Vertex-AI-Deployed-Model-Id": body.get("deployedModelId", "")})


def predict(fake: GcpFake, request: Request) -> Response:
    payload = request.json()
    instances = payload.get("instances")
    if not isinstance(instances, list):
        raise ApiError(400, "instances must be a list.")
    model = _choose(fake, request.groups["name"])
    return _answer(fake, request, {
        "predictions": [_score(i) for i in instances], "deployedModelId": model["id"], "model": model["model"],
        "modelDisplayName": model.get("displayName", ""), "modelVersionId": model.get("modelVersionId", "1")})


def raw_predict(fake: GcpFake, request: Request) -> Response:
    try:
        payload = json.loads(request.body or b"null")
    except ValueError:
        raise ApiError(400, "Invalid JSON payload received.") from None
    model = _choose(fake, request.groups["name"])
    instances = payload.get("instances", []) if isinstance(payload, dict) else []
    return _answer(fake, request, {"predictions": [_score(i) for i in instances], "deployedModelId": model["id"]})


def _score(instance: Any) -> float:
    """The fake serves no model: a deterministic number per instance (the sum of its numbers)."""
    values = instance if isinstance(instance, list) else list(instance.values()) if isinstance(instance, dict) else []
    return float(sum(v for v in values if isinstance(v, (int, float))))


# --- model deployment monitoring jobs -----------------------------------------------------------------------


def _check_job(fake: GcpFake, job: dict[str, Any]) -> None:
    endpoint = _endpoint(fake, job.get("endpoint", ""))
    ids = {m["id"] for m in endpoint.get("deployedModels", [])}
    configs = job.get("modelDeploymentMonitoringObjectiveConfigs") or []
    if not configs:
        raise ApiError(400, "model_deployment_monitoring_objective_configs is required.")
    for config in configs:
        if config.get("deployedModelId") not in ids:
            raise ApiError(400, f"DeployedModel {config.get('deployedModelId')} is not deployed on "
                                f"{endpoint['name']}.")
        dataset = (config.get("objectiveConfig") or {}).get("trainingDataset") or {}
        uris = (dataset.get("gcsSource") or {}).get("uris") or []
        if dataset and (not uris or not all(u.startswith("gs://") for u in uris)):
            raise ApiError(400, "training_dataset.gcs_source.uris must be gs:// URIs.")
        if dataset.get("dataFormat") not in (None, "csv", "jsonl", "tf-record"):
            raise ApiError(400, f"Unsupported data_format {dataset.get('dataFormat')!r}.")
    interval = (job.get("modelDeploymentMonitoringScheduleConfig") or {}).get("monitorInterval", "")
    seconds = float(interval.rstrip("s") or 0) if isinstance(interval, str) else 0
    if seconds < 3600 or seconds % 3600:
        raise ApiError(400, f"monitor_interval must be a whole number of hours (at least 1h), got {interval!r}.")
    emails = ((job.get("modelMonitoringAlertConfig") or {}).get("emailAlertConfig") or {}).get("userEmails") or []
    if any("@" not in e for e in emails):
        raise ApiError(400, f"Invalid e-mail addresses: {emails}.")


def create_job(fake: GcpFake, request: Request) -> dict[str, Any]:
    body = request.json()
    if not body.get("displayName"):
        raise ApiError(400, "ModelDeploymentMonitoringJob.display_name is required.")
    _check_job(fake, body)
    endpoint = fake.objects["endpoints"][body["endpoint"]]
    if endpoint.get("modelDeploymentMonitoringJob") in fake.objects["monitoring_jobs"]:
        raise ApiError(400, f"Endpoint {endpoint['name']} already has a model deployment monitoring job "
                            f"({endpoint['modelDeploymentMonitoringJob']}).", "FAILED_PRECONDITION")
    name = f"{request.groups['parent']}/modelDeploymentMonitoringJobs/{fake.new_id()}"
    now = fake.now()
    job = {**body, "name": name, "state": "JOB_STATE_RUNNING", "scheduleState": "PENDING", "createTime": now,
           "updateTime": now, "nextScheduleTime": now}
    fake.objects["monitoring_jobs"][name] = job
    endpoint["modelDeploymentMonitoringJob"] = name
    return job


def _job(fake: GcpFake, name: str) -> dict[str, Any]:
    job = fake.objects["monitoring_jobs"].get(name)
    if job is None:
        raise not_found(f"ModelDeploymentMonitoringJob {name}")
    return job


def get_job(fake: GcpFake, request: Request) -> dict[str, Any]:
    return _job(fake, request.groups["name"])


def list_jobs(fake: GcpFake, request: Request) -> dict[str, Any]:
    """Filters as the API does on `labels.KEY=VALUE` / `display_name=...` terms joined by AND."""
    prefix = request.groups["parent"] + "/modelDeploymentMonitoringJobs/"
    terms = [t.strip() for t in re.split(r"\s+AND\s+", request.query.get("filter", "")) if t.strip()]
    found = []
    for name, job in sorted(fake.objects["monitoring_jobs"].items()):
        if not name.startswith(prefix):
            continue
        ok = True
        for term in terms:
            key, _, value = term.partition("=")
            key, value = key.strip(), value.strip().strip('"')
            seen = (job.get("labels") or {}).get(key[7:]) if key.startswith("labels.") else \
                job.get(re.sub(r"_([a-z])", lambda m: m.group(1).upper(), key))
            ok = ok and seen == value
        if ok:
            found.append(job)
    return {"modelDeploymentMonitoringJobs": found} if found else {}


def update_job(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    job = _job(fake, name)
    body = request.json()
    paths = _mask(request, JOB_MASK)
    changed = dict(job)
    for path in paths:
        top = path.split(".", 1)[0]
        camel = re.sub(r"_([a-z])", lambda m: m.group(1).upper(), top)
        if body.get(camel) in (None, {}, []):
            changed.pop(camel, None)
        else:
            changed[camel] = body[camel]
    _check_job(fake, changed)

    def finish() -> dict[str, Any]:
        job.clear()
        job.update(changed, updateTime=fake.now())
        return {"@type": V1 + "ModelDeploymentMonitoringJob", **job}

    return fake.operation(name, V1 + "UpdateModelDeploymentMonitoringJobOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now()})


def delete_job(fake: GcpFake, request: Request) -> dict[str, Any]:
    name = request.groups["name"]
    _job(fake, name)

    def finish() -> dict[str, Any]:
        job = fake.objects["monitoring_jobs"].pop(name, None)
        endpoint = fake.objects["endpoints"].get((job or {}).get("endpoint", ""))
        if endpoint is not None and endpoint.get("modelDeploymentMonitoringJob") == name:
            endpoint.pop("modelDeploymentMonitoringJob")
        return EMPTY

    return fake.operation(name, V1 + "DeleteOperationMetadata", finish, genericMetadata={"createTime": fake.now()})


# --- the console ------------------------------------------------------------------------------------------


def deployed(fake: GcpFake, endpoint: str) -> list[dict[str, Any]]:
    """The models deployed on `endpoint` (its full name), each with its share of traffic as `traffic`."""
    with fake.lock:
        live = fake.objects["endpoints"].get(endpoint) or {}
        split = live.get("trafficSplit", {})
        return [{**m, "traffic": split.get(m["id"], 0)} for m in live.get("deployedModels", [])]


def set_traffic(fake: GcpFake, endpoint: str, split: dict[str, int]) -> None:
    """Change an endpoint's traffic split out of band (as the console does; validated the same way)."""
    with fake.lock:
        live = _endpoint(fake, endpoint)
        ids = {m["id"] for m in live.get("deployedModels", [])}
        _set_split(fake, live, _check_split(split, ids, "console"))


def register(fake: GcpFake) -> None:
    fake.traffic_log = {}  # type: ignore[attr-defined]
    fake.pending_deploys = {}  # type: ignore[attr-defined]
    fake.deployed = lambda endpoint: deployed(fake, endpoint)  # type: ignore[attr-defined]
    fake.set_traffic = lambda endpoint, split: set_traffic(fake, endpoint, split)  # type: ignore[attr-defined]
    route = fake.route
    route("POST", LOC + r"/endpoints", "CreateEndpoint", create_endpoint)
    route("GET", LOC + r"/endpoints", "ListEndpoints", list_endpoints)
    route("GET", ENDPOINT, "GetEndpoint", get_endpoint)
    route("PATCH", ENDPOINT, "UpdateEndpoint", update_endpoint)
    route("DELETE", ENDPOINT, "DeleteEndpoint", delete_endpoint)
    route("POST", ENDPOINT + r":deployModel", "DeployModel", deploy_model)
    route("POST", ENDPOINT + r":undeployModel", "UndeployModel", undeploy_model)
    route("POST", ENDPOINT + r":mutateDeployedModel", "MutateDeployedModel", mutate_deployed_model)
    route("POST", ENDPOINT + r":predict", "Predict", predict)
    route("POST", ENDPOINT + r":rawPredict", "RawPredict", raw_predict)
    route("POST", LOC + r"/modelDeploymentMonitoringJobs", "CreateModelDeploymentMonitoringJob", create_job)
    route("GET", LOC + r"/modelDeploymentMonitoringJobs", "ListModelDeploymentMonitoringJobs", list_jobs)
    route("GET", JOB, "GetModelDeploymentMonitoringJob", get_job)
    route("PATCH", JOB, "UpdateModelDeploymentMonitoringJob", update_job)
    route("DELETE", JOB, "DeleteModelDeploymentMonitoringJob", delete_job)
