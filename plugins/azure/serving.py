"""Serving on Azure ML: a managed online endpoint, a managed online deployment per path, and the endpoint's traffic.

The endpoint (`OnlineEndpoint`) is named by the lowering (unique in the region) and carries the auth mode; its
keys are minted by Azure and read with `listKeys` (the primary key is a sealed secret output). Its `traffic` and
`mirror_traffic` belong to `EndpointTraffic`: every PUT of the endpoint made here carries the live traffic back,
since an ARM PUT replaces the whole object.

Each path is a deployment under a content name (`<path>-<hash of its inputs but instance_count and capture>`), so a
new model (or image, or VM size) is a new deployment beside the old one (create-before-destroy): a new deployment
takes no traffic until `EndpointTraffic` moves it, and the old one is deleted after that. Azure refuses to delete a
deployment that still takes (or mirrors) traffic, so a deployment's delete hands its share to the others first.
"""

from __future__ import annotations

import re
from typing import Any

from mlplat_plugins.azure.base import FAILED, LONG, SUCCEEDED, TOKEN_TAG, AzureProvider
from provisioner import cloud
from provisioner.cloud import content_name, operation_id, operation_of, split_percent
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

#: an endpoint's (and a deployment's) name: 3 to 32 characters, a letter first, letters, digits and hyphens
NAME = re.compile(r"[a-zA-Z][a-zA-Z0-9-]{1,30}[a-zA-Z0-9]")
DEPLOYMENT_ID = re.compile(r"(?P<endpoint>[a-zA-Z][a-zA-Z0-9-]{1,31})/(?P<name>[a-zA-Z][a-zA-Z0-9-]{1,31})")
#: an endpoint traffic's id: its endpoint's name + this
TRAFFIC_SUFFIX = "/traffic"
TRAFFIC_ID = re.compile(r"[a-zA-Z][a-zA-Z0-9-]{1,31}/traffic")
#: a deployment's inputs that change in place (everything else is in its name)
MUTABLE = ("instance_count", "capture")
#: data collector collections a capture turns on (what Azure ML model monitoring reads)
COLLECTIONS = ("model_inputs", "model_outputs")
MODEL_ARM_ID = re.compile(r".*/models/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", re.IGNORECASE)
ENV_ARM_ID = re.compile(r".*/environments/(?P<name>[^/]+)/versions/(?P<version>[^/]+)", re.IGNORECASE)


def state_of(entity: Any) -> str:
    """An azure-ai-ml entity's provisioning state as ARM spells it (the SDK gives enums whose str() is the
    member's name, not its value)."""
    state = getattr(entity, "provisioning_state", None)
    return str(getattr(state, "value", state) or "Succeeded")


def model_ref(arm_id: str | None, wanted: str | None = None) -> str | None:
    """A deployment's model (an ARM id) as `azureml:<name>:<version>`; the stack's own spelling when it names the
    same version (an ARM id or `azureml:` id)."""
    if not arm_id:
        return None
    match = MODEL_ARM_ID.fullmatch(arm_id)
    live = f"azureml:{match['name']}:{match['version']}" if match else arm_id
    if wanted is not None and (wanted in (arm_id, live) or model_ref(wanted) == live):
        return wanted
    return live


class _Serving(AzureProvider):
    timeouts = LONG

    @property
    def endpoints(self) -> Any:
        return self.azure.group("online_endpoints")

    @property
    def deployments_api(self) -> Any:
        return self.azure.group("online_deployments")

    def _endpoint(self, name: str) -> Any:
        """The endpoint (its traffic with a 0 for every deployment taking none), None when gone or being deleted."""
        found = self.get(lambda: self.endpoints.get(name))
        return None if found is None or state_of(found) == "Deleting" else found

    def wait_ready(self, ctx: StepContext, describe: Any, what: str, phase: str = "Creating") -> Any:
        return cloud.wait_for_status(ctx, describe, what, phase, ready=SUCCEEDED, failed=FAILED, status_of=state_of,
                                     reason_of=lambda seen: None, **self.intervals)

    def put_traffic(self, ctx: StepContext, action: str, name: str, traffic: dict[str, int],
                    mirror: dict[str, int]) -> Any:
        """Set the endpoint's traffic and mirror traffic (one PUT of the endpoint as it is), checkpointed as
        `<action> <name>`, and wait until it is applied; a resumed step only waits."""
        if operation_of(ctx, action) is None:
            endpoint = self.endpoints.get(name)
            endpoint.traffic, endpoint.mirror_traffic = dict(traffic), dict(mirror)
            self.endpoints.begin_create_or_update(endpoint)
            ctx.checkpoint(operation_id(action, name))
        return self.wait_ready(ctx, lambda: self.endpoints.get(name), f"endpoint {name} traffic", "Updating")


class OnlineEndpoint(_Serving):
    """A managed online endpoint. `auth_mode` (key / aad_token) changes in place: Azure ML updates an endpoint's
    auth mode with a PUT of the endpoint (its deployments stay). The `key` output is the primary key (listKeys),
    sealed in the state; it is read again on refresh, so a key regenerated in the portal reaches the outputs.

    Id and import ID: the endpoint's name."""

    force_new = frozenset({"name"})
    secret_outputs = frozenset({"key"})
    update_outputs = frozenset({"key"})
    import_id = NAME

    def _outputs(self, endpoint: Any) -> dict[str, Any]:
        out = {"name": endpoint.name, "scoring_uri": endpoint.scoring_uri, "id": endpoint.id}
        if str(endpoint.auth_mode).lower() == "key":
            out["key"] = self.endpoints.get_keys(endpoint.name).primary_key
        return out

    def _entity(self, inputs: dict[str, Any], tags: dict[str, str], live: Any | None) -> Any:
        """The endpoint to PUT: the live one's traffic kept (EndpointTraffic owns it)."""
        from azure.ai.ml.entities import ManagedOnlineEndpoint

        entity = ManagedOnlineEndpoint(name=inputs["name"], auth_mode=inputs["auth_mode"], tags=tags)
        if live is not None:
            entity.traffic = {k: v for k, v in (live.traffic or {}).items() if v}
            entity.mirror_traffic = {k: v for k, v in (live.mirror_traffic or {}).items() if v}
        return entity

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = inputs["name"]
        what = f"online endpoint {name}"
        if operation_of(ctx, "CreateOnlineEndpoint") is None:
            live = self.get(lambda: self.endpoints.get(name))
            if live is not None and (name in ctx.exclude or (live.tags or {}).get(TOKEN_TAG) != ctx.token):
                raise self.refuse_stranger("online endpoint", name)
            entity = self._entity(inputs, self.tags(address, ctx), live)
            self.start(ctx, "CreateOnlineEndpoint", name, lambda: self.endpoints.begin_create_or_update(entity))
        seen = self.wait_ready(ctx, lambda: self.endpoints.get(name), what)
        return Created(name, self._outputs(seen))

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        endpoint = self._endpoint(id)
        if endpoint is None:
            return None
        return Observed({**inputs, "name": endpoint.name, "auth_mode": str(endpoint.auth_mode).lower()},
                        self._outputs(endpoint))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        what = f"online endpoint {id}"
        if operation_of(ctx, "UpdateOnlineEndpoint") is None:
            live = self.endpoints.get(id)
            if str(live.auth_mode).lower() != desired["auth_mode"]:
                entity = self._entity(desired, dict(live.tags or {}), live)
                self.start(ctx, "UpdateOnlineEndpoint", id, lambda: self.endpoints.begin_create_or_update(entity))
        return self._outputs(self.wait_ready(ctx, lambda: self.endpoints.get(id), what, "Updating"))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        found = self.find_named(name, ctx, lambda: self.endpoints.get(name), lambda e: e.tags)
        if found is None:
            return None
        seen = self.wait_ready(ctx, lambda: self.endpoints.get(name), f"online endpoint {name}")
        return Created(name, self._outputs(seen))

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """Deleting the endpoint deletes its deployments too (Azure does, traffic or not)."""
        self.delete_and_wait(ctx, "DeleteOnlineEndpoint", id, lambda: self.endpoints.begin_delete(name=id),
                             lambda: self.endpoints.get(id), f"online endpoint {id}")


class OnlineDeployment(_Serving):
    """A managed online deployment of one path, under a content name (`<path>-<8 hex>`, from every input but
    instance_count and capture, which change in place): a new model is a new deployment, made before the old one
    is deleted. The image is an anonymous environment azure-ai-ml registers; capture is the deployment's data
    collector (model_inputs and model_outputs at the sampling rate).

    Id and import ID: `<endpoint>/<deployment>`."""

    force_new = frozenset({"endpoint", "path", "model", "image", "instance_type"})
    replace_mode = "create_before_destroy"
    import_id = DEPLOYMENT_ID

    @staticmethod
    def deployment_name(inputs: dict[str, Any]) -> str:
        """≤ 32 characters, a letter first, letters digits and hyphens: the path's slug and a hash of the inputs
        that need a new deployment."""
        slug = re.sub(r"[^a-z0-9-]+", "-", str(inputs["path"]).lower()).strip("-")
        if not slug or not slug[0].isalpha():
            slug = f"d-{slug}".rstrip("-")
        return content_name(slug[:23].rstrip("-"), inputs, *MUTABLE)

    def _entity(self, inputs: dict[str, Any], name: str, tags: dict[str, str]) -> Any:
        from azure.ai.ml.entities import (
            DataCollector,
            DeploymentCollection,
            Environment,
            ManagedOnlineDeployment,
        )
        from azure.ai.ml.entities._deployment.data_asset import DataAsset

        collector = None
        capture = inputs.get("capture")
        if capture is not None:
            destination = (capture.get("destination") or "").rstrip("/")
            collector = DataCollector(
                collections={c: DeploymentCollection(enabled="true", data=DataAsset(path=f"{destination}/{c}")
                                                     if destination else None) for c in COLLECTIONS},
                sampling_rate=capture["sampling_rate"])
        return ManagedOnlineDeployment(
            name=name, endpoint_name=inputs["endpoint"], model=inputs["model"],
            environment=Environment(image=inputs["image"]), instance_type=inputs["instance_type"],
            instance_count=inputs["instance_count"], data_collector=collector, tags=tags)

    def _get(self, endpoint: str, name: str) -> Any:
        found = self.get(lambda: self.deployments_api.get(name, endpoint))
        return None if found is None or state_of(found) == "Deleting" else found

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        endpoint, name = inputs["endpoint"], self.deployment_name(inputs)
        id = f"{endpoint}/{name}"
        what = f"deployment {id}"
        if operation_of(ctx, "CreateOnlineDeployment") is None:
            live = self.get(lambda: self.deployments_api.get(name, endpoint))
            if live is not None and (id in ctx.exclude or (live.tags or {}).get(TOKEN_TAG) != ctx.token):
                raise self.refuse_stranger("online deployment", id)
            entity = self._entity(inputs, name, self.tags(address, ctx))
            self.start(ctx, "CreateOnlineDeployment", id, lambda: self.deployments_api.begin_create_or_update(entity))
        self.wait_ready(ctx, lambda: self.deployments_api.get(name, endpoint), what)
        return Created(id, {"name": name})

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        match = DEPLOYMENT_ID.fullmatch(id)
        if match is None:
            return None
        live = self._get(match["endpoint"], match["name"])
        if live is None:
            return None
        collector = live.data_collector
        capture = None
        if collector is not None and all(
                str(getattr(collector.collections.get(c), "enabled", "")).lower() == "true" for c in COLLECTIONS):
            capture = {"sampling_rate": collector.sampling_rate,
                       "destination": (inputs.get("capture") or {}).get("destination")}
        observed = {**inputs, "endpoint": match["endpoint"], "model": model_ref(live.model, inputs.get("model")),
                    "image": self._image(live.environment), "instance_type": live.instance_type,
                    "instance_count": live.instance_count}
        if capture is not None or "capture" in inputs:  # the lowering leaves capture out where there is none
            observed["capture"] = capture
        if "path" not in observed:  # an import: the path is the address's last part
            observed["path"] = (live.tags or {}).get("mlplat-address", match["name"]).rsplit(".", 1)[-1]
        return Observed(observed, {"name": live.name})

    def _image(self, environment: Any) -> str | None:
        """The image of a deployment's environment (an ARM id of an environment version)."""
        match = ENV_ARM_ID.fullmatch(str(environment or ""))
        if match is None:
            return getattr(environment, "image", None)
        found = self.get(lambda: self.azure.group("environments").get(match["name"], version=match["version"]))
        return getattr(found, "image", None)

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        match = DEPLOYMENT_ID.fullmatch(id)
        assert match is not None
        endpoint, name = match["endpoint"], match["name"]
        if operation_of(ctx, "UpdateOnlineDeployment") is None:
            live = self.deployments_api.get(name, endpoint)
            entity = self._entity({**desired, "endpoint": endpoint}, name, dict(live.tags or {}))
            self.start(ctx, "UpdateOnlineDeployment", id, lambda: self.deployments_api.begin_create_or_update(entity))
        self.wait_ready(ctx, lambda: self.deployments_api.get(name, endpoint), f"deployment {id}", "Updating")
        return {"name": name}

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        endpoint, name = inputs["endpoint"], self.deployment_name(inputs)
        id = f"{endpoint}/{name}"
        found = self.find_named(id, ctx, lambda: self.deployments_api.get(name, endpoint), lambda d: d.tags)
        if found is None:
            return None
        self.wait_ready(ctx, lambda: self.deployments_api.get(name, endpoint), f"deployment {id}")
        return Created(id, {"name": name})

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """Delete the deployment, its traffic handed first to the other deployments in proportion (to one taking
        none, or to none when it is the last) and its mirror traffic dropped: Azure refuses to delete a deployment
        that takes traffic."""
        match = DEPLOYMENT_ID.fullmatch(id)
        if match is None:
            raise MlplatError(f"{id!r} is not an online deployment's id (<endpoint>/<deployment>)")
        endpoint_name, name = match["endpoint"], match["name"]
        if operation_of(ctx, "DeleteOnlineDeployment") is None:
            if operation_of(ctx, "MoveTrafficOff") is not None and self._endpoint(endpoint_name) is not None:
                # resumed after the traffic update was issued: let it finish first
                self.wait_ready(ctx, lambda: self.endpoints.get(endpoint_name), f"endpoint {endpoint_name} traffic",
                                "Updating")
            endpoint = self._endpoint(endpoint_name)
            if endpoint is None or self._get(endpoint_name, name) is None:
                return  # gone, or going with its endpoint
            traffic = {k: v for k, v in (endpoint.traffic or {}).items() if v}
            mirror = {k: v for k, v in (endpoint.mirror_traffic or {}).items() if v}
            if traffic.get(name) or mirror.get(name):
                mirror.pop(name, None)
                traffic = self._without(traffic, name, [k for k in (endpoint.traffic or {}) if k != name
                                                        and k not in mirror])
                self.put_traffic(ctx, "MoveTrafficOff", endpoint_name, traffic, mirror)
        self.delete_and_wait(ctx, "DeleteOnlineDeployment", id,
                             lambda: self.deployments_api.begin_delete(name=name, endpoint_name=endpoint_name),
                             lambda: self.deployments_api.get(name, endpoint_name), f"deployment {id}")

    @staticmethod
    def _without(traffic: dict[str, int], name: str, others: list[str]) -> dict[str, int]:
        rest = {k: float(v) for k, v in traffic.items() if k != name}
        if not traffic.get(name):
            return {k: int(v) for k, v in rest.items()}
        if not sum(rest.values()):
            if not others:
                return {}
            rest = {sorted(others)[0]: 1.0}
        return {k: v for k, v in split_percent(rest).items() if v}


class EndpointTraffic(_Serving):
    """The endpoint's `traffic` ({deployment: percent}, summing to 100) and `mirror_traffic` (a shadow's share of
    copied requests, at most 50 % in total, to deployments taking no live traffic), from the paths' weights. Traffic
    changed in the portal reads back as the paths' percentages (drift); an endpoint taking no traffic reads as gone.
    Deleting it empties the endpoint's traffic (one update, rather than one per deployment deleted after it).

    Id and import ID: `<endpoint>/traffic`."""

    force_new = frozenset({"endpoint"})
    timeouts = LONG
    import_id = TRAFFIC_ID

    @staticmethod
    def _wanted(inputs: dict[str, Any]) -> tuple[dict[str, int], dict[str, int]]:
        deployments = inputs["deployments"]
        percent = split_percent({p: float(w) for p, w in inputs["traffic"].items() if p in deployments})
        traffic = {deployments[p]: v for p, v in percent.items() if v}
        mirror = {deployments[p]: int(v) for p, v in (inputs.get("mirror") or {}).items() if v and p in deployments}
        return traffic, mirror

    def _apply(self, ctx: StepContext, action: str, inputs: dict[str, Any]) -> dict[str, Any]:
        traffic, mirror = self._wanted(inputs)
        self.put_traffic(ctx, action, inputs["endpoint"], traffic, mirror)
        return {"endpoint": inputs["endpoint"]}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        return Created(inputs["endpoint"] + TRAFFIC_SUFFIX, self._apply(ctx, "SetEndpointTraffic", inputs))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._apply(ctx, "SetEndpointTraffic", desired)

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        name = id.removesuffix(TRAFFIC_SUFFIX)
        endpoint = self._endpoint(name)
        if endpoint is None:
            return None
        live = {k: int(v) for k, v in (endpoint.traffic or {}).items() if v}
        live_mirror = {k: int(v) for k, v in (endpoint.mirror_traffic or {}).items() if v}
        if not live:  # an endpoint taking no traffic has no split (emptied by hand, or never set)
            return None
        if inputs and "deployments" in inputs and (live, live_mirror) == self._wanted(inputs):
            return Observed(dict(inputs), {"endpoint": name})
        deployments = dict((inputs or {}).get("deployments") or {})
        by_name = {str(v): path for path, v in deployments.items()}
        traffic = {p: 0 for p in (inputs or {}).get("traffic") or {}}
        mirror = {p: 0 for p in (inputs or {}).get("mirror") or {}}
        for split, seen in ((traffic, live), (mirror, live_mirror)):
            for other, percent in seen.items():
                split[by_name.get(other, f"deployments/{other}")] = percent
        if not deployments:  # an import: name paths by their deployments
            deployments = {f"deployments/{k}": k for k in {**live, **live_mirror}}
        return Observed({**(inputs or {}), "endpoint": name, "traffic": traffic, "mirror": mirror,
                         "deployments": deployments}, {"endpoint": name})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        """None: setting the traffic is one idempotent update, so a create repeated after a crash is harmless."""
        return None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        name = id.removesuffix(TRAFFIC_SUFFIX)
        endpoint = self._endpoint(name)
        if endpoint is None:
            return  # gone with its endpoint
        if operation_of(ctx, "ClearEndpointTraffic") is None and not any((endpoint.traffic or {}).values()) \
                and not any((endpoint.mirror_traffic or {}).values()):
            return
        self.put_traffic(ctx, "ClearEndpointTraffic", name, {}, {})
