"""Entry point of the gcp target (group `mlplat.plugins`). Imports no Google Cloud SDK."""

from __future__ import annotations

from pathlib import Path

from provisioner.catalog import CatalogFile
from provisioner.graph import Resource
from provisioner.plugins import hookimpl


@hookimpl
def mlplat_targets() -> list[type]:
    from mlplat_plugins.gcp.target import GcpTarget

    return [GcpTarget]


@hookimpl
def mlplat_catalog() -> list[CatalogFile]:
    """The GCP rows of the accelerator catalog: Compute Engine machine types, the Vertex AI acceleratorType of their
    GPUs, and whether Vertex AI prediction serves on them."""
    return [CatalogFile("gcp", Path(__file__).with_name("catalog.csv"))]


#: Kinds with no charge of their own: Model Registry versions, an endpoint (its deployed models bill their
#: machines), a traffic split, a monitoring job's definition (its runs bill per GB analysed: no price here)
_FREE_KINDS = frozenset({"gcp.model_version", "gcp.endpoint", "gcp.traffic_split"})


@hookimpl
def mlplat_estimate_cost(resource: Resource) -> float | None:
    """On-demand USD per hour of persistent resource pools and deployed models, from the accelerator catalog
    (Compute Engine prices; Vertex AI bills its own rates, which are higher); 0.0 for free kinds; None for what
    bills per GB (Filestore, GCS, Artifact Registry) or has no catalog price."""
    if not resource.kind.startswith("gcp."):
        return None
    if resource.kind in _FREE_KINDS:
        return 0.0
    if resource.kind == "gcp.persistent_resource":
        units = [(p["machine_type"], p["replica_count"]) for p in resource.inputs["pools"]]
    elif resource.kind == "gcp.deployed_model":
        units = [(resource.inputs["machine_type"], resource.inputs["min_replicas"])]
    else:
        return None
    from provisioner import catalog

    prices = {o.instance_type: o.price_usd_hour for name in catalog.names() for o in catalog.offerings("gcp", name)}
    total = 0.0
    for machine_type, count in units:
        price = prices.get(machine_type)
        if price is None:
            return None
        total += price * count
    return total
