"""Sim target settings and lowering: each component becomes resources shaped like a cloud's (an endpoint
needs models and a config first), so plans and applies have realistic graphs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mlplat_plugins.sim.raw import RAW_KINDS
from provisioner.graph import Ref, Resource
from provisioner.provider import ResourceProvider
from provisioner.spec.model import Cluster, Component, Registry, Serving, Storage
from provisioner.target import Capabilities, LowerContext, Lowered, ShadowCapability, StorageLimits, Target


class SimSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", defer_build=True)  # built on first use: most commands use one target

    store: str | None = Field(None, description="Directory holding the simulated cloud's objects; ':memory:' "
                                                "keeps them in this process (default .mlplat/<stack>/sim-cloud)")
    latency_ms: float = Field(0.0, ge=0, description="Time each create/update/delete takes")
    jitter_ms: float = Field(0.0, ge=0, description="Random extra time, uniform in [0, jitter_ms]")
    throttle_first: int = Field(0, ge=0, description="Throttle (retryably) the first N calls of each object")
    throttle_reads: int = Field(0, ge=0, description="Throttle (retryably) the first N reads of each object")
    max_concurrency: int | None = Field(None, ge=1, description="The simulated API's limit on calls in flight")
    tagged_ids: bool = Field(False, description="Each create makes a new object with a new id, as most cloud APIs "
                                                "do (a repeated create duplicates); find looks it up by its "
                                                "address tag. Default: ids derive from address+inputs "
                                                "(idempotent creates)")
    operation_polls: int = Field(0, ge=0, description="Creates are long-running operations: the object exists "
                                                      "after this many status polls (0: creates are immediate)")
    poll_interval_ms: float = Field(50.0, ge=0, description="Time between status polls of an operation")
    max_calls_per_s: float | None = Field(None, gt=0, description="The simulated API's request rate limit")
    max_mirror_percent: int = Field(100, ge=0, le=100, description="The most an endpoint may mirror to a shadow "
                                                                   "path (0: the simulated cloud has no shadow)")
    min_storage_gb: int = Field(1, ge=1, description="The smallest storage the simulated cloud makes")
    model_formats: list[str] | None = Field(None, description="Model frameworks the simulated cloud serves "
                                                              "(default: any)")
    monitoring: list[Literal["capture", "drift", "alerts", "shadow_comparison"]] = Field(
        default_factory=list, description="Monitoring features the simulated cloud offers (it realizes none: a "
                                          "capability for contract tests)")
    namespace: bool = Field(False, description="The simulated cloud groups a stack's objects in a namespace: a "
                                               "stack-scoped `sim.namespace` resource made before them")
    endpoint_keys: bool = Field(False, description="The cloud issues each serving endpoint an access key (as Azure "
                                                   "ML does): a `sim.endpoint_key` resource with a secret output")


class SimTarget(Target):
    name = "sim"
    description = "a simulated cloud for tests and benchmarks (no network, configurable latency)"
    settings_model = SimSettings
    raw_kinds = RAW_KINDS

    def capabilities(self) -> Capabilities:
        s = self.settings
        return Capabilities(
            training_accelerators=None, serving_accelerators=None, spot=True, autoscaling=True,
            traffic_split=True,
            shadow=ShadowCapability(max_mirror_percent=s.max_mirror_percent) if s.max_mirror_percent else None,
            storage={"nas": StorageLimits(min_gb=s.min_storage_gb), "lustre": StorageLimits(min_gb=s.min_storage_gb)},
            auth_modes=frozenset({"none", "key", "iam", *(["minted-key"] if s.endpoint_keys else [])}),
            model_formats=frozenset(s.model_formats) if s.model_formats is not None else None,
            monitoring=frozenset(s.monitoring),
            max_concurrency=s.max_concurrency, max_calls_per_s=s.max_calls_per_s)

    def discover(self) -> dict[str, Any]:
        """What the simulated cloud says about itself: `discovery.json` in its store (tests write it), if any."""
        path = self.store_path()
        try:
            return json.loads((path / "discovery.json").read_text()) if path is not None else {}
        except FileNotFoundError:
            return {}

    def lower_stack(self, ctx: LowerContext) -> Lowered:
        if not self.settings.namespace:
            return Lowered()
        address = self.stack_address("namespace", "main")
        return Lowered([Resource(address, "sim.namespace", self.context.target_name,
                                 {"name": self.context.stack_name})], {"namespace": Ref(address, "id")})

    def store_path(self) -> Path | None:
        store = self.settings.store
        if store == ":memory:":
            return None
        path = Path(store) if store else self.context.work_dir / "sim-cloud"
        return path if path.is_absolute() else self.context.stack_dir / path

    def lower(self, component: Component, ctx: LowerContext) -> Lowered:
        t = self.context.target_name
        name = component.name
        if isinstance(component, Cluster):
            cluster = ctx.address(name, "cluster", "main")
            res = [Resource(cluster, "sim.cluster", t, {"name": name})]
            for pool in component.gpu_pools:
                res.append(Resource(ctx.address(name, "pool", pool.name), "sim.pool", t, {
                    "cluster": Ref(cluster, "id"), "accelerator": pool.accelerator, "gpus": pool.gpus_per_node,
                    "min": pool.nodes.min, "max": pool.nodes.max}))
            return Lowered(res, {"id": Ref(cluster, "id")})
        if isinstance(component, Storage):
            fs = ctx.address(name, "filesystem", "main")
            return Lowered([Resource(fs, "sim.filesystem", t, {"size_gb": component.size_gb,
                                                              "kind": component.kind})], {"id": Ref(fs, "id")})
        if isinstance(component, Registry):
            reg = ctx.address(name, "registry", "main")
            res = [Resource(reg, "sim.registry", t, {"name": name})]
            outputs: dict[str, object] = {"id": Ref(reg, "id")}
            for model in component.models:
                addr = ctx.address(name, "model", model.ref)
                res.append(Resource(addr, "sim.model", t, {"registry": Ref(reg, "id"), "ref": model.ref}))
                outputs[f"model.{model.ref}"] = Ref(addr, "id")
            return Lowered(res, outputs)
        if isinstance(component, Serving):
            res, variants, weights = [], [], {}
            for path_name, path in component.paths.items():
                addr = ctx.address(name, "model", path_name)
                source = ctx.output(ctx.platform.registry.name, f"model.{path.model}") if ctx.platform.registry \
                    and ctx.platform.model(path.model) else path.model
                res.append(Resource(addr, "sim.model", t, {"ref": path.model, "source": source}))
                variants.append({"path": path_name, "model": Ref(addr, "id")})
                weights[path_name] = path.weight or 0
            config = ctx.address(name, "endpoint_config", "main")
            res.append(Resource(config, "sim.endpoint_config", t, {"variants": variants}))
            endpoint = ctx.address(name, "endpoint", "main")
            # like SageMaker: models/variants live in a config (replaced), weights on the endpoint (in place)
            res.append(Resource(endpoint, "sim.endpoint", t, {"config": Ref(config, "id"), "weights": weights}))
            if self.settings.endpoint_keys:
                res.append(Resource(ctx.address(name, "endpoint_key", "main"), "sim.endpoint_key", t,
                                    {"endpoint": Ref(endpoint, "id")}))
            outputs = {"url": Ref(endpoint, "url")}
            if self.settings.endpoint_keys:
                outputs["key"] = Ref(ctx.address(name, "endpoint_key", "main"), "key")
            return Lowered(res, outputs)
        raise NotImplementedError(type(component).__name__)

    def provider(self, kind: str) -> ResourceProvider:
        from mlplat_plugins.sim.providers import DataProvider, SimProvider, store_for

        if kind == "sim.data":
            return DataProvider()
        return SimProvider(kind, store_for(self.store_path()), self.settings)
