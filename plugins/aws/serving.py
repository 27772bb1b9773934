"""Serving: SageMaker models, endpoint configs (production variants, or a shadow variant) and the endpoint.

Models and configs are immutable in SageMaker, so they are replaced create-before-destroy under a name that
hashes their content. Weights live on the endpoint and change in place
(UpdateEndpointWeightsAndCapacities); a new config is swapped in with UpdateEndpoint (blue/green), never by
deleting the endpoint. Data capture (`monitoring.capture`) is part of the config, so a capture change is a new
config and an UpdateEndpoint too, as CloudFormation treats it.
"""

from __future__ import annotations

from typing import Any

from mlplat_plugins.aws.base import AwsProvider
from mlplat_plugins.aws.compute import SAGEMAKER_NAME, vpc_inputs
from mlplat_plugins.aws.registry import image_like, image_uri
from provisioner.cloud import content_name, operation_id, or_existing, unless_missing
from provisioner.errors import MlplatError
from provisioner.operations import StepContext
from provisioner.progress import report
from provisioner.provider import Created, Diff, Observed


class SageMakerModel(AwsProvider):
    """Import ID: the model's name (any: mlplat's own are `<base>-<content hash>`, and the id is what is recorded).
    Import the model package (or artifact and image repository) it serves first, so the references are known."""

    replace_mode = "create_before_destroy"
    force_new = frozenset({"base_name", "role_arn", "model", "model_package", "image", "model_data_url", "subnets",
                           "security_groups"})

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = content_name(inputs["base_name"], inputs)
        if "model_package" in inputs:
            container: dict[str, Any] = {"ModelPackageName": inputs["model_package"]}
        else:
            url = inputs["model_data_url"]
            if not str(url).startswith("s3://"):
                raise MlplatError(f"SageMaker loads models from S3, but {inputs['model']} is at {url}",
                                  hint="put the registry on an aws target, or publish the artifact to S3")
            container = {"Image": image_uri(inputs["image"]), "ModelDataUrl": url}
        args: dict[str, Any] = {"ModelName": name, "PrimaryContainer": container,
                                "ExecutionRoleArn": inputs["role_arn"], "Tags": self.tags(address, ctx)}
        if inputs["subnets"] and inputs["security_groups"]:
            args["VpcConfig"] = {"Subnets": inputs["subnets"], "SecurityGroupIds": inputs["security_groups"]}
        arn = or_existing(lambda: self.aws.sagemaker.create_model(**args)["ModelArn"],
                          lambda: self.aws.sagemaker.describe_model(ModelName=name)["ModelArn"])
        return Created(name, {"name": name, "arn": arn})

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        model = unless_missing(lambda: self.aws.sagemaker.describe_model(ModelName=id))
        if model is None:
            return None
        return Observed(dict(inputs), {"name": id, "arn": model["ModelArn"]})

    def import_(self, address: str, id: str, inputs: dict[str, Any]) -> Observed | None:
        """The model's container, role and network (`read` takes them from the record: a model never changes)."""
        model = unless_missing(lambda: self.aws.sagemaker.describe_model(ModelName=id)) \
            if SAGEMAKER_NAME.fullmatch(id) else None
        if model is None:
            return None
        container = model.get("PrimaryContainer") or (model.get("Containers") or [{}])[0]
        observed = {"base_name": inputs["base_name"], "role_arn": model.get("ExecutionRoleArn"),
                    "model": inputs["model"], **vpc_inputs(model.get("VpcConfig"), inputs)}
        if container.get("ModelPackageName"):
            observed["model_package"] = container["ModelPackageName"]
        else:
            observed.update(image=image_like(container.get("Image"), inputs.get("image")),
                            model_data_url=container.get("ModelDataUrl"))
        return Observed(observed, {"name": id, "arn": model["ModelArn"]})

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = content_name(inputs["base_name"], inputs)
        seen = self.find_named(name, ctx, lambda: self.read(name, inputs), lambda o: o.outputs["arn"])
        return Created(name, seen.outputs) if seen is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.sagemaker.delete_model(ModelName=id))


class EndpointConfig(AwsProvider):
    """Variant weights and instance counts here are only the initial ones: the endpoint owns the live values, so
    changing them never replaces the config (as Terraform's ignore_changes would). `data_capture` (present only when
    the endpoint captures: `{"sample_percent", "request", "response", "destination"}`) is the DataCaptureConfig.

    Import ID: the config's name. Import the models its variants serve first, so their names are known."""

    replace_mode = "create_before_destroy"
    force_new = frozenset({"base_name", "variants", "shadow_variants", "data_capture"})

    def diff(self, prior: dict[str, Any], desired: dict[str, Any]) -> Diff:
        return super().diff(_without_live_values(prior), _without_live_values(desired))

    def _name(self, inputs: dict[str, Any]) -> str:
        return content_name(inputs["base_name"], _without_live_values(inputs))

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = self._name(inputs)
        args: dict[str, Any] = {"EndpointConfigName": name, "Tags": self.tags(address, ctx),
                                "ProductionVariants": [_variant(v) for v in inputs["variants"]]}
        if inputs["shadow_variants"]:
            args["ShadowProductionVariants"] = [_variant(v) for v in inputs["shadow_variants"]]
        if inputs.get("data_capture"):
            args["DataCaptureConfig"] = data_capture_config(inputs["data_capture"])
        arn = or_existing(
            lambda: self.aws.sagemaker.create_endpoint_config(**args)["EndpointConfigArn"],
            lambda: self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=name)["EndpointConfigArn"])
        return Created(name, {"name": name, "arn": arn})

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        config = unless_missing(lambda: self.aws.sagemaker.describe_endpoint_config(EndpointConfigName=id))
        if config is None:
            return None
        observed = {**inputs, "variants": [_from_variant(v) for v in config.get("ProductionVariants", [])],
                    "shadow_variants": [_from_variant(v) for v in config.get("ShadowProductionVariants", [])],
                    "data_capture": _from_capture(config.get("DataCaptureConfig"))}
        if observed["data_capture"] is None and "data_capture" not in inputs:
            del observed["data_capture"]  # as the stack writes a config without capture: no key
        return Observed(observed, {"name": id, "arn": config["EndpointConfigArn"]})

    import_id = SAGEMAKER_NAME

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = self._name(inputs)
        seen = self.find_named(name, ctx, lambda: self.read(name, inputs), lambda o: o.outputs["arn"])
        return Created(name, seen.outputs) if seen is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        unless_missing(lambda: self.aws.sagemaker.delete_endpoint_config(EndpointConfigName=id))


class Endpoint(AwsProvider):
    """Creating an endpoint, and each update, is a long operation: it is checkpointed (CreateEndpoint <name>,
    UpdateEndpoint <name> <config>, ...) before the wait, and a step resumed after a crash waits for the endpoint
    to settle, then converges from what it sees (an update already applied is not issued again).

    `capture` (only where the endpoint's monitoring captures) is the data capture the endpoint runs with
    (DescribeEndpoint's DataCaptureConfig: sampling percent and destination), so a config swapped in by hand shows
    in preview as what it changed; the update is the UpdateEndpoint back to the stack's config.

    Import ID: the endpoint's name. Import its endpoint config first, so `config` is known."""

    force_new = frozenset({"name"})
    timeouts = {"create": 3600.0, "update": 3600.0, "delete": 1800.0}

    def create(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created:
        name = inputs["name"]
        if ctx.operation is None:
            or_existing(lambda: self.aws.sagemaker.create_endpoint(
                EndpointName=name, EndpointConfigName=inputs["config"], Tags=self.tags(address, ctx)),
                lambda: report(f"endpoint {name} exists already (a retried create): adopting it"))
            ctx.checkpoint(operation_id("CreateEndpoint", name))
        endpoint = self._wait_in_service(ctx, name, "Creating")
        current = self._observed(endpoint, inputs)
        if any(current[k] != inputs[k] for k in ("config", "weights", "instances")):
            return Created(name, self.update(name, current, inputs, ctx))  # adopted an older one: converge it
        return Created(name, self._outputs(endpoint))

    def update(self, id: str, prior: dict[str, Any], desired: dict[str, Any], ctx: StepContext) -> dict[str, Any]:
        # an operation on it under way (a resumed step, or one just created): let it settle, then converge
        endpoint = self._wait_in_service(ctx, id, "Updating") if ctx.operation is not None else self._describe(id)
        if endpoint is None:
            raise MlplatError(f"endpoint {id} does not exist any more", hint="run mlplat refresh, then apply")
        if endpoint["EndpointConfigName"] != desired["config"]:
            report(f"blue/green: {endpoint['EndpointConfigName']} → {desired['config']}")
            self.aws.sagemaker.update_endpoint(EndpointName=id, EndpointConfigName=desired["config"])
            ctx.checkpoint(operation_id("UpdateEndpoint", id, desired["config"]))
            endpoint = self._wait_in_service(ctx, id, "Updating")
        elif "capture" in desired and self._observed(endpoint, desired).get("capture") != desired["capture"]:
            # the config's capture, not the one an earlier UpdateEndpoint retained: take it, keep the live variants
            self.aws.sagemaker.update_endpoint(
                EndpointName=id, EndpointConfigName=desired["config"], RetainAllVariantProperties=True,
                ExcludeRetainedVariantProperties=[{"VariantPropertyType": "DataCaptureConfig"}])
            ctx.checkpoint(operation_id("UpdateEndpoint", id, desired["config"]))
            endpoint = self._wait_in_service(ctx, id, "Updating")
        live = self._observed(endpoint, desired)
        changed = [v for v in desired["weights"] if (live["weights"].get(v), live["instances"].get(v)) !=
                   (desired["weights"][v], desired["instances"][v])]
        if changed:  # in place: traffic shifts and scaling without a new config
            self.aws.sagemaker.update_endpoint_weights_and_capacities(EndpointName=id, DesiredWeightsAndCapacities=[
                {"VariantName": v, "DesiredWeight": desired["weights"][v],
                 "DesiredInstanceCount": desired["instances"][v]} for v in changed])
            ctx.checkpoint(operation_id("UpdateEndpointWeightsAndCapacities", id))
            endpoint = self._wait_in_service(ctx, id, "Updating")
        return self._outputs(endpoint)

    def _describe(self, name: str) -> dict[str, Any] | None:
        return unless_missing(lambda: self.aws.sagemaker.describe_endpoint(EndpointName=name))

    def _wait_in_service(self, ctx: StepContext, name: str, phase: str) -> dict[str, Any]:
        return self.wait_in_service(ctx, lambda: self._describe(name), f"endpoint {name}", phase,
                                    status_key="EndpointStatus", reason_key="FailureReason",
                                    failed=("Failed", "OutOfService"))

    def _outputs(self, endpoint: dict[str, Any]) -> dict[str, Any]:
        name = endpoint["EndpointName"]
        return {"name": name, "arn": endpoint["EndpointArn"], "config": endpoint["EndpointConfigName"],
                "url": f"https://runtime.sagemaker.{self.settings.region}.amazonaws.com/endpoints/{name}/invocations"}

    @staticmethod
    def _observed(endpoint: dict[str, Any], inputs: dict[str, Any]) -> dict[str, Any]:
        variants = [v for v in endpoint.get("ProductionVariants", []) if v["VariantName"] in inputs["weights"]]
        observed = {"name": endpoint["EndpointName"], "config": endpoint["EndpointConfigName"],
                    "weights": {v["VariantName"]: float(v.get("CurrentWeight", v.get("DesiredWeight", 0)))
                                for v in variants},
                    "instances": {v["VariantName"]: v.get("CurrentInstanceCount", v.get("DesiredInstanceCount"))
                                  for v in variants}}
        capture = endpoint.get("DataCaptureConfig") or {}
        if capture.get("EnableCapture", bool(capture)):
            observed["capture"] = {"sample_percent": capture.get("CurrentSamplingPercentage"),
                                   "destination": capture.get("DestinationS3Uri")}
        elif "capture" in inputs:
            observed["capture"] = None
        return observed

    def read(self, id: str, inputs: dict[str, Any]) -> Observed | None:
        endpoint = self._describe(id)
        if endpoint is None or endpoint["EndpointStatus"] == "Deleting":
            return None
        return Observed(self._observed(endpoint, inputs), self._outputs(endpoint))

    import_id = SAGEMAKER_NAME

    def find(self, address: str, inputs: dict[str, Any], ctx: StepContext) -> Created | None:
        name = inputs["name"]
        endpoint = self.find_named(name, ctx, lambda: self._describe(name), lambda e: e["EndpointArn"])
        return Created(name, self._outputs(endpoint)) if endpoint is not None else None

    def delete(self, id: str, inputs: dict[str, Any], ctx: StepContext) -> None:
        self.delete_and_wait(ctx, "DeleteEndpoint", id, lambda: self.aws.sagemaker.delete_endpoint(EndpointName=id),
                             lambda: self._describe(id), f"endpoint {id}")


def _without_live_values(inputs: dict[str, Any]) -> dict[str, Any]:
    strip = lambda vs: [{k: v for k, v in variant.items() if k not in ("weight", "count")}  # noqa: E731
                        for variant in vs or []]
    out = {k: v for k, v in inputs.items() if k != "data_capture" or v is not None}  # no capture: the old name
    out["variants"] = strip(inputs.get("variants"))
    if inputs.get("shadow_variants"):  # a shadow's weight is its mirrored share and lives in the config
        out["shadow_variants"] = list(inputs["shadow_variants"])
    return out


def _variant(v: dict[str, Any]) -> dict[str, Any]:
    return {"VariantName": v["name"], "ModelName": v["model"], "InstanceType": v["instance_type"],
            "InitialInstanceCount": v["count"], "InitialVariantWeight": v["weight"]}


def _from_variant(v: dict[str, Any]) -> dict[str, Any]:
    return {"name": v["VariantName"], "model": v["ModelName"], "instance_type": v.get("InstanceType"),
            "count": v.get("InitialInstanceCount"), "weight": float(v.get("InitialVariantWeight", 0))}


def data_capture_config(capture: dict[str, Any]) -> dict[str, Any]:
    """`data_capture` → SageMaker's DataCaptureConfig: JSON bodies kept as text (not base64)."""
    modes = [mode for mode, kept in (("Input", capture["request"]), ("Output", capture["response"])) if kept]
    return {"EnableCapture": True, "InitialSamplingPercentage": capture["sample_percent"],
            "DestinationS3Uri": capture["destination"], "CaptureOptions": [{"CaptureMode": m} for m in modes],
            "CaptureContentTypeHeader": {"JsonContentTypes": ["application/json"]}}


def _from_capture(config: dict[str, Any] | None) -> dict[str, Any] | None:
    if not config or not config.get("EnableCapture", True):
        return None
    modes = {option.get("CaptureMode") for option in config.get("CaptureOptions", [])}
    return {"sample_percent": config.get("InitialSamplingPercentage"),
            "request": bool(modes & {"Input", "InputAndOutput"}),
            "response": bool(modes & {"Output", "InputAndOutput"}), "destination": config.get("DestinationS3Uri")}
