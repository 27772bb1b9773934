"""Filestore (file.googleapis.com/v1, CloudFilestoreManager) instances for the fake.

Routes (as filestore_v1's cloud_filestore_manager rest_base.py names them):
  POST   /v1/projects/P/locations/L/instances?instanceId=ID        CreateInstance (LRO)
  GET    /v1/projects/P/locations/L/instances                      ListInstances
  GET    /v1/projects/P/locations/L/instances/ID                   GetInstance
  PATCH  /v1/projects/P/locations/L/instances/ID?updateMask=...    UpdateInstance (LRO)
  DELETE /v1/projects/P/locations/L/instances/ID                   DeleteInstance (LRO)
Operations are `projects/P/locations/L/operations/N` (the core serves GetOperation).

L is a zone for BASIC_HDD, BASIC_SSD and ZONAL instances, a region for REGIONAL and ENTERPRISE ones. An instance is
CREATING until its operation completes (READY, with an IP 10.x.y.2 on its network), DELETING while deleted. One file
share, within the tier's capacity range; BASIC tiers never shrink (INVALID_ARGUMENT).
"""

from __future__ import annotations

import json
import re
from collections import Counter
from typing import TYPE_CHECKING, Any

from gcp_fake import ApiError, not_found
from gcp_fake.vertex_compute import advance

if TYPE_CHECKING:
    from gcp_fake import GcpFake, Request

COLLECTION = "instances"
ID = re.compile(r"[a-z]([a-z0-9-]{0,61}[a-z0-9])?")
SHARE = re.compile(r"[a-zA-Z][a-zA-Z0-9_]{0,15}")
ZONE = re.compile(r"[a-z]+-[a-z]+\d+-[a-z]")
PARENT = r"/v1/(?P<parent>projects/[^/]+/locations/(?P<location>[^/]+))/instances"
#: tier → (min GB, max GB, lives in a zone)
TIERS = {"BASIC_HDD": (1024, 65434, True), "BASIC_SSD": (2560, 65434, True), "ZONAL": (1024, 102400, True),
         "REGIONAL": (1024, 102400, False), "ENTERPRISE": (1024, 10240, False)}
OPERATION_METADATA = "type.googleapis.com/google.cloud.common.OperationMetadata"


def register(fake: GcpFake) -> None:
    fake.route("POST", PARENT, "CreateInstance", _create)
    fake.route("GET", PARENT, "ListInstances", _list)
    fake.route("GET", PARENT + r"/(?P<id>[^/:]+)", "GetInstance", _get)
    fake.route("PATCH", PARENT + r"/(?P<id>[^/:]+)", "UpdateInstance", _update)
    fake.route("DELETE", PARENT + r"/(?P<id>[^/:]+)", "DeleteInstance", _delete)


def by_address(fake: GcpFake) -> Counter[str]:
    """Instances counted per mlplat address (their description `mlplat:<address>`), else under their name."""
    counted: Counter[str] = Counter()
    for name, instance in fake.objects[COLLECTION].items():
        description = instance.get("description") or ""
        counted[description[len("mlplat:"):] if description.startswith("mlplat:") else name] += 1
    return counted


def _canonical(body: dict[str, Any]) -> dict[str, Any]:
    from google.cloud import filestore_v1

    try:
        message = filestore_v1.Instance.from_json(json.dumps(body))
    except Exception as err:  # json_format.ParseError
        raise ApiError(400, f"Invalid JSON payload received. {err}") from None
    return json.loads(filestore_v1.Instance.to_json(message, use_integers_for_enums=False,
                                                    always_print_fields_with_no_presence=False))


def _check_capacity(tier: str, shares: list[dict[str, Any]]) -> None:
    if len(shares) != 1:
        raise ApiError(400, f"An instance of tier {tier} has exactly one file share (got {len(shares)}).")
    share = shares[0]
    if not SHARE.fullmatch(share.get("name", "")):
        raise ApiError(400, f"file_shares[0].name {share.get('name')!r} is invalid: it must match "
                            "[a-zA-Z][a-zA-Z0-9_]{0,15}.")
    low, high, _ = TIERS[tier]
    capacity = int(share.get("capacityGb") or 0)
    if not low <= capacity <= high:
        raise ApiError(400, f"Invalid value for file_shares[0].capacity_gb: {capacity}. An instance of tier {tier} "
                            f"must have a capacity between {low} GB and {high} GB.")


def _object(fake: GcpFake, request: Request) -> tuple[str, dict[str, Any]]:
    name = f"{request.groups['parent']}/instances/{request.groups['id']}"
    found = fake.objects[COLLECTION].get(name)
    if found is None:
        raise not_found(f"Resource '{name}'")
    return name, found


def _operation(fake: GcpFake, parent: str, name: str, verb: str, finish: Any) -> dict[str, Any]:
    return fake.operation(parent, OPERATION_METADATA, finish, createTime=fake.now(), target=name, verb=verb,
                          apiVersion="v1")


def _create(fake: GcpFake, request: Request) -> dict[str, Any]:
    parent, location = request.groups["parent"], request.groups["location"]
    iid = request.query.get("instanceId", "")
    if not ID.fullmatch(iid):
        raise ApiError(400, f"instance_id {iid!r} is invalid: it must be 1 to 63 characters, start with a letter, "
                            "and contain only lowercase letters, digits and hyphens, not ending with a hyphen.")
    body = _canonical(request.json())
    tier = body.get("tier", "TIER_UNSPECIFIED")
    if tier not in TIERS:
        raise ApiError(400, f"tier {tier} is not supported: choose one of {', '.join(TIERS)}.")
    zonal = TIERS[tier][2]
    if bool(ZONE.fullmatch(location)) != zonal:
        raise ApiError(400, f"An instance of tier {tier} must be created in a {'zone' if zonal else 'region'}, "
                            f"not {location}.")
    _check_capacity(tier, body.get("fileShares") or [])
    networks = body.get("networks") or []
    if len(networks) != 1 or not networks[0].get("network"):
        raise ApiError(400, "networks: exactly one network with its name is required.")
    name = f"{parent}/instances/{iid}"
    objects = fake.objects[COLLECTION]
    if name in objects:
        raise ApiError(409, f"Resource '{name}' already exists", "ALREADY_EXISTS")
    objects[name] = instance = {**body, "name": name, "state": "CREATING", "createTime": fake.now()}

    def finish() -> dict[str, Any]:
        if objects.get(name) is not instance:
            raise not_found(f"Resource '{name}'")
        n = int(fake.new_id())
        network = instance["networks"][0]
        network.setdefault("modes", ["MODE_IPV4"])
        network.update(ipAddresses=[f"10.{(n >> 8) & 255}.{n & 255}.2"],
                       reservedIpRange=f"10.{(n >> 8) & 255}.{n & 255}.0/29", connectMode="DIRECT_PEERING")
        instance.update(state="READY", etag=f"etag-{n}")
        return {"@type": "type.googleapis.com/google.cloud.filestore.v1.Instance", **instance}

    return _operation(fake, parent, name, "create", finish)


def _get(fake: GcpFake, request: Request) -> dict[str, Any]:
    name, _ = _object(fake, request)
    advance(fake, lambda op: op.metadata.get("target") == name)  # it progresses without its operation's polls
    if name not in fake.objects[COLLECTION]:  # a delete that just completed
        raise not_found(f"Resource '{name}'")
    return fake.objects[COLLECTION][name]


def _list(fake: GcpFake, request: Request) -> dict[str, Any]:
    prefix = request.groups["parent"] + "/instances/"
    found = [i for n, i in sorted(fake.objects[COLLECTION].items()) if n.startswith(prefix)]
    return {"instances": found} if found else {}


def _update(fake: GcpFake, request: Request) -> dict[str, Any]:
    name, instance = _object(fake, request)
    mask = [{"fileShares": "file_shares"}.get(p, p) for p in request.update_mask()]
    if not mask:
        raise ApiError(400, "update_mask is required.")
    unsupported = [p for p in mask if p not in ("file_shares", "description", "labels")]
    if unsupported:
        raise ApiError(400, f"Unsupported update mask path(s): {', '.join(unsupported)}.")
    if instance["state"] != "READY":
        raise ApiError(400, f"Instance {name} is {instance['state']}: it can be updated only when READY.",
                       "FAILED_PRECONDITION")
    body = _canonical(request.json())
    change: dict[str, Any] = {}
    if "file_shares" in mask:
        shares, tier = body.get("fileShares") or [], instance["tier"]
        _check_capacity(tier, shares)
        before = instance["fileShares"][0]
        if shares[0]["name"] != before["name"]:
            raise ApiError(400, "A file share cannot be renamed.")
        if int(shares[0]["capacityGb"]) < int(before["capacityGb"]) and tier.startswith("BASIC_"):
            raise ApiError(400, f"Decreasing the capacity of an instance of tier {tier} is not supported "
                                f"({before['capacityGb']} GB to {shares[0]['capacityGb']} GB): it can only grow.")
        change["fileShares"] = [{**before, **shares[0]}]
    for field in ("description", "labels"):
        if field in mask:
            change[field] = body.get(field, {} if field == "labels" else "")

    def finish() -> dict[str, Any]:
        if fake.objects[COLLECTION].get(name) is not instance:
            raise not_found(f"Resource '{name}'")
        instance.update(change)
        return {"@type": "type.googleapis.com/google.cloud.filestore.v1.Instance", **instance}

    return _operation(fake, name.rsplit("/instances/", 1)[0], name, "update", finish)


def _delete(fake: GcpFake, request: Request) -> dict[str, Any]:
    name, instance = _object(fake, request)
    instance["state"] = "DELETING"

    def finish() -> dict[str, Any]:
        fake.objects[COLLECTION].pop(name, None)
        return {"@type": "type.googleapis.com/google.protobuf.Empty"}

    return _operation(fake, name.rsplit("/instances/", 1)[0], name, "delete", finish)
