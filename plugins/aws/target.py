"""The aws target: settings, capabilities and lowering of each component to AWS resources.

Lowering:
- cluster  → one SageMaker HyperPod cluster, one instance group per GPU pool
- storage  → EFS + a mount target per subnet (`kind: lustre` → FSx for Lustre)
- registry → an ECR repository per image, a model package group, and per model an S3 artifact + a model package
- serving  → a SageMaker model per path, an endpoint config (variants, or a shadow variant), the endpoint
  (the container per model `framework:`: the SageMaker prebuilt one where AWS has it, images.py)
- monitoring (`serving.monitoring`) → DataCaptureConfig on the endpoint config; drift: a baseline in S3, a Model
  Monitor data-quality job definition and monitoring schedule; alerts: an SNS topic and a CloudWatch alarm per
  checked feature (monitoring.py)
- front door (`serving.front_door: [aws]`) → Route 53 weighted records, one per upstream, each with a health check
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from mlplat_plugins.aws.raw import RAW_KINDS
from provisioner import catalog
from provisioner.artifacts import artifact_path, sha256_file
from provisioner.capabilities import accelerator_count
from provisioner.cloud import cloud_name, slug
from provisioner.errors import MlplatError
from provisioner.graph import Ref, Resource
from provisioner.provider import ResourceProvider
from provisioner.spec.model import Cluster, Component, Monitoring, Registry, Serving, Storage
from provisioner.target import (
    Capabilities,
    LowerContext,
    Lowered,
    Reason,
    ShadowCapability,
    StorageLimits,
    Target,
)

if TYPE_CHECKING:
    from provisioner.artifacts import ArtifactStore
    from provisioner.monitoring import Usage
    from provisioner.state.base import ResourceRecord


#: model frameworks SageMaker has a prebuilt inference container for (images.FRAMEWORK_IMAGES, kept in step)
FRAMEWORKS = ("onnx", "sklearn")
#: a lower-case DNS name (labels of letters, digits and inner hyphens), an optional final dot
DNS_NAME = r"^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.?$"


class AwsSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target

    region: str = Field(pattern=r"^[a-z]{2}(-[a-z]+)+-\d$", description="AWS region, e.g. us-east-1")
    profile: str | None = Field(None, description="Named profile of the standard credential chain (never keys)")
    endpoint_url: str | None = Field(None, description="Send every API call here (moto, LocalStack)")
    role_arn: str | None = Field(None, pattern=r"^arn:aws[a-z-]*:iam::\d{12}:role/.+$",
                                 description="Execution role for SageMaker models and HyperPod instance groups")
    bucket: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$",
                               description="Existing S3 bucket for model artifacts and lifecycle scripts (for "
                                           "HyperPod its name must start with sagemaker-)")
    prefix: str = Field("mlplat", pattern=r"^[A-Za-z0-9!_.*'()/-]{1,200}$", description="Key prefix in `bucket`")
    vpc_id: str | None = Field(None, description="VPC of `subnets` (informational; AWS derives it from them)")
    subnets: list[str] = Field(default_factory=list, description="Subnets for EFS mount targets, FSx, HyperPod")
    security_groups: list[str] = Field(default_factory=list, description="Security groups for the same")
    serving_image: str | None = Field(None, description="Inference container image for SageMaker models of "
                                                        "frameworks AWS has no container for (mlplat-linear: default "
                                                        "the registry's first image, tag `latest`; mlflow: required)")
    lifecycle_script_uri: str | None = Field(None, pattern=r"^s3://",
                                             description="HyperPod lifecycle scripts (default: a minimal script "
                                                         "mlplat uploads to s3://<bucket>/<prefix>/hyperpod/)")
    lifecycle_on_create: str = Field("on_create.sh", description="HyperPod OnCreate script name")
    poll_interval_s: float = Field(15.0, ge=0, description="First interval of waits on long operations")
    wait_timeout_s: float = Field(3600.0, gt=0, description="Older form of `timeouts:` (which wins): where set, "
                                                           "bounds every create/update/delete wait of every kind; "
                                                           "unset, each kind has its own default")
    max_concurrency: int = Field(8, ge=1, description="AWS calls in flight at once (API rate limits)")
    dns_zone: str | None = Field(None, pattern=DNS_NAME, max_length=254,
                                 description="An existing public Route 53 hosted zone, e.g. ml.example.com: required "
                                             "for front doors (records <endpoint>.<stack>.<zone>)")


class AwsTarget(Target):
    name = "aws"
    description = "AWS: SageMaker HyperPod and endpoints, EFS / FSx for Lustre, ECR, S3 (boto3)"
    settings_model = AwsSettings
    raw_kinds = RAW_KINDS
    sdk = ("boto3",)
    extra = "aws"

    def __init__(self, settings: BaseModel, context: Any) -> None:
        super().__init__(settings, context)
        self._clients: Any = None

    def capabilities(self) -> Capabilities:
        return Capabilities(
            training_accelerators=catalog.accelerators_offered("aws"),
            # SageMaker endpoints sell only some EC2 types (the catalog's `serving` column)
            serving_accelerators=catalog.accelerators_offered("aws", serving=True),
            traffic_split=True,
            shadow=ShadowCapability(max_mirror_percent=100),
            storage={"nas": StorageLimits(), "lustre": StorageLimits(max_gb=1_000_000)},
            auth_modes=frozenset({"iam"}),
            # a framework AWS has a container for, or mlplat-linear (the registry's image); with serving_image any
            model_formats=None if self.settings.serving_image else frozenset({*FRAMEWORKS, "mlplat-linear"}),
            front_door="dns",
            # shadow_comparison is not offered: SageMaker publishes per-variant aggregates only, and pairs no
            # production answer with its shadow's, so agreement cannot be measured
            monitoring=frozenset({"capture", "drift", "alerts"}),
            max_concurrency=self.settings.max_concurrency,
            notes=("SageMaker endpoints are always SigV4 (IAM) authenticated: declare auth: iam",
                   "a front door is Route 53 weighted records (TTL 60 s) in targets.<aws>.dns_zone: resolvers see a "
                   "weight change within a minute, and clients sign requests for each upstream themselves",
                   "HyperPod does not autoscale: each pool runs nodes.min instances",
                   "EFS is elastic: storage size_gb applies to FSx for Lustre only",
                   "monitoring: capture is the endpoint config's DataCaptureConfig (a change is a new config, "
                   "swapped in blue/green); drift runs SageMaker Model Monitor's data-quality job on a schedule "
                   "(metric: ks only, min_rows is not used; AWS closed Model Monitor to new customers on 2026-07-30); "
                   "alerts are CloudWatch alarms on its drift metrics notifying an SNS topic, whose e-mail and "
                   "webhook subscribers must confirm the subscription SNS sends them"),
        )

    def check(self, component: Component) -> list[Reason]:
        """GPU counts the catalog has no instance type for (capabilities name accelerators, not counts), at the
        pool's `gpus_per_node` or the path's `gpus` — so a move's report and validate show them where written."""
        found = []
        if isinstance(component, Cluster):
            for i, pool in enumerate(component.gpu_pools):
                found += accelerator_count("aws", pool.accelerator, pool.gpus_per_node, False,
                                           ("gpu_pools", i, "gpus_per_node"))
        elif isinstance(component, Serving):
            for name, path in component.paths.items():
                found += accelerator_count("aws", path.accelerator, path.gpu_count, True, ("paths", name, "gpus"))
            if component.monitoring is not None:
                found += _monitoring_reasons(component.monitoring)
        return found

    def discover(self) -> dict[str, Any]:
        """The account the credentials act in (STS GetCallerIdentity) and the region: a plan saved for one account
        is refused in another. Errors are the sdk's (AwsApiError, RetryableError, missing credentials)."""
        identity = self.clients().sts.get_caller_identity()
        return {"account": identity["Account"], "region": self.settings.region}

    def clients(self) -> Any:
        if self._clients is None:
            from mlplat_plugins.aws.sdk import Clients

            s = self.settings
            self._clients = Clients(s.region, s.endpoint_url, s.profile)
        return self._clients

    def artifact_store(self) -> ArtifactStore | None:
        """s3://<bucket>/<prefix>/artifacts/... when `bucket` is set (SageMaker reads models only from S3)."""
        if not self.settings.bucket:
            return None
        from mlplat_plugins.aws.artifact_store import S3ArtifactStore

        return S3ArtifactStore(self.clients(), self.settings.bucket, self.settings.prefix)

    def usage(self, records: list[ResourceRecord], window_s: float) -> Usage:
        """CloudWatch: per endpoint variant Invocations, Invocation5XX/4XXErrors and ModelLatency p95 (AWS/SageMaker)
        and GPUUtilization (/aws/sagemaker/Endpoints); per HyperPod pool its nodes (monitoring.py)."""
        from mlplat_plugins.aws.monitoring import usage

        return usage(self, records, window_s)

    def provider(self, kind: str) -> ResourceProvider:
        from mlplat_plugins.aws.providers import PROVIDERS

        try:
            return PROVIDERS[kind](self)
        except KeyError:
            raise MlplatError(f"the aws target has no resource kind {kind!r}") from None

    # lowering ----------------------------------------------------------------------------------------

    def lower(self, component: Component, ctx: LowerContext) -> Lowered:
        if isinstance(component, Cluster):
            return self._lower_cluster(component, ctx)
        if isinstance(component, Storage):
            return self._lower_storage(component, ctx)
        if isinstance(component, Registry):
            return self._lower_registry(component, ctx)
        if isinstance(component, Serving):
            return self._lower_serving(component, ctx)
        raise MlplatError(f"the aws target cannot realize {type(component).__name__}")

    def _resource(self, address: str, kind: str, inputs: dict[str, Any], *after: str) -> Resource:
        return Resource(address, f"aws.{kind}", self.context.target_name, inputs, depends_on=tuple(after))

    def _lower_cluster(self, cluster: Cluster, ctx: LowerContext) -> Lowered:
        role = self.required("role_arn", "for HyperPod instance groups")
        groups = []
        for pool in cluster.gpu_pools:
            offering = catalog.instance_for("aws", pool.accelerator, pool.gpus_per_node)
            groups.append({
                # the accelerator is part of the name: changing it replaces the group, as UpdateCluster requires
                "name": f"{pool.name}-{slug(pool.accelerator)}"[:63],
                "pool": pool.name,
                "instance_type": catalog.sagemaker_instance_type(offering),
                "count": pool.nodes.min,
            })
        address = ctx.address(cluster.name, "hyperpod_cluster", "main")
        inputs = {
            "name": cloud_name(self.context.stack_name, cluster.name),
            "groups": groups,
            "role_arn": role,
            "lifecycle_script_uri": self.settings.lifecycle_script_uri or self._s3_uri("hyperpod/"),
            "lifecycle_on_create": self.settings.lifecycle_on_create,
            "upload_default_lifecycle": self.settings.lifecycle_script_uri is None,
            "subnets": list(self.settings.subnets),
            "security_groups": list(self.settings.security_groups),
        }
        outputs = {"arn": Ref(address, "arn"), "name": Ref(address, "name")}
        return Lowered([self._resource(address, "hyperpod_cluster", inputs)], outputs)

    def _lower_storage(self, storage: Storage, ctx: LowerContext) -> Lowered:
        subnets = self.settings.subnets
        if storage.kind == "lustre":
            if not subnets:
                self.required("subnets", "for FSx for Lustre")
            address = ctx.address(storage.name, "fsx_lustre", "main")
            inputs = {"token": _token(self.context.stack_name, address),
                      "storage_gb": _lustre_capacity(storage.size_gb), "subnet": subnets[0],
                      "security_groups": list(self.settings.security_groups)}
            outputs = {"id": Ref(address, "id"), "dns_name": Ref(address, "dns_name"),
                       "mount_name": Ref(address, "mount_name"), "mount_path": storage.mount_path}
            return Lowered([self._resource(address, "fsx_lustre", inputs)], outputs)
        address = ctx.address(storage.name, "efs", "main")
        resources = [self._resource(address, "efs", {"token": _token(self.context.stack_name, address),
                                                     "performance_mode": "generalPurpose", "encrypted": True})]
        for subnet in subnets:
            resources.append(self._resource(ctx.address(storage.name, "efs_mount_target", subnet), "efs_mount_target", {
                "file_system": Ref(address, "id"), "subnet": subnet,
                "security_groups": list(self.settings.security_groups)}))
        outputs = {"id": Ref(address, "id"), "dns_name": Ref(address, "dns_name"), "mount_path": storage.mount_path}
        return Lowered(resources, outputs)

    def _lower_registry(self, registry: Registry, ctx: LowerContext) -> Lowered:
        resources: list[Resource] = []
        outputs: dict[str, Any] = {}
        for image in registry.images:
            address = ctx.address(registry.name, "ecr_repository", image.name)
            resources.append(self._resource(address, "ecr_repository", {
                "name": f"{self.context.stack_name}/{image.name}".lower(), "scan_on_push": True,
                "tag_mutability": "MUTABLE"}))
            outputs[f"image.{image.name}"] = Ref(address, "uri")
        if not registry.models:
            return Lowered(resources, outputs)
        bucket = self.required("bucket", "to hold model artifacts")
        group = ctx.address(registry.name, "model_package_group", "main")
        resources.append(self._resource(group, "model_package_group",
                                        {"name": cloud_name(self.context.stack_name, registry.name)}))
        outputs["package_group"] = Ref(group, "name")
        for model in registry.models:
            image = self._image_for(model.framework, registry, outputs)
            source = artifact_path(model, self.context.stack_dir, registry.artifact_roots)
            artifact = ctx.address(registry.name, "model_artifact", model.ref)
            key = f"{self.settings.prefix.strip('/')}/models/{model.name}/{model.version}/{source.name}"
            digest = sha256_file(source)
            resources.append(self._resource(artifact, "model_artifact", {
                "bucket": bucket, "key": key, "source": str(source), "sha256": digest}))
            package = ctx.address(registry.name, "model_package", model.ref)
            resources.append(self._resource(package, "model_package", {
                "group": Ref(group, "name"), "model": model.ref, "framework": model.framework,
                "model_data_url": Ref(artifact, "uri"), "image": image}))
            outputs[f"model.{model.ref}"] = Ref(artifact, "uri")
            outputs[f"sha256.{model.ref}"] = digest
            outputs[f"package.{model.ref}"] = Ref(package, "arn")
        return Lowered(resources, outputs)

    @staticmethod
    def _is_aws(target: str, ctx: LowerContext) -> bool:
        """Whether the stack's target `target` is of type aws (its registry's images are ECR repositories)."""
        settings = ctx.platform.targets.get(target) or {}
        return settings.get("type", target) == "aws"

    def _image_for(self, framework: str, registry: Registry | None, registry_outputs: dict[str, Any]) -> Any:
        """The inference container of a model of `framework`: SageMaker's prebuilt one where AWS has it
        (images.FRAMEWORK_IMAGES), else `serving_image`, else (mlplat-linear) the registry's first image."""
        from mlplat_plugins.aws.images import FRAMEWORK_IMAGES, NEEDS_SERVING_IMAGE

        if framework in FRAMEWORK_IMAGES:
            return FRAMEWORK_IMAGES[framework].uri(self.settings.region)
        if framework == "mlplat-linear" or self.settings.serving_image:
            return self._serving_image(registry, registry_outputs)
        known = ", ".join(sorted({*FRAMEWORK_IMAGES, "mlplat-linear", *NEEDS_SERVING_IMAGE}))
        raise MlplatError(f"no SageMaker inference container for framework {framework!r} on target "
                          f"{self.context.target_name!r} (AWS containers: {', '.join(sorted(FRAMEWORK_IMAGES))})",
                          hint=f"set targets.{self.context.target_name}.serving_image to an image that serves it "
                               f"(frameworks mlplat knows: {known})")

    def _serving_image(self, registry: Registry | None, registry_outputs: dict[str, Any]) -> Any:
        """The inference image: the setting, else the registry's first image (when the registry is on aws)."""
        if self.settings.serving_image:
            return self.settings.serving_image
        if registry is not None and registry.images:
            repository = registry_outputs.get(f"image.{registry.images[0].name}")
            if repository is not None:
                return {"repository": repository, "tag": "latest"}
        raise MlplatError(f"no inference image for SageMaker on target {self.context.target_name!r}",
                          hint=f"set targets.{self.context.target_name}.serving_image, or declare an image under "
                               "registry.images of a registry on aws (its ECR repository's `latest` tag is used; "
                               "SageMaker cannot pull from another target's registry)")

    def _lower_serving(self, serving: Serving, ctx: LowerContext) -> Lowered:
        registry = ctx.platform.registry
        role = self.required("role_arn", "for SageMaker models")
        resources: list[Resource] = []
        variants, shadow_variants, weights, instances = [], [], {}, {}
        for path_name, path in serving.paths.items():
            if registry is None or ctx.platform.model(path.model) is None:
                known = ", ".join(m.ref for m in registry.models) if registry else "none (no registry declared)"
                raise MlplatError(f"paths.{path_name}.model {path.model!r} is not in the registry (models: {known})",
                                  hint="declare it under registry.models")
            model_address = ctx.address(serving.name, "model", path_name)
            base = cloud_name(self.context.stack_name, serving.name, path_name, limit=54)
            inputs: dict[str, Any] = {"base_name": base,
                                      "role_arn": role, "model": path.model,
                                      "subnets": list(self.settings.subnets),
                                      "security_groups": list(self.settings.security_groups)}
            try:  # registry on aws: serve the versioned model package
                inputs["model_package"] = ctx.output(registry.name, f"package.{path.model}")
            except KeyError:  # registry elsewhere (hybrid): an image plus the artifact, which must be in S3
                on_aws = self._is_aws(ctx.platform.target_of(registry), ctx)
                framework = ctx.platform.model(path.model).framework  # type: ignore[union-attr]
                inputs["image"] = self._image_for(framework, registry,
                                                  ctx.outputs_of(registry.name) if on_aws else {})
                inputs["model_data_url"] = ctx.output(registry.name, f"model.{path.model}")
            resources.append(self._resource(model_address, "model", inputs))
            offering = catalog.instance_for("aws", path.accelerator, path.gpu_count, serving=True)
            variant = {"name": path_name, "model": Ref(model_address, "name"),
                       "instance_type": catalog.sagemaker_instance_type(offering), "count": path.replicas,
                       "weight": float(path.weight or 0)}
            if path.mode == "shadow":
                variant["weight"] = float(path.mirror_percent)  # mirrored share, relative to production's 100
                shadow_variants.append(variant)
            else:
                variants.append(variant)
                weights[path_name] = float(path.weight or 0)
                instances[path_name] = path.replicas
        config = ctx.address(serving.name, "endpoint_config", "main")
        endpoint = ctx.address(serving.name, "endpoint", "main")
        name = cloud_name(self.context.stack_name, serving.name)
        config_inputs: dict[str, Any] = {"base_name": cloud_name(self.context.stack_name, serving.name, limit=54),
                                         "variants": variants, "shadow_variants": shadow_variants}
        endpoint_inputs: dict[str, Any] = {"name": name, "config": Ref(config, "name"), "weights": weights,
                                           "instances": instances}
        capture = serving.monitoring.capture if serving.monitoring is not None else None
        if capture is not None:  # only then: a config without capture keeps its name (content hash)
            destination = capture.destination or self._s3_uri(f"capture/{name}", "for data capture "
                                                                                 "(monitoring.capture)")
            config_inputs["data_capture"] = {"sample_percent": capture.sample_percent, "request": capture.request,
                                             "response": capture.response, "destination": destination}
            endpoint_inputs["capture"] = {"sample_percent": capture.sample_percent, "destination": destination}
        resources.append(self._resource(config, "endpoint_config", config_inputs))
        resources.append(self._resource(endpoint, "endpoint", endpoint_inputs))
        outputs: dict[str, Any] = {"name": Ref(endpoint, "name"), "arn": Ref(endpoint, "arn"),
                                   "url": Ref(endpoint, "url"), "upstream": self._upstream(name)}
        if serving.monitoring is not None:
            resources += self._lower_monitoring(serving, serving.monitoring, ctx, endpoint, role, outputs)
        return Lowered(resources, outputs)

    def _lower_monitoring(self, serving: Serving, monitoring: Monitoring, ctx: LowerContext, endpoint: str,
                          role: str, outputs: dict[str, Any]) -> list[Resource]:
        """drift → baseline in S3, data-quality job definition, monitoring schedule; alerts → SNS topic and a
        CloudWatch alarm per checked feature on the schedule's drift metric (monitoring.py)."""
        from mlplat_plugins.aws.images import MODEL_MONITOR_ANALYZER
        from mlplat_plugins.aws.monitoring import DATA_METRICS_NAMESPACE, SCHEDULES, read_baseline

        stack, resources = self.context.stack_name, []
        drift, alerts = monitoring.drift, monitoring.alerts
        name = cloud_name(stack, serving.name)
        schedule = schedule_name = features = None
        if drift is not None:
            source = Path(os.path.abspath(self.context.stack_dir / drift.baseline))
            if not source.is_file():
                raise MlplatError(f"monitoring.drift.baseline {drift.baseline!r} is not a file ({source})",
                                  hint="give a CSV file with a header row (or JSON lines), relative to the stack file")
            columns, rows = read_baseline(source)
            features = list(drift.features or columns)
            missing = [f for f in features if f not in columns]
            if missing or not rows:
                what = f"features {', '.join(missing)} are not columns of" if missing else "no rows in"
                raise MlplatError(f"monitoring.drift: {what} the baseline {drift.baseline} (columns: "
                                  f"{', '.join(columns)})", hint="name baseline columns in drift.features, or leave "
                                                                 "features out")
            slugs = [slug(f) for f in features]
            if len(set(slugs)) != len(slugs) or not all(slugs):
                raise MlplatError(f"monitoring.drift.features {features} do not make distinct alarm names",
                                  hint="rename the baseline's columns: letters and digits tell them apart")
            prefix = f"monitoring/{name}"
            baseline = ctx.address(serving.name, "monitoring_baseline", "main")
            resources.append(self._resource(baseline, "monitoring_baseline", {
                "bucket": self.required("bucket", "for drift checks (the baseline and reports live in S3)"),
                "prefix": f"{self.settings.prefix.strip('/')}/{prefix}/baseline", "source": str(source),
                "sha256": sha256_file(source), "features": features, "threshold": drift.threshold,
                "format": "jsonl" if source.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"}))
            job = ctx.address(serving.name, "data_quality_job_definition", "main")
            resources.append(self._resource(job, "data_quality_job_definition", {
                "base_name": cloud_name(stack, serving.name, "dq", limit=54), "endpoint": name,
                "image": MODEL_MONITOR_ANALYZER.uri(self.settings.region), "role_arn": role,
                "constraints_uri": Ref(baseline, "constraints_uri"), "statistics_uri": Ref(baseline, "statistics_uri"),
                "preprocessor_uri": Ref(baseline, "preprocessor_uri"), "output_uri": self._s3_uri(f"{prefix}/reports"),
                "instance_type": "ml.m5.xlarge", "instance_count": 1, "volume_gb": 20, "max_runtime_s": 3600},
                endpoint))
            schedule = ctx.address(serving.name, "monitoring_schedule", "main")
            schedule_name = cloud_name(stack, serving.name, "data-quality")
            resources.append(self._resource(schedule, "monitoring_schedule", {
                "name": schedule_name, "job_definition": Ref(job, "name"), "endpoint": name,
                "cron": SCHEDULES[drift.schedule]}, endpoint))
            outputs["monitoring_schedule"] = Ref(schedule, "name")
        if alerts is not None:
            topic = ctx.address(serving.name, "alert_topic", "main")
            subscriptions = [{"protocol": "email", "endpoint": e} for e in alerts.emails]
            if alerts.webhook:
                subscriptions.append({"protocol": alerts.webhook.split(":", 1)[0].lower(), "endpoint": alerts.webhook})
            resources.append(self._resource(topic, "alert_topic", {
                "name": cloud_name(stack, serving.name, "alerts"),
                "subscriptions": sorted(subscriptions, key=lambda s: (s["protocol"], s["endpoint"]))}))
            outputs["alert_topic"] = Ref(topic, "arn")
            for feature in features or []:
                assert drift is not None and schedule is not None and schedule_name is not None
                resources.append(self._resource(ctx.address(serving.name, "metric_alarm", slug(feature)),
                                                "metric_alarm", {
                    "name": cloud_name(stack, serving.name, "drift", feature, limit=255),
                    "description": f"mlplat: feature {feature} of endpoint {serving.name} drifted from its baseline "
                                   f"(SageMaker Model Monitor distance > {drift.threshold}, {drift.schedule} check)",
                    "namespace": DATA_METRICS_NAMESPACE, "metric": f"feature_baseline_drift_{feature}",
                    "dimensions": {"Endpoint": name, "MonitoringSchedule": schedule_name},
                    "statistic": "Maximum", "period": 3600 if drift.schedule == "hourly" else 86400,
                    "threshold": drift.threshold, "comparison": "GreaterThanThreshold",
                    "actions": [Ref(topic, "arn")], "treat_missing": "notBreaching"}, schedule))
        return resources

    def _upstream(self, endpoint: str) -> dict[str, Any]:
        """What a front door forwards to (`UPSTREAM_KEYS`): the base URL `/invocations` is appended to, signed
        SigV4 for `sagemaker` (the signing name of the runtime API) from the standard credential chain."""
        base = (self.settings.endpoint_url.rstrip("/") if self.settings.endpoint_url
                else f"https://runtime.sagemaker.{self.settings.region}.amazonaws.com")
        return {"url": f"{base}/endpoints/{endpoint}",
                "sign": {"kind": "sigv4", "service": "sagemaker", "region": self.settings.region,
                         "profile": self.settings.profile},
                "api_key": None}

    def lower_front_door(self, serving: Serving, upstreams: list[dict[str, Any]], ctx: LowerContext) -> Lowered:
        """Route 53 weighted records `<endpoint>.<stack>.<dns_zone>`, one per upstream (its target's name as the
        SetIdentifier), each with a health check; a weight change is an in-place UPSERT."""
        zone = self.required("dns_zone", "for front doors (an existing public Route 53 hosted zone)")
        zone = zone.rstrip(".")
        record = f"{slug(serving.name)}.{slug(self.context.stack_name)}.{zone}"
        if len(record) > 253:
            raise MlplatError(f"front door record {record!r} is longer than DNS allows (253 characters)",
                              hint=f"use a shorter targets.{self.context.target_name}.dns_zone or endpoint name")
        address = self.front_door_address(serving.name)
        resource = self._resource(address, "front_door", {"zone": zone, "record": record, "upstreams": upstreams})
        return Lowered([resource], {"url": Ref(address, "url")})

    def _s3_uri(self, suffix: str, why: str = "for HyperPod lifecycle scripts (or set lifecycle_script_uri)") -> str:
        bucket = self.required("bucket", why)
        return f"s3://{bucket}/{self.settings.prefix.strip('/')}/{suffix}"


def _monitoring_reasons(monitoring: Monitoring) -> list[Reason]:
    """What SageMaker's monitoring cannot do of an endpoint's `monitoring:` (the features it offers at all are
    capabilities)."""
    found = []
    capture = monitoring.capture
    if capture is not None and capture.destination is not None and not capture.destination.startswith("s3://"):
        found.append(Reason("capture-destination-unsupported", f"SageMaker captures to S3 only, not "
                            f"{capture.destination!r}: give an s3:// URI, or leave destination out "
                            "(s3://<bucket>/<prefix>/capture/<endpoint>)", ("monitoring", "capture", "destination")))
    drift = monitoring.drift
    if drift is not None and drift.metric != "ks":
        found.append(Reason("drift-metric-unsupported", f"SageMaker Model Monitor measures drift as the L-infinity "
                            f"distance of the distributions (the Kolmogorov-Smirnov statistic), not {drift.metric}: "
                            "set metric: ks (and a threshold for that distance, 0 to 1)",
                            ("monitoring", "drift", "metric")))
    elif drift is not None and drift.threshold >= 1:
        found.append(Reason("drift-threshold-unreachable", f"a Kolmogorov-Smirnov distance never exceeds 1, so "
                            f"threshold {drift.threshold} never flags drift", ("monitoring", "drift", "threshold"),
                            severity="warning"))
    return found


def _token(stack: str, address: str) -> str:
    """Idempotency token (EFS CreationToken, FSx ClientRequestToken ≤ 63) derived from the resource address."""
    return "mlplat-" + hashlib.sha256(f"{stack}/{address}".encode()).hexdigest()[:40]


def _lustre_capacity(size_gb: int) -> int:
    """FSx for Lustre SCRATCH_2 capacity: 1200 GiB, then multiples of 2400."""
    return 1200 if size_gb <= 1200 else -(-size_gb // 2400) * 2400

