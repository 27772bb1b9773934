"""Entry point of the sim target (group `mlplat.plugins`)."""

from __future__ import annotations

from provisioner.graph import Resource
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_targets() -> list[type]:
    from mlplat_plugins.sim.target import SimTarget

    return [SimTarget]


@hookimpl
def mlplat_estimate_cost(resource: Resource) -> float | None:
    return 0.0 if resource.kind.startswith("sim.") else None
