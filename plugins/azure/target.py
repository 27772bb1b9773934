"""The azure target: settings, capabilities and lowering of each component to Azure Machine Learning resources.

Lowering:
- cluster  → an AmlCompute cluster per GPU pool (VM size from the catalog; min/max nodes; low priority for spot)
  (compute.py)
- storage  → an Azure file share in `storage_account`, registered as an AzureFileDatastore (storage.py)
- registry → per model an Azure ML model version, its artifact uploaded to the workspace's default blob datastore;
  images are repositories in the workspace's container registry (discovered) (registry.py)
- serving  → a ManagedOnlineEndpoint, a ManagedOnlineDeployment per path (capture: its data collector) and the
  endpoint's traffic (weights, or mirror_traffic for a shadow) (serving.py); drift and alerts → a monitor schedule
  with a data-drift signal (monitoring.py)

Every call goes to Azure Resource Manager (and the storage data planes) with DefaultAzureCredential. Name-keyed:
an ARM PUT is an upsert by name, so kinds whose name is their key replace destroy-first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from provisioner import catalog
from provisioner.artifacts import artifact_path, sha256_file
from provisioner.capabilities import accelerator_count
from provisioner.cloud import cloud_name, slug
from provisioner.errors import MlplatError
from provisioner.graph import Ref, Resource
from provisioner.provider import ResourceProvider
from provisioner.spec.model import Cluster, Component, Monitoring, Registry, Serving, Storage
from provisioner.target import Capabilities, LowerContext, Lowered, Reason, ShadowCapability, StorageLimits, Target

if TYPE_CHECKING:
    from provisioner.artifacts import ArtifactStore

UUID = r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
#: Azure ML mirrors at most this share of an endpoint's traffic, in total
MAX_MIRROR_PERCENT = 50
#: monitor schedule frequency per `drift.schedule` (Azure ML recurrence)
SCHEDULES = {"hourly": {"frequency": "hour", "interval": 1}, "daily": {"frequency": "day", "interval": 1}}
#: drift metrics of mlplat → Azure ML data-drift metric names (numerical features)
DRIFT_METRICS = {"psi": "population_stability_index", "jensen_shannon": "jensen_shannon_distance",
                 "ks": "two_sample_kolmogorov_smirnov_test"}


class AzureSettings(BaseModel):
    #: Python's `re`: the Rust engine compiles resource_group's Unicode `\w` into tables at import (~25 ms of
    #: every command's start-up)
    model_config = ConfigDict(extra="forbid", regex_engine="python-re", defer_build=True)

    subscription: str = Field(pattern=UUID, description="Azure subscription id")
    resource_group: str = Field(pattern=r"^[-\w._()]{1,90}$", description="Resource group of the workspace")
    workspace: str = Field(pattern=r"^[a-zA-Z0-9][a-zA-Z0-9_-]{2,32}$", description="Azure ML workspace name")
    location: str = Field(pattern=r"^[a-z]+[a-z0-9]*$", description="Azure region of the workspace, e.g. eastus")
    storage_account: str | None = Field(None, pattern=r"^[a-z0-9]{3,24}$",
                                        description="Storage account for nas file shares (default: the "
                                                    "workspace's own)")
    serving_image: str | None = Field(None, description="Inference container for deployments (default: the "
                                                        "registry's first image in the workspace's container "
                                                        "registry, tag `latest`)")
    prefix: str = Field("mlplat", pattern=r"^[A-Za-z0-9_.-][A-Za-z0-9_./-]{0,200}$",
                        description="Path prefix in the workspace's blob datastore")
    endpoint_url: str | None = Field(None, description="Send every API call here (the fake server in tests)")
    poll_interval_s: float = Field(10.0, ge=0, description="First interval of waits on long-running operations")
    max_concurrency: int = Field(8, ge=1, description="Azure calls in flight at once (ARM throttling)")


class AzureTarget(Target):
    name = "azure"
    description = "Azure: Azure ML compute clusters, managed online endpoints and models, file shares (azure-ai-ml)"
    settings_model = AzureSettings
    sdk = ("azure.ai.ml", "azure.identity")
    extra = "azure"

    def __init__(self, settings: BaseModel, context: Any) -> None:
        super().__init__(settings, context)
        self._clients: Any = None

    @property
    def s(self) -> AzureSettings:
        return self.settings  # type: ignore[return-value]

    def capabilities(self) -> Capabilities:
        return Capabilities(
            training_accelerators=catalog.accelerators_offered("azure"),
            serving_accelerators=catalog.accelerators_offered("azure", serving=True),
            spot=True,
            autoscaling=True,
            traffic_split=True,
            shadow=ShadowCapability(max_mirror_percent=MAX_MIRROR_PERCENT),
            storage={"nas": StorageLimits(min_gb=1, max_gb=102400)},
            auth_modes=frozenset({"minted-key", "iam"}),
            model_formats=None,  # the deployment's image serves it
            monitoring=frozenset({"capture", "drift", "alerts"}),
            max_concurrency=self.s.max_concurrency,
            notes=("endpoint keys are minted by Azure (auth: key without api_key) and kept sealed as secret "
                   "outputs; auth: iam is an Entra ID (AAD) token",
                   f"a shadow mirrors at most {MAX_MIRROR_PERCENT} % of requests, and takes no live traffic",
                   "AmlCompute scales between nodes.min and nodes.max; spot pools are low priority",
                   "monitoring: capture is the deployment's data collector; drift a monitor schedule (data drift "
                   "signal, psi / jensen_shannon / ks); alerts its e-mails (no webhooks)",
                   "a front door is the local gateway (Traffic Manager is not used)"),
        )

    def check(self, component: Component) -> list[Reason]:
        found: list[Reason] = []
        if isinstance(component, Cluster):
            for i, pool in enumerate(component.gpu_pools):
                found += accelerator_count("azure", pool.accelerator, pool.gpus_per_node, False,
                                           ("gpu_pools", i, "gpus_per_node"))
        elif isinstance(component, Serving):
            for name, path in component.paths.items():
                found += accelerator_count("azure", path.accelerator, path.gpu_count, True, ("paths", name, "gpus"))
            monitoring = component.monitoring
            if monitoring is not None and monitoring.alerts is not None and monitoring.alerts.webhook:
                found.append(Reason("alert-webhook-unsupported", "Azure ML model monitoring alerts by e-mail, not "
                                    "webhooks: list emails instead", ("monitoring", "alerts", "webhook")))
            if monitoring is not None and monitoring.alerts is not None and monitoring.drift is None:
                found.append(Reason("alerts-need-drift", "Azure ML alerts are the monitor schedule's e-mails: "
                                    "declare monitoring.drift too", ("monitoring", "alerts")))
            if monitoring is not None and monitoring.drift is not None and monitoring.capture is None:
                found.append(Reason("drift-needs-capture", "Azure ML checks drift on what the deployment's data "
                                    "collector captured: declare monitoring.capture too", ("monitoring", "drift")))
            capture = monitoring.capture if monitoring is not None else None
            if capture is not None and capture.destination is not None and \
                    not capture.destination.startswith("azureml://"):
                found.append(Reason("capture-destination-unsupported", "Azure ML collects to a data asset path "
                                    f"(azureml://...), not {capture.destination!r}: leave destination out for the "
                                    "workspace's default", ("monitoring", "capture", "destination")))
        return found

    def discover(self) -> dict[str, Any]:
        """The workspace (ARM GET): its location, container registry and default storage, which the lowering
        names (image URIs, the file share's account)."""
        from mlplat_plugins.azure.sdk import workspace_facts

        return workspace_facts(self.clients(), self.s.workspace)

    def clients(self) -> Any:
        if self._clients is None:
            from mlplat_plugins.azure.sdk import Clients

            s = self.s
            self._clients = Clients(s.subscription, s.resource_group, s.workspace, s.endpoint_url)
        return self._clients

    def artifact_store(self) -> ArtifactStore | None:
        """The workspace's default blob datastore, under `<prefix>/artifacts/`."""
        from mlplat_plugins.azure.artifact_store import BlobArtifactStore

        return BlobArtifactStore(self.clients(), self.s.prefix)

    def provider(self, kind: str) -> ResourceProvider:
        from mlplat_plugins.azure.providers import PROVIDERS

        try:
            return PROVIDERS[kind](self)
        except KeyError:
            raise MlplatError(f"the azure target has no resource kind {kind!r}") from None

    def _discovered(self, key: str) -> Any:
        """A fact `discover()` found; before discovery (`validate`, which calls no cloud) a stand-in `<key>`, so
        that validate checks the rest of the lowering."""
        if not self.discovered:
            return f"<{key}>"
        value = self.discovered.get(key)
        if value is None:
            raise MlplatError(f"the workspace {self.s.workspace!r} has no {key.replace('_', ' ')}",
                              hint="check targets.azure.workspace, or the workspace in the Azure portal")
        return value

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
        raise MlplatError(f"the azure target cannot realize {type(component).__name__}")

    def _resource(self, address: str, kind: str, inputs: dict[str, Any], *after: str) -> Resource:
        return Resource(address, f"azure.{kind}", self.context.target_name, inputs, depends_on=tuple(after))

    def _lower_cluster(self, cluster: Cluster, ctx: LowerContext) -> Lowered:
        resources, outputs = [], {}
        for pool in cluster.gpu_pools:
            offering = catalog.instance_for("azure", pool.accelerator, pool.gpus_per_node)
            address = ctx.address(cluster.name, "compute", pool.name)
            resources.append(self._resource(address, "compute", {
                "name": _name(cluster.name, pool.name, limit=16), "vm_size": offering.instance_type,
                "min_nodes": pool.nodes.min, "max_nodes": max(pool.nodes.max, pool.nodes.min),
                "tier": "low_priority" if pool.spot else "dedicated"}))
            outputs[f"compute.{pool.name}"] = Ref(address, "name")
        return Lowered(resources, outputs)

    def _lower_storage(self, storage: Storage, ctx: LowerContext) -> Lowered:
        if storage.kind != "nas":
            raise MlplatError(f"the azure target has no {storage.kind} storage", hint="use kind: nas (Azure Files)")
        account = self.s.storage_account or self._discovered("storage_account")
        share = ctx.address(storage.name, "file_share", "main")
        datastore = ctx.address(storage.name, "datastore", "main")
        share_name = _name(self.context.stack_name, storage.name, limit=63)
        return Lowered([
            self._resource(share, "file_share", {"account": account, "name": share_name,
                                                 "quota_gb": storage.size_gb}),
            self._resource(datastore, "datastore", {"name": _name(self.context.stack_name, storage.name,
                                                                  limit=255).replace("-", "_"),
                                                    "account": account, "share": Ref(share, "name")}),
        ], {"datastore": Ref(datastore, "name"), "share": Ref(share, "name"), "account": account,
            "mount_path": storage.mount_path})

    def _lower_registry(self, registry: Registry, ctx: LowerContext) -> Lowered:
        resources: list[Resource] = []
        outputs: dict[str, Any] = {}
        if registry.images:
            acr = self._discovered("container_registry")
            for image in registry.images:
                outputs[f"image.{image.name}"] = f"{acr}/{slug(self.context.stack_name)}/{slug(image.name)}"
            outputs["container_registry"] = acr
        for model in registry.models:
            source = artifact_path(model, self.context.stack_dir, registry.artifact_roots)
            address = ctx.address(registry.name, "model", model.ref)
            digest = sha256_file(source)
            resources.append(self._resource(address, "model", {
                "name": _name(self.context.stack_name, model.name, limit=255), "version": _version(model.version),
                "path": f"{self.s.prefix.strip('/')}/models/{model.name}/{model.version}/{source.name}",
                "source": str(source), "sha256": digest, "framework": model.framework}))
            outputs[f"model.{model.ref}"] = Ref(address, "uri")
            outputs[f"sha256.{model.ref}"] = digest
            outputs[f"asset.{model.ref}"] = Ref(address, "id")
        return Lowered(resources, outputs)

    def _image(self, registry: Registry | None) -> str:
        if self.s.serving_image:
            return self.s.serving_image
        if registry is not None and registry.images:
            acr = self._discovered("container_registry")
            return f"{acr}/{slug(self.context.stack_name)}/{slug(registry.images[0].name)}:latest"
        raise MlplatError(f"no inference image for Azure ML deployments on target {self.context.target_name!r}",
                          hint=f"set targets.{self.context.target_name}.serving_image, or declare an image under "
                               "registry.images (the workspace's container registry, tag `latest`)")

    def _lower_serving(self, serving: Serving, ctx: LowerContext) -> Lowered:
        registry = ctx.platform.registry
        stack = self.context.stack_name
        endpoint = ctx.address(serving.name, "online_endpoint", "main")
        endpoint_name = _endpoint_name(stack, serving.name)
        auth_mode = "aad_token" if serving.auth == "iam" else "key"
        resources = [self._resource(endpoint, "online_endpoint", {"name": endpoint_name, "auth_mode": auth_mode})]
        capture = serving.monitoring.capture if serving.monitoring is not None else None
        image = self._image(registry)
        traffic: dict[str, int] = {}
        mirror: dict[str, int] = {}
        deployments: dict[str, Ref] = {}
        for path_name, path in serving.paths.items():
            model = ctx.platform.model(path.model)
            if registry is None or model is None:
                known = ", ".join(m.ref for m in registry.models) if registry else "none (no registry declared)"
                raise MlplatError(f"paths.{path_name}.model {path.model!r} is not in the registry (models: {known})",
                                  hint="declare it under registry.models")
            try:  # the registry is on this target: deploy its model asset
                asset: Any = ctx.output(registry.name, f"asset.{path.model}")
            except KeyError:  # another target's registry (hybrid): register its artifact, copied to blob, here
                model_address = ctx.address(serving.name, "model", path_name)
                resources.append(self._resource(model_address, "model", {
                    "name": _name(stack, serving.name, path_name, limit=255), "version": _version(model.version),
                    "uri": ctx.output(registry.name, f"model.{path.model}"),
                    "sha256": ctx.output(registry.name, f"sha256.{path.model}"), "framework": model.framework}))
                asset = Ref(model_address, "id")
            offering = catalog.instance_for("azure", path.accelerator, path.gpu_count, serving=True)
            address = ctx.address(serving.name, "online_deployment", path_name)
            inputs: dict[str, Any] = {"endpoint": Ref(endpoint, "name"), "path": path_name, "model": asset,
                                      "image": image, "instance_type": offering.instance_type,
                                      "instance_count": path.replicas}
            if capture is not None:
                inputs["capture"] = {"sampling_rate": capture.sample_percent / 100,
                                     "destination": capture.destination}
            # one deployment operation at a time per endpoint: each path after the one before
            after = tuple(f"{serving.name}.online_deployment.{p}" for p in list(deployments)[-1:])
            resources.append(self._resource(address, "online_deployment", inputs, *after))
            deployments[path_name] = Ref(address, "name")
            if path.mode == "shadow":
                mirror[path_name] = path.mirror_percent
            else:
                traffic[path_name] = int(path.weight or 0)
        split = ctx.address(serving.name, "endpoint_traffic", "main")
        resources.append(self._resource(split, "endpoint_traffic", {
            "endpoint": Ref(endpoint, "name"), "traffic": traffic, "mirror": mirror, "deployments": deployments}))
        outputs: dict[str, Any] = {"name": Ref(endpoint, "name"), "url": Ref(endpoint, "scoring_uri"),
                                   "upstream": {"url": Ref(endpoint, "scoring_uri"),
                                                "sign": {"kind": "azure", "auth": auth_mode,
                                                         "connect_to": self.s.endpoint_url},
                                                "api_key": Ref(endpoint, "key") if auth_mode == "key" else None}}
        if auth_mode == "key":
            outputs["key"] = Ref(endpoint, "key")
        if serving.monitoring is not None and serving.monitoring.drift is not None:
            resources += self._lower_monitoring(serving, serving.monitoring, ctx, endpoint, deployments, outputs)
        return Lowered(resources, outputs)

    def _lower_monitoring(self, serving: Serving, monitoring: Monitoring, ctx: LowerContext, endpoint: str,
                          deployments: dict[str, Ref], outputs: dict[str, Any]) -> list[Resource]:
        """drift → the baseline uploaded to the blob datastore, and a monitor schedule with a data-drift signal per
        deployment (threshold per feature), whose e-mails are the alerts."""
        from provisioner.monitoring.baseline import declared

        drift = monitoring.drift
        assert drift is not None
        source, features = declared(drift.baseline, drift.features, self.context.stack_dir)
        endpoint_name = _endpoint_name(self.context.stack_name, serving.name)
        baseline = ctx.address(serving.name, "monitoring_baseline", "main")
        schedule = ctx.address(serving.name, "monitor_schedule", "main")
        alerts = monitoring.alerts
        outputs["monitor_schedule"] = Ref(schedule, "name")
        fmt = "jsonl" if source.suffix.lower() in (".jsonl", ".ndjson", ".json") else "csv"
        return [
            self._resource(baseline, "monitoring_baseline", {
                "name": _name(endpoint_name, "baseline", limit=255), "version": sha256_file(source)[:12],
                "path": f"{self.s.prefix.strip('/')}/monitoring/{endpoint_name}/baseline.{fmt}",
                "source": str(source), "sha256": sha256_file(source), "format": fmt}),
            self._resource(schedule, "monitor_schedule", {
                "name": _name(endpoint_name, "drift", limit=255), "endpoint": Ref(endpoint, "name"),
                "deployments": deployments, "baseline": Ref(baseline, "id"), "features": features,
                "metric": DRIFT_METRICS[drift.metric], "threshold": drift.threshold,
                "recurrence": SCHEDULES[drift.schedule],
                "emails": sorted(alerts.emails) if alerts is not None else []}),
        ]


def _name(*parts: str, limit: int = 63) -> str:
    """An Azure name: lower case `[a-z0-9-]`, starting with a letter, ≤ limit; long ones keep a hash of the text."""
    return cloud_name(*parts, limit=limit, digest=6, letter_first=True)


def _endpoint_name(stack: str, serving: str) -> str:
    """An online endpoint name: 3 to 32 characters, a letter first, `[a-zA-Z0-9-]`, unique in the region."""
    return _name(stack, serving, limit=32)


def _version(version: str) -> str:
    """An Azure ML asset version: `[A-Za-z0-9._-]`, as mlplat's version strings already are, mostly."""
    return "".join(c if c.isalnum() or c in "._-" else "-" for c in version)
