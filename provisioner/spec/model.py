"""The stack file as typed data (pydantic v2). Cloud-neutral: nothing here knows a cloud's vocabulary."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from provisioner.spec.raw import RawResource
from provisioner.spec.variables import Variable

NAME_PATTERN = r"^[a-z][a-z0-9-]{0,39}$"
VERSION_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
_NAME_HINT = "names are 1-40 characters: lower-case letters, digits and '-', starting with a letter"


def normalize_accelerator(value: str) -> str:
    """Catalog spelling of an accelerator; pydantic only turns ValueError into a located error, so re-raise."""
    from provisioner import catalog
    from provisioner.errors import MlplatError

    try:
        return catalog.normalize(value)
    except MlplatError as err:  # one line: the message and the list of known names
        raise ValueError(f"{err.message}; {err.hint}" if err.hint else err.message) from None


AcceleratorName = Annotated[
    str,
    AfterValidator(normalize_accelerator),
    Field(description="An accelerator of the catalog, e.g. cpu, t4, a10g, a100-80gb, h100 (`mlplat schema` lists "
                      "them all); other spellings such as H100 or nvidia-tesla-t4 are normalised"),
]


class Strict(BaseModel):
    """Unknown keys are errors (with a did-you-mean hint added by the loader)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class Metadata(Strict):
    """The stack's identity (metadata)."""

    name: str = Field(pattern=NAME_PATTERN, description="Stack name; " + _NAME_HINT)
    description: str = Field("", description="What the stack is for (free text)")
    labels: dict[str, str] = Field(default_factory=dict, description="Free-form key: value labels describing the "
                                                                     "stack (informational)")


class NodeRange(Strict):
    """How many nodes a GPU pool has: it scales between min and max where the target autoscales."""

    min: StrictInt = Field(1, ge=0, le=10_000, description="Fewest nodes (what the pool runs where the target "
                                                           "cannot autoscale)")
    max: StrictInt = Field(1, ge=1, le=10_000, description="Most nodes the pool scales up to")

    @model_validator(mode="after")
    def _ordered(self) -> NodeRange:
        if self.min > self.max:
            raise ValueError(f"nodes.min ({self.min}) is greater than nodes.max ({self.max})")
        return self


class GpuPool(Strict):
    """A pool of identical nodes in a cluster, each with `gpus_per_node` accelerators."""

    name: str = Field(pattern=NAME_PATTERN, description="Pool name, unique within the cluster; " + _NAME_HINT)
    accelerator: AcceleratorName
    gpus_per_node: StrictInt = Field(1, ge=0, le=16, description="GPUs per node (leave out, or 0, for cpu pools)")
    nodes: NodeRange = Field(default_factory=NodeRange, description="How many nodes the pool has")
    spot: StrictBool = Field(False, description="Spot / preemptible capacity: cheaper, and the cloud may reclaim it")

    @model_validator(mode="after")
    def _cpu_has_no_gpus(self) -> GpuPool:
        if self.accelerator == "cpu":
            if "gpus_per_node" in self.model_fields_set and self.gpus_per_node > 0:
                raise located(f"gpus_per_node is {self.gpus_per_node} but accelerator: cpu has no GPUs; remove "
                              "gpus_per_node, or pick a GPU accelerator", "gpus_per_node")
            self.gpus_per_node = 0
        elif self.gpus_per_node == 0:
            raise located(f"gpus_per_node must be at least 1 for accelerator {self.accelerator!r} "
                          "(use accelerator: cpu for a pool without GPUs)", "gpus_per_node")
        return self


class Cluster(Strict):
    """A training cluster: one or more GPU pools."""

    name: str = Field(pattern=NAME_PATTERN, description="Cluster name; " + _NAME_HINT)
    target: str | None = Field(None, description="Target for this component; default: the stack's `target`")
    gpu_pools: list[GpuPool] = Field(min_length=1, description="The cluster's node pools (at least one)")

    @model_validator(mode="after")
    def _unique_pools(self) -> Cluster:
        _require_unique([(("gpu_pools", i, "name"), p.name) for i, p in enumerate(self.gpu_pools)], "gpu pool name")
        return self


class Storage(Strict):
    """A shared volume that clusters mount."""

    name: str = Field(pattern=NAME_PATTERN, description="Volume name; " + _NAME_HINT)
    target: str | None = Field(None, description="Target for this component; default: the stack's `target`")
    kind: Literal["nas", "lustre"] = Field("nas", description="nas: a network file share; lustre: a parallel file "
                                                               "system for training (where the target offers one)")
    size_gb: StrictInt = Field(100, ge=1, le=1_000_000, description="Capacity in GB")
    mount_path: str = Field("/mnt/shared", pattern=r"^/", description="Where clusters mount it (an absolute path)")


class ModelVersion(Strict):
    """One version of a model: an artifact and its format (registry.models)."""

    name: str = Field(pattern=NAME_PATTERN, description="Model name; " + _NAME_HINT)
    version: str = Field(pattern=VERSION_PATTERN,
                         description="Version label, e.g. 2 or 2024-06-01; endpoints name the model as name:version")
    artifact: str = Field(description="Path (relative to the stack file, or to the module that declares it) or URI "
                                      "of the model artifact")
    framework: str = Field("mlplat-linear", description="The artifact's format: mlplat-linear (JSON weights), onnx, "
                           "sklearn, mlflow, …; each target says which it serves")

    @field_validator("version", mode="before",  # a YAML number (version: 2) is its text
                     json_schema_input_type=Annotated[str, Field(pattern=VERSION_PATTERN)] | int | float)
    @classmethod
    def _version_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int | float) else value

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.version}"


class Image(Strict):
    """A container image repository (registry.images)."""

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._/-]{0,127}$",
                      description="Container image repository, e.g. team/trainer (unique in the registry)")


class Registry(Strict):
    """The stack's registry: container images and model versions."""

    name: str = Field(pattern=NAME_PATTERN, description="Registry name; " + _NAME_HINT)
    target: str | None = Field(None, description="Target for this component; default: the stack's `target`")
    images: list[Image] = Field(default_factory=list, description="Container image repositories")
    models: list[ModelVersion] = Field(default_factory=list, description="Model versions (name:version unique)")
    artifact_roots: list[str] = Field(
        default_factory=list,
        description="Directories outside the stack file's directory that model artifacts may be read from "
                    "(absolute, or relative to the stack file). A model artifact given as a path must lie, after "
                    "following symlinks, under the stack file's directory or one of these; URIs (s3://, gs://, "
                    "https://) are not checked",
    )

    @model_validator(mode="after")
    def _unique_models(self) -> Registry:
        _require_unique([(("models", i), m.ref) for i, m in enumerate(self.models)], "model version")
        _require_unique([(("images", i, "name"), img.name) for i, img in enumerate(self.images)], "image name")
        return self


class ServingPath(Strict):
    """One path of an endpoint: which model version serves it, on what, with how much traffic."""

    model: str = Field(pattern=r"^[a-z][a-z0-9-]*:[A-Za-z0-9][A-Za-z0-9._-]*$",
                       description="A registry model as name:version, e.g. iris:2")
    weight: StrictInt | None = Field(None, ge=0, le=100, description="Share of traffic in percent (split mode)")
    mode: Literal["split", "shadow"] = Field("split", description="experimental only: split traffic or mirror it")
    mirror_percent: StrictInt = Field(100, ge=1, le=100,
                                      description="shadow mode only: percent of requests mirrored")
    accelerator: AcceleratorName = "cpu"
    gpus: StrictInt | None = Field(None, ge=0, le=16, description="GPUs per replica (GPU accelerators only)")
    replicas: StrictInt = Field(1, ge=1, le=1000, description="Model-server replicas of this path")

    @model_validator(mode="after")
    def _no_key_without_effect(self) -> ServingPath:
        """A key the chosen mode or accelerator ignores is a mistake worth saying, not a silent no-op."""
        written = self.model_fields_set
        if "mirror_percent" in written and self.mode != "shadow":
            raise located(f"mirror_percent only applies to a path with mode: shadow (this path has mode: {self.mode} "
                          "and takes its weight of live traffic); remove mirror_percent or set mode: shadow",
                          "mirror_percent")
        if "gpus" in written and self.gpus and self.accelerator == "cpu":
            raise located(f"gpus is {self.gpus} but accelerator: cpu has no GPUs; remove gpus, or pick a GPU "
                          "accelerator", "gpus")
        return self

    @property
    def gpu_count(self) -> int:
        if self.accelerator == "cpu":
            return 0
        return 1 if self.gpus is None else self.gpus


class ServingPaths(Strict):
    """An endpoint's production path and an optional experimental (canary or shadow) one."""

    production: ServingPath = Field(description="The live path: the model version most traffic goes to")
    experimental: ServingPath | None = Field(None, description="A second path: a canary taking `weight` percent "
                                             "of the traffic, or (mode: shadow) a copy of the requests")

    @model_validator(mode="after")
    def _weights(self) -> ServingPaths:
        prod, exp = self.production, self.experimental
        if prod.mode != "split":
            raise located("production cannot be in shadow mode; put `mode: shadow` on the experimental path",
                          "production", "mode")
        if exp is None or exp.mode == "shadow":
            if prod.weight not in (None, 100):
                raise located(f"production.weight is {prod.weight} but it is the only live path: use 100",
                              "production", "weight")
            prod.weight = 100
            if exp is not None:
                if exp.weight not in (None, 0):
                    raise located("a shadow path gets mirrored copies, not live traffic: remove its weight",
                                  "experimental", "weight")
                exp.weight = 0
            return self
        if prod.weight is None and exp.weight is None:
            raise ValueError("give production.weight and experimental.weight (they must sum to 100)")
        prod_w = prod.weight if prod.weight is not None else 100 - (exp.weight or 0)
        exp_w = exp.weight if exp.weight is not None else 100 - prod_w
        if prod_w + exp_w != 100:
            raise ValueError(f"weights must sum to 100: production {prod_w} + experimental {exp_w} = {prod_w + exp_w}")
        prod.weight, exp.weight = prod_w, exp_w
        return self

    def items(self) -> list[tuple[str, ServingPath]]:
        pairs = [("production", self.production)]
        if self.experimental is not None:
            pairs.append(("experimental", self.experimental))
        return pairs


class TrafficShift(Strict):
    """How a migration moves an endpoint's traffic to its new target, through its front door."""

    steps: list[Annotated[int, Field(ge=1, le=100)]] = Field(
        default_factory=lambda: [10, 50, 100], min_length=1,
        description="Percent of traffic on the destination after each step, rising, ending at 100")
    window_s: float = Field(30.0, ge=0, le=3600, description="Seconds each step is watched before the next")
    max_error_rate: float = Field(0.01, ge=0, le=1, description="Most errors (5xx, failed connections) per "
                                                                "request the destination may show in a window")
    max_latency_ms: float = Field(2000.0, gt=0, description="Highest p95 latency the destination may show in a "
                                                            "window")

    @field_validator("steps")
    @classmethod
    def _rising_to_100(cls, steps: list[int]) -> list[int]:
        if any(b <= a for a, b in itertools.pairwise(steps)) or steps[-1] != 100:
            raise ValueError(f"steps must rise and end at 100 (got {steps})")
        return steps


class Capture(Strict):
    """Which requests and responses are kept, and where (monitoring.capture)."""

    sample_percent: StrictInt = Field(ge=1, le=100, description="Percent of requests captured (SageMaker takes a "
                                      "whole percent, so this does too)")
    request: StrictBool = Field(True, description="Keep request bodies (needed for drift checks)")
    response: StrictBool = Field(True, description="Keep response bodies")
    destination: str | None = Field(None, description="Where captured rows go: a directory (local, relative to the "
                                    "stack file) or an s3:// URI (aws); default: the target's own place "
                                    "(local: <root>/capture/<endpoint>; aws: s3://<bucket>/<prefix>/capture/...)")

    @model_validator(mode="after")
    def _something_kept(self) -> Capture:
        if not (self.request or self.response):
            raise located("capture keeps nothing: set request: true and/or response: true, or remove capture",
                          "request")
        return self


class DriftCheck(Strict):
    """Compare captured request features with a baseline dataset (monitoring.drift)."""

    baseline: str = Field(description="Baseline dataset: a CSV file with a header row (or JSON lines, one object "
                          "per row), path relative to the stack file; its columns are the model's features in "
                          "input order")
    features: list[str] = Field(default_factory=list, description="Features to check (default: every baseline "
                                "column)")
    metric: Literal["psi", "jensen_shannon", "ks"] = Field("psi", description="psi: population stability index; "
                                                           "jensen_shannon: JS distance (base 2); ks: "
                                                           "Kolmogorov-Smirnov statistic")
    threshold: float = Field(0.2, gt=0, le=100, description="A feature whose score exceeds this has drifted "
                             "(PSI > 0.2 is the usual 'significant shift')")
    schedule: Literal["hourly", "daily"] = Field("hourly", description="How often the check runs (aws: the "
                                                 "monitoring schedule; local: `mlplat monitor` without --once)")
    min_rows: StrictInt = Field(50, ge=1, description="Captured rows needed before a score is computed")

    @field_validator("features")
    @classmethod
    def _unique_features(cls, features: list[str]) -> list[str]:
        if len(set(features)) != len(features):
            raise ValueError("features must be unique")
        return features


class Alerts(Strict):
    """Where drift and shadow alerts go (monitoring.alerts)."""

    webhook: str | None = Field(None, description="An http(s) URL that receives a JSON POST per alert (write "
                                "${secret:NAME} if the URL holds a token)")
    emails: list[Annotated[str, Field(pattern=r"^[^@\s]+@[^@\s]+\.[^@\s]+$")]] = Field(
        default_factory=list, description="Addresses that receive each alert (aws: an SNS topic's e-mail "
                                          "subscriptions; local: SMTP via targets.<local>.smtp)")

    @field_validator("webhook")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and not re.match(r"^(https?://|\$\{secret:)", value):
            raise ValueError("webhook must be an http:// or https:// URL (or ${secret:NAME})")
        return value

    @model_validator(mode="after")
    def _somewhere(self) -> Alerts:
        if self.webhook is None and not self.emails:
            raise ValueError("alerts need a webhook and/or emails")
        return self


class ShadowComparison(Strict):
    """Compare the shadow path's answers with production's (monitoring.shadow_comparison)."""

    min_agreement: float = Field(0.95, ge=0, le=1, description="Alert when the share of instances whose "
                                 "predicted label matches production's falls below this")
    max_latency_delta_ms: float | None = Field(None, gt=0, description="Alert when the shadow's mean latency "
                                               "exceeds production's by more than this")
    min_pairs: StrictInt = Field(20, ge=1, description="Compared requests needed before an alert can fire")


class Monitoring(Strict):
    """Model monitoring of one endpoint: capture, drift checks, alerts, shadow comparison."""

    capture: Capture | None = Field(None, description="Keep a sample of requests and responses")
    drift: DriftCheck | None = Field(None, description="Compare captured requests with a baseline dataset")
    alerts: Alerts | None = Field(None, description="Where drift and shadow alerts go")
    shadow_comparison: ShadowComparison | None = Field(None, description="Compare the shadow path's answers "
                                                       "with production's")

    @model_validator(mode="after")
    def _drift_needs_requests(self) -> Monitoring:
        if self.drift is not None and (self.capture is None or not self.capture.request):
            raise located("drift checks read captured requests: add capture (with request: true) to monitoring",
                          "drift")
        return self

    def features(self) -> frozenset[str]:
        """The monitoring features used, as capabilities name them."""
        return frozenset(name for name in MONITORING_FEATURES if getattr(self, name) is not None)


#: monitoring features a target may offer (`Capabilities.monitoring`)
MONITORING_FEATURES = ("capture", "drift", "alerts", "shadow_comparison")


class Serving(Strict):
    """A model-serving endpoint."""

    name: str = Field(pattern=NAME_PATTERN, description="Endpoint name; " + _NAME_HINT)
    target: str | None = Field(None, description="Target for this component; default: the stack's `target`")
    front_door: list[str] = Field(
        default_factory=list,
        description="Targets that give this endpoint a stable URL surviving a move (local: a gateway; aws: "
                    "Route 53 weighted records); the first one's URL is the endpoint's `url`")
    migration: TrafficShift = Field(default_factory=TrafficShift, description="How traffic moves to a new target "
                                    "when `target:` changes (through the front door)")
    paths: ServingPaths = Field(description="The production path and an optional experimental one")

    @field_validator("front_door", mode="before", json_schema_input_type=str | list[str])
    @classmethod
    def _one_or_more(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value
    auth: Literal["none", "key", "iam"] = Field("none", description="none: open; key: clients send a key "
                                                "(`api_key`, or one the target mints); iam: cloud identity "
                                                "(SigV4, OAuth)")
    api_key: str | None = Field(None, min_length=16, description="auth: key — the key clients send (Authorization: "
                                "Bearer <key> or X-Api-Key); write ${secret:NAME}, never the key itself. Leave it "
                                "out on a target that mints keys (its endpoint then outputs `key`)")
    monitoring: Monitoring | None = Field(None, description="Capture, drift checks, alerts and shadow comparison")

    @model_validator(mode="after")
    def _key_goes_with_key_auth(self) -> Serving:
        if self.api_key and self.auth != "key":
            raise located(f"api_key is only used with auth: key (this endpoint has auth: {self.auth})", "api_key")
        if self.monitoring is not None and self.monitoring.shadow_comparison is not None and not self.shadow:
            raise located("shadow_comparison compares a shadow path with production: give paths.experimental "
                          "mode: shadow, or remove shadow_comparison", "monitoring", "shadow_comparison")
        return self

    @property
    def shadow(self) -> bool:
        exp = self.paths.experimental
        return exp is not None and exp.mode == "shadow"


class StateConfig(Strict):
    """Where the stack's state is kept."""

    backend: Literal["sqlite", "postgres", "s3"] = Field("sqlite", description="Where the state is kept: a "
                                                          "sqlite file, a postgres database or an s3 object")
    path: str | None = Field(None, description="sqlite: database file (default .mlplat/<stack>.db beside the stack)")
    url: str | None = Field(None, description="postgres / s3 location")


class Platform(Strict):
    """A whole stack file."""

    api_version: Literal["mlplat/v1"] = Field(alias="apiVersion", description="The stack-file format: mlplat/v1")
    metadata: Metadata = Field(description="The stack's name (which names its state), description and labels")
    target: str = Field("local", description="Default target for components without their own `target`")
    targets: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Settings per target name; `type:` defaults to the name"
    )
    state: StateConfig = Field(default_factory=StateConfig, description="Where the state (what exists, with its "
                               "ids and outputs) is kept")
    variables: dict[str, Variable] = Field(
        default_factory=dict, description="Typed variables (NAME: {type, default, description}) referenced as "
                                          "${var:NAME}; values per environment from <stack>.<env>.yaml or --var; "
                                          "see docs/environments.md")
    include: list[str] = Field(
        default_factory=list, description="Module files (paths relative to this file) whose clusters, storage, "
                                          "registry, serving and resources are added after this file's own; see "
                                          "docs/modules.md")
    clusters: list[Cluster] = Field(default_factory=list, description="Training clusters, each with GPU pools")
    storage: list[Storage] = Field(default_factory=list, description="Shared volumes (nas, lustre)")
    registry: Registry | None = Field(None, description="Container images and model versions (one registry)")
    serving: list[Serving] = Field(default_factory=list, description="Model-serving endpoints")
    resources: list[RawResource] = Field(
        default_factory=list, description="Raw resources of any kind a target provides (the escape hatch): name, "
                                          "kind, target, inputs, depends_on; see docs/raw-resources.md")

    @model_validator(mode="after")
    def _unique_component_names(self) -> Platform:
        named: list[tuple[tuple[str | int, ...], str]] = [
            *((("clusters", i, "name"), c.name) for i, c in enumerate(self.clusters)),
            *((("storage", i, "name"), s.name) for i, s in enumerate(self.storage)),
        ]
        if self.registry is not None:
            named.append((("registry", "name"), self.registry.name))
        named.extend((("serving", i, "name"), s.name) for i, s in enumerate(self.serving))
        named.extend((("resources", i, "name"), r.name) for i, r in enumerate(self.resources))
        _require_unique(named, "component name")
        return self

    def components(self) -> list[Component]:
        return [component for _, component in self.located_components()]

    def located_components(self) -> list[tuple[tuple[str | int, ...], Component]]:
        """Components in lowering order (a registry before the endpoints that serve its models), each with
        its place in the stack file."""
        out: list[tuple[tuple[str | int, ...], Component]] = [(("clusters", i), c) for i, c in enumerate(self.clusters)]
        out += [(("storage", i), s) for i, s in enumerate(self.storage)]
        if self.registry is not None:
            out.append((("registry",), self.registry))
        out += [(("serving", i), s) for i, s in enumerate(self.serving)]
        return out

    def target_of(self, component: Component) -> str:
        return component.target or self.target

    def model(self, ref: str) -> ModelVersion | None:
        if self.registry is None:
            return None
        return next((m for m in self.registry.models if m.ref == ref), None)


Component = Cluster | Storage | Registry | Serving

COMPONENT_KINDS: dict[type, str] = {Cluster: "cluster", Storage: "storage", Registry: "registry", Serving: "serving"}


def component_kind(component: Component) -> str:
    return COMPONENT_KINDS[type(component)]


def located(message: str, *at: str | int, first: tuple[str | int, ...] | None = None) -> PydanticCustomError:
    """A validation error the loader reports at `at` (relative to the object being validated) rather than at the
    object itself; `first` (also relative) is an earlier place the loader names by line, e.g. a first duplicate."""
    context: dict[str, Any] = {"at": at}
    if first is not None:
        context["first"] = first
    return PydanticCustomError("mlplat", message, context)


def _require_unique(named: list[tuple[tuple[str | int, ...], str]], what: str) -> None:
    """`named` is (relative location, name) pairs; a repeat is reported where it repeats."""
    seen: dict[str, tuple[str | int, ...]] = {}
    for at, name in named:
        if name in seen:
            raise located(f"duplicate {what} {name!r}: {what}s must be unique", *at, first=seen[name])
        seen[name] = at


SECRET_KEY = re.compile(r"(password|passwd|secret|token|access_?key|api_?key|credential|private_?key)", re.I)
