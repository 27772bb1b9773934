"""Entry point of the local target (group `mlplat.plugins`)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from provisioner.graph import Resource
from provisioner.plugins import Finding, hookimpl

if TYPE_CHECKING:
    from provisioner.spec.model import Platform


@hookimpl
def mlplat_targets() -> list[type]:
    from mlplat_plugins.local.target import LocalTarget

    return [LocalTarget]


@hookimpl
def mlplat_estimate_cost(resource: Resource) -> float | None:
    return 0.0 if resource.kind.startswith("local.") else None


@hookimpl
def mlplat_validate(platform: Platform) -> list[Finding]:
    """No public endpoint without auth: an endpoint without `auth: key` may only listen on loopback."""
    findings = []
    for serving in platform.serving:
        name = platform.target_of(serving)
        settings = platform.targets.get(name) or {}
        if settings.get("type", name) != "local" or serving.auth == "key":
            continue
        host = str(settings.get("host", "127.0.0.1"))
        from mlplat_plugins.local.runtime.processes import is_loopback  # http.server: only when needed

        if not is_loopback(host):
            findings.append(Finding(
                f"endpoint {serving.name!r} would listen on {host} without authentication; without auth the "
                f"local target serves loopback only (set auth: key, or remove targets.{name}.host)",
                component=serving.name))
    return findings


