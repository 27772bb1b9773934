"""Check each component against what its target declares it can do, so users learn at validate, not at apply.

Every refusal is a `Reason` with a stable code, so a migration's compatibility report can compare two targets
field by field: the same component checked against each target's `Capabilities`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from provisioner import catalog
from provisioner.errors import MlplatError
from provisioner.spec.model import Cluster, Component, Platform, Serving, Storage
from provisioner.target import Capabilities, Reason


def check_component(component: Component, caps: Capabilities, where: str, platform: Platform) -> Iterator[Reason]:
    """Yield a Reason for each thing `caps` cannot do; `where` names the target in messages."""
    if isinstance(component, Cluster):
        yield from _cluster(component, caps, where)
    elif isinstance(component, Storage):
        yield from _storage(component, caps, where)
    elif isinstance(component, Serving):
        yield from _serving(component, caps, where, platform)


def _offered(names: frozenset[str] | None) -> str:
    return ", ".join(sorted(names or ())) or "none"


def _cluster(cluster: Cluster, caps: Capabilities, where: str) -> Iterator[Reason]:
    for i, pool in enumerate(cluster.gpu_pools):
        at = ("gpu_pools", i)
        offered = caps.training_accelerators
        if offered is not None and pool.accelerator not in offered:
            yield Reason("accelerator-not-offered", f"{where} does not offer accelerator {pool.accelerator!r} for "
                         f"training (offered: {_offered(offered)}); choose one of those or put this cluster on "
                         "another target" if offered else f"{where} runs no training clusters; put this cluster "
                         "on another target", (*at, "accelerator"))
        if caps.max_nodes_per_pool is not None and pool.nodes.max > caps.max_nodes_per_pool:
            yield Reason("nodes-over-limit", f"{where} allows at most {caps.max_nodes_per_pool} node(s) per pool, "
                         f"not {pool.nodes.max}", (*at, "nodes", "max"))
        if pool.spot and not caps.spot:
            yield Reason("spot-unsupported", f"{where} has no spot capacity for pool {pool.name!r}; remove "
                         "spot: true, or put this cluster on a target that offers spot", (*at, "spot"))
        if pool.nodes.min != pool.nodes.max and not caps.autoscaling:
            yield Reason("autoscaling-unsupported", f"{where} does not autoscale: pool {pool.name!r} runs "
                         f"nodes.min ({pool.nodes.min}) node(s), never up to {pool.nodes.max}", (*at, "nodes"),
                         severity="warning")


def _storage(storage: Storage, caps: Capabilities, where: str) -> Iterator[Reason]:
    limits = caps.storage.get(storage.kind)
    if limits is None:
        yield Reason("storage-kind-unsupported", f"{where} has no storage of kind {storage.kind!r} (available: "
                     f"{_offered(caps.storage_kinds)})", ("kind",))
        return
    if storage.size_gb < limits.min_gb:
        yield Reason("storage-size-below-min", f"{where} makes {storage.kind} storage of at least {limits.min_gb} "
                     f"GB, not {storage.size_gb}; raise size_gb", ("size_gb",))
    if limits.max_gb is not None and storage.size_gb > limits.max_gb:
        yield Reason("storage-size-over-max", f"{where} makes {storage.kind} storage of at most {limits.max_gb} "
                     f"GB, not {storage.size_gb}; lower size_gb or use another kind", ("size_gb",))


def _auth(serving: Serving, caps: Capabilities, where: str) -> Iterator[Reason]:
    """`auth: key` needs "key" when the stack gives `api_key`, "minted-key" when it leaves the key to the service."""
    modes = caps.auth_modes
    needed = serving.auth if serving.auth != "key" else "key" if serving.api_key is not None else "minted-key"
    if needed in modes:
        return
    if serving.auth != "key" or not {"key", "minted-key"} & modes:
        yield Reason("auth-unsupported", f"{where} does not support auth {serving.auth!r} (supported: "
                     f"{_offered(modes)})", ("auth",))
    elif needed == "key":
        yield Reason("auth-unsupported", f"{where} mints its own endpoint keys and cannot take a given one: remove "
                     "api_key (the key is the endpoint's `key` output)", ("api_key",))
    else:
        yield Reason("auth-unsupported", f"{where} does not mint endpoint keys: give the key clients must send, "
                     "api_key: ${secret:NAME}", ("auth",))


def _serving(serving: Serving, caps: Capabilities, where: str, platform: Platform) -> Iterator[Reason]:
    yield from _auth(serving, caps, where)
    exp = serving.paths.experimental
    if exp is not None and exp.mode == "split" and not caps.traffic_split:
        yield Reason("split-unsupported", f"{where} cannot split traffic between two paths; use mode: shadow or "
                     "another target", ("paths", "experimental", "weight"))
    if exp is not None and exp.mode == "shadow":
        if caps.shadow is None:
            yield Reason("shadow-unsupported", f"{where} cannot mirror traffic (no shadow mode); use mode: split "
                         "with a small weight, or put this endpoint on a target that mirrors",
                         ("paths", "experimental", "mode"))
        elif exp.mirror_percent > caps.shadow.max_mirror_percent:
            yield Reason("mirror-over-limit", f"{where} mirrors at most {caps.shadow.max_mirror_percent}% of "
                         f"requests, not {exp.mirror_percent}%; lower mirror_percent",
                         ("paths", "experimental", "mirror_percent"))
    if serving.monitoring is not None:
        for feature in sorted(serving.monitoring.features() - caps.monitoring):
            yield Reason("monitoring-unsupported", f"{where} does not offer monitoring {feature} (offers: "
                         f"{_offered(caps.monitoring)}); remove it or put this endpoint on a target that does",
                         ("monitoring", feature))
    for name, path in serving.paths.items():
        if caps.max_replicas is not None and path.replicas > caps.max_replicas:
            yield Reason("replicas-over-limit", f"{where} runs at most {caps.max_replicas} replica(s) per path, not "
                         f"{path.replicas}; lower replicas or use a cloud target", ("paths", name, "replicas"))
        offered = caps.serving_accelerators
        if offered is not None and path.accelerator not in offered:
            yield Reason("accelerator-not-offered", f"{where} does not offer accelerator {path.accelerator!r} for "
                         f"serving (offered: {_offered(offered)})", ("paths", name, "accelerator"))
        model = platform.model(path.model)
        formats = caps.model_formats
        if model is not None and formats is not None and model.framework not in formats:
            yield Reason("model-format-unsupported", f"{where} cannot serve model {path.model!r}: its framework "
                         f"{model.framework!r} is not one it serves (served: {_offered(formats)})",
                         ("paths", name, "model"))


def differences(a: Capabilities, b: Capabilities) -> dict[str, tuple[Any, Any]]:
    """Where two targets' capabilities differ, field by field (JSON values): with `check_component` against
    each, what a migration's compatibility report is made of."""
    left, right = a.to_json(), b.to_json()
    return {name: (left[name], right[name]) for name in left if left[name] != right[name]}


def accelerator_count(target: str, accelerator: str, gpus: int, serving: bool, loc: tuple[str | int, ...]
                      ) -> list[Reason]:
    """`accelerator-count-not-offered`, located at `loc`, when `target`'s catalog offers `accelerator` but no
    instance type with `gpus` of it (for serving, with `serving`): what a cloud target's `check` reports for a GPU
    count. Nothing for cpu (sizes are picked by vCPUs) or an accelerator not offered at all (a capability
    refusal)."""
    if accelerator == "cpu" or accelerator not in catalog.accelerators_offered(target, serving=serving):
        return []
    try:
        catalog.instance_for(target, accelerator, gpus, serving=serving)
    except MlplatError as err:
        return [Reason("accelerator-count-not-offered", err.message + (f"; {err.hint}" if err.hint else ""), loc)]
    return []
