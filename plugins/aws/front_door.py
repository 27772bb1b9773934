"""The aws front door: Route 53 weighted records `<endpoint>.<stack>.<zone>`, one per upstream (SetIdentifier = the
upstream's name, Weight = its weight), each with a health check, so resolvers stop answering with an unhealthy one.

Every create, update and delete converges the record's weighted sets to the upstreams in ONE change batch (Route 53
applies a batch atomically: a 90/10 → 50/50 shift never passes through another split), checkpoints the change and
waits until it is INSYNC on Route 53's name servers, then deletes the health checks nothing references any more.
Health checks are made with a CallerReference hashed from the record, the upstream, the step's token and the check's
settings: a retried step gets the same check back, and the record's prefix lets a sweep find those a crash left
behind. Resolvers may keep an old answer for the TTL (60 s) after a change.

DNS only routes: a client resolves the record, then speaks to the upstream it got (its TLS name, its signature, its
key), and Route 53 health-checks only public addresses (an upstream on a private or loopback address, a local
target's, is refused by CreateHealthCheck itself; a fake server such as moto accepts it).

Id: `<hosted zone id>/<record>` (what `mlplat import` takes).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from mlplat_plugins.aws.base import ADDRESS_TAG, TOKEN_TAG, AwsProvider, tag_value
from mlplat_plugins.aws.sdk import AwsApiError
from provisioner import cloud
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

TTL = 60
CHANGE = "ChangeResourceRecordSets"
IMPORT_ID = re.compile(r"(?:/hostedzone/)?([A-Z0-9]{1,32})/([a-z0-9.-]{1,253})")
DEFAULT_PORTS = {"http": 80, "https": 443}


@dataclass(frozen=True)
class Route:
    """One upstream as Route 53 sees it: a weighted record set and the health check guarding it."""

    name: str
    weight: int
    type: str  # CNAME, or A / AAAA for an IP literal
    host: str
    scheme: str
    port: int
    path: str

    @classmethod
    def of(cls, upstream: dict[str, Any]) -> Route:
        url, name, weight = upstream.get("url"), upstream.get("name"), upstream.get("weight")
        parts = urlsplit(url) if isinstance(url, str) else None
        if parts is None or parts.scheme.lower() not in DEFAULT_PORTS or not parts.hostname:
            raise MlplatError(f"front door upstream {name!r}: {url!r} is not an http(s) URL")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise MlplatError(f"front door upstream name {name!r} must be 1-128 characters (a Route 53 SetIdentifier)")
        if not isinstance(weight, int | float) or not 0 <= weight <= 255:
            raise MlplatError(f"front door upstream {name!r}: weight {weight!r} is not in 0-255")
        host, scheme = parts.hostname.lower().rstrip("."), parts.scheme.lower()
        try:
            ip = ipaddress.ip_address(host)
        except ValueError:
            ip = None
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        kind = "CNAME" if ip is None else ("A" if ip.version == 4 else "AAAA")
        return cls(name, int(weight), kind, host, scheme, parts.port or DEFAULT_PORTS[scheme], path)

    @property
    def health(self) -> dict[str, Any]:
        """HealthCheckConfig: the upstream's scheme, host, port and path."""
        where = "FullyQualifiedDomainName" if self.type == "CNAME" else "IPAddress"
        return {"Type": self.scheme.upper(), where: self.host, "Port": self.port, "ResourcePath": self.path,
                "RequestInterval": 30, "FailureThreshold": 3}

    def record_set(self, record: str, health_check: str) -> dict[str, Any]:
        return {"Name": f"{record}.", "Type": self.type, "SetIdentifier": self.name, "Weight": self.weight,
                "TTL": TTL, "ResourceRecords": [{"Value": self.host}], "HealthCheckId": health_check}


class FrontDoor(AwsProvider):
    force_new = frozenset({"zone", "record"})
    update_outputs = frozenset({"url", "health_checks"})
    timeouts = {"create": 900.0, "update": 900.0, "delete": 900.0}  # a change is INSYNC within ~60 s, usually

    # -- provider protocol --------------------------------------------------------------------------------

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        zone_id, record = self._zone_id(inputs["zone"]), inputs["record"]
        self._resume(ctx)
        foreign = [s["SetIdentifier"] for s, tags in self._owned(self._weighted(zone_id, record))
                   if tag_value(tags, ADDRESS_TAG) != address]
        if foreign:
            raise MlplatError(f"Route 53 record {record} already has weighted records mlplat did not make for "
                              f"{address}: {', '.join(sorted(foreign))}",
                              hint="delete them, or choose another endpoint name or dns_zone")
        health = self._converge(address, zone_id, record, inputs["upstreams"], ctx)
        return Created(f"{zone_id}/{record}", self._outputs(zone_id, record, health, inputs["upstreams"]))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        zone_id, record = split_id(id)
        self._resume(ctx)
        health = self._converge(ctx.address, zone_id, record, desired["upstreams"], ctx)
        return self._outputs(zone_id, record, health, desired["upstreams"])

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        zone_id, record = split_id(id)
        sets = cloud.unless_missing(lambda: self._weighted(zone_id, record))  # the zone itself may be gone
        if not sets:
            return None
        desired = {u["name"]: u for u in inputs.get("upstreams") or [] if isinstance(u, dict) and "name" in u}
        order = {name: i for i, name in enumerate(desired)}
        sets.sort(key=lambda s: (order.get(s["SetIdentifier"], len(order)), s["SetIdentifier"]))
        upstreams = [self._observed(s, desired.get(s["SetIdentifier"])) for s in sets]
        health = {s["SetIdentifier"]: s.get("HealthCheckId") for s in sets}
        observed = {"zone": inputs.get("zone"), "record": record, "upstreams": upstreams}
        return Observed(observed, self._outputs(zone_id, record, health, upstreams))

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """`read`, the zone's name taken from Route 53 (GetHostedZone)."""
        match = IMPORT_ID.fullmatch(id)
        if match is None:
            return None
        zone = cloud.unless_missing(lambda: self.aws.route53.get_hosted_zone(Id=match.group(1))["HostedZone"])
        if zone is None:
            return None
        seen = self.read(f"{match.group(1)}/{match.group(2)}", {**inputs, "zone": zone["Name"].rstrip(".")})
        if seen is not None:
            seen.inputs["zone"] = zone["Name"].rstrip(".")
        return seen

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        """The record, once one of its health checks carries this create's token (or, journalled without one,
        this address)."""
        zone_id = self._zone_id(inputs["zone"], missing_ok=True)
        if zone_id is None or f"{zone_id}/{inputs['record']}" in ctx.exclude:
            return None
        id = f"{zone_id}/{inputs['record']}"
        sets = self._weighted(zone_id, inputs["record"])
        key, value = (TOKEN_TAG, ctx.token) if ctx.token else (ADDRESS_TAG, address)
        if not any(tag_value(tags, key) == value for _, tags in self._owned(sets)):
            return None
        health = {s["SetIdentifier"]: s.get("HealthCheckId") for s in sets}
        return Created(id, self._outputs(zone_id, inputs["record"], health, inputs["upstreams"]))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """Every weighted set of the record, then their health checks and any this record's steps left."""
        zone_id, record = split_id(id)
        self._resume(ctx)
        sets = cloud.unless_missing(lambda: self._weighted(zone_id, record)) or []
        if sets:
            self._change(zone_id, record, [{"Action": "DELETE", "ResourceRecordSet": s} for s in sets], ctx)
        for health_check in {s["HealthCheckId"] for s in sets if s.get("HealthCheckId")}:
            cloud.unless_missing(lambda h=health_check: self.aws.route53.delete_health_check(HealthCheckId=h))
        self._sweep(record, keep=set())

    def weights(self, id: str) -> dict[str, int]:
        """The weight of each upstream as Route 53 answers now (for migration steps and tests)."""
        zone_id, record = split_id(id)
        return {s["SetIdentifier"]: int(s["Weight"]) for s in self._weighted(zone_id, record)}

    # -- convergence --------------------------------------------------------------------------------------

    def _converge(self, address: str, zone_id: str, record: str, upstreams: list[dict[str, Any]],
                  ctx: StepContext) -> dict[str, str]:
        """Make the record's weighted sets exactly `upstreams` in one batch; returns {upstream: health check}."""
        routes = [Route.of(u) for u in upstreams]
        if not routes:
            raise MlplatError(f"front door {record} has no upstream")
        if len({r.name for r in routes}) != len(routes):
            raise MlplatError(f"front door {record} names an upstream twice: {[r.name for r in routes]}")
        if len({r.type for r in routes}) > 1:
            raise MlplatError(f"front door {record} mixes host names and IP addresses "
                              f"({', '.join(f'{r.name}: {r.host}' for r in routes)})",
                              hint="Route 53 weighs records of one type only (a CNAME excludes every other type)")
        live = {s["SetIdentifier"]: s for s in self._sets(zone_id, record, weighted_only=False)
                if s.get("SetIdentifier")}
        deletes, upserts, health = [], [], {}
        for route in routes:
            current = live.pop(route.name, None)
            check = current.get("HealthCheckId") if current else None
            if not check or not self._health_matches(check, route.health):
                check = self._health_check(address, record, route, ctx)
            health[route.name] = check
            wanted = route.record_set(record, check)
            if current is not None and current["Type"] != route.type:
                deletes.append(current)
            if current is None or not same_set(current, wanted):
                upserts.append(wanted)
        deletes.extend(live.values())  # upstreams no longer wanted
        changes = ([{"Action": "DELETE", "ResourceRecordSet": s} for s in deletes]
                   + [{"Action": "UPSERT", "ResourceRecordSet": s} for s in upserts])
        if changes:
            self._change(zone_id, record, changes, ctx)
        self._sweep(record, keep=set(health.values()))
        return health

    def _change(self, zone_id: str, record: str, changes: list[dict[str, Any]], ctx: StepContext) -> None:
        info = self.aws.route53.change_resource_record_sets(
            HostedZoneId=zone_id, ChangeBatch={"Comment": f"mlplat front door {record}", "Changes": changes},
        )["ChangeInfo"]
        change = info["Id"].rsplit("/", 1)[-1]
        ctx.checkpoint(cloud.operation_id(CHANGE, change))
        if info.get("Status") != "INSYNC":
            self._wait_insync(ctx, change)

    def _resume(self, ctx: StepContext) -> None:
        """A step resumed after a crash: let the change it made settle, then converge from what is live."""
        ids = cloud.operation_of(ctx, CHANGE)
        if ids:
            self._wait_insync(ctx, ids[0])

    def _wait_insync(self, ctx: StepContext, change: str) -> None:
        cloud.wait_for_status(ctx, lambda: self.aws.route53.get_change(Id=change)["ChangeInfo"],
                              f"Route 53 change {change}", "Pending", ready="INSYNC",
                              status_of=lambda info: info["Status"], **self.intervals)

    # -- health checks ------------------------------------------------------------------------------------

    def _health_check(self, address: str, record: str, route: Route, ctx: StepContext) -> str:
        """CreateHealthCheck, idempotent for a retried step. A reference Route 53 refuses (one of a deleted
        check, which it never reuses) is followed by the next derived one."""
        for attempt in range(3):
            reference = caller_reference(record, route.name, ctx.token, route.health, attempt)
            try:
                check = self.aws.route53.create_health_check(CallerReference=reference,
                                                             HealthCheckConfig=route.health)["HealthCheck"]
            except AwsApiError as err:
                if err.code == "HealthCheckAlreadyExists":
                    continue
                raise
            tags = [*self.tags(address, ctx), {"Key": "Name", "Value": f"{record} {route.name}"}]
            self.aws.route53.change_tags_for_resource(ResourceType="healthcheck", ResourceId=check["Id"],
                                                      AddTags=tags)
            return str(check["Id"])
        raise MlplatError(f"Route 53 refused every health check reference for {record} {route.name}",
                          hint="run apply again (the next step derives new references)")

    def _health_matches(self, health_check: str, config: dict[str, Any]) -> bool:
        seen = cloud.unless_missing(lambda: self.aws.route53.get_health_check(HealthCheckId=health_check))
        current = (seen or {}).get("HealthCheck", {}).get("HealthCheckConfig")
        return current is not None and all(current.get(k) == v for k, v in config.items())

    def _sweep(self, record: str, keep: set[str]) -> None:
        """Delete this record's health checks (by CallerReference prefix) that no live set uses: those of removed
        upstreams, and those a crashed step made before its record change."""
        prefix = record_prefix(record)
        for check in self.aws.route53.paginate("list_health_checks", "HealthChecks", MaxItems="1000"):
            if check["CallerReference"].startswith(prefix) and check["Id"] not in keep:
                cloud.unless_missing(lambda h=check["Id"]: self.aws.route53.delete_health_check(HealthCheckId=h))

    def _owned(self, sets: list[dict[str, Any]]) -> list[tuple[dict[str, Any], list[dict[str, str]]]]:
        """Each set with the tags of its health check (none: no check, or an untagged one)."""
        checks = [s["HealthCheckId"] for s in sets if s.get("HealthCheckId")]
        tags: dict[str, list[dict[str, str]]] = {}
        for i in range(0, len(checks), 10):  # ListTagsForResources takes 10 ids at a time
            answer = self.aws.route53.list_tags_for_resources(ResourceType="healthcheck", ResourceIds=checks[i:i + 10])
            tags.update({t["ResourceId"]: t.get("Tags", []) for t in answer["ResourceTagSets"]})
        return [(s, tags.get(s.get("HealthCheckId", ""), [])) for s in sets]

    # -- reads --------------------------------------------------------------------------------------------

    def _zone_id(self, zone: str, *, missing_ok: bool = False) -> Any:
        """The id of the public hosted zone named `zone` (ListHostedZonesByName)."""
        name = f"{zone.rstrip('.').lower()}."
        zones = self.aws.route53.list_hosted_zones_by_name(DNSName=name, MaxItems="100")["HostedZones"]
        named = [z for z in zones if z["Name"].lower() == name]
        public = [z for z in named if not z.get("Config", {}).get("PrivateZone")]
        if public:
            return public[0]["Id"].rsplit("/", 1)[-1]
        if missing_ok:
            return None
        kind = "only a private hosted zone" if named else "no hosted zone"
        raise MlplatError(f"Route 53 has {kind} named {zone} in this account",
                          hint=f"create a public hosted zone (aws route53 create-hosted-zone --name {zone} "
                               "--caller-reference ...) and delegate it, or set targets.<aws>.dns_zone to one you own")

    def _weighted(self, zone_id: str, record: str) -> list[dict[str, Any]]:
        return self._sets(zone_id, record, weighted_only=True)

    def _sets(self, zone_id: str, record: str, *, weighted_only: bool) -> list[dict[str, Any]]:
        """The record sets named `record` (ListResourceRecordSets from the name on). A non-weighted one of that
        name is refused unless only weighted ones are asked for: Route 53 would refuse to mix them."""
        name, found = f"{record}.", []
        start: dict[str, str] = {"StartRecordName": name}
        while True:
            page = self.aws.route53.list_resource_record_sets(HostedZoneId=zone_id, MaxItems="100", **start)
            sets = page.get("ResourceRecordSets", [])
            found.extend(s for s in sets if s["Name"].lower() == name)
            if not page.get("IsTruncated") or page.get("NextRecordName", "").lower() != name:
                break
            start = {"StartRecordName": page["NextRecordName"], "StartRecordType": page["NextRecordType"],
                     **({"StartRecordIdentifier": page["NextRecordIdentifier"]}
                        if page.get("NextRecordIdentifier") else {})}
        simple = [s for s in found if not s.get("SetIdentifier")]
        if simple and not weighted_only:
            raise MlplatError(f"Route 53 record {record} exists and is not weighted ({simple[0]['Type']})",
                              hint="delete it, or choose another endpoint name or dns_zone")
        return [s for s in found if s.get("SetIdentifier") and "Weight" in s]

    def _observed(self, found: dict[str, Any], desired: dict[str, Any] | None) -> dict[str, Any]:
        """An upstream as the record set and its health check say; the stack's URL where they agree with it."""
        host = (found.get("ResourceRecords") or [{}])[0].get("Value", "").rstrip(".").lower()
        check = cloud.unless_missing(lambda: self.aws.route53.get_health_check(HealthCheckId=found["HealthCheckId"])
                                     ) if found.get("HealthCheckId") else None
        config = (check or {}).get("HealthCheck", {}).get("HealthCheckConfig", {})
        scheme = "https" if str(config.get("Type", "HTTPS")).startswith("HTTPS") else "http"
        port = config.get("Port") or DEFAULT_PORTS[scheme]
        netloc = (f"[{host}]" if ":" in host else host) + ("" if port == DEFAULT_PORTS[scheme] else f":{port}")
        url = f"{scheme}://{netloc}{config.get('ResourcePath', '')}"
        upstream = {**(desired or {"sign": None, "api_key": None}), "name": found["SetIdentifier"],
                    "weight": int(found["Weight"]), "url": url}
        if desired is not None:
            try:
                route = Route.of(desired)
            except MlplatError:
                return upstream
            if (route.host, route.scheme, route.port, route.path) == (host, scheme, port, config.get("ResourcePath")):
                upstream["url"] = desired["url"]
        return upstream

    def _outputs(self, zone_id: str, record: str, health: dict[str, Any],
                 upstreams: list[dict[str, Any]]) -> dict[str, Any]:
        return {"url": f"{scheme_of(upstreams)}://{record}", "zone_id": zone_id, "record": record,
                "health_checks": dict(health)}


def scheme_of(upstreams: list[dict[str, Any]]) -> str:
    """https unless every upstream is plain http (DNS routes; each client speaks its upstream's protocol)."""
    urls = [str(u.get("url", "")) for u in upstreams if isinstance(u, dict)]
    return "http" if urls and all(u.lower().startswith("http://") for u in urls) else "https"


def same_set(seen: dict[str, Any], wanted: dict[str, Any]) -> bool:
    values = lambda s: sorted(str(r.get("Value", "")).rstrip(".").lower() for r in s.get("ResourceRecords", []))  # noqa: E731
    return (seen["Type"], seen.get("Weight"), seen.get("TTL"), seen.get("HealthCheckId"), values(seen)) == (
        wanted["Type"], wanted["Weight"], wanted["TTL"], wanted["HealthCheckId"], values(wanted))


def split_id(id: str) -> tuple[str, str]:
    match = IMPORT_ID.fullmatch(id)
    if match is None:
        raise MlplatError(f"{id!r} is not a front door id (<hosted zone id>/<record>)")
    return match.group(1), match.group(2)


def record_prefix(record: str) -> str:
    return f"mlplat-{hashlib.sha256(record.encode()).hexdigest()[:16]}-"


def caller_reference(record: str, upstream: str, token: str, health: dict[str, Any], attempt: int = 0) -> str:
    """≤ 64 characters: the record's prefix, then a hash of the upstream, the step's token and the check."""
    digest = hashlib.sha256(json.dumps([upstream, token, health, attempt], sort_keys=True).encode()).hexdigest()
    return record_prefix(record) + digest[:32]
