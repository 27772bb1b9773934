"""The gcp target: settings, capabilities and lowering of each component to Google Cloud resources.

Lowering:
- cluster  → one Vertex AI persistent resource, one resource pool per GPU pool (compute.py)
- storage  → a Filestore instance (`nas`; the tier's minimum size is a capability) (storage.py)
- registry → an Artifact Registry Docker repository for the images; per model a GCS artifact and a version in the
  Vertex AI Model Registry (one model per name, a version per `name:version`, aliased `v<version>`) (registry.py)
- serving  → a Vertex AI endpoint, a deployed model per live path, and the endpoint's traffic split (serving.py);
  capture (`monitoring.capture`) is the endpoint's request/response logging; drift and alerts a model deployment
  monitoring job with its baseline in GCS (monitoring.py)

Vertex AI cannot mirror requests (no shadow mode); a front door is the local gateway in front of the endpoint
(requests signed with an OAuth token from Application Default Credentials).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from provisioner import catalog
from provisioner.artifacts import artifact_path, sha256_file
from provisioner.capabilities import accelerator_count
from provisioner.cloud import cloud_name, slug
from provisioner.errors import MlplatError
from provisioner.graph import Ref, Resource
from provisioner.provider import ResourceProvider
from provisioner.spec.model import Cluster, Component, Monitoring, Registry, Serving, Storage
from provisioner.target import Capabilities, LowerContext, Lowered, Reason, StorageLimits, Target

if TYPE_CHECKING:
    from provisioner.artifacts import ArtifactStore

#: Filestore tiers: (minimum, maximum) capacity in GB (GiB), and whether an instance lives in a zone (else a region)
FILESTORE_TIERS: dict[str, tuple[int, int, bool]] = {
    "BASIC_HDD": (1024, 65434, True),
    "BASIC_SSD": (2560, 65434, True),
    "ZONAL": (1024, 102400, True),
    "REGIONAL": (1024, 102400, False),
    "ENTERPRISE": (1024, 10240, False),
}
#: Vertex AI's prebuilt prediction containers by model framework (others need `serving_image`)
FRAMEWORK_IMAGES = {"sklearn": "us-docker.pkg.dev/vertex-ai/prediction/sklearn-cpu.1-5:latest"}
#: model deployment monitoring runs whole hours: schedule → interval in hours
SCHEDULE_HOURS = {"hourly": 1, "daily": 24}


class GcpSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target

    project: str = Field(pattern=r"^[a-z][a-z0-9-]{4,28}[a-z0-9]$", description="Google Cloud project id")
    region: str = Field(pattern=r"^[a-z]+-[a-z]+\d+$", description="Vertex AI region, e.g. us-central1")
    zone: str | None = Field(None, pattern=r"^[a-z]+-[a-z]+\d+-[a-z]$",
                             description="Zone of zonal Filestore tiers (default: <region>-a)")
    bucket: str | None = Field(None, pattern=r"^[a-z0-9][a-z0-9._-]{1,61}[a-z0-9]$",
                               description="Existing GCS bucket for model artifacts and drift baselines")
    prefix: str = Field("mlplat", pattern=r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,200}$",
                        description="Object name prefix in `bucket`")
    network: str = Field("default", description="VPC network of Filestore instances and persistent resources "
                                                "(a name, or projects/<p>/global/networks/<name>)")
    service_account: str | None = Field(None, pattern=r"^[^@\s]+@[^@\s]+\.iam\.gserviceaccount\.com$",
                                        description="Service account deployed models and persistent resources run "
                                                    "as (default: Vertex AI's)")
    serving_image: str | None = Field(None, description="Prediction container for models of frameworks Vertex AI "
                                                        "has no prebuilt container for (mlplat-linear: default the "
                                                        "registry's first image, tag `latest`)")
    filestore_tier: Literal["BASIC_HDD", "BASIC_SSD", "ZONAL", "REGIONAL", "ENTERPRISE"] = Field(
        "BASIC_HDD", description="Filestore service tier (sets the minimum size_gb of nas storage)")
    endpoint_url: str | None = Field(None, description="Send every API call here (the fake server in tests)")
    poll_interval_s: float = Field(10.0, ge=0, description="First interval of waits on long-running operations")
    max_concurrency: int = Field(8, ge=1, description="Google API calls in flight at once (quota)")


class GcpTarget(Target):
    name = "gcp"
    description = "Google Cloud: Vertex AI endpoints, persistent resources and Model Registry, Filestore, " \
                  "Artifact Registry, GCS (google-cloud-aiplatform)"
    settings_model = GcpSettings
    sdk = ("google.cloud.aiplatform_v1",)
    extra = "gcp"

    def __init__(self, settings: BaseModel, context: Any) -> None:
        super().__init__(settings, context)
        self._clients: Any = None

    @property
    def s(self) -> GcpSettings:
        return self.settings  # type: ignore[return-value]

    def capabilities(self) -> Capabilities:
        low, high, _ = FILESTORE_TIERS[self.s.filestore_tier]
        return Capabilities(
            training_accelerators=catalog.accelerators_offered("gcp"),
            serving_accelerators=catalog.accelerators_offered("gcp", serving=True),
            autoscaling=True,
            traffic_split=True,
            shadow=None,  # Vertex AI has no request mirroring
            storage={"nas": StorageLimits(min_gb=low, max_gb=high)},
            auth_modes=frozenset({"iam"}),
            model_formats=None if self.s.serving_image else frozenset({*FRAMEWORK_IMAGES, "mlplat-linear"}),
            monitoring=frozenset({"capture", "drift", "alerts"}),
            max_concurrency=self.s.max_concurrency,
            notes=("Vertex AI endpoints always want an OAuth token (IAM): declare auth: iam",
                   "Vertex AI cannot mirror requests: an experimental path is a weighted split (a shadow is refused)",
                   f"nas storage is a Filestore {self.s.filestore_tier} instance: {low} to {high} GB",
                   "monitoring: capture is the endpoint's request/response logging to BigQuery; drift a model "
                   "deployment monitoring job (Jensen-Shannon divergence, whole-hour intervals: hourly or daily); "
                   "alerts are its e-mails (no webhooks)",
                   "a front door is the local gateway (Cloud DNS is not used)"),
        )

    def check(self, component: Component) -> list[Reason]:
        found: list[Reason] = []
        if isinstance(component, Cluster):
            for i, pool in enumerate(component.gpu_pools):
                found += accelerator_count("gcp", pool.accelerator, pool.gpus_per_node, False,
                                           ("gpu_pools", i, "gpus_per_node"))
        elif isinstance(component, Serving):
            for name, path in component.paths.items():
                found += accelerator_count("gcp", path.accelerator, path.gpu_count, True, ("paths", name, "gpus"))
            if component.monitoring is not None:
                found += _monitoring_reasons(component.monitoring)
        return found

    def discover(self) -> dict[str, Any]:
        """The project and region a plan is for. Resolves Application Default Credentials first (no API call), so
        a machine without them gets one clear error at preview instead of one per resource at apply."""
        self.clients().credentials  # noqa: B018 - raises MlplatError with the `gcloud auth` hint
        return {"project": self.s.project, "region": self.s.region}

    def clients(self) -> Any:
        if self._clients is None:
            from mlplat_plugins.gcp.sdk import Clients

            self._clients = Clients(self.s.project, self.s.region, self.s.endpoint_url)
        return self._clients

    def artifact_store(self) -> ArtifactStore | None:
        """gs://<bucket>/<prefix>/artifacts/... when `bucket` is set (Vertex AI reads models only from GCS)."""
        if not self.s.bucket:
            return None
        from mlplat_plugins.gcp.artifact_store import GcsArtifactStore

        return GcsArtifactStore(self.clients(), self.s.bucket, self.s.prefix)

    def provider(self, kind: str) -> ResourceProvider:
        from mlplat_plugins.gcp.providers import PROVIDERS

        try:
            return PROVIDERS[kind](self)
        except KeyError:
            raise MlplatError(f"the gcp target has no resource kind {kind!r}") from None

    @property
    def api_base(self) -> str:
        """The Vertex AI REST base URL (regional), or `endpoint_url`."""
        if self.s.endpoint_url:
            return self.s.endpoint_url.rstrip("/")
        return f"https://{self.s.region}-aiplatform.googleapis.com"

    @property
    def location(self) -> str:
        return f"projects/{self.s.project}/locations/{self.s.region}"

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
        raise MlplatError(f"the gcp target cannot realize {type(component).__name__}")

    def _resource(self, address: str, kind: str, inputs: dict[str, Any], *after: str) -> Resource:
        return Resource(address, f"gcp.{kind}", self.context.target_name, inputs, depends_on=tuple(after))

    def _lower_cluster(self, cluster: Cluster, ctx: LowerContext) -> Lowered:
        pools = []
        for pool in cluster.gpu_pools:
            offering = catalog.instance_for("gcp", pool.accelerator, pool.gpus_per_node)
            low = max(pool.nodes.min, 1)  # a resource pool runs at least one replica
            pools.append({
                "id": _name(pool.name),
                "machine_type": offering.instance_type,
                "accelerator_type": offering.cloud_accelerator or None,
                "accelerator_count": offering.gpus,
                "replica_count": low,
                "min_replica_count": low,
                "max_replica_count": max(pool.nodes.max, low),
            })
        address = ctx.address(cluster.name, "persistent_resource", "main")
        inputs = {"name": _name(self.context.stack_name, cluster.name), "display_name": cluster.name,
                  "pools": pools, "network": self.s.network, "service_account": self.s.service_account}
        outputs = {"name": Ref(address, "name"), "id": Ref(address, "id")}
        return Lowered([self._resource(address, "persistent_resource", inputs)], outputs)

    def _lower_storage(self, storage: Storage, ctx: LowerContext) -> Lowered:
        if storage.kind != "nas":  # refused at validate (capabilities); kept for a direct lower()
            raise MlplatError(f"the gcp target has no {storage.kind} storage", hint="use kind: nas (Filestore)")
        tier = self.s.filestore_tier
        zonal = FILESTORE_TIERS[tier][2]
        address = ctx.address(storage.name, "filestore_instance", "main")
        inputs = {"name": _name(self.context.stack_name, storage.name),
                  "location": (self.s.zone or f"{self.s.region}-a") if zonal else self.s.region,
                  "tier": tier, "capacity_gb": storage.size_gb, "share": "share1", "network": self.s.network}
        outputs = {"name": Ref(address, "name"), "ip": Ref(address, "ip"), "share": Ref(address, "share"),
                   "nfs": Ref(address, "nfs"), "mount_path": storage.mount_path}
        return Lowered([self._resource(address, "filestore_instance", inputs)], outputs)

    def _lower_registry(self, registry: Registry, ctx: LowerContext) -> Lowered:
        resources: list[Resource] = []
        outputs: dict[str, Any] = {}
        stack = self.context.stack_name
        if registry.images:
            address = ctx.address(registry.name, "artifact_repository", "main")
            repo = _name(stack, registry.name)
            resources.append(self._resource(address, "artifact_repository", {
                "name": repo, "location": self.s.region, "format": "DOCKER"}))
            uri = f"{self.s.region}-docker.pkg.dev/{self.s.project}/{repo}"
            outputs["repository"] = Ref(address, "uri")
            for image in registry.images:
                outputs[f"image.{image.name}"] = f"{uri}/{_name(image.name)}"
        if not registry.models:
            return Lowered(resources, outputs)
        bucket = self.required("bucket", "to hold model artifacts")
        previous: dict[str, str] = {}  # model name → the address of its version declared before
        for model in registry.models:
            image = self._image_for(model.framework, registry, outputs)
            source = artifact_path(model, self.context.stack_dir, registry.artifact_roots)
            artifact = ctx.address(registry.name, "model_artifact", model.ref)
            key = f"{self.s.prefix.strip('/')}/models/{model.name}/{model.version}/{source.name}"
            digest = sha256_file(source)
            resources.append(self._resource(artifact, "model_artifact", {
                "bucket": bucket, "key": key, "source": str(source), "sha256": digest}))
            version = ctx.address(registry.name, "model_version", model.ref)
            after = (previous[model.name],) if model.name in previous else ()
            resources.append(self._resource(version, "model_version", {
                "model_id": _name(stack, registry.name, model.name), "display_name": model.name,
                "alias": _alias(model.version), "artifact_uri": Ref(artifact, "uri"), "image": image,
                "framework": model.framework, "sha256": digest}, *after))
            previous[model.name] = version
            outputs[f"model.{model.ref}"] = Ref(artifact, "uri")
            outputs[f"sha256.{model.ref}"] = digest
            outputs[f"version.{model.ref}"] = Ref(version, "name")
        return Lowered(resources, outputs)

    def _image_for(self, framework: str, registry: Registry | None, registry_outputs: dict[str, Any]) -> str:
        """The prediction container of a model of `framework`: Vertex AI's prebuilt one where Google has it, else
        `serving_image`, else (mlplat-linear) the registry's first image, tag `latest`."""
        if framework in FRAMEWORK_IMAGES and not self.s.serving_image:
            return FRAMEWORK_IMAGES[framework]
        if self.s.serving_image:
            return self.s.serving_image
        if framework == "mlplat-linear" and registry is not None and registry.images:
            image = registry_outputs.get(f"image.{registry.images[0].name}")
            if isinstance(image, str):
                return f"{image}:latest"
        raise MlplatError(f"no Vertex AI prediction container for framework {framework!r} on target "
                          f"{self.context.target_name!r} (prebuilt: {', '.join(sorted(FRAMEWORK_IMAGES))})",
                          hint=f"set targets.{self.context.target_name}.serving_image, or declare an image under "
                               "registry.images of a registry on gcp (its `latest` tag is used)")

    def _lower_serving(self, serving: Serving, ctx: LowerContext) -> Lowered:
        registry = ctx.platform.registry
        stack = self.context.stack_name
        endpoint_id = _name(stack, serving.name)
        endpoint = ctx.address(serving.name, "endpoint", "main")
        endpoint_name = f"{self.location}/endpoints/{endpoint_id}"
        capture = serving.monitoring.capture if serving.monitoring is not None else None
        logging = None
        if capture is not None:
            logging = {"sampling_rate": capture.sample_percent / 100, "destination": capture.destination}
        resources = [self._resource(endpoint, "endpoint", {"name": endpoint_id, "display_name": serving.name,
                                                           "logging": logging})]
        weights: dict[str, float] = {}
        deployed: dict[str, Ref] = {}
        for path_name, path in serving.paths.items():
            model = ctx.platform.model(path.model)
            if registry is None or model is None:
                known = ", ".join(m.ref for m in registry.models) if registry else "none (no registry declared)"
                raise MlplatError(f"paths.{path_name}.model {path.model!r} is not in the registry (models: {known})",
                                  hint="declare it under registry.models")
            try:  # the registry is on this target: deploy its Model Registry version
                version: Any = ctx.output(registry.name, f"version.{path.model}")
            except KeyError:  # another target's registry (hybrid): upload its artifact, copied to GCS, here
                version_address = ctx.address(serving.name, "model_version", path_name)
                uri = ctx.output(registry.name, f"model.{path.model}")
                resources.append(self._resource(version_address, "model_version", {
                    "model_id": _name(stack, serving.name, path_name), "display_name": model.name,
                    "alias": _alias(model.version), "artifact_uri": uri,
                    "image": self._image_for(model.framework, None, {}), "framework": model.framework,
                    "sha256": ctx.output(registry.name, f"sha256.{path.model}")}))
                version = Ref(version_address, "name")
            offering = catalog.instance_for("gcp", path.accelerator, path.gpu_count, serving=True)
            address = ctx.address(serving.name, "deployed_model", path_name)
            # one deploy or undeploy at a time per endpoint, as Vertex AI runs them: each path after the one before
            after = tuple(f"{serving.name}.deployed_model.{p}" for p in list(deployed)[-1:])
            resources.append(self._resource(address, "deployed_model", {
                "endpoint": Ref(endpoint, "name"), "path": path_name, "model": version,
                "machine_type": offering.instance_type, "accelerator_type": offering.cloud_accelerator or None,
                "accelerator_count": offering.gpus if offering.cloud_accelerator else 0,
                "min_replicas": path.replicas, "max_replicas": path.replicas,
                "service_account": self.s.service_account}, *after))
            weights[path_name] = float(path.weight or 0)
            deployed[path_name] = Ref(address, "id")
        split = ctx.address(serving.name, "traffic_split", "main")
        resources.append(self._resource(split, "traffic_split", {"endpoint": Ref(endpoint, "name"),
                                                                 "weights": weights, "deployed": deployed}))
        outputs: dict[str, Any] = {
            "name": Ref(endpoint, "name"), "id": endpoint_id, "url": f"{self.api_base}/v1/{endpoint_name}:predict",
            "upstream": {"url": f"{self.api_base}/v1/{endpoint_name}:rawPredict", "sign": {"kind": "google"},
                         "api_key": None}}
        if serving.monitoring is not None and serving.monitoring.drift is not None:
            resources += self._lower_monitoring(serving, serving.monitoring, ctx, endpoint, deployed, outputs)
        return Lowered(resources, outputs)

    def _lower_monitoring(self, serving: Serving, monitoring: Monitoring, ctx: LowerContext, endpoint: str,
                          deployed: dict[str, Ref], outputs: dict[str, Any]) -> list[Resource]:
        """drift → the baseline in GCS and a model deployment monitoring job over every deployed path, whose
        e-mails are the alerts."""
        from provisioner.monitoring.baseline import declared

        drift = monitoring.drift
        assert drift is not None
        source, features = declared(drift.baseline, drift.features, self.context.stack_dir)
        bucket = self.required("bucket", "for drift checks (the baseline lives in GCS)")
        endpoint_id = _name(self.context.stack_name, serving.name)
        fmt = "jsonl" if source.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"
        baseline = ctx.address(serving.name, "monitoring_baseline", "main")
        key = f"{self.s.prefix.strip('/')}/monitoring/{endpoint_id}/baseline.{fmt}"
        job = ctx.address(serving.name, "monitoring_job", "main")
        capture = monitoring.capture
        alerts = monitoring.alerts
        outputs["monitoring_job"] = Ref(job, "name")
        return [
            self._resource(baseline, "monitoring_baseline", {"bucket": bucket, "key": key, "source": str(source),
                                                             "sha256": sha256_file(source)}),
            self._resource(job, "monitoring_job", {
                "display_name": f"{endpoint_id}-drift", "endpoint": Ref(endpoint, "name"), "deployed": deployed,
                "baseline_uri": Ref(baseline, "uri"), "baseline_format": fmt, "features": features,
                "threshold": drift.threshold, "interval_hours": SCHEDULE_HOURS[drift.schedule],
                "sample_rate": capture.sample_percent / 100 if capture is not None else 1.0,
                "emails": sorted(alerts.emails) if alerts is not None else []}),
        ]


def _monitoring_reasons(monitoring: Monitoring) -> list[Reason]:
    """What Vertex AI's monitoring cannot do of an endpoint's `monitoring:` (the features it offers at all are
    capabilities)."""
    found = []
    capture = monitoring.capture
    if capture is not None and capture.destination is not None and not capture.destination.startswith("bq://"):
        found.append(Reason("capture-destination-unsupported", f"Vertex AI logs requests and responses to BigQuery "
                            f"only, not {capture.destination!r}: give a bq://project.dataset.table URI, or leave "
                            "destination out (Vertex AI then makes a dataset per endpoint)",
                            ("monitoring", "capture", "destination")))
    drift = monitoring.drift
    if drift is not None and drift.metric != "jensen_shannon":
        found.append(Reason("drift-metric-unsupported", f"Vertex AI model monitoring measures drift of numerical "
                            f"features as the Jensen-Shannon divergence, not {drift.metric}: set metric: "
                            "jensen_shannon", ("monitoring", "drift", "metric")))
    alerts = monitoring.alerts
    if alerts is not None and alerts.webhook:
        found.append(Reason("alert-webhook-unsupported", "Vertex AI model monitoring alerts by e-mail (or Cloud "
                            "Monitoring notification channels), not webhooks: list emails instead",
                            ("monitoring", "alerts", "webhook")))
    if alerts is not None and drift is None:
        found.append(Reason("alerts-need-drift", "Vertex AI alerts are the drift monitoring job's e-mails: declare "
                            "monitoring.drift too", ("monitoring", "alerts")))
    return found


def _name(*parts: str, limit: int = 63) -> str:
    """A Google id: lower case `[a-z0-9-]`, starting with a letter, ≤ limit; long ones keep a hash of the text."""
    return cloud_name(*parts, limit=limit, letter_first=True)


def _alias(version: str) -> str:
    """A Model Registry version alias for `version`: `[a-z][a-zA-Z0-9-]{0,126}[a-z0-9]`, so `v` + the slug."""
    return f"v{slug(version)}"[:128]
