"""Serving on Vertex AI: the endpoint, a deployed model per live path, and the endpoint's traffic split.

The endpoint is named by a caller-chosen id (`endpoints/<stack>-<serving>`); request/response logging (capture)
lives on it. Each path is a DeployedModel on the endpoint, under a caller-chosen numeric id derived from a hash of
its endpoint and inputs: a deployed model carries no labels and no description, so that id is its identity (a
retried deploy finds its own id, a replacement gets a new one and deploys beside the old one, create-before-destroy).
A new deployed model joins with no traffic when the endpoint already serves, so it changes nothing until the
traffic split (its own resource, one UpdateEndpoint) moves traffic to it; the old one is undeployed after that.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from mlplat_plugins.gcp.base import LONG, GcpProvider, describe
from provisioner.cloud import operation_id, operation_of, or_existing, split_percent, unless_missing
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.provider import Created, Observed

ENDPOINT_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/endpoints/[^/]+")
DEPLOYED_NAME = re.compile(r"(?P<endpoint>projects/[^/]+/locations/[^/]+/endpoints/[^/]+)/deployedModels/"
                           r"(?P<id>[0-9]{1,10})")
#: a traffic split's id: its endpoint's name + this
SPLIT_SUFFIX = "/trafficSplit"
SPLIT_NAME = re.compile(r"projects/[^/]+/locations/[^/]+/endpoints/[^/]+/trafficSplit")
#: the inputs of a deployed model that change in place (MutateDeployedModel); every other one is in its id
MUTABLE = ("min_replicas", "max_replicas")


def _mask(*paths: str) -> dict[str, list[str]]:
    """An update_mask (google.protobuf.FieldMask, as the request dict takes it)."""
    return {"paths": list(paths)}


def _as_dict(message: Any) -> dict[str, Any]:
    from mlplat_plugins.gcp.sdk import to_dict

    return to_dict(message)


class _Serving(GcpProvider):
    def _endpoint(self, name: str) -> dict[str, Any] | None:
        """GetEndpoint as a snake_case dict, None when there is none."""
        found = unless_missing(lambda: self.gcp.endpoints.get_endpoint(request={"name": name}))
        return _as_dict(found) if found is not None else None

    def _start_and_wait(self, ctx: StepContext, action: str, start: Any, what: str) -> Any:
        """Start an operation, checkpoint it and wait: for a step that runs several (never resumes, unlike
        `run_operation`, which would wait on the step's earlier operation again)."""
        name = start().operation.name
        ctx.checkpoint(operation_id(action, name))
        return self.wait_operation(ctx, self.gcp.endpoints, name, what)

    def _resume(self, ctx: StepContext, action: str, what: str) -> bool:
        """Wait on the `action` operation a resumed step checkpointed; False when the step resumes none."""
        resumed = operation_of(ctx, action)
        if not resumed:
            return False
        self.wait_operation(ctx, self.gcp.endpoints, resumed[-1], what)
        return True


class Endpoint(_Serving):
    """A Vertex AI endpoint. `logging` (capture) is its predict_request_response_logging_config; read reports it
    as the stack writes it, so logging switched off (or resampled) in the console shows as drift.

    Import ID: the endpoint's full name, projects/<p>/locations/<r>/endpoints/<id>."""

    force_new = frozenset({"name"})
    timeouts = LONG
    import_id = ENDPOINT_NAME

    def _name(self, inputs: dict[str, Any]) -> str:
        return f"{self.location}/endpoints/{inputs['name']}"

    @staticmethod
    def _logging(logging: dict[str, Any] | None) -> dict[str, Any]:
        if logging is None:
            return {"enabled": False}
        config: dict[str, Any] = {"enabled": True, "sampling_rate": logging["sampling_rate"]}
        if logging.get("destination"):
            config["bigquery_destination"] = {"output_uri": logging["destination"]}
        return config

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = self._name(inputs)
        what = f"endpoint {name}"
        if not self._resume(ctx, "CreateEndpoint", what):
            body = {"display_name": inputs["display_name"], "description": describe(address),
                    "labels": self.labels(ctx), "predict_request_response_logging_config": self._logging(
                        inputs["logging"])}
            started = or_existing(
                lambda: self.gcp.endpoints.create_endpoint(request={
                    "parent": self.location, "endpoint": body, "endpoint_id": inputs["name"]}),
                lambda: self._adopt(name, ctx))
            if started is not None:
                ctx.checkpoint(operation_id("CreateEndpoint", started.operation.name))
                self.wait_operation(ctx, self.gcp.endpoints, started.operation.name, what)
        endpoint = self._endpoint(name)
        if endpoint is None:
            raise MlplatError(f"{what} disappeared while creating")
        current = self._observed(endpoint, inputs)
        if current != {k: inputs[k] for k in current}:  # adopted an older one: converge it
            return Created(name, self.update(name, current, inputs, ctx))
        return Created(name, self._outputs(endpoint))

    def _adopt(self, name: str, ctx: StepContext) -> None:
        """CreateEndpoint answered ALREADY_EXISTS: a retry of this create (ours by its token) is adopted."""
        if self.find_named(name, ctx, lambda: self._endpoint(name), lambda e: e.get("labels")) is None:
            raise MlplatError(f"endpoint {name} exists and was not made by this apply",
                              hint="delete it, or rename the serving component")

    @staticmethod
    def _outputs(endpoint: dict[str, Any]) -> dict[str, Any]:
        return {"name": endpoint["name"], "id": endpoint["name"].rsplit("/", 1)[1]}

    @staticmethod
    def _observed(endpoint: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        config = endpoint.get("predict_request_response_logging_config") or {}
        logging = None
        if config.get("enabled"):
            destination = (config.get("bigquery_destination") or {}).get("output_uri") or None
            wanted = inputs.get("logging") or {}
            if wanted and not wanted.get("destination"):
                destination = None  # Vertex AI made a table itself: that is what "no destination" means
            logging = {"sampling_rate": config.get("sampling_rate", 0.0), "destination": destination}
        return {"name": endpoint["name"].rsplit("/", 1)[1], "display_name": endpoint.get("display_name"),
                "logging": logging}

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        endpoint = self._endpoint(id)
        if endpoint is None:
            return None
        return Observed({**inputs, **self._observed(endpoint, inputs)}, self._outputs(endpoint))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        paths = []
        body: dict[str, Any] = {"name": id}
        if prior.get("display_name") != desired["display_name"]:
            paths.append("display_name")
            body["display_name"] = desired["display_name"]
        if prior.get("logging") != desired["logging"]:
            paths.append("predict_request_response_logging_config")
            body["predict_request_response_logging_config"] = self._logging(desired["logging"])
        if not paths:
            endpoint = self._endpoint(id)
            if endpoint is None:
                raise MlplatError(f"endpoint {id} does not exist any more", hint="run mlplat refresh, then apply")
            return self._outputs(endpoint)
        endpoint = self.gcp.endpoints.update_endpoint(request={"endpoint": body, "update_mask": _mask(*paths)})
        return self._outputs(_as_dict(endpoint))

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = self._name(inputs)
        endpoint = self.find_named(name, ctx, lambda: self._endpoint(name), lambda e: e.get("labels"))
        return Created(name, self._outputs(endpoint)) if endpoint is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """DeleteEndpoint; models still deployed (a crash's leftovers) are undeployed first, as Vertex AI refuses
        to delete an endpoint that serves any."""
        what = f"endpoint {id}"
        if self._resume(ctx, "DeleteEndpoint", what):
            return
        self._resume(ctx, "UndeployModel", what)
        endpoint = self._endpoint(id)
        if endpoint is None:
            return
        models = endpoint.get("deployed_models") or []
        if models and any(v for v in (endpoint.get("traffic_split") or {}).values()):
            self.gcp.endpoints.update_endpoint(request={"endpoint": {"name": id, "traffic_split": {}},
                                                        "update_mask": _mask("traffic_split")})
        for model in models:
            unless_missing(lambda m=model: self._start_and_wait(ctx, "UndeployModel", lambda: (
                self.gcp.endpoints.undeploy_model(request={"endpoint": id, "deployed_model_id": m["id"]})),
                f"undeploy {m['id']} from {id}"))
        started = unless_missing(lambda: self.gcp.endpoints.delete_endpoint(request={"name": id}))
        if started is not None:
            ctx.checkpoint(operation_id("DeleteEndpoint", started.operation.name))
            self.wait_operation(ctx, self.gcp.endpoints, started.operation.name, what)


class DeployedModel(_Serving):
    """A model deployed on an endpoint. It has no labels and no description, so its identity is its id, derived
    from a hash of the endpoint and inputs (all but the replica counts, which change in place): a retried deploy
    uses the same id (and finds it), a replacement a new one, so the new model is deployed beside the old one
    (create-before-destroy) and traffic moves between them without a moment unserved.

    Import ID: <endpoint name>/deployedModels/<id>."""

    force_new = frozenset({"endpoint", "path", "model", "machine_type", "accelerator_type", "accelerator_count",
                           "service_account"})
    replace_mode = "create_before_destroy"
    timeouts = LONG
    import_id = DEPLOYED_NAME

    @staticmethod
    def deployed_id(inputs: dict[str, Any]) -> str:
        """1-10 digits (what Vertex AI accepts), never starting with 0, from the endpoint and the force_new inputs."""
        content = {k: v for k, v in inputs.items() if k not in MUTABLE}
        digest = hashlib.sha256(json.dumps(content, sort_keys=True, default=str).encode()).hexdigest()
        return str(1_000_000_000 + int(digest[:15], 16) % 9_000_000_000)

    @staticmethod
    def _deployed(endpoint: dict[str, Any], deployed_id: str) -> dict[str, Any] | None:
        return next((m for m in endpoint.get("deployed_models") or [] if m.get("id") == deployed_id), None)

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        endpoint_name, deployed_id = inputs["endpoint"], self.deployed_id(inputs)
        what = f"deploy {inputs['path']} ({deployed_id}) on {endpoint_name}"
        if not self._resume(ctx, "DeployModel", what):
            endpoint = self._endpoint(endpoint_name)
            if endpoint is None:
                raise MlplatError(f"endpoint {endpoint_name} does not exist", hint="run mlplat refresh, then apply")
            if self._deployed(endpoint, deployed_id) is None:
                split = {k: v for k, v in (endpoint.get("traffic_split") or {}).items() if v}
                # a newcomer takes no traffic from a serving endpoint (the traffic split moves it); the first all
                split = {**split, "0": 0} if split else {"0": 100}
                model: dict[str, Any] = {
                    "id": deployed_id, "model": inputs["model"], "display_name": describe(address),
                    "dedicated_resources": {"machine_spec": self._machine(inputs),
                                            "min_replica_count": inputs["min_replicas"],
                                            "max_replica_count": inputs["max_replicas"]}}
                if inputs.get("service_account"):
                    model["service_account"] = inputs["service_account"]
                started = or_existing(lambda: self.gcp.endpoints.deploy_model(request={
                    "endpoint": endpoint_name, "deployed_model": model, "traffic_split": split}), lambda: None)
                if started is not None:
                    ctx.checkpoint(operation_id("DeployModel", started.operation.name))
                    self.wait_operation(ctx, self.gcp.endpoints, started.operation.name, what)
        seen = self._wait_deployed(ctx, endpoint_name, deployed_id, what)
        return Created(f"{endpoint_name}/deployedModels/{deployed_id}", {"id": seen["id"]})

    def _wait_deployed(self, ctx: StepContext, endpoint_name: str, deployed_id: str, what: str) -> dict[str, Any]:
        """The deployed model once on the endpoint (a deploy adopted on ALREADY_EXISTS may still be under way)."""
        def check() -> tuple[bool, Any]:
            endpoint = self._endpoint(endpoint_name)
            if endpoint is None:
                raise MlplatError(f"endpoint {endpoint_name} disappeared while deploying")
            found = self._deployed(endpoint, deployed_id)
            return (True, found) if found is not None else (False, "deploying")

        return ctx.wait(check, what=what, **self.intervals)

    @staticmethod
    def _machine(inputs: dict[str, Any]) -> dict[str, Any]:
        spec: dict[str, Any] = {"machine_type": inputs["machine_type"]}
        if inputs.get("accelerator_type"):
            spec.update(accelerator_type=inputs["accelerator_type"], accelerator_count=inputs["accelerator_count"])
        return spec

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        match = DEPLOYED_NAME.fullmatch(id)
        endpoint = self._endpoint(match["endpoint"]) if match else None
        model = self._deployed(endpoint, match["id"]) if endpoint is not None and match else None
        if model is None or match is None:
            return None
        resources = model.get("dedicated_resources") or {}
        spec = resources.get("machine_spec") or {}
        accelerator = spec.get("accelerator_type")
        accelerator = None if accelerator in (None, "", "ACCELERATOR_TYPE_UNSPECIFIED") else accelerator
        observed = {**inputs, "endpoint": match["endpoint"], "model": self._model_of(model, inputs.get("model")),
                    "machine_type": spec.get("machine_type"), "accelerator_type": accelerator,
                    "accelerator_count": spec.get("accelerator_count", 0) if accelerator else 0,
                    "min_replicas": resources.get("min_replica_count"),
                    "max_replicas": resources.get("max_replica_count"),
                    "service_account": model.get("service_account") or None}
        if "path" not in observed:  # an import: the path is the display name's address's last part
            observed["path"] = (model.get("display_name") or "").rsplit(".", 1)[-1]
        return Observed(observed, {"id": match["id"]})

    @staticmethod
    def _model_of(model: dict[str, Any], wanted: str | None) -> str:
        """`<model>@<version id>` as deployed; the stack's own spelling when it names that same version."""
        live = f"{model.get('model', '')}@{model.get('model_version_id') or '1'}"
        if wanted and (wanted == live or wanted == model.get("model")):
            return wanted
        return live

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        match = DEPLOYED_NAME.fullmatch(id)
        assert match is not None
        what = f"resize {desired['path']} ({match['id']}) on {match['endpoint']}"
        self.run_operation(ctx, "MutateDeployedModel", lambda: self.gcp.endpoints.mutate_deployed_model(request={
            "endpoint": match["endpoint"], "deployed_model": {"id": match["id"], "dedicated_resources": {
                "machine_spec": self._machine(desired), "min_replica_count": desired["min_replicas"],
                "max_replica_count": desired["max_replicas"]}},
            "update_mask": _mask("dedicated_resources.min_replica_count",
                                 "dedicated_resources.max_replica_count")}), self.gcp.endpoints, what)
        return {"id": match["id"]}

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        """The derived id on the endpoint (a deployed model has no labels: the content-derived id is its identity),
        unless it is the object a replace is replacing."""
        deployed_id = self.deployed_id(inputs)
        name = f"{inputs['endpoint']}/deployedModels/{deployed_id}"
        if name in ctx.exclude:
            return None
        endpoint = self._endpoint(inputs["endpoint"])
        if endpoint is None or self._deployed(endpoint, deployed_id) is None:
            return None
        return Created(name, {"id": deployed_id})

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """UndeployModel, with a traffic split that gives this model's share to the others in proportion (Vertex AI
        refuses to undeploy a model that keeps traffic); none when it is the last one."""
        match = DEPLOYED_NAME.fullmatch(id)
        if match is None:
            raise MlplatError(f"{id!r} is not a deployed model's name")
        what = f"undeploy {match['id']} from {match['endpoint']}"
        if self._resume(ctx, "UndeployModel", what):
            return
        endpoint = self._endpoint(match["endpoint"])
        if endpoint is None or self._deployed(endpoint, match["id"]) is None:
            return
        others = [m["id"] for m in endpoint.get("deployed_models") or [] if m["id"] != match["id"]]
        request: dict[str, Any] = {"endpoint": match["endpoint"], "deployed_model_id": match["id"]}
        if others:
            live = endpoint.get("traffic_split") or {}
            rest = {k: float(live.get(k, 0)) for k in others}
            request["traffic_split"] = split_percent(rest if sum(rest.values()) else dict.fromkeys(others, 1.0))
        unless_missing(lambda: self.run_operation(ctx, "UndeployModel", lambda: self.gcp.endpoints.undeploy_model(
            request=request), self.gcp.endpoints, what))


class TrafficSplit(_Serving):
    """The endpoint's traffic_split: {deployed model id: percent} from the paths' weights (integers summing to 100,
    largest remainder). A split changed in the console reads back as the weights it gives each path (drift).
    Deleting it undoes nothing: the split goes with the deployed models (each undeploy hands its share on) and the
    endpoint.

    Id and import ID: `<endpoint name>/trafficSplit` (the endpoint's own name is the endpoint's id, and one id
    names one address)."""

    force_new = frozenset({"endpoint"})
    import_id = SPLIT_NAME

    @staticmethod
    def _split(inputs: dict[str, Any]) -> dict[str, int]:
        percent = split_percent({path: float(w) for path, w in inputs["weights"].items()})
        return {str(inputs["deployed"][path]): p for path, p in percent.items() if path in inputs["deployed"]}

    def _apply(self, name: str, inputs: dict[str, Any]) -> dict[str, Any]:
        split = self._split(inputs)
        self.gcp.endpoints.update_endpoint(request={"endpoint": {"name": name, "traffic_split": split},
                                                    "update_mask": _mask("traffic_split")})
        return {"endpoint": name}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        return Created(f"{inputs['endpoint']}{SPLIT_SUFFIX}", self._apply(inputs["endpoint"], inputs))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        return self._apply(desired["endpoint"], desired)

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        id = id.removesuffix(SPLIT_SUFFIX)
        endpoint = self._endpoint(id)
        if endpoint is None:
            return None
        live = {k: int(v) for k, v in (endpoint.get("traffic_split") or {}).items() if v}
        if not live:  # an endpoint taking no traffic has no split (emptied by hand, or never set)
            return None
        if inputs and "weights" in inputs and live == {k: v for k, v in self._split(inputs).items() if v}:
            return Observed(dict(inputs), {"endpoint": id})
        deployed = dict((inputs or {}).get("deployed") or {})
        by_id = {str(v): path for path, v in deployed.items()}
        weights = {path: float(live.get(str(i), 0)) for path, i in deployed.items()}
        for other, percent in live.items():  # traffic to a model the stack does not name
            if other not in by_id:
                weights[f"deployedModels/{other}"] = float(percent)
        if not deployed:  # an import: name paths by their deployed ids
            deployed = {f"deployedModels/{k}": k for k in live}
        return Observed({**(inputs or {}), "endpoint": id, "weights": weights, "deployed": deployed},
                        {"endpoint": id})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        """None: the split is one idempotent UpdateEndpoint, so a create repeated after a crash is harmless."""
        return None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        """Nothing to undo: the split belongs to the endpoint, and each deployed model's undeploy gives its share
        to the rest (the last one empties it)."""
