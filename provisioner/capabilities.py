"""Check each component against what its target declares it can do, so users learn at preview, not at apply."""

from __future__ import annotations

from collections.abc import Iterator

from provisioner.spec.loader import Loc
from provisioner.spec.model import Cluster, Component, Serving, Storage
from provisioner.target import Target


def check_component(component: Component, target: Target) -> Iterator[tuple[Loc, str]]:
    """Yield (location inside the component, message) for each thing the target cannot do."""
    caps = target.capabilities()
    where = f"target {target.context.target_name!r} ({target.name})"
    if isinstance(component, Cluster):
        for i, pool in enumerate(component.gpu_pools):
            if caps.accelerators is not None and pool.accelerator not in caps.accelerators:
                offered = ", ".join(sorted(caps.accelerators)) or "none"
                yield ("gpu_pools", i, "accelerator"), (
                    f"{where} does not offer accelerator {pool.accelerator!r} (offered: {offered}); choose one "
                    "of those or put this cluster on another target")
            if caps.max_nodes_per_pool is not None and pool.nodes.max > caps.max_nodes_per_pool:
                yield ("gpu_pools", i, "nodes", "max"), (
                    f"{where} allows at most {caps.max_nodes_per_pool} node(s) per pool, not {pool.nodes.max}")
    elif isinstance(component, Storage):
        if component.kind not in caps.storage_kinds:
            yield ("kind",), (f"{where} has no storage of kind {component.kind!r} (available: "
                              f"{', '.join(sorted(caps.storage_kinds))})")
    elif isinstance(component, Serving):
        exp = component.paths.experimental
        if component.auth not in caps.auth_modes:
            yield ("auth",), (f"{where} does not support auth {component.auth!r} (supported: "
                              f"{', '.join(sorted(caps.auth_modes))})")
        if exp is not None and exp.mode == "split" and not caps.traffic_split:
            yield ("paths", "experimental", "weight"), (
                f"{where} cannot split traffic between two paths; use mode: shadow or another target")
        if exp is not None and exp.mode == "shadow":
            if caps.shadow is None:
                yield ("paths", "experimental", "mode"), (
                    f"{where} cannot mirror traffic (no shadow mode); use mode: split with a small weight, "
                    "or put this endpoint on a target that mirrors (e.g. aws, azure, onprem, local)")
            elif exp.mirror_percent > caps.shadow.max_mirror_percent:
                yield ("paths", "experimental", "mirror_percent"), (
                    f"{where} mirrors at most {caps.shadow.max_mirror_percent}% of requests, not "
                    f"{exp.mirror_percent}%; lower mirror_percent")
        for name, path in component.paths.items():
            if caps.max_replicas is not None and path.replicas > caps.max_replicas:
                yield ("paths", name, "replicas"), (
                    f"{where} runs at most {caps.max_replicas} replica(s) per path, not {path.replicas}; lower "
                    "replicas or use a cloud target")
            if caps.accelerators is not None and path.accelerator not in caps.accelerators:
                yield ("paths", name, "accelerator"), (
                    f"{where} does not offer accelerator {path.accelerator!r} (offered: "
                    f"{', '.join(sorted(caps.accelerators)) or 'none'})")
