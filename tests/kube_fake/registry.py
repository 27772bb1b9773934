"""The resource types the fake serves: the built-in ones, and the CustomResourceDefinitions of the optional API
groups a test installs (`KubeFake.install`). Custom resources are served from the CRD objects in the store, so a
client that creates a CRD itself gets its group served and discovered too."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    group: str
    version: str
    plural: str
    singular: str
    kind: str
    namespaced: bool
    short_names: tuple[str, ...] = ()
    subresources: tuple[str, ...] = ("status",)
    builtin: bool = True
    verbs: tuple[str, ...] = tuple(ALL_VERBS)
    generation: bool = True  # metadata.generation is kept (and bumped on a change outside metadata and status)

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def qualified(self) -> str:
        """`deployments.apps`, `namespaces`: how the real messages name a resource."""
        return f"{self.plural}.{self.group}" if self.group else self.plural

    @property
    def group_kind(self) -> str:
        """`Deployment.apps`, `Namespace`: how the real Invalid messages name a kind."""
        return f"{self.kind}.{self.group}" if self.group else self.kind

    @property
    def has_status(self) -> bool:
        return "status" in self.subresources

    def discovery(self) -> list[dict[str, Any]]:
        main: dict[str, Any] = {"name": self.plural, "singularName": self.singular, "namespaced": self.namespaced,
                                "kind": self.kind, "verbs": list(self.verbs)}
        if self.short_names:
            main["shortNames"] = list(self.short_names)
        if self.builtin:
            main["storageVersionHash"] = f"fake{self.plural[:8]}"
        out = [main]
        for sub in self.subresources:
            entry: dict[str, Any] = {"name": f"{self.plural}/{sub}", "singularName": "",
                                     "namespaced": self.namespaced, "kind": self.kind,
                                     "verbs": ["get", "patch", "update"]}
            if sub == "scale":
                entry.update(group="autoscaling", version="v1", kind="Scale")
            elif sub == "proxy":
                entry.update(kind=f"{self.kind}ProxyOptions", verbs=["create", "delete", "get", "patch", "update"])
            elif sub == "finalize":
                entry.update(verbs=["update"])
            out.append(entry)
        return out


def _t(group: str, version: str, plural: str, kind: str, namespaced: bool = True, short: tuple[str, ...] = (),
       subs: tuple[str, ...] = ("status",), generation: bool = True, singular: str = "",
       verbs: tuple[str, ...] = tuple(ALL_VERBS)) -> ResourceType:
    return ResourceType(group, version, plural, singular or kind.lower(), kind, namespaced, short, subs,
                        generation=generation, verbs=verbs)


BUILTIN: list[ResourceType] = [
    _t("", "v1", "namespaces", "Namespace", False, ("ns",), ("status", "finalize"), generation=False,
       verbs=("create", "delete", "get", "list", "patch", "update", "watch")),
    _t("", "v1", "services", "Service", short=("svc",), subs=("status", "proxy"), generation=False),
    _t("", "v1", "configmaps", "ConfigMap", short=("cm",), subs=(), generation=False),
    _t("", "v1", "secrets", "Secret", subs=(), generation=False),
    _t("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), generation=False),
    _t("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), generation=False),
    _t("", "v1", "resourcequotas", "ResourceQuota", short=("quota",), generation=False),
    _t("", "v1", "pods", "Pod", short=("po",), generation=False, verbs=("get", "list")),
    _t("", "v1", "events", "Event", short=("ev",), subs=(), generation=False),
    _t("apps", "v1", "deployments", "Deployment", short=("deploy",), subs=("status", "scale")),
    _t("scheduling.k8s.io", "v1", "priorityclasses", "PriorityClass", False, ("pc",), (), generation=False),
    _t("apiextensions.k8s.io", "v1", "customresourcedefinitions", "CustomResourceDefinition", False,
       ("crd", "crds"), generation=True),
]

#: the optional API groups `install` knows: name -> (group, version, [(plural, kind, namespaced, shortNames)])
OPTIONAL: dict[str, tuple[str, str, list[tuple[str, str, bool, tuple[str, ...]]]]] = {
    "gateway": ("gateway.networking.k8s.io", "v1", [
        ("gatewayclasses", "GatewayClass", False, ("gc",)),
        ("gateways", "Gateway", True, ("gtw",)),
        ("httproutes", "HTTPRoute", True, ()),
    ]),
    "kueue": ("kueue.x-k8s.io", "v1beta1", [
        ("resourceflavors", "ResourceFlavor", False, ("flavor", "flavors", "rf")),
        ("clusterqueues", "ClusterQueue", False, ("cq",)),
        ("localqueues", "LocalQueue", True, ("queue", "queues", "lq")),
    ]),
    "prometheus": ("monitoring.coreos.com", "v1", [
        ("servicemonitors", "ServiceMonitor", True, ("smon",)),
    ]),
    "kserve": ("serving.kserve.io", "v1beta1", [
        ("inferenceservices", "InferenceService", True, ("isvc",)),
    ]),
}


def crd_objects(name: str) -> list[dict[str, Any]]:
    """The CustomResourceDefinitions (as created by their project's install manifests, trimmed) of an optional
    group; raises KeyError for an unknown name."""
    group, version, kinds = OPTIONAL[name]
    out = []
    for plural, kind, namespaced, short in kinds:
        names: dict[str, Any] = {"plural": plural, "singular": kind.lower(), "kind": kind, "listKind": f"{kind}List"}
        if short:
            names["shortNames"] = list(short)
        out.append({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": f"{plural}.{group}", "labels": {"mlplat.dev/fake-install": name}},
            "spec": {"group": group, "names": names, "scope": "Namespaced" if namespaced else "Cluster",
                     "versions": [{"name": version, "served": True, "storage": True,
                                   "schema": {"openAPIV3Schema": {"type": "object",
                                                                  "x-kubernetes-preserve-unknown-fields": True}},
                                   "subresources": {"status": {}}}]},
        })
    return out


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The served versions of a CRD object as resource types."""
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for v in spec.get("versions") or []:
        if not v.get("served", True):
            continue
        subs = tuple(s for s in ("status", "scale") if s in (v.get("subresources") or {}))
        out.append(ResourceType(spec.get("group", ""), v.get("name", "v1"), names.get("plural", ""),
                                names.get("singular") or names.get("kind", "").lower(), names.get("kind", ""),
                                spec.get("scope", "Namespaced") == "Namespaced", tuple(names.get("shortNames") or ()),
                                subs, builtin=False))
    return out


@dataclass
class Catalog:
    """Every type served now, by (group, version, plural)."""

    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)

    def add(self, rt: ResourceType) -> None:
        self.types[(rt.group, rt.version, rt.plural)] = rt

    def find(self, group: str, version: str, plural: str) -> ResourceType | None:
        return self.types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        for rt in self.types.values():
            if rt.api_version == api_version and rt.kind == kind:
                return rt
        return None

    def groups(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for rt in self.types.values():
            if rt.group and rt.version not in out.setdefault(rt.group, []):
                out[rt.group].append(rt.version)
        return out

    def in_group_version(self, group: str, version: str) -> list[ResourceType]:
        return [rt for rt in self.types.values() if rt.group == group and rt.version == version]


def discovery_version(git_version: str = "v1.31.0") -> dict[str, Any]:
    major, minor = git_version.lstrip("v").split(".")[:2]
    return {"major": major, "minor": minor, "gitVersion": git_version,
            "gitCommit": "0000000000000000000000000000000000000000", "gitTreeState": "clean",
            "buildDate": "2024-08-13T07:28:49Z", "goVersion": "go1.22.5", "compiler": "gc",
            "platform": "linux/amd64"}
