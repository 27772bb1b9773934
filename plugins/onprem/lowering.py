"""Each component → the Kubernetes objects that realize it (manifests the providers server-side apply).

Names are DNS-1123 labels derived from the stack and component names; everything but PriorityClasses,
PersistentVolumes and Kueue's ResourceFlavors and ClusterQueues (cluster-scoped, so prefixed with the namespace)
lives in the stack's namespace. The module docstring of `target.py` lists what each component becomes.
"""

from __future__ import annotations

import hashlib
import posixpath
from typing import TYPE_CHECKING, Any

from mlplat_plugins.onprem.target import MANAGED_BY, REGISTRY_PORT, SERVING_PORT, label_value
from provisioner.cloud import cloud_name
from provisioner.errors import MlplatError
from provisioner.graph import Ref, Resource
from provisioner.spec.model import Cluster, Registry, Serving, ServingPath, Storage
from provisioner.target import LowerContext, Lowered

if TYPE_CHECKING:
    from mlplat_plugins.onprem.target import OnpremTarget

KUEUE = "kueue.x-k8s.io/v1beta1"
GATEWAY = "gateway.networking.k8s.io/v1"
KSERVE = "serving.kserve.io/v1beta1"
#: where a model server finds its artifact (an emptyDir the init container fills)
MODELS_DIR = "/models"


def cluster(t: OnpremTarget, cluster: Cluster, ctx: LowerContext) -> Lowered:
    """Per GPU pool: a PriorityClass, a ResourceQuota scoped to it, and (Kueue) a flavor and queues."""
    resources: list[Resource] = []
    outputs: dict[str, Any] = {"namespace": t.namespace}
    kueue = t.discovered.get("kueue", False)
    for pool in cluster.gpu_pools:
        placement = t.node_placement(pool.accelerator, pool.gpus_per_node)
        scoped = cloud_name(t.namespace, cluster.name, pool.name)  # cluster-scoped names carry the namespace
        local = cloud_name(cluster.name, pool.name)
        priority = ctx.address(cluster.name, "priority_class", pool.name)
        resources.append(t.resource(priority, "priority_class", {
            "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
            "metadata": t.meta(scoped, cluster.name, namespaced=False), "value": 1000, "globalDefault": False,
            "description": f"mlplat pool {pool.name} of cluster {cluster.name} (stack {t.context.stack_name})"}))
        if placement["gpus"]:
            resource, total = f"requests.{t.s.gpu_resource}", pool.gpus_per_node * pool.nodes.max
        else:
            from provisioner import catalog

            vcpus = catalog.instance_for("onprem", "cpu", 0).vcpus
            resource, total = "requests.cpu", vcpus * pool.nodes.max
        resources.append(t.resource(ctx.address(cluster.name, "resource_quota", pool.name), "resource_quota", {
            "apiVersion": "v1", "kind": "ResourceQuota", "metadata": t.meta(local, cluster.name),
            "spec": {"hard": {resource: str(total)},
                     "scopeSelector": {"matchExpressions": [
                         {"scopeName": "PriorityClass", "operator": "In", "values": [scoped]}]}}}, priority))
        outputs[f"pool.{pool.name}.priority_class"] = scoped
        outputs[f"pool.{pool.name}.node_selector"] = placement["node_selector"]
        outputs[f"pool.{pool.name}.tolerations"] = placement["tolerations"]
        if kueue:
            flavor = ctx.address(cluster.name, "resource_flavor", pool.name)
            resources.append(t.resource(flavor, "resource_flavor", {
                "apiVersion": KUEUE, "kind": "ResourceFlavor", "metadata": t.meta(scoped, cluster.name, False),
                "spec": {"nodeLabels": placement["node_selector"], "tolerations": placement["tolerations"]}}))
            covered = t.s.gpu_resource if placement["gpus"] else "cpu"
            queue = ctx.address(cluster.name, "cluster_queue", pool.name)
            resources.append(t.resource(queue, "cluster_queue", {
                "apiVersion": KUEUE, "kind": "ClusterQueue", "metadata": t.meta(scoped, cluster.name, False),
                "spec": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": t.namespace}},
                         "resourceGroups": [{"coveredResources": [covered], "flavors": [
                             {"name": scoped, "resources": [{"name": covered, "nominalQuota": total}]}]}]}},
                flavor))
            resources.append(t.resource(ctx.address(cluster.name, "local_queue", pool.name), "local_queue", {
                "apiVersion": KUEUE, "kind": "LocalQueue", "metadata": t.meta(local, cluster.name),
                "spec": {"clusterQueue": scoped}}, queue))
            outputs[f"pool.{pool.name}.queue"] = local
    return Lowered(resources, outputs)


def _nfs_source(t: OnpremTarget, name: str, size_gb: int) -> dict[str, str]:
    """Where the volume `name` lives on the NFS server, and its size: what a change of replaces the volume and its
    claim (a static NFS volume does not expand, and its source is immutable; Retain keeps the data)."""
    server = t.required("nfs_server", "for nas storage and the registry (an NFS volume)")
    return {"server": server, "path": posixpath.join(t.s.nfs_path, t.namespace, name), "size": f"{size_gb}Gi"}


def _nfs_volume(t: OnpremTarget, ctx: LowerContext, component: str, key: str, name: str,
                size_gb: int) -> tuple[list[Resource], str, str]:
    """An NFS PersistentVolume and the ReadWriteMany claim bound to it; (resources, claim address, claim name)."""
    fixed = _nfs_source(t, name, size_gb)
    server, path, size = fixed["server"], fixed["path"], fixed["size"]
    volume_name = cloud_name(t.namespace, name)
    volume = ctx.address(component, "persistent_volume", key)
    claim = ctx.address(component, "persistent_volume_claim", key)
    pv = t.resource(volume, "persistent_volume", {
        "apiVersion": "v1", "kind": "PersistentVolume", "metadata": t.meta(volume_name, component, False),
        "spec": {"capacity": {"storage": size}, "accessModes": ["ReadWriteMany"],
                 "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "", "mountOptions": ["nfsvers=4.1"],
                 "nfs": {"server": server, "path": path}}}, replace_on=fixed)
    pvc = t.resource(claim, "persistent_volume_claim", {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": t.meta(name, component),
        "spec": {"accessModes": ["ReadWriteMany"], "storageClassName": "", "volumeName": volume_name,
                 "resources": {"requests": {"storage": size}}}}, volume, replace_on=fixed)
    return [pv, pvc], claim, name


def storage(t: OnpremTarget, storage: Storage, ctx: LowerContext) -> Lowered:
    if storage.kind != "nas":  # refused at validate (capabilities); kept for a direct lower()
        raise MlplatError(f"the onprem target has no {storage.kind} storage", hint="use kind: nas (an NFS volume)")
    resources, claim, claim_name = _nfs_volume(t, ctx, storage.name, "main", cloud_name(storage.name),
                                               storage.size_gb)
    source = resources[-1].inputs["replace_on"]
    return Lowered(resources, {"claim": claim_name, "nfs": f"{source['server']}:{source['path']}",
                               "mount_path": storage.mount_path, "phase": Ref(claim, "phase")})


def _registry_claim(t: OnpremTarget, registry: Registry, ctx: LowerContext
                    ) -> tuple[list[Resource], str, str, Any]:
    """The claim the registry keeps its data on: the first nas storage on this target, else one of its own; and
    that claim's `replace_on` (what replaces it)."""
    for s in ctx.platform.storage:
        if s.kind == "nas" and ctx.platform.target_of(s) == t.context.target_name:
            name = cloud_name(s.name)
            return [], ctx.address(s.name, "persistent_volume_claim", "main"), name, _nfs_source(t, name, s.size_gb)
    resources, claim_address, claim = _nfs_volume(t, ctx, registry.name, "data", cloud_name(registry.name, "data"),
                                                  t.s.registry_size_gb)
    return resources, claim_address, claim, resources[-1].inputs["replace_on"]


def registry(t: OnpremTarget, registry: Registry, ctx: LowerContext) -> Lowered:
    """An OCI registry (Deployment + Service) on a claim; each model an OCI artifact pushed into it."""
    resources, claim_address, claim, volume = _registry_claim(t, registry, ctx)
    name = cloud_name(registry.name)
    selector = {"mlplat.dev/registry": label_value(registry.name)}
    deployment = ctx.address(registry.name, "deployment", "main")
    service = ctx.address(registry.name, "service", "main")
    resources.append(t.resource(deployment, "deployment", {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": t.meta(name, registry.name),
        "spec": {"replicas": 1, "strategy": {"type": "Recreate"}, "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": {**MANAGED_BY, **selector}}, "spec": {
                     "containers": [{"name": "registry", "image": t.s.registry_image,
                                     "ports": [{"name": "http", "containerPort": REGISTRY_PORT}],
                                     "env": [{"name": "REGISTRY_STORAGE_DELETE_ENABLED", "value": "true"}],
                                     "readinessProbe": {"httpGet": {"path": "/v2/", "port": "http"}},
                                     "volumeMounts": [{"name": "data", "mountPath": "/var/lib/registry",
                                                       "subPath": f"registry-{name}"}]}],
                     "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": claim}}]}}}},
        claim_address, replace_on={"volume": volume}))  # its pods hold the claim: replaced with it
    resources.append(t.resource(service, "service", {
        "apiVersion": "v1", "kind": "Service", "metadata": t.meta(name, registry.name),
        "spec": {"selector": selector, "ports": [{"name": "http", "port": REGISTRY_PORT, "targetPort": "http"}]}}))
    host = f"{name}.{t.namespace}.svc.cluster.local:{REGISTRY_PORT}"
    outputs: dict[str, Any] = {"registry": host, "claim": claim}
    for image in registry.images:
        outputs[f"image.{image.name}"] = f"{host}/{cloud_name(image.name)}"
    for model in registry.models:
        source, digest = t.artifact(registry, model)
        address = ctx.address(registry.name, "model_artifact", model.ref)
        resources.append(Resource(address, "onprem.model_artifact", t.context.target_name, {
            "namespace": t.namespace, "service": name, "port": REGISTRY_PORT, "host": host,
            "repository": f"models/{cloud_name(model.name)}", "tag": label_value(model.version),
            "file": posixpath.basename(source), "source": source, "sha256": digest, "framework": model.framework},
            depends_on=(deployment, service)))
        outputs[f"model.{model.ref}"] = Ref(address, "uri")
        outputs[f"blob_url.{model.ref}"] = Ref(address, "blob_url")
        outputs[f"sha256.{model.ref}"] = digest
    return Lowered(resources, outputs)


def _model_source(t: OnpremTarget, serving: Serving, path: ServingPath, ctx: LowerContext) -> tuple[Any, str, str]:
    """(URL the pod downloads the artifact from, the artifact's URI, its file name) of a path's model."""
    registry = ctx.platform.registry
    model = ctx.platform.model(path.model)
    if registry is None or model is None:
        known = ", ".join(m.ref for m in registry.models) if registry else "none (no registry declared)"
        raise MlplatError(f"model {path.model!r} of endpoint {serving.name!r} is not in the registry (models: "
                          f"{known})", hint="declare it under registry.models")
    uri = ctx.output(registry.name, f"model.{path.model}")
    try:
        fetch = ctx.output(registry.name, f"blob_url.{path.model}")
    except KeyError:  # a registry on another target: its URI, when the cluster can download it
        if not (isinstance(uri, str) and uri.startswith(("http://", "https://"))):
            raise MlplatError(f"endpoint {serving.name!r} on target {t.context.target_name!r} cannot download model "
                              f"{path.model} from registry {registry.name!r} on another target ({uri})",
                              hint="put the registry on this target too (its models are then pushed into the "
                                   "cluster's registry)") from None
        fetch = uri
    return fetch, uri, posixpath.basename(str(model.artifact))


def _sha256_of(serving: Serving, path: ServingPath, ctx: LowerContext) -> Any:
    registry = ctx.platform.registry
    try:
        return ctx.output(registry.name, f"sha256.{path.model}") if registry is not None else None
    except KeyError:
        return None


def _short_hash(*parts: str) -> str:
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()[:8]


def _capture_env(serving: Serving) -> list[dict[str, str]]:
    capture = serving.monitoring.capture if serving.monitoring is not None else None
    if capture is None:
        return []
    env = [{"name": "MLPLAT_CAPTURE_SAMPLE_PERCENT", "value": str(capture.sample_percent)},
           {"name": "MLPLAT_CAPTURE_REQUEST", "value": str(capture.request).lower()},
           {"name": "MLPLAT_CAPTURE_RESPONSE", "value": str(capture.response).lower()}]
    if capture.destination:
        env.append({"name": "MLPLAT_CAPTURE_DESTINATION", "value": capture.destination})
    return env


def _resources_of(t: OnpremTarget, gpus: int) -> dict[str, Any]:
    if not gpus:
        return {"requests": {"cpu": "500m", "memory": "512Mi"}}
    return {"requests": {"cpu": "1", "memory": "2Gi", t.s.gpu_resource: str(gpus)},
            "limits": {t.s.gpu_resource: str(gpus)}}


def serving(t: OnpremTarget, serving: Serving, ctx: LowerContext) -> Lowered:
    shadow = any(p.mode == "shadow" for _, p in serving.paths.items())
    engine = t.s.serving_engine
    if engine == "kserve" and not t.discovered.get("kserve"):
        raise MlplatError(f"serving_engine is kserve but target {t.context.target_name!r} has no KServe "
                          "(serving.kserve.io is not served)", hint="install KServe, or set serving_engine: auto")
    if t.discovered.get("kserve") and engine != "gateway" and not shadow:
        return _inference_service(t, serving, ctx)
    return _gateway_route(t, serving, ctx)


def _gateway_route(t: OnpremTarget, serving: Serving, ctx: LowerContext) -> Lowered:
    """Per path a model-server Deployment and Service; one HTTPRoute splitting (or mirroring) between them."""
    base = t.gateway_base()
    endpoint = cloud_name(serving.name)
    resources: list[Resource] = []
    backends: list[dict[str, Any]] = []
    filters: list[dict[str, Any]] = [
        {"type": "URLRewrite", "urlRewrite": {"path": {"type": "ReplacePrefixMatch", "replacePrefixMatch": "/"}}}]
    after: list[str] = []
    for path_name, path in serving.paths.items():
        fetch, uri, file = _model_source(t, serving, path, ctx)
        placement = t.node_placement(path.accelerator, path.gpu_count, serving=True)
        name = cloud_name(serving.name, path_name)
        # a new model is a new Deployment beside the old one (create before destroy: the Service selects both
        # while they overlap, so no request fails), named by the model's content; replicas change in place
        release = cloud_name(name, _short_hash(path.model, str(_sha256_of(serving, path, ctx))))
        selector = {"mlplat.dev/endpoint": label_value(serving.name), "mlplat.dev/path": path_name}
        deployment = ctx.address(serving.name, "deployment", path_name)
        service = ctx.address(serving.name, "service", path_name)
        container = {
            "name": "model-server", "image": t.s.serving_image,
            "ports": [{"name": "http", "containerPort": SERVING_PORT}],
            "env": [{"name": "MODEL_URI", "value": uri}, {"name": "MODEL_FILE", "value": f"{MODELS_DIR}/{file}"},
                    {"name": "MLPLAT_ENDPOINT", "value": serving.name}, {"name": "MLPLAT_PATH", "value": path_name},
                    *_capture_env(serving)],
            "readinessProbe": {"httpGet": {"path": "/-/healthz", "port": "http"}},
            "resources": _resources_of(t, placement["gpus"]),
            "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR, "readOnly": True}]}
        pod: dict[str, Any] = {
            "initContainers": [{"name": "fetch-model", "image": t.s.fetch_image,
                                "args": ["-fsSL", "-o", f"{MODELS_DIR}/{file}", fetch],
                                "volumeMounts": [{"name": "models", "mountPath": MODELS_DIR}]}],
            "containers": [container], "volumes": [{"name": "models", "emptyDir": {}}]}
        if placement["node_selector"]:
            pod["nodeSelector"] = placement["node_selector"]
        if placement["tolerations"]:
            pod["tolerations"] = placement["tolerations"]
        resources.append(t.resource(deployment, "deployment", {
            "apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {**t.meta(release, serving.name), "labels": {"mlplat.dev/component": label_value(
                serving.name), **selector}},
            "spec": {"replicas": path.replicas,
                     "selector": {"matchLabels": {**selector, "mlplat.dev/release": release}},
                     "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
                     "template": {"metadata": {"labels": {**MANAGED_BY, **selector, "mlplat.dev/release": release}},
                                  "spec": pod}}}))
        resources.append(t.resource(service, "service", {
            "apiVersion": "v1", "kind": "Service",
            "metadata": {**t.meta(name, serving.name), "labels": {"mlplat.dev/endpoint": selector[
                "mlplat.dev/endpoint"], "mlplat.dev/component": label_value(serving.name)}},
            "spec": {"selector": selector, "ports": [{"name": "http", "port": SERVING_PORT, "targetPort": "http"}]}}))
        after += [deployment, service]  # a path takes traffic once its pods are available
        if path.mode == "shadow":
            filters.append({"type": "RequestMirror", "requestMirror": {
                "backendRef": {"name": name, "port": SERVING_PORT}, "percent": path.mirror_percent}})
        elif path.weight:
            backends.append({"name": name, "port": SERVING_PORT, "weight": int(path.weight)})
    prefix = f"/{t.namespace}/{endpoint}"
    route = ctx.address(serving.name, "http_route", "main")
    resources.append(t.resource(route, "http_route", {
        "apiVersion": GATEWAY, "kind": "HTTPRoute", "metadata": t.meta(endpoint, serving.name),
        "spec": {"parentRefs": [{"name": t.s.gateway, "namespace": t.s.gateway_namespace}],
                 "rules": [{"matches": [{"path": {"type": "PathPrefix", "value": prefix}}],
                            "filters": filters, "backendRefs": backends}]}}, *after))
    resources += _service_monitor(t, serving, ctx)
    url = base + prefix
    return Lowered(resources, {"url": url, "route": endpoint, "engine": "gateway",
                               "upstream": {"url": url, "sign": None, "api_key": None}})


def _service_monitor(t: OnpremTarget, serving: Serving, ctx: LowerContext) -> list[Resource]:
    """A ServiceMonitor scraping the endpoint's model servers' /metrics, when the endpoint declares monitoring and
    the Prometheus operator is installed."""
    if serving.monitoring is None or not t.discovered.get("prometheus_operator"):
        return []
    return [t.resource(ctx.address(serving.name, "service_monitor", "main"), "service_monitor", {
        "apiVersion": "monitoring.coreos.com/v1", "kind": "ServiceMonitor",
        "metadata": t.meta(cloud_name(serving.name), serving.name),
        "spec": {"selector": {"matchLabels": {"mlplat.dev/endpoint": label_value(serving.name)}},
                 "endpoints": [{"port": "http", "path": "/metrics", "interval": "30s"}]}})]


def _predictor(t: OnpremTarget, serving: Serving, path: ServingPath, ctx: LowerContext) -> dict[str, Any]:
    fetch, _uri, _file = _model_source(t, serving, path, ctx)
    model = ctx.platform.model(path.model)
    assert model is not None
    placement = t.node_placement(path.accelerator, path.gpu_count, serving=True)
    predictor: dict[str, Any] = {
        "minReplicas": path.replicas, "maxReplicas": path.replicas,
        "model": {"modelFormat": {"name": model.framework}, "storageUri": fetch,
                  "resources": _resources_of(t, placement["gpus"])}}
    if placement["node_selector"]:
        predictor["nodeSelector"] = placement["node_selector"]
    if placement["tolerations"]:
        predictor["tolerations"] = placement["tolerations"]
    return predictor


def _inference_service(t: OnpremTarget, serving: Serving, ctx: LowerContext) -> Lowered:
    """KServe: production is the rolled-out predictor, experimental the canary with its weight as
    `canaryTrafficPercent` (the provider rolls production out first, then the canary)."""
    production = _predictor(t, serving, serving.paths.production, ctx)
    experimental = serving.paths.experimental
    canary = _predictor(t, serving, experimental, ctx) if experimental is not None else None
    percent = int(experimental.weight or 0) if experimental is not None else None
    spec_predictor = dict(canary, canaryTrafficPercent=percent) if canary is not None else production
    address = ctx.address(serving.name, "inference_service", "main")
    resource = t.resource(address, "inference_service", {
        "apiVersion": KSERVE, "kind": "InferenceService", "metadata": t.meta(cloud_name(serving.name), serving.name),
        "spec": {"predictor": spec_predictor}}, production=production)
    return Lowered([resource], {"url": Ref(address, "url"), "engine": "kserve",
                                "upstream": {"url": Ref(address, "url"), "sign": None, "api_key": None}})
