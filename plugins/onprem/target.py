"""The onprem target: a Kubernetes cluster you run, driven by server-side apply (field manager `mlplat`).

Lowering (every object in the stack's namespace, `<namespace_prefix>-<stack>`, unless cluster-scoped):
- the stack    → a Namespace (stack-scoped, made first and deleted last)
- cluster      → per GPU pool a PriorityClass and a ResourceQuota scoped to it (the pool's GPUs x nodes.max); with
  Kueue installed (discovered at plan time) also a ResourceFlavor (the pool's node label and taint), a ClusterQueue
  and a LocalQueue. The pool's node selector and toleration come from this plugin's catalog rows
- storage      → an NFS PersistentVolume (`nfs_server`:`nfs_path`/<namespace>/<storage>) and a ReadWriteMany
  PersistentVolumeClaim bound to it
- registry     → an OCI registry Deployment + Service (`registry_image`) on the first nas claim on this target (or a
  claim of its own); each model pushed into it as an OCI artifact through the API server's service proxy, exporting
  its URI and sha256
- serving      → per path a model-server Deployment + Service, and a Gateway API HTTPRoute whose `backendRefs`
  weights are the split (a shadow path: a `RequestMirror` filter); with KServe installed (`serving_engine: auto` or
  `kserve`) an InferenceService instead: production the default predictor, experimental its canary
  (`canaryTrafficPercent`). `monitoring.capture` → the model server's capture settings; a ServiceMonitor scrapes
  `/metrics` when the Prometheus operator is installed (lowering.py)

A weight change patches only the HTTPRoute (or the InferenceService's canary percent).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from provisioner import catalog
from provisioner.artifacts import artifact_path, sha256_file
from provisioner.cloud import cloud_name
from provisioner.errors import MlplatError
from provisioner.graph import Resource
from provisioner.provider import ResourceProvider
from provisioner.spec.model import Cluster, Component, Registry, Serving, Storage
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
    from mlplat_plugins.onprem.sdk import Kube

#: `nvidia.com/gpu.product` node labels (NVIDIA GPU feature discovery: the nvidia-smi name, spaces as dashes)
GPU_PRODUCTS = {
    "t4": "Tesla-T4", "l4": "NVIDIA-L4", "a10g": "NVIDIA-A10G", "v100": "Tesla-V100-SXM2-16GB",
    "a100-40gb": "NVIDIA-A100-SXM4-40GB", "a100-80gb": "NVIDIA-A100-SXM4-80GB", "h100": "NVIDIA-H100-80GB-HBM3",
    "h100-nvl": "NVIDIA-H100-NVL", "h200": "NVIDIA-H200",
}
PRODUCT_LABEL = "nvidia.com/gpu.product"
#: labels on every object mlplat makes; the stack's namespace carries them too
MANAGED_BY = {"app.kubernetes.io/managed-by": "mlplat"}
REGISTRY_PORT = 5000
SERVING_PORT = 8080
#: API groups whose presence a plan depends on (discovered at preview, recorded in the plan)
OPTIONAL_GROUPS = {"kueue": "kueue.x-k8s.io", "gateway_api": "gateway.networking.k8s.io",
                   "prometheus_operator": "monitoring.coreos.com", "kserve": "serving.kserve.io"}


class OnpremSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target

    kubeconfig: str | None = Field(None, description="Path of the kubeconfig file (default: $KUBECONFIG, else "
                                                      "~/.kube/config; in a pod, its service account)")
    context: str | None = Field(None, description="kubeconfig context (default: the file's current-context)")
    namespace_prefix: str = Field("mlplat", pattern=r"^[a-z0-9]([a-z0-9-]{0,30}[a-z0-9])?$",
                                  description="The stack's namespace is <namespace_prefix>-<stack name>")
    nfs_server: str | None = Field(None, description="NFS server of nas storage and the registry's claim "
                                                     "(host name or IP)")
    nfs_path: str = Field("/exports/mlplat", pattern=r"^/", description="Export path on nfs_server; each volume "
                                                                        "is a directory <nfs_path>/<namespace>/<name>")
    gateway: str = Field("mlplat-gateway", description="Gateway API Gateway the endpoints' HTTPRoutes attach to")
    gateway_namespace: str = Field("gateway-system", description="Namespace of `gateway`")
    gateway_url: str | None = Field(None, description="Base URL clients reach the Gateway at (default: its "
                                                      "status.addresses, discovered at plan time)")
    gpu_resource: str = Field("nvidia.com/gpu", description="Extended resource name of a GPU (the device plugin's)")
    gpu_toleration: str | None = Field("nvidia.com/gpu", description="Taint key GPU nodes carry (tolerated with "
                                                                     "Exists/NoSchedule); null: no toleration")
    gpu_products: dict[str, str] = Field(default_factory=dict, description="Override the node label value "
                                         f"({PRODUCT_LABEL}) per accelerator, e.g. {{h100: NVIDIA-H100-PCIe}}")
    serving_engine: Literal["auto", "kserve", "gateway"] = Field(
        "auto", description="auto: an InferenceService when KServe is installed (a shadow path still uses the "
                            "Gateway API), else Deployments + HTTPRoute")
    registry_image: str = Field("registry:2", description="Image of the OCI registry (CNCF distribution)")
    registry_size_gb: int = Field(20, ge=1, description="Size of the registry's own claim when no nas storage is "
                                                        "on this target")
    serving_image: str = Field("ghcr.io/mlplat/model-server:0.1", description="Model-server image: serves "
                               "/models/<artifact file> on port 8080 (POST /invocations, GET /metrics)")
    fetch_image: str = Field("curlimages/curl:8.10.1", description="Init container that downloads a model "
                                                                   "artifact from the registry")
    force_conflicts: bool = Field(False, description="Take fields another field manager owns (kubectl edit…) "
                                                     "instead of failing with their names")
    poll_interval_s: float = Field(2.0, ge=0, description="First interval of waits on rollouts and deletions")
    max_concurrency: int = Field(16, ge=1, description="API calls in flight at once")


class OnpremTarget(Target):
    name = "onprem"
    description = "Kubernetes you run: Deployments, Gateway API or KServe serving, NFS volumes, an OCI registry, " \
                  "Kueue queues (kubernetes client, server-side apply)"
    settings_model = OnpremSettings
    sdk = ("kubernetes",)
    extra = "onprem"

    def __init__(self, settings: BaseModel, context: Any) -> None:
        super().__init__(settings, context)
        self._kube: Kube | None = None

    @property
    def s(self) -> OnpremSettings:
        return self.settings  # type: ignore[return-value]

    @property
    def namespace(self) -> str:
        return cloud_name(self.s.namespace_prefix, self.context.stack_name)

    def capabilities(self) -> Capabilities:
        return Capabilities(
            training_accelerators=catalog.accelerators_offered("onprem"),
            serving_accelerators=catalog.accelerators_offered("onprem", serving=True),
            autoscaling=False,
            traffic_split=True,
            shadow=ShadowCapability(max_mirror_percent=100),
            storage={"nas": StorageLimits(min_gb=1)},
            auth_modes=frozenset({"none"}),
            model_formats=None,
            monitoring=frozenset({"capture"}),
            max_concurrency=self.s.max_concurrency,
            notes=("objects are server-side applied with field manager `mlplat`; a field another manager owns is "
                   "a conflict unless force_conflicts: true",
                   "a split is an HTTPRoute's backendRefs weights; a shadow a RequestMirror filter (Gateway API "
                   "v1.2: any percent); with KServe, production is the default predictor and experimental its canary "
                   "(KServe cannot mirror: a shadow path uses the HTTPRoute)",
                   "a GPU pool is a node label and taint (NVIDIA GPU feature discovery), a PriorityClass-scoped "
                   "ResourceQuota, and Kueue queues when Kueue is installed; pools do not autoscale nodes",
                   "endpoints have no auth of their own: put the local front door (auth: key) in front"),
        )

    def check(self, component: Component) -> list[Reason]:
        found: list[Reason] = []
        if isinstance(component, Serving) and self.s.serving_engine == "kserve":
            for name, path in component.paths.items():
                if path.mode == "shadow":
                    found.append(Reason("shadow-unsupported", "KServe cannot mirror requests to a canary: set "
                                        f"targets.{self.context.target_name}.serving_engine to auto or gateway "
                                        "(a Gateway API RequestMirror), or make the path a weighted split",
                                        ("paths", name, "mode")))
        if isinstance(component, Storage) and component.kind == "nas" and not self.s.nfs_server:
            found.append(Reason("nfs-server-required", f"nas storage on target {self.context.target_name!r} is an "
                                "NFS volume: set targets." f"{self.context.target_name}.nfs_server (and nfs_path)",
                                ("kind",)))
        return found

    def discover(self) -> dict[str, Any]:
        """The cluster's version and which optional APIs it serves (Kueue, Gateway API, Prometheus operator,
        KServe): lowering depends on them. The Gateway's address when `gateway_url` is not set."""
        kube = self.kube()
        groups = kube.api_groups()
        found: dict[str, Any] = {"server": kube.server_version(), "namespace": self.namespace}
        for key, group in OPTIONAL_GROUPS.items():
            found[key] = group in groups
        found["gateway_url"] = self.s.gateway_url or (
            kube.gateway_url(self.s.gateway, self.s.gateway_namespace) if found["gateway_api"] else None)
        return found

    def kube(self) -> Kube:
        if self._kube is None:
            from mlplat_plugins.onprem.sdk import Kube

            self._kube = Kube(self.s.kubeconfig, self.s.context)
        return self._kube

    def provider(self, kind: str) -> ResourceProvider:
        from mlplat_plugins.onprem.providers import PROVIDERS

        try:
            return PROVIDERS[kind](self)
        except KeyError:
            raise MlplatError(f"the onprem target has no resource kind {kind!r}") from None

    # lowering ----------------------------------------------------------------------------------------

    def resource(self, address: str, kind: str, manifest: dict[str, Any], *after: str, replace_on: Any = None,
                 **extra: Any) -> Resource:
        """One Kubernetes object: its whole manifest (server-side applied), what replaces it when it changes
        (`replace_on`: values the object cannot change in place), and inputs of its own kind (`extra`)."""
        meta = manifest["metadata"]
        meta["labels"] = {**MANAGED_BY, "mlplat.dev/stack": label_value(self.context.stack_name),
                          **meta.get("labels", {})}
        inputs = {"api_version": manifest["apiVersion"], "kind": manifest["kind"], "name": meta["name"],
                  "namespace": meta.get("namespace"), "manifest": manifest, "replace_on": replace_on, **extra}
        return Resource(address, f"onprem.{kind}", self.context.target_name, inputs, depends_on=tuple(after))

    def meta(self, name: str, component: str | None = None, namespaced: bool = True) -> dict[str, Any]:
        meta: dict[str, Any] = {"name": name}
        if namespaced:
            meta["namespace"] = self.namespace
        if component:
            meta["labels"] = {"mlplat.dev/component": label_value(component)}
        return meta

    def lower_stack(self, ctx: LowerContext) -> Lowered:
        address = self.stack_address("namespace", "main")
        manifest = {"apiVersion": "v1", "kind": "Namespace", "metadata": self.meta(self.namespace, namespaced=False)}
        return Lowered([self.resource(address, "namespace", manifest)], {"namespace": self.namespace})

    def lower(self, component: Component, ctx: LowerContext) -> Lowered:
        from mlplat_plugins.onprem import lowering

        if isinstance(component, Cluster):
            return lowering.cluster(self, component, ctx)
        if isinstance(component, Storage):
            return lowering.storage(self, component, ctx)
        if isinstance(component, Registry):
            return lowering.registry(self, component, ctx)
        if isinstance(component, Serving):
            return lowering.serving(self, component, ctx)
        raise MlplatError(f"the onprem target cannot realize {type(component).__name__}")

    # shared by lowering ----------------------------------------------------------------------------------

    def node_placement(self, accelerator: str, gpus: int, serving: bool = False) -> dict[str, Any]:
        """What a pod of this accelerator selects and tolerates, and the GPUs it requests (catalog checked)."""
        catalog.instance_for("onprem", accelerator, gpus, serving=serving)  # NotOffered: a count no row has
        if accelerator == "cpu":
            return {"node_selector": {}, "tolerations": [], "gpus": 0}
        product = self.s.gpu_products.get(accelerator, GPU_PRODUCTS.get(accelerator, accelerator))
        tolerations = [{"key": self.s.gpu_toleration, "operator": "Exists", "effect": "NoSchedule"}] \
            if self.s.gpu_toleration else []
        return {"node_selector": {PRODUCT_LABEL: product}, "tolerations": tolerations, "gpus": gpus}

    def artifact(self, registry: Registry, model: Any) -> tuple[str, str]:
        """The local file of a registry model and its sha256."""
        source = artifact_path(model, self.context.stack_dir, registry.artifact_roots)
        return str(source), sha256_file(source)

    def gateway_base(self) -> str:
        url = self.discovered.get("gateway_url") or self.s.gateway_url
        if not url and not self.discovered:  # validate and export lower without asking the cluster
            return f"http://{self.s.gateway}.{self.s.gateway_namespace}.invalid"
        if not url:
            raise MlplatError(f"the Gateway {self.s.gateway_namespace}/{self.s.gateway} on target "
                              f"{self.context.target_name!r} has no address (or the Gateway API is not installed)",
                              hint=f"set targets.{self.context.target_name}.gateway_url, or install a Gateway API "
                                   "implementation and name its Gateway in `gateway`")
        return str(url).rstrip("/")


def label_value(text: str) -> str:
    """A legal label value (≤ 63 characters, alphanumeric at both ends, `-_.` inside)."""
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in text)[:63].strip("-_.")
