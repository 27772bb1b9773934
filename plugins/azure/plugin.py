"""Entry point of the azure target (group `mlplat.plugins`). Imports no Azure SDK."""

from __future__ import annotations

from pathlib import Path

from provisioner.catalog import CatalogFile
from provisioner.graph import Resource
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_targets() -> list[type]:
    from mlplat_plugins.azure.target import AzureTarget

    return [AzureTarget]


@hookimpl
def mlplat_catalog() -> list[CatalogFile]:
    """The Azure rows of the accelerator catalog: VM sizes, and whether managed online endpoints sell them."""
    return [CatalogFile("azure", Path(__file__).with_name("catalog.csv"))]


#: Kinds with no charge of their own: model and data asset versions, datastores, an endpoint (its deployments bill
#: their instances), its traffic, a monitor schedule's definition (its runs bill their serverless compute)
_FREE_KINDS = frozenset({"azure.model", "azure.monitoring_baseline", "azure.datastore", "azure.online_endpoint",
                         "azure.endpoint_traffic", "azure.monitor_schedule"})


@hookimpl
def mlplat_estimate_cost(resource: Resource) -> float | None:
    """On-demand USD per hour of compute clusters (at `min_nodes`) and deployments, from the accelerator catalog;
    0.0 for free kinds; None for file shares (billed per GB) and sizes without a catalog price."""
    if not resource.kind.startswith("azure."):
        return None
    if resource.kind in _FREE_KINDS:
        return 0.0
    if resource.kind == "azure.compute":
        size, count = resource.inputs["vm_size"], resource.inputs["min_nodes"]
    elif resource.kind == "azure.online_deployment":
        size, count = resource.inputs["instance_type"], resource.inputs["instance_count"]
    else:
        return None
    from provisioner import catalog

    prices = {o.instance_type: o.price_usd_hour for name in catalog.names() for o in catalog.offerings("azure", name)}
    price = prices.get(size)
    return None if price is None else price * count
