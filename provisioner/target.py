"""What a target plugin provides: settings, capabilities (as data), lowering and resource providers."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from provisioner.graph import Resource

if TYPE_CHECKING:
    from pydantic import BaseModel

    from provisioner.artifacts import ArtifactStore
    from provisioner.monitoring import MonitorSource, Usage
    from provisioner.provider import ResourceProvider
    from provisioner.spec.model import Component, Platform, Serving
    from provisioner.state.base import ResourceRecord


#: auth modes a target may declare: no auth, a key the stack gives (`api_key`), a key the service mints (the
#: endpoint's `key` output), cloud identity (SigV4, OAuth)
AUTH_MODES = ("none", "key", "minted-key", "iam")


@dataclass(frozen=True)
class ShadowCapability:
    """How a target mirrors traffic to an experimental path (None on Capabilities = it cannot)."""

    #: the most an endpoint may mirror, all its mirrored paths together (Azure ML: 50)
    max_mirror_percent: int = 100


@dataclass(frozen=True)
class StorageLimits:
    """Sizes one storage kind accepts (Filestore Basic: 1 TiB and up)."""

    min_gb: int = 1
    max_gb: int | None = None


@dataclass(frozen=True)
class Capabilities:
    """What a target can do, checked against every component at validate/preview (and by `migrate`).

    Defaults are conservative: a target that declares nothing serves and trains on cpu only, offers no traffic
    split, no shadow, no storage, no spot, no autoscaling, serves no model format and only `auth: none`.
    `None` in an accelerator or format field means "any" (the catalog or the serving image decides).
    """

    #: catalog accelerators a cluster's gpu pools may use; None = any this target's catalog rows offer
    training_accelerators: frozenset[str] | None = frozenset({"cpu"})
    #: catalog accelerators a serving path may use; None = any
    serving_accelerators: frozenset[str] | None = frozenset({"cpu"})
    spot: bool = False
    #: pools scale between nodes.min and nodes.max (False: a pool runs nodes.min nodes; validate warns)
    autoscaling: bool = False
    max_nodes_per_pool: int | None = None
    traffic_split: bool = False
    shadow: ShadowCapability | None = None
    #: serving replicas per path; None = no limit
    max_replicas: int | None = None
    #: storage kinds offered, each with its size limits
    storage: Mapping[str, StorageLimits] = field(default_factory=dict)
    #: a subset of AUTH_MODES
    auth_modes: frozenset[str] = frozenset({"none"})
    #: model `framework:` values the target serves; None = any (the serving image decides)
    model_formats: frozenset[str] | None = frozenset()
    #: the target can be an endpoint's front door (`Target.lower_front_door`), a stable URL with weighted upstreams:
    #: "gateway" — a proxy clients call (it authenticates them and signs for the upstream, so an endpoint's `auth`
    #: is checked against the gateway's target); "dns" — weighted DNS records (clients reach the upstream itself)
    front_door: str | None = None
    #: monitoring features an endpoint's `monitoring:` may use (`spec.model.MONITORING_FEATURES`: capture, drift,
    #: alerts, shadow_comparison); what `mlplat monitor` and `mlplat top` read is `Target.monitor_source`/`usage`
    monitoring: frozenset[str] = frozenset()
    #: provider calls in flight at once on this target (API rate limits); None = the apply's --parallelism
    max_concurrency: int | None = None
    #: provider calls started per second on this target (an API's request rate); None = no limit
    max_calls_per_s: float | None = None
    notes: tuple[str, ...] = ()

    @property
    def storage_kinds(self) -> frozenset[str]:
        return frozenset(self.storage)

    def to_json(self) -> dict[str, Any]:
        """Field by field, for `mlplat plugins --json` and a migration's compatibility report."""
        def plain(value: Any) -> Any:
            if isinstance(value, frozenset):
                return sorted(value)
            if isinstance(value, Mapping):
                return {k: plain(v) for k, v in sorted(value.items())}
            if hasattr(value, "__dataclass_fields__"):
                return {f: plain(getattr(value, f)) for f in value.__dataclass_fields__}
            return list(value) if isinstance(value, tuple) else value

        return {f: plain(getattr(self, f)) for f in self.__dataclass_fields__}


@dataclass(frozen=True)
class Reason:
    """Why a component does not fit its target: a stable `code` (compared across targets by a migration's
    report), a message for people, and where in the component (a stack-file path relative to it)."""

    code: str
    message: str
    loc: tuple[str | int, ...] = ()
    severity: str = "error"  # or "warning"


@dataclass
class TargetContext:
    """Where a target instance works: the stack's directory and its private working directory."""

    stack_name: str
    target_name: str
    stack_dir: Path
    work_dir: Path


@dataclass
class Lowered:
    """The result of lowering one component: resources and the component's named outputs."""

    resources: list[Resource] = field(default_factory=list)
    outputs: dict[str, Any] = field(default_factory=dict)


class LowerContext:
    """Given to `Target.lower`: addresses, the platform, and other components' outputs (cross-component refs)."""

    def __init__(self, platform: Platform, component_outputs: dict[str, dict[str, Any]]) -> None:
        self.platform = platform
        self._outputs = component_outputs

    @staticmethod
    def address(component: str, kind: str, name: str) -> str:
        return f"{component}.{kind}.{name}"

    def output(self, component: str, key: str) -> Any:
        """A value or Ref another component (possibly on another target) exported; KeyError if absent."""
        return self._outputs[component][key]

    def outputs_of(self, component: str) -> dict[str, Any]:
        """All outputs another component exported (empty if it exported none)."""
        return dict(self._outputs.get(component, {}))


#: the kind part of a front door's address: `<endpoint>.front_door.<front door target>`
FRONT_DOOR = "front_door"

#: what a serving lowering exports as its `upstream` output (values may be Refs), for front doors:
#: url — base URL the front door appends the request path to (`/invocations`);
#: sign — None; {"kind": "sigv4", "service", "region", "profile"} (requests signed from the standard AWS credential
#:        chain); {"kind": "google"} (an OAuth token from Application Default Credentials; the url is then the
#:        whole request target, a Vertex AI endpoint's `:rawPredict`); or {"kind": "azure", "auth": "key" |
#:        "aad_token", "connect_to": None | url} (the api_key, or an Entra ID token, as a bearer token; the url, a
#:        scoring URI, is the whole target); api_key — None, or the key (a secret) sent as X-Api-Key
UPSTREAM_KEYS = ("url", "sign", "api_key")

#: the component part of a stack-scoped resource's address: `_stack.<target>.<kind>.<name>` (a component name
#: starts with a letter, so no component can take it)
STACK_SCOPE = "_stack"


class Target:
    """Base class for targets. A plugin's `mlplat_targets` hook returns subclasses of this.

    Subclasses set `name` (the target type, e.g. "aws"), `settings_model` (pydantic, validates
    `targets.<name>` in the stack file; must reject unknown keys) and implement `lower` and `provider`.
    Cloud SDKs are imported inside `provider` (or the provider classes), never at module import; `sdk` names
    them so validate can say which extra to install before anything is called. See plugins/README.md.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    settings_model: ClassVar[type[BaseModel]]
    #: modules the target's SDK provides (checked, never imported, at validate), and the extra installing them
    sdk: ClassVar[tuple[str, ...]] = ()
    extra: ClassVar[str | None] = None
    #: raw resource kinds a stack file may declare under `resources:` (the escape hatch), each with the pydantic
    #: model of its `inputs` (unknown keys rejected; field descriptions reach the JSON Schema)
    raw_kinds: ClassVar[dict[str, type[BaseModel]]] = {}

    def __init__(self, settings: BaseModel, context: TargetContext) -> None:
        self.settings = settings
        self.context = context
        #: what `discover()` returned for the plan being made (set by the engine before lowering)
        self.discovered: dict[str, Any] = {}

    def capabilities(self) -> Capabilities:
        return Capabilities()

    def required(self, setting: str, why: str) -> Any:
        """The value of an optional setting that a use needs (`why`: "to hold model artifacts"); MlplatError
        naming it and where to set it when it is not set."""
        from provisioner.errors import MlplatError

        value = getattr(self.settings, setting)
        if not value:
            where = f"targets.{self.context.target_name}"
            raise MlplatError(f"{where}.{setting} is required {why}", hint=f"set {setting} under {where} in the "
                                                                           "stack file")
        return value

    def check(self, component: Component) -> Iterable[Reason]:
        """Refusals `Capabilities` cannot express (a name too long for this cloud, a combination it rejects),
        each a coded `Reason` located inside the component, checked at validate with the capabilities.
        Default: none."""
        return ()

    def discover(self) -> dict[str, Any]:
        """Facts about the live target a plan depends on ("are Kueue CRDs installed?", "which account is
        this?"), as JSON. Called once per plan, before lowering (available as `self.discovered`); recorded in the
        plan and shown in preview; a saved plan is refused if discovery returns something else at apply.
        Default: nothing to discover."""
        return {}

    def lower_stack(self, ctx: LowerContext) -> Lowered:
        """Resources of the stack on this target that belong to no component (a Kubernetes namespace, a
        workspace binding, a service account). Address them with `stack_address`; the engine orders them before
        every component resource on this target and deletes them after. Called only when the target has
        components. Default: none."""
        return Lowered()

    def stack_address(self, kind: str, name: str) -> str:
        """The address of a stack-scoped resource of this target."""
        return f"{STACK_SCOPE}.{self.context.target_name}.{kind}.{name}"

    def lower(self, component: Component, ctx: LowerContext) -> Lowered:
        raise NotImplementedError

    def provider(self, kind: str) -> ResourceProvider:
        raise NotImplementedError

    def lower_front_door(self, serving: Serving, upstreams: list[dict[str, Any]], ctx: LowerContext) -> Lowered:
        """The front door of `serving` on this target (`serving.front_door` names it): one resource at
        `front_door_address(serving.name)` whose output `url` is the endpoint's stable URL, forwarding to
        `upstreams` by weight. Each upstream is what a serving lowering exports as its `upstream` output plus
        `name` (the target it runs on) and `weight` (0-100, all summing to 100): see `UPSTREAM_KEYS`.

        A change of `upstreams` (weights, one upstream added or removed) must be an in-place update that takes
        effect when `update` returns and drops no request: a migration shifts traffic in steps through it. The
        provider may offer `stats(id, inputs)` (see `provisioner.migration.RouteStats`) so the health gates see
        the destination's real traffic. Default: this target offers no front door."""
        from provisioner.errors import NotOffered

        raise NotOffered(f"target {self.context.target_name!r} ({self.name}) cannot be a front door",
                         hint="name a target that offers one (local: a gateway process; aws: Route 53 weighted "
                              "records) under the endpoint's front_door")

    def front_door_address(self, endpoint: str) -> str:
        """The address of `endpoint`'s front door on this target."""
        return f"{endpoint}.{FRONT_DOOR}.{self.context.target_name}"

    def artifact_store(self) -> ArtifactStore | None:
        """Where this target's serving reads model artifacts from, when a registry on another target holds them:
        the core's copy step (`core.artifact_copy`) puts them here, sha256 checked. Default: none (a serving
        path on this target must then use a registry on the same target)."""
        return None

    def monitor_source(self, serving: Serving, records: list[ResourceRecord]) -> MonitorSource | None:
        """Where `mlplat monitor` reads `serving`'s captured rows and shadow pairs (`provisioner.monitoring`),
        given the state's records of the endpoint (its resources on this target). Default: None (this target keeps
        no capture mlplat can read; its own service may still check drift, as SageMaker Model Monitor does)."""
        return None

    def usage(self, records: list[ResourceRecord], window_s: float) -> Usage:
        """Utilisation, request rate, error rate and p95 latency per pool and per endpoint path over the last
        `window_s` seconds, from this target's metrics source, for `mlplat top`; `records` are the state's records
        on this target. Default: nothing, with a note saying so."""
        from provisioner.monitoring import Usage

        return Usage(notes=[f"target {self.context.target_name!r} ({self.name}) has no metrics source"])

    def leftovers(self) -> list[str]:
        """What this target finds in its own working area (one line each). A new, empty state beside
        leftovers is refused: the state that named them was lost. Default: nothing (a cloud is not scanned)."""
        return []

    def sweep(self, recorded: frozenset[str]) -> list[str]:
        """Remove what this target left in its own working area that no record names (`recorded`: every id
        and deposed id in the state) — what a kill left between a step's start and its journal entry.
        Called under the stack lock after each complete apply and destroy; returns one line per thing
        removed. Default: nothing to sweep."""
        return []

    @classmethod
    def missing_sdk(cls) -> list[str]:
        """The `sdk` modules that are not installed (found without importing them)."""
        return [module for module in cls.sdk if not _installed(module)]

    @classmethod
    def install_line(cls, missing: list[str]) -> str:
        """What installs the `missing` SDK modules: the target's extra, else the modules themselves."""
        return f"pip install 'mlplat[{cls.extra}]'" if cls.extra else f"pip install {' '.join(missing)}"


def _installed(module: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module set to None in sys.modules
        return False
