"""Entry point of the onprem target (group `mlplat.plugins`). Imports no Kubernetes or Pulumi SDK."""

from __future__ import annotations

from pathlib import Path

from provisioner.catalog import CatalogFile
from provisioner.export import Exporter
from provisioner.graph import Resource
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_targets() -> list[type]:
    from mlplat_plugins.onprem.target import OnpremTarget

    return [OnpremTarget]


@hookimpl
def mlplat_catalog() -> list[CatalogFile]:
    """Node shapes of a cluster you run: GPU nodes by accelerator and count (selected by NVIDIA GPU feature
    discovery's product label), no prices."""
    return [CatalogFile("onprem", Path(__file__).with_name("catalog.csv"))]


@hookimpl
def mlplat_estimate_cost(resource: Resource) -> float | None:
    """Hardware you own has no hourly price here: unknown (None) for every onprem kind."""
    return None


@hookimpl
def mlplat_exporters() -> list[Exporter]:
    from mlplat_plugins.onprem.pulumi_export import EXPORTER

    return [EXPORTER]
