"""The toy target: settings, capabilities, discovery and lowering. Imports no toy SDK at module level."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field

from provisioner import catalog
from provisioner.artifacts import artifact_path, sha256_file
from provisioner.errors import MlplatError
from provisioner.graph import Ref, Resource
from provisioner.spec.model import Registry, Serving, Storage
from provisioner.target import Capabilities, LowerContext, Lowered, Reason, StorageLimits, Target

if TYPE_CHECKING:
    from provisioner.provider import ResourceProvider
    from provisioner.spec.model import Component
    from toy_plugin.sdk import Client


class ToySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    project: str = Field(pattern=r"^[a-z][a-z0-9-]{2,28}[a-z0-9]$", description="The toy project objects live in")
    endpoint_url: str = Field(description="The toy cloud's directory (file:///path or a path)")
    poll_interval_s: float = Field(1.0, ge=0, description="First interval of waits on long operations")
    max_concurrency: int = Field(4, ge=1, description="API calls in flight at once")


class ToyTarget(Target):
    name = "toy"
    description = "Toy: a fake cloud of JSON files (tests/toy_cloud.py)"
    settings_model = ToySettings
    sdk = ("toy_cloud",)
    extra = None
    settings: ToySettings

    def __init__(self, settings: BaseModel, context: Any) -> None:
        super().__init__(settings, context)
        self._client: Client | None = None
        self._client_lock = threading.Lock()

    def client(self) -> Client:
        """The toy client of this target, made once, lazily, under a lock."""
        if self._client is None:
            with self._client_lock:
                if self._client is None:
                    from toy_plugin.sdk import Client

                    self._client = Client(self.settings.endpoint_url)
        return self._client

    def capabilities(self) -> Capabilities:
        return Capabilities(
            training_accelerators=frozenset(),
            serving_accelerators=frozenset({"cpu"}),
            traffic_split=True,
            shadow=None,
            storage={"nas": StorageLimits(min_gb=10, max_gb=1000)},
            auth_modes=frozenset({"none"}),
            model_formats=frozenset({"mlplat-linear"}),
            max_replicas=4,
            max_concurrency=self.settings.max_concurrency,
            notes=("no training clusters", "no container images in the registry"),
        )

    def check(self, component: Component) -> Iterable[Reason]:
        # no clusters: `training_accelerators=frozenset()` refuses every pool (accelerator-not-offered) already;
        # a second, cluster-level reason here would be a duplicate the contract suite rejects
        if isinstance(component, Registry) and component.images:
            yield Reason("images-unsupported", "the toy registry holds models only, no container images",
                         ("images",))

    def discover(self) -> dict[str, Any]:
        return {"account": self.client().whoami()["account"]}

    # -- lowering ------------------------------------------------------------------------------------------

    def _name(self, *parts: str) -> str:
        return "-".join((self.settings.project, self.context.stack_name, *parts))

    @property
    def _space(self) -> Ref:
        return Ref(self.stack_address("toy.space", "main"), "name")

    def lower_stack(self, ctx: LowerContext) -> Lowered:
        space = Resource(self.stack_address("toy.space", "main"), "toy.space", self.context.target_name,
                         {"name": self._name()})
        return Lowered([space], {"space": Ref(space.address, "name")})

    def lower(self, component: Component, ctx: LowerContext) -> Lowered:
        if isinstance(component, Storage):
            return self._lower_storage(component, ctx)
        if isinstance(component, Registry):
            return self._lower_registry(component, ctx)
        if isinstance(component, Serving):
            return self._lower_serving(component, ctx)
        raise MlplatError(f"the toy target cannot make {type(component).__name__.lower()} {component.name!r}",
                          hint="put it on another target")

    def _lower_storage(self, storage: Storage, ctx: LowerContext) -> Lowered:
        address = ctx.address(storage.name, "share", "main")
        share = Resource(address, "toy.share", self.context.target_name,
                         {"name": self._name(storage.name), "space": self._space, "size_gb": storage.size_gb})
        return Lowered([share], {"id": Ref(address, "id"), "export": Ref(address, "export"),
                                 "mount_path": storage.mount_path})

    def _lower_registry(self, registry: Registry, ctx: LowerContext) -> Lowered:
        resources, outputs = [], {}
        for model in registry.models:
            path = artifact_path(model, self.context.stack_dir, registry.artifact_roots)
            address = ctx.address(registry.name, "model", f"{model.name}-{model.version}")
            resources.append(Resource(address, "toy.model", self.context.target_name, {
                "name": self._name(registry.name, model.name, model.version), "space": self._space,
                "artifact": model.artifact, "sha256": sha256_file(path), "framework": model.framework}))
            outputs[f"model.{model.ref}"] = Ref(address, "uri")
        return Lowered(resources, outputs)

    def _lower_serving(self, serving: Serving, ctx: LowerContext) -> Lowered:
        registry = ctx.platform.registry
        if registry is None:
            raise MlplatError(f"endpoint {serving.name!r} serves models but the stack has no registry")
        resources, traffic = [], {}
        endpoint_name = self._name(serving.name)
        for path_name, path in serving.paths.items():
            try:
                model_uri = ctx.output(registry.name, f"model.{path.model}")
            except KeyError:
                raise MlplatError(f"endpoint {serving.name!r}: model {path.model} is not in the registry",
                                  hint="add it to registry.models") from None
            offering = catalog.instance_for("toy", path.accelerator, path.gpu_count, serving=True)
            address = ctx.address(serving.name, "deployment", path_name)
            resources.append(Resource(address, "toy.deployment", self.context.target_name, {
                "base_name": self._name(serving.name, path_name), "space": self._space, "endpoint": endpoint_name,
                "model": model_uri, "instance_type": offering.instance_type, "replicas": path.replicas}))
            traffic[path_name] = {"deployment": Ref(address, "name"), "weight": path.weight}
        address = ctx.address(serving.name, "endpoint", "main")
        resources.append(Resource(address, "toy.endpoint", self.context.target_name,
                                  {"name": endpoint_name, "space": self._space, "auth": serving.auth,
                                   "traffic": traffic}))
        return Lowered(resources, {"url": Ref(address, "url")})

    def provider(self, kind: str) -> ResourceProvider:
        from toy_plugin.providers import PROVIDERS

        cls = PROVIDERS.get(kind)
        if cls is None:
            raise MlplatError(f"the toy target has no resource kind {kind!r}")
        return cls(self)
