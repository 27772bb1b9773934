"""Vertex AI persistent resources (aiplatform.googleapis.com/v1, PersistentResourceService) for the fake.

Routes (as aiplatform_v1's persistent_resource_service rest_base.py names them):
  POST   /v1/projects/P/locations/L/persistentResources?persistentResourceId=ID   CreatePersistentResource (LRO)
  GET    /v1/projects/P/locations/L/persistentResources                          ListPersistentResources
  GET    /v1/projects/P/locations/L/persistentResources/ID                       GetPersistentResource
  PATCH  /v1/projects/P/locations/L/persistentResources/ID?updateMask=...        UpdatePersistentResource (LRO)
  DELETE /v1/projects/P/locations/L/persistentResources/ID                       DeletePersistentResource (LRO)

A new resource is PROVISIONING until its operation completes (RUNNING, or ERROR when its machines are stocked
out: `stockout`), UPDATING while an update runs, STOPPING while deleted. Objects are kept as the JSON Google
returns (camelCase, enums by name, int64 as strings), in `fake.objects["persistentResources"]`.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from gcp_fake import ApiError, not_found

if TYPE_CHECKING:
    from gcp_fake import GcpFake, Operation, Request

COLLECTION = "persistentResources"
TYPES = "type.googleapis.com/google.cloud.aiplatform.v1."
ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
PARENT = r"/v1/(?P<parent>projects/[^/]+/locations/[^/]+)/persistentResources"
ADDRESS_LABEL = "mlplat-address"
#: machine types (or accelerator types) whose provisioning ends in ERROR, while `stockout` holds them
_STOCKED_OUT: set[str] = set()


def register(fake: GcpFake) -> None:
    fake.route("POST", PARENT, "CreatePersistentResource", _create)
    fake.route("GET", PARENT, "ListPersistentResources", _list)
    fake.route("GET", PARENT + r"/(?P<id>[^/:]+)", "GetPersistentResource", _get)
    fake.route("PATCH", PARENT + r"/(?P<id>[^/:]+)", "UpdatePersistentResource", _update)
    fake.route("DELETE", PARENT + r"/(?P<id>[^/:]+)", "DeletePersistentResource", _delete)


@contextmanager
def stockout(*machines: str) -> Iterator[None]:
    """Persistent resources on these machine or accelerator types fail to provision (ERROR) while inside."""
    _STOCKED_OUT.update(machines)
    try:
        yield
    finally:
        _STOCKED_OUT.difference_update(machines)


def by_address(fake: GcpFake, addresses: Iterable[str] = ()) -> Counter[str]:
    """Persistent resources counted per mlplat address: the `mlplat-address` label (the address with dots made
    dashes) mapped back through `addresses`; one without the label, or of an unknown address, under its name."""
    known = {_label(a): a for a in addresses}
    counted: Counter[str] = Counter()
    for name, resource in fake.objects[COLLECTION].items():
        label = (resource.get("labels") or {}).get(ADDRESS_LABEL)
        counted[known.get(label, label) if label else name] += 1
    return counted


def _label(address: str) -> str:
    return re.sub(r"[^a-z0-9_-]", "-", address.lower())[:63]


def _canonical(body: dict[str, Any]) -> dict[str, Any]:
    """`body` as Google answers it; an unknown field or a bad value is INVALID_ARGUMENT, as the JSON API says."""
    from google.cloud import aiplatform_v1

    try:
        message = aiplatform_v1.PersistentResource.from_json(json.dumps(body))
    except Exception as err:  # json_format.ParseError
        raise ApiError(400, f"Invalid JSON payload received. {err}") from None
    return json.loads(aiplatform_v1.PersistentResource.to_json(
        message, use_integers_for_enums=False, always_print_fields_with_no_presence=False))


def _pools(pools: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not pools:
        raise ApiError(400, "resource_pools is required: a PersistentResource needs at least one resource pool.")
    seen: set[str] = set()
    for i, pool in enumerate(pools):
        pool.setdefault("id", f"pool-{i}")
        if not ID.fullmatch(pool["id"]) or pool["id"] in seen:
            raise ApiError(400, f"resource_pools[{i}].id {pool['id']!r} is invalid or not unique.")
        seen.add(pool["id"])
        machine = pool.get("machineSpec") or {}
        if not machine.get("machineType"):
            raise ApiError(400, f"resource_pools[{i}].machine_spec.machine_type is required.")
        if machine.get("acceleratorType") and int(machine.get("acceleratorCount") or 0) < 1:
            raise ApiError(400, f"resource_pools[{i}].machine_spec.accelerator_count must be positive.")
        count = int(pool.get("replicaCount") or 0)
        scaling = pool.get("autoscalingSpec")
        if scaling is not None:
            low, high = int(scaling.get("minReplicaCount") or 0), int(scaling.get("maxReplicaCount") or 0)
            if not 0 < low < high or not low <= count <= high:
                raise ApiError(400, f"resource_pools[{i}]: autoscaling_spec needs 0 < min_replica_count < "
                                    f"max_replica_count and min_replica_count <= replica_count <= max_replica_count "
                                    f"(got {low}, {high}, replica_count {count}).")
        elif count < 1:
            raise ApiError(400, f"resource_pools[{i}].replica_count must be at least 1.")
    return pools


def _object(fake: GcpFake, request: Request) -> tuple[str, dict[str, Any]]:
    name = f"{request.groups['parent']}/persistentResources/{request.groups['id']}"
    found = fake.objects[COLLECTION].get(name)
    if found is None:
        raise not_found(f"PersistentResource {name}")
    return name, found


def _create(fake: GcpFake, request: Request) -> dict[str, Any]:
    parent = request.groups["parent"]
    rid = request.query.get("persistentResourceId", "")
    if not ID.fullmatch(rid):
        raise ApiError(400, f"persistent_resource_id {rid!r} is invalid: it must match [a-z]([a-z0-9-]{{0,61}}"
                            "[a-z0-9])?.")
    body = _canonical(request.json())
    _pools(body.get("resourcePools") or [])
    name = f"{parent}/persistentResources/{rid}"
    objects = fake.objects[COLLECTION]
    if name in objects:
        raise ApiError(409, f"PersistentResource {name} already exists.", "ALREADY_EXISTS")
    for pool in body["resourcePools"]:
        pool["usedReplicaCount"] = "0"
    objects[name] = resource = {**body, "name": name, "state": "PROVISIONING", "createTime": fake.now(),
                                "updateTime": fake.now()}

    def finish() -> dict[str, Any]:
        if objects.get(name) is not resource:
            raise not_found(f"PersistentResource {name}")
        machines = {m for p in resource["resourcePools"] for m in (p["machineSpec"].get("machineType"),
                                                                     p["machineSpec"].get("acceleratorType"))}
        if machines & _STOCKED_OUT:
            message = (f"The zone does not have enough resources available to fulfill the request: "
                       f"{', '.join(sorted(machines & _STOCKED_OUT))}.")
            resource.update(state="ERROR", error={"code": 8, "message": message})
            raise ApiError(429, message, "RESOURCE_EXHAUSTED")
        resource.update(state="RUNNING", startTime=fake.now(), updateTime=fake.now())
        return {"@type": TYPES + "PersistentResource", **resource}

    return fake.operation(name, TYPES + "CreatePersistentResourceOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now(), "updateTime": fake.now()})


def _get(fake: GcpFake, request: Request) -> dict[str, Any]:
    name, _ = _object(fake, request)
    advance(fake, lambda op: op.name.startswith(f"{name}/operations/"))
    if name not in fake.objects[COLLECTION]:  # a delete that just completed
        raise not_found(f"PersistentResource {name}")
    return fake.objects[COLLECTION][name]


def advance(fake: GcpFake, mine: Callable[[Operation], bool]) -> None:
    """A GET of an object whose operation is under way counts as a poll of it: the object progresses as Google's
    does, whether or not anyone polls the operation (a client that lost the operation's name waits on the
    object's state)."""
    for op in list(fake.operations.values()):
        if not op.done and mine(op):
            op.polls += 1
            if op.polls >= fake.operation_polls:
                fake._complete(op)


def _list(fake: GcpFake, request: Request) -> dict[str, Any]:
    prefix = request.groups["parent"] + "/persistentResources/"
    found = [r for n, r in sorted(fake.objects[COLLECTION].items()) if n.startswith(prefix)]
    return {"persistentResources": found} if found else {}


def _update(fake: GcpFake, request: Request) -> dict[str, Any]:
    name, resource = _object(fake, request)
    mask = request.update_mask()
    if not mask:
        raise ApiError(400, "update_mask is required.")
    unsupported = [p for p in mask if p not in ("resource_pools", "resourcePools")]
    if unsupported:
        raise ApiError(400, f"Unsupported update mask path(s): {', '.join(unsupported)}; only resource_pools can "
                            "be updated.")
    if resource["state"] != "RUNNING":
        raise ApiError(400, f"PersistentResource {name} is in state {resource['state']}; it can be updated only "
                            "when RUNNING.", "FAILED_PRECONDITION")
    pools = _pools(_canonical(request.json()).get("resourcePools") or [])
    before = {p["id"]: p["machineSpec"] for p in resource["resourcePools"]}
    if {p["id"]: p["machineSpec"] for p in pools} != before:
        raise ApiError(400, "The resource pools' ids and machine specs are immutable: only replica_count and "
                            "autoscaling_spec can be updated.")
    resource["state"] = "UPDATING"

    def finish() -> dict[str, Any]:
        if fake.objects[COLLECTION].get(name) is not resource:
            raise not_found(f"PersistentResource {name}")
        for pool in pools:
            pool["usedReplicaCount"] = "0"
        resource.update(resourcePools=pools, state="RUNNING", updateTime=fake.now())
        return {"@type": TYPES + "PersistentResource", **resource}

    return fake.operation(name, TYPES + "UpdatePersistentResourceOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now(), "updateTime": fake.now()})


def _delete(fake: GcpFake, request: Request) -> dict[str, Any]:
    name, resource = _object(fake, request)
    resource["state"] = "STOPPING"

    def finish() -> dict[str, Any]:
        fake.objects[COLLECTION].pop(name, None)
        return {"@type": "type.googleapis.com/google.protobuf.Empty"}

    return fake.operation(name, TYPES + "DeleteOperationMetadata", finish,
                          genericMetadata={"createTime": fake.now(), "updateTime": fake.now()})
